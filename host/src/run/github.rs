//! GitHub job metrics (spec 5): for a runner that ran a job, the job's queue
//! duration and conclusion, from the list-jobs endpoint of its workflow run.
//!
//! [`GithubJobs`] implements [`JobMetricsSource`], so `collect` asks it once
//! per extracted runner with a pre-job. Every answer is best effort: when
//! GitHub cannot tell (404, a timeout, an unreadable body), the runner's
//! events are still issued, without `queue_duration` and `job_conclusion`.
//!
//! Why it is careful:
//! * The repository and run id come from the runner's `pre-job-metrics.json`,
//!   which the job itself could have written. They are checked against
//!   GitHub's name rules before they become part of a URL, so a hostile value
//!   cannot point the request (and the token) at another API path.
//! * API responses are untrusted too: bodies are read with a size bound,
//!   parsed with serde (depth-limited), and every field is optional.
//! * One collect may see thousands of runners; a bad token, an exhausted
//!   rate limit or an API that accepts connections and never answers must
//!   not cost one timeout, or one warning, per runner (5,000 runners at a
//!   10 s timeout is 14 hours, overlapping the next cron run). Token errors
//!   are said once and end the lookups for the run; so do
//!   [`MAX_CONSECUTIVE_FAILURES`] timeouts or connection failures in a row,
//!   and so does spending the run's whole time budget
//!   ([`GithubOptions::budget`]: requests and rate-limit waits together; no
//!   request is given more time than the budget has left). Rate-limit waits
//!   also have a budget of their own, past which the lookups end too.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::bindings::{GithubJobMetrics, JobConclusion, RunnerMetrics};
use crate::collect::JobMetricsSource;
use crate::engine::jobs::LookupCounts;

/// The public GitHub API. Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Timeouts or connection failures in a row after which the lookups stop
/// for the rest of the run: the API is down or a black hole, and every
/// further runner would cost another full timeout.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// How the lookups behave. The token is never printed (`Debug` hides it).
#[derive(Clone)]
pub struct GithubOptions {
    /// Base URL of the REST API, without a trailing slash needed.
    pub api_url: String,
    /// A token that can read Actions of the repositories (`actions:read`).
    pub token: String,
    /// Connect timeout, and the time one response (headers and body) may take.
    pub timeout: Duration,
    /// The total time one run may spend waiting for rate limits to reset;
    /// a wait that would exceed it ends the lookups for the run instead.
    pub max_rate_limit_wait: Duration,
    /// The total time one run may spend on lookups (requests and rate-limit
    /// waits); once spent, no more lookups in the run. A request never gets
    /// more time than is left of it.
    pub budget: Duration,
    /// Pages of 100 jobs looked at per workflow run, at most (a run with a
    /// matrix can have hundreds of jobs; the run id comes from the job
    /// itself, so a hostile job could name a huge run and spend the run's
    /// lookup budget on it). 3, as the reference manager reads.
    pub max_pages: u32,
    /// The largest response body read; a page of 100 jobs with their steps
    /// is typically a few hundred KiB.
    pub max_body_bytes: u64,
    /// Use the proxy of `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` (honouring
    /// `NO_PROXY`), as runner managers behind a proxy need. Off in tests
    /// that talk to a server on 127.0.0.1.
    pub proxy_from_env: bool,
}

impl GithubOptions {
    /// Defaults: 10 s timeouts, 60 s of rate-limit waiting and 60 s of
    /// lookups in all per run, 3 pages per workflow run, 8 MiB bodies.
    pub fn new(api_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            api_url: api_url.into(),
            token: token.into(),
            timeout: Duration::from_secs(10),
            max_rate_limit_wait: Duration::from_secs(60),
            budget: Duration::from_secs(60),
            max_pages: 3,
            max_body_bytes: 8 << 20,
            proxy_from_env: true,
        }
    }
}

impl std::fmt::Debug for GithubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubOptions")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_rate_limit_wait", &self.max_rate_limit_wait)
            .field("budget", &self.budget)
            .field("max_pages", &self.max_pages)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("proxy_from_env", &self.proxy_from_env)
            .finish()
    }
}

/// Reads a token file: the first bytes up to 64 KiB, trimmed. Only a
/// regular file is read; it is opened non-blocking, so a FIFO or a device
/// given by mistake is an error at once (`is a FIFO, not a regular file`),
/// never a hang. The error names the file, never its content.
pub fn read_token_file(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    const LIMIT: u64 = 64 * 1024;
    let mut text = String::new();
    crate::log::open_regular_file(path, std::fs::OpenOptions::new().read(true))
        .and_then(|f| f.take(LIMIT + 1).read_to_string(&mut text))
        .map_err(|e| anyhow::anyhow!("GitHub token file {}: {e}", path.display()))?;
    anyhow::ensure!(text.len() as u64 <= LIMIT, "GitHub token file {}: larger than {LIMIT} bytes", path.display());
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "GitHub token file {}: empty", path.display());
    anyhow::ensure!(
        token.bytes().all(|b| b.is_ascii_graphic()),
        "GitHub token file {}: the token has spaces or control characters",
        path.display()
    );
    Ok(token.to_owned())
}

/// Looks up job metrics on the GitHub API, one workflow run at a time.
pub struct GithubJobs {
    options: GithubOptions,
    base: String,
    agent: ureq::Agent,
    warn: Box<dyn FnMut(&str)>,
    /// Why lookups stopped for the rest of the run (said once when set).
    stopped: Option<String>,
    /// Rate-limit waiting spent so far in this run.
    waited: Duration,
    /// Time spent in lookups so far in this run (requests and waits).
    spent: Duration,
    /// Timeouts and connection failures since the last answer.
    consecutive_failures: u32,
    /// Requests sent, for tests and the summary.
    pub requests: usize,
    /// This run's lookups by result, for the textfile's health series.
    counts: LookupCounts,
}

/// A lookup that got no usable answer (its warning is said already).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failed;

/// What one request came back with.
enum Reply {
    Body(Vec<u8>),
    /// No job metrics for this runner, but later runners may have some.
    Skip(String),
    /// No answer at all (a timeout, no connection): like `Skip`, but
    /// [`MAX_CONSECUTIVE_FAILURES`] of them in a row end the lookups.
    Unreachable(String),
    /// Stop asking for the rest of the run.
    Stop(String),
}

impl GithubJobs {
    /// `warn` receives one line per problem (a runner whose job could not be
    /// looked up, or the one reason lookups stopped).
    pub fn new(options: GithubOptions, warn: impl FnMut(&str) + 'static) -> anyhow::Result<Self> {
        let base = options.api_url.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("https://") || base.starts_with("http://"),
            "GitHub API URL {:?}: must start with https:// (or http://)",
            options.api_url
        );
        let proxy = if options.proxy_from_env { ureq::Proxy::try_from_env() } else { None };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(proxy)
            .http_status_as_error(false)
            .user_agent(concat!("runner-metrics/", env!("CARGO_PKG_VERSION")))
            .accept("application/vnd.github+json")
            .timeout_connect(Some(options.timeout))
            .timeout_recv_response(Some(options.timeout))
            .timeout_recv_body(Some(options.timeout))
            .timeout_global(Some(options.timeout.saturating_mul(3)))
            // Redirects are followed by `get`, which checks the origin:
            // ureq's `SameHost` would send the token to another port.
            .max_redirects(0)
            .build()
            .new_agent();
        Ok(Self {
            options,
            base,
            agent,
            warn: Box::new(warn),
            stopped: None,
            waited: Duration::ZERO,
            spent: Duration::ZERO,
            consecutive_failures: 0,
            requests: 0,
            counts: LookupCounts::default(),
        })
    }

    /// Why lookups stopped for this run, if they did.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.as_deref()
    }

    fn stop(&mut self, why: String) {
        (self.warn)(&format!("GitHub job metrics: {why}; no more lookups in this run"));
        self.stopped = Some(why);
    }

    /// Time spent on lookups so far in this run (requests and waits).
    pub fn spent(&self) -> Duration {
        self.spent
    }

    /// The job of `run_id` in `repository` that ran on `runner`, if found:
    /// among the jobs of `attempt` when the pre-job file named one, else
    /// among those of every attempt (GitHub lists only the latest attempt's
    /// by default, so a job of a re-run workflow would never be found).
    pub fn find(
        &mut self,
        repository: &str,
        run_id: &str,
        attempt: Option<u32>,
        runner: &str,
    ) -> Option<GithubJobMetrics> {
        if self.stopped.is_some() {
            self.counts.skipped += 1;
            return None;
        }
        let started = Instant::now();
        let found = self.find_timed(repository, run_id, attempt, runner);
        self.spent = self.spent.saturating_add(started.elapsed());
        match found {
            Ok(Some(_)) => self.counts.found += 1,
            Ok(None) => self.counts.not_found += 1,
            Err(Failed) => self.counts.failed += 1,
        }
        found.ok().flatten()
    }

    /// How this run's lookups went so far.
    pub fn counts(&self) -> LookupCounts {
        self.counts
    }

    fn find_timed(
        &mut self,
        repository: &str,
        run_id: &str,
        attempt: Option<u32>,
        runner: &str,
    ) -> Result<Option<GithubJobMetrics>, Failed> {
        let Some((owner, repo)) = valid_repository(repository) else {
            (self.warn)(&format!(
                "{runner}: repository {:?} is not owner/repo; no job metrics",
                repository.escape_debug().to_string()
            ));
            return Err(Failed);
        };
        if run_id.is_empty() || run_id.len() > 20 || !run_id.bytes().all(|b| b.is_ascii_digit()) {
            (self.warn)(&format!(
                "{runner}: workflow run id {:?} is not a number; no job metrics",
                run_id.escape_debug().to_string()
            ));
            return Err(Failed);
        }
        let started = Instant::now();
        let jobs = match attempt {
            Some(attempt) => {
                format!("{}/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt}/jobs?", self.base)
            }
            None => format!("{}/repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=all&", self.base),
        };
        for page in 1..=self.options.max_pages.max(1) {
            let url = format!("{jobs}per_page=100&page={page}");
            let left = self.options.budget.saturating_sub(self.spent.saturating_add(started.elapsed()));
            let reply = self.get(&url, started, left);
            if !matches!(reply, Reply::Unreachable(_)) {
                self.consecutive_failures = 0;
            }
            let body = match reply {
                Reply::Body(body) => body,
                Reply::Skip(why) => {
                    (self.warn)(&format!("{runner}: {why}; no job metrics"));
                    return Err(Failed);
                }
                Reply::Unreachable(why) => {
                    self.consecutive_failures += 1;
                    if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                        self.stop(format!(
                            "{} lookups in a row timed out or could not connect (the last: {why})",
                            self.consecutive_failures
                        ));
                    } else {
                        (self.warn)(&format!("{runner}: {why}; no job metrics"));
                    }
                    return Err(Failed);
                }
                Reply::Stop(why) => {
                    self.stop(why);
                    return Err(Failed);
                }
            };
            let jobs: JobsPage = match serde_json::from_slice(&body) {
                Ok(jobs) => jobs,
                Err(e) => {
                    (self.warn)(&format!("{runner}: GET {url}: unreadable answer ({e}); no job metrics"));
                    return Err(Failed);
                }
            };
            if let Some(job) = jobs.jobs.iter().find(|j| j.runner_name.as_deref() == Some(runner)) {
                return Ok(job_metrics(job));
            }
            let seen = u64::from(page) * 100;
            if jobs.jobs.len() < 100 || jobs.total_count.is_some_and(|total| total <= seen) {
                return Ok(None); // no more pages: the run has no job on this runner (yet)
            }
        }
        (self.warn)(&format!(
            "{runner}: no job found in the first {} pages of run {run_id} of {owner}/{repo}; no job metrics",
            self.options.max_pages
        ));
        Ok(None)
    }

    /// One GET, with rate-limit waits (within the run's budgets) and
    /// retries, taking no longer than `left` from `started` on.
    fn get(&mut self, url: &str, started: Instant, left: Duration) -> Reply {
        const ATTEMPTS: u32 = 4;
        // Where the request goes now: `url`, or where the API redirected it.
        let mut target = url.to_owned();
        for _ in 0..ATTEMPTS {
            let url = target.as_str();
            let remaining = left.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Reply::Stop(format!(
                    "the {}s lookup budget of the run (--github-budget) is spent",
                    self.options.budget.as_secs_f64()
                ));
            }
            self.requests += 1;
            let response = self
                .agent
                .get(url)
                .config()
                .timeout_connect(Some(self.options.timeout.min(remaining)))
                .timeout_global(Some(self.options.timeout.saturating_mul(3).min(remaining)))
                .build()
                .header("Authorization", &format!("Bearer {}", self.options.token))
                .header("X-GitHub-Api-Version", "2022-11-28")
                .call();
            let mut response = match response {
                Ok(response) => response,
                Err(e) if left.saturating_sub(started.elapsed()).is_zero() => {
                    return Reply::Stop(format!(
                        "GET {url}: {e}, and the {}s lookup budget of the run (--github-budget) is spent",
                        self.options.budget.as_secs_f64()
                    ))
                }
                Err(ureq::Error::Timeout(what)) => {
                    return Reply::Unreachable(format!("GET {url}: timed out ({what:?})"))
                }
                Err(
                    e @ (ureq::Error::Io(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::HostNotFound
                    | ureq::Error::ConnectProxyFailed(_)),
                ) => return Reply::Unreachable(format!("GET {url}: {e}")),
                Err(e) => return Reply::Skip(format!("GET {url}: {e}")),
            };
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
            if let Some(remaining) = header("x-ratelimit-remaining").and_then(|v| v.parse().ok()) {
                self.counts.rate_limit_remaining = Some(remaining);
            }
            match status {
                200 => {}
                401 => return Reply::Stop(format!("GET {url}: 401 Unauthorized: the token is invalid or expired")),
                403 | 429 => {
                    let wait = rate_limit_wait(
                        header("retry-after"),
                        header("x-ratelimit-remaining"),
                        header("x-ratelimit-reset"),
                    );
                    match wait {
                        Some(wait)
                            if self.waited + wait <= self.options.max_rate_limit_wait
                                && wait < left.saturating_sub(started.elapsed()) =>
                        {
                            self.waited += wait;
                            std::thread::sleep(wait);
                            continue;
                        }
                        Some(wait) if self.waited + wait <= self.options.max_rate_limit_wait => {
                            return Reply::Stop(format!(
                                "GET {url}: {status}: rate limited for {}s more, past what is left of the {}s \
                                 lookup budget of the run (--github-budget)",
                                wait.as_secs(),
                                self.options.budget.as_secs_f64()
                            ))
                        }
                        Some(wait) => {
                            return Reply::Stop(format!(
                                "GET {url}: {status}: rate limited for {}s more, past the {}s wait budget of the run",
                                wait.as_secs(),
                                self.options.max_rate_limit_wait.as_secs()
                            ))
                        }
                        None if status == 429 => return Reply::Stop(format!("GET {url}: 429 Too Many Requests")),
                        None => {
                            return Reply::Stop(format!(
                                "GET {url}: 403 Forbidden: the token may not read Actions of this repository"
                            ))
                        }
                    }
                }
                301 | 302 | 303 | 307 | 308 => {
                    // GitHub redirects a renamed repository within the API.
                    // The token goes only to the API's own origin (scheme,
                    // host and port); a redirect elsewhere is not followed.
                    let location = header("location").unwrap_or_default();
                    let api = Origin::of(&self.base);
                    match Origin::resolve(url, location) {
                        Some(next) if api.is_some_and(|api| api.holds(&next)) => {
                            target = next;
                            continue;
                        }
                        _ => {
                            return Reply::Skip(format!(
                                "GET {url}: {status} redirect to {:?}, outside the API's origin {}: not followed \
                                 (the token goes to the API only)",
                                location.escape_debug().to_string(),
                                self.base
                            ))
                        }
                    }
                }
                404 => return Reply::Skip(format!("GET {url}: 404 Not Found")),
                other => return Reply::Skip(format!("GET {url}: HTTP status {other}")),
            }
            return match response.body_mut().with_config().limit(self.options.max_body_bytes).read_to_vec() {
                Ok(body) => Reply::Body(body),
                Err(ureq::Error::BodyExceedsLimit(limit)) => {
                    Reply::Skip(format!("GET {url}: answer larger than {limit} bytes"))
                }
                Err(e @ (ureq::Error::Timeout(_) | ureq::Error::Io(_))) => {
                    Reply::Unreachable(format!("GET {url}: reading the answer: {e}"))
                }
                Err(e) => Reply::Skip(format!("GET {url}: reading the answer: {e}")),
            };
        }
        Reply::Skip(format!("GET {url}: still rate limited or redirected after {ATTEMPTS} attempts"))
    }
}

impl JobMetricsSource for GithubJobs {
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        // Only `runner_start` (which needs a repository) uses job metrics.
        let pre_job = metrics.pre_job.as_ref()?;
        let repository = pre_job.repository.as_deref()?;
        self.find(repository, &pre_job.workflow_run_id, pre_job.workflow_run_attempt, &metrics.runner_name)
    }

    fn lookups(&self) -> Option<LookupCounts> {
        Some(self.counts)
    }
}

/// The origin of an `http(s)://` URL: scheme, host and port, as a browser
/// compares them (lower case, the scheme's default port filled in). The
/// token goes to one origin only; the second wall opens the API's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `None` for anything but `http://` or `https://` with a host (a
    /// missing scheme counts as `https://`, as for a proxy named bare).
    pub fn of(url: &str) -> Option<Self> {
        let origin = Self::parse(url)?;
        matches!(origin.scheme.as_str(), "http" | "https").then_some(origin)
    }

    /// Scheme, host and port of a URL of any scheme (a proxy may be
    /// `socks5://`); the port defaults to 80 for `http`, else 443. `None`
    /// without a host or with a port that is not one.
    pub fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_owned(), url),
        };
        let default = if scheme == "http" { 80 } else { 443 };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        // `[::1]:8080` or `host:8080`; a bare IPv6 literal has no port.
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') && (!host.starts_with('[') || host.ends_with(']')) => {
                (host, port.parse().ok()?)
            }
            _ => (host_port, default),
        };
        (!host.is_empty()).then(|| Self { scheme, host: host.to_ascii_lowercase(), port })
    }

    /// Whether `url` is of this origin (never when either is not a URL).
    pub fn holds(&self, url: &str) -> bool {
        Self::of(url).is_some_and(|other| other == *self)
    }

    /// The URL a `Location` header names, relative to `from`: absolute,
    /// scheme-relative (`//host/...`) or absolute-path (`/...`) references.
    pub fn resolve(from: &str, location: &str) -> Option<String> {
        if location.contains("://") {
            return Some(location.to_owned());
        }
        let (scheme, rest) = from.split_once("://")?;
        if let Some(after) = location.strip_prefix("//") {
            return Some(format!("{scheme}://{after}"));
        }
        if location.starts_with('/') {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            return Some(format!("{scheme}://{authority}{location}"));
        }
        None
    }
}

/// The part of a list-jobs page we read. Everything is optional: a field
/// GitHub leaves out (or a hostile server mangles) means "unknown".
#[derive(Debug, Deserialize)]
struct JobsPage {
    total_count: Option<u64>,
    #[serde(default)]
    jobs: Vec<Job>,
}

#[derive(Debug, Deserialize)]
struct Job {
    runner_name: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
    conclusion: Option<String>,
}

/// Queue duration and conclusion of a job; `None` without both timestamps.
fn job_metrics(job: &Job) -> Option<GithubJobMetrics> {
    let created = parse_rfc3339(job.created_at.as_deref()?)?;
    let started = parse_rfc3339(job.started_at.as_deref()?)?;
    Some(GithubJobMetrics {
        queue_duration: started - created,
        conclusion: job.conclusion.as_deref().and_then(conclusion),
    })
}

/// GitHub's conclusion strings; anything else (including `null` for a job
/// still running) is unknown.
pub fn conclusion(name: &str) -> Option<JobConclusion> {
    Some(match name {
        "action_required" => JobConclusion::ActionRequired,
        "cancelled" => JobConclusion::Cancelled,
        "failure" => JobConclusion::Failure,
        "neutral" => JobConclusion::Neutral,
        "skipped" => JobConclusion::Skipped,
        "success" => JobConclusion::Success,
        "timed_out" => JobConclusion::TimedOut,
        _ => return None,
    })
}

/// `owner/repo` when both halves are GitHub names (`[A-Za-z0-9._-]`, not
/// `.` or `..`): safe to put in a URL path as they are.
fn valid_repository(repository: &str) -> Option<(&str, &str)> {
    let (owner, repo) = repository.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    };
    (ok(owner) && ok(repo)).then_some((owner, repo))
}

/// How long a 403/429 asks us to wait: `Retry-After` seconds, else, when
/// `X-RateLimit-Remaining` is 0, until `X-RateLimit-Reset` (UNIX seconds)
/// plus a second. `None` when the answer is not a rate limit.
fn rate_limit_wait(retry_after: Option<&str>, remaining: Option<&str>, reset: Option<&str>) -> Option<Duration> {
    if let Some(seconds) = retry_after.and_then(|s| s.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    if remaining? != "0" {
        return None;
    }
    let reset = reset?.parse::<u64>().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Some(Duration::from_secs(reset.saturating_sub(now).saturating_add(1)))
}

/// Seconds since the UNIX epoch of an RFC 3339 time such as
/// `2024-01-02T03:04:05Z`, `2024-01-02T03:04:05.123+02:00`. `None` for
/// anything else.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        part.iter().try_fold(0i64, |n, d| n.checked_mul(10)?.checked_add(i64::from(d - b'0')))
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = 19;
    let mut fraction = 0.0;
    if b.get(rest) == Some(&b'.') {
        let start = rest + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start || end - start > 12 {
            return None;
        }
        fraction = std::str::from_utf8(b.get(rest..end)?).ok()?.parse::<f64>().ok()?;
        rest = end;
    }
    let offset = match b.get(rest..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (digits(rest + 1..rest + 3)?, digits(rest + 4..rest + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(seconds as f64 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000.0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        assert_eq!(parse_rfc3339("2023-11-14T23:13:20.5+01:00"), Some(1_700_000_000.5));
        assert_eq!(parse_rfc3339("2023-11-14T21:13:20-01:00"), Some(1_700_000_000.0));
        for bad in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20Zjunk",
            "２０２３-11-14T22:13:20Z",
            "2023-11-14T22:13:20.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_plain_owner_repo_names_reach_a_url() {
        assert_eq!(valid_repository("canonical/example.git-x_1"), Some(("canonical", "example.git-x_1")));
        for bad in ["a", "/b", "a/", "a/b/c", "../x", "a/..", "a/b?x=1", "a/b#", "a%2fb/c", "a /b"] {
            assert_eq!(valid_repository(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rate_limit_waits() {
        assert_eq!(rate_limit_wait(Some("3"), None, None), Some(Duration::from_secs(3)));
        assert_eq!(rate_limit_wait(None, Some("5"), Some("0")), None);
        assert_eq!(rate_limit_wait(None, None, None), None);
        assert_eq!(rate_limit_wait(None, Some("0"), Some("0")), Some(Duration::from_secs(1)));
    }

    #[test]
    fn origins_and_redirect_targets() {
        let o = |url: &str| Origin::of(url).map(|o| (o.scheme, o.host, o.port));
        let https = |host: &str, port| Some(("https".to_owned(), host.to_owned(), port));
        assert_eq!(o("https://api.github.com"), https("api.github.com", 443));
        assert_eq!(o("HTTPS://API.GitHub.com:443/x"), https("api.github.com", 443));
        assert_eq!(o("https://ghe.example.com/api/v3"), https("ghe.example.com", 443));
        assert_eq!(o("http://127.0.0.1:8123/"), Some(("http".to_owned(), "127.0.0.1".to_owned(), 8123)));
        assert_eq!(o("http://localhost/x").map(|o| o.2), Some(80));
        assert_eq!(o("https://[::1]:9443/api"), https("[::1]", 9443));
        assert_eq!(o("https://[::1]/api"), https("[::1]", 443));
        assert_eq!(o("https://user@host:444"), https("host", 444));
        assert_eq!(o("proxy.local:3128"), https("proxy.local", 3128));
        for bad in ["ftp://host/", "https://", "https://host:99999/", "https://host:x/"] {
            assert_eq!(o(bad), None, "{bad:?}");
        }
        let from = "http://127.0.0.1:8123/repos/a/b/actions/runs/1/jobs?page=1";
        assert_eq!(
            Origin::resolve(from, "/repositories/9/x").as_deref(),
            Some("http://127.0.0.1:8123/repositories/9/x")
        );
        assert_eq!(Origin::resolve(from, "//127.0.0.1:9/x").as_deref(), Some("http://127.0.0.1:9/x"));
        assert_eq!(Origin::resolve(from, "https://elsewhere/x").as_deref(), Some("https://elsewhere/x"));
        assert_eq!(Origin::resolve(from, "relative/x"), None);
        assert_ne!(Origin::of("http://127.0.0.1:8123/a"), Origin::of("http://127.0.0.1:8124/a"));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let options = GithubOptions::new(DEFAULT_API_URL, "ghp_secret");
        assert!(!format!("{options:?}").contains("ghp_secret"));
    }
}
