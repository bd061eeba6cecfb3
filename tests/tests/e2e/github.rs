//! GitHub job metrics (`runner_metrics::github`) against a local HTTP server
//! on 127.0.0.1 started by each test (`github_server`): pagination, 404, token
//! errors said once, rate limits, timeouts, Enterprise base paths, the
//! request headers, and answers that are not what GitHub would send; an API
//! that accepts connections and never answers (`BlackHole`), and the run's
//! time budget. The runs that go through `collect` check that events are
//! issued either way. Every server is on 127.0.0.1.

use std::cell::RefCell;
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runner_metrics::github::{GithubJobs, GithubOptions, MAX_CONSECUTIVE_FAILURES};
use runner_metrics::{CollectOptions, JobConclusion, OutcomeKind};
use runner_metrics_e2e::github_server::{
    attempt_jobs_target, job, jobs_page, jobs_target, Answer, BlackHole, GithubServer,
};
use runner_metrics_e2e::*;

const TOKEN: &str = "ghs_test-token-123";
const REPO: &str = "canonical/example";
const RUN: &str = "4242";

/// A client of `server` (at `base_path` under it) and the warnings it gives.
fn client(server: &GithubServer, base_path: &str) -> (GithubJobs, Rc<RefCell<Vec<String>>>) {
    client_with(server, base_path, |_| {})
}

fn client_with(
    server: &GithubServer,
    base_path: &str,
    tune: impl FnOnce(&mut GithubOptions),
) -> (GithubJobs, Rc<RefCell<Vec<String>>>) {
    client_at(&format!("{}{base_path}", server.url()), tune)
}

fn client_at(api_url: &str, tune: impl FnOnce(&mut GithubOptions)) -> (GithubJobs, Rc<RefCell<Vec<String>>>) {
    let mut options = GithubOptions::new(api_url, TOKEN);
    options.proxy_from_env = false;
    options.timeout = Duration::from_secs(5);
    tune(&mut options);
    let warnings = Rc::new(RefCell::new(Vec::new()));
    let sink = warnings.clone();
    let jobs = GithubJobs::new(options, move |w: &str| sink.borrow_mut().push(w.to_owned())).expect("client");
    (jobs, warnings)
}

/// 100 jobs on other runners.
fn full_page(offset: u64) -> Vec<serde_json::Value> {
    (0..100)
        .map(|i| {
            job(
                offset + i,
                &format!("other-{}", offset + i),
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:00:01Z",
                Some("success"),
            )
        })
        .collect()
}

/// A storage whose pre-job names REPO and RUN, collected with `jobs`;
/// returns the parsed lines.
fn collect_one(jobs: &mut GithubJobs, name: &str) -> Vec<serde_json::Value> {
    let root = StorageRoot::new();
    let pre_job = format!(
        r#"{{"workflow": "ci", "repository": "{REPO}", "event": "push", "timestamp": 1700000100, "workflow_run_id": "{RUN}"}}"#
    );
    root.runner(name)
        .file(START, "1700000000")
        .file(INSTALLED, "1700000060")
        .file(PRE_JOB, pre_job)
        .file(POST_JOB, r#"{"timestamp": 1700000400, "status": "normal"}"#);
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), jobs);
    assert_eq!(collected.kind(name), OutcomeKind::Extracted);
    assert!(!root.join(name).exists(), "extracted storage deleted");
    lines.iter().map(|l| json(l)).collect()
}

#[test]
fn the_job_is_found_on_the_second_page_with_the_token_and_a_user_agent() {
    let server = GithubServer::start();
    server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(jobs_page(150, full_page(0)))]);
    let ours = job(7, "r-found", "2024-01-01T00:00:00Z", "2024-01-01T00:02:05.5Z", Some("timed_out"));
    server.route(&jobs_target("", REPO, RUN, 2), vec![Answer::json(jobs_page(150, vec![ours]))]);
    let (mut jobs, warnings) = client(&server, "");

    let lines = collect_one(&mut jobs, "r-found");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1]["queue_duration"], 125.5);
    assert_eq!(lines[2]["job_conclusion"], "timed_out");
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());

    let requests = server.requests();
    let targets: Vec<&str> = requests.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, [jobs_target("", REPO, RUN, 1), jobs_target("", REPO, RUN, 2)]);
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
        assert!(request.header("user-agent").is_some_and(|ua| ua.starts_with("runner-metrics/")), "{request:?}");
        assert_eq!(request.header("accept"), Some("application/vnd.github+json"));
    }
}

#[test]
fn a_job_not_in_the_run_gives_no_metrics_after_the_last_page() {
    let server = GithubServer::start();
    server.route(
        &jobs_target("", REPO, RUN, 1),
        vec![Answer::json(jobs_page(2, full_page(0).into_iter().take(2).collect()))],
    );
    let (mut jobs, _) = client(&server, "");
    assert!(jobs.find(REPO, RUN, None, "r-absent").is_none());
    assert_eq!(server.requests().len(), 1, "one short page is the last one");
    assert_eq!((jobs.counts().not_found, jobs.counts().failed), (1, 0));
}

#[test]
fn a_job_of_an_earlier_attempt_of_a_re_run_workflow_is_found() {
    // The run was re-run before we collected: our runner ran attempt 1, and
    // GitHub's default listing (`filter=latest`) shows attempt 2's jobs
    // only, so a lookup that uses it never finds ours (issue 28). Without
    // an attempt in the pre-job file the client lists every attempt's
    // jobs; with one, that attempt's.
    let server = GithubServer::start();
    let ours = job(1, "r-first", "2024-01-01T00:00:00Z", "2024-01-01T00:02:00Z", Some("failure"));
    let rerun = job(2, "r-second", "2024-01-01T01:00:00Z", "2024-01-01T01:00:05Z", Some("success"));
    let latest = format!("/repos/{REPO}/actions/runs/{RUN}/jobs?per_page=100&page=1");
    server.route(&latest, vec![Answer::json(jobs_page(1, vec![rerun.clone()]))]);
    server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(jobs_page(2, vec![ours.clone(), rerun]))]);
    server.route(&attempt_jobs_target("", REPO, RUN, 1, 1), vec![Answer::json(jobs_page(1, vec![ours]))]);
    let (mut jobs, warnings) = client(&server, "");
    for attempt in [None, Some(1)] {
        let found =
            jobs.find(REPO, RUN, attempt, "r-first").unwrap_or_else(|| panic!("attempt {attempt:?}: not found"));
        assert_eq!((found.queue_duration, found.conclusion), (120.0, Some(JobConclusion::Failure)), "{attempt:?}");
    }
    let targets: Vec<String> = server.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, [jobs_target("", REPO, RUN, 1), attempt_jobs_target("", REPO, RUN, 1, 1)]);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
    assert_eq!((jobs.counts().found, jobs.counts().not_found), (2, 0), "the textfile's lookups by result");
}

#[test]
fn unknown_conclusions_and_running_jobs_have_no_conclusion() {
    let server = GithubServer::start();
    let jobs_list = vec![
        job(1, "r-weird", "2024-01-01T00:00:00Z", "2024-01-01T00:00:10Z", Some("stale")),
        job(2, "r-running", "2024-01-01T00:00:00Z", "2024-01-01T00:00:03Z", None),
    ];
    server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(jobs_page(2, jobs_list))]);
    let (mut jobs, _) = client(&server, "");
    let weird = jobs.find(REPO, RUN, None, "r-weird").expect("found");
    assert_eq!((weird.queue_duration, weird.conclusion), (10.0, None));
    let running = jobs.find(REPO, RUN, None, "r-running").expect("found");
    assert_eq!((running.queue_duration, running.conclusion), (3.0, None));
    let server2 = GithubServer::start();
    let done = vec![job(3, "r-ok", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z", Some("success"))];
    server2.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(jobs_page(1, done))]);
    let (mut jobs2, _) = client(&server2, "");
    let ok = jobs2.find(REPO, RUN, None, "r-ok").expect("found");
    assert_eq!((ok.queue_duration, ok.conclusion), (3600.0, Some(JobConclusion::Success)));
}

#[test]
fn not_found_gives_no_job_metrics_but_the_events_are_issued() {
    let server = GithubServer::start(); // no routes: every target is a 404
    let (mut jobs, warnings) = client(&server, "");
    let lines = collect_one(&mut jobs, "r-404");
    assert_eq!(
        lines.iter().map(|l| l["event"].as_str().unwrap()).collect::<Vec<_>>(),
        ["runner_installed", "runner_start", "runner_stop"]
    );
    assert!(lines[1].get("queue_duration").is_none() && lines[2].get("job_conclusion").is_none(), "{lines:?}");
    let warnings = warnings.borrow();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("404") && warnings[0].contains(&server.url()), "names the URL: {warnings:?}");
    // A 404 is about one run: the next runner is still looked up.
    drop(warnings);
    assert!(jobs.find(REPO, "1", None, "r-next").is_none());
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_rejected_token_is_said_once_and_nothing_more_is_asked() {
    for status in [401, 403] {
        let server = GithubServer::start();
        server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::status(status)]);
        let (mut jobs, warnings) = client(&server, "");
        for runner in ["r-1", "r-2", "r-3"] {
            assert!(jobs.find(REPO, RUN, None, runner).is_none());
        }
        assert_eq!(server.requests().len(), 1, "{status}: asked once, then stopped");
        let warnings = warnings.borrow();
        assert_eq!(warnings.len(), 1, "{status}: said once: {warnings:?}");
        assert!(warnings[0].contains(&status.to_string()) && warnings[0].contains("no more lookups"), "{warnings:?}");
        let counts = jobs.counts();
        assert_eq!((counts.failed, counts.skipped), (1, 2), "{status}: asked once, then skipped");
        assert!(!warnings[0].contains(TOKEN), "the token is never printed");
        assert!(jobs.stopped().is_some());
    }
}

#[test]
fn a_rate_limit_with_retry_after_is_waited_out_then_the_job_is_found() {
    let server = GithubServer::start();
    let ours = job(1, "r-rate", "2024-01-01T00:00:00Z", "2024-01-01T00:00:30Z", Some("failure"));
    server.route(
        &jobs_target("", REPO, RUN, 1),
        vec![Answer::status(429).header("Retry-After", "1"), Answer::json(jobs_page(1, vec![ours]))],
    );
    let (mut jobs, warnings) = client(&server, "");
    let started = Instant::now();
    let found = jobs.find(REPO, RUN, None, "r-rate").expect("found after the wait");
    assert_eq!((found.queue_duration, found.conclusion), (30.0, Some(JobConclusion::Failure)));
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert_eq!(server.requests().len(), 2);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
}

#[test]
fn a_rate_limit_past_the_wait_budget_stops_the_lookups_without_waiting() {
    let server = GithubServer::start();
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    server.route(
        &jobs_target("", REPO, RUN, 1),
        vec![Answer::status(403).header("X-RateLimit-Remaining", "0").header("X-RateLimit-Reset", &reset.to_string())],
    );
    let (mut jobs, warnings) = client_with(&server, "", |o| o.max_rate_limit_wait = Duration::from_secs(5));
    let started = Instant::now();
    assert!(jobs.find(REPO, RUN, None, "r-1").is_none());
    assert!(jobs.find(REPO, RUN, None, "r-2").is_none());
    assert!(started.elapsed() < Duration::from_secs(3), "no hour-long wait");
    assert_eq!(server.requests().len(), 1);
    let warnings = warnings.borrow();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("rate limited"), "{warnings:?}");
    assert_eq!(jobs.counts().rate_limit_remaining, Some(0), "what GitHub last said, for the textfile");
}

#[test]
fn a_slow_server_hits_the_timeout_and_the_events_are_still_issued() {
    let server = GithubServer::start();
    server.route(
        &jobs_target("", REPO, RUN, 1),
        vec![Answer::json(jobs_page(0, vec![])).delayed(Duration::from_secs(4))],
    );
    let (mut jobs, warnings) = client_with(&server, "", |o| o.timeout = Duration::from_secs(1));
    let started = Instant::now();
    let lines = collect_one(&mut jobs, "r-slow");
    assert!(started.elapsed() < Duration::from_secs(4), "gave up at the timeout: {:?}", started.elapsed());
    assert_eq!(lines.len(), 3);
    assert!(lines[1].get("queue_duration").is_none());
    let warnings = warnings.borrow();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("timed out") && warnings[0].contains(&server.url()), "{warnings:?}");
}

#[test]
fn an_enterprise_base_path_is_kept_in_every_request() {
    let server = GithubServer::start();
    let ours = job(1, "r-ghe", "2024-01-01T00:00:00Z", "2024-01-01T00:00:02Z", Some("cancelled"));
    server.route(&jobs_target("/api/v3", REPO, RUN, 1), vec![Answer::json(jobs_page(1, vec![ours]))]);
    let (mut jobs, _) = client(&server, "/api/v3/");
    let found = jobs.find(REPO, RUN, None, "r-ghe").expect("found");
    assert_eq!(found.conclusion, Some(JobConclusion::Cancelled));
    assert_eq!(server.requests()[0].target, jobs_target("/api/v3", REPO, RUN, 1));
}

#[test]
fn garbage_answers_give_no_job_metrics_but_the_events_are_issued() {
    let garbage = [
        "this is not json".to_owned(),
        r#"{"total_count": 1, "jobs": {"not": "a list"}}"#.to_owned(),
        r#"{"jobs": [{"runner_name": "r-garbage", "created_at": "yesterday", "started_at": 5}]}"#.to_owned(),
        "[".repeat(100_000),
        format!(r#"{{"jobs": [{}]}}"#, r#"{"runner_name": "r-garbage", "created_at": "2024-01-01T00:00:00Z"}"#),
    ];
    for body in garbage {
        let server = GithubServer::start();
        server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(body.clone())]);
        let (mut jobs, _) = client(&server, "");
        let lines = collect_one(&mut jobs, "r-garbage");
        assert_eq!(lines.len(), 3, "{body:.60}");
        assert!(lines[1].get("queue_duration").is_none() && lines[2].get("job_conclusion").is_none(), "{body:.60}");
    }
}

#[test]
fn an_oversized_answer_is_not_read_whole() {
    let server = GithubServer::start();
    let body = jobs_page(100, full_page(0));
    server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(body.clone())]);
    let (mut jobs, warnings) = client_with(&server, "", |o| o.max_body_bytes = 1024);
    assert!(body.len() > 1024);
    assert!(jobs.find(REPO, RUN, None, "r-big").is_none());
    assert!(warnings.borrow()[0].contains("larger than 1024 bytes"), "{:?}", warnings.borrow());
}

#[test]
fn hostile_repositories_and_run_ids_never_reach_the_server() {
    let server = GithubServer::start();
    let (mut jobs, warnings) = client(&server, "");
    for (repo, run) in [
        ("../../user", RUN),
        ("a/b/../../c", RUN),
        ("o/r?x=1", RUN),
        ("o/r#", RUN),
        (REPO, "1/../../x"),
        (REPO, ""),
        (REPO, "12a"),
    ] {
        assert!(jobs.find(repo, run, None, "r-hostile").is_none());
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(warnings.borrow().len(), 7);
}

#[test]
fn a_black_hole_api_costs_three_timeouts_then_the_lookups_stop_said_once() {
    let hole = BlackHole::start();
    let (mut jobs, warnings) = client_at(&hole.url(), |o| o.timeout = Duration::from_secs(1));
    let started = Instant::now();
    for i in 0..50 {
        assert!(jobs.find(REPO, &format!("{}", 1000 + i), None, &format!("r-{i}")).is_none());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "three timeouts, not fifty: {took:?}");
    assert_eq!(jobs.requests, MAX_CONSECUTIVE_FAILURES as usize, "no request after the third failure in a row");
    assert_eq!(hole.connections(), MAX_CONSECUTIVE_FAILURES as usize);
    let warnings = warnings.borrow();
    assert_eq!(warnings.len(), MAX_CONSECUTIVE_FAILURES as usize, "{warnings:?}");
    assert!(warnings[..2].iter().all(|w| w.contains("timed out") && w.contains(&hole.url())), "{warnings:?}");
    let stop = &warnings[2];
    assert!(stop.contains("3 lookups in a row timed out or could not connect"), "{stop}");
    assert!(stop.contains("no more lookups in this run"), "{stop}");
    assert!(jobs.stopped().is_some());
}

#[test]
fn answers_in_between_reset_the_count_of_failures_in_a_row() {
    let hole = BlackHole::start();
    let (mut jobs, warnings) = client_at(&hole.url(), |o| o.timeout = Duration::from_millis(300));
    for i in 0..(MAX_CONSECUTIVE_FAILURES - 1) {
        assert!(jobs.find(REPO, &format!("{i}"), None, "r-x").is_none());
    }
    // A refused connection is a failure in a row too: the third one stops.
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        drop(listener);
        url
    };
    let (mut other, other_warnings) = client_at(&refused, |o| o.timeout = Duration::from_secs(1));
    for i in 0..5 {
        assert!(other.find(REPO, &format!("{i}"), None, "r-y").is_none());
    }
    assert_eq!(other.requests, MAX_CONSECUTIVE_FAILURES as usize, "{:?}", other_warnings.borrow());
    assert!(other.stopped().is_some_and(|why| why.contains("in a row")), "{:?}", other.stopped());
    // Whereas answers (even 404s) between failures keep the lookups going.
    let server = GithubServer::start();
    let (mut mixed, _) = client(&server, "");
    for round in 0..3 {
        assert!(mixed.find(REPO, &format!("{round}"), None, "r-z").is_none()); // a 404 answer
    }
    assert!(mixed.stopped().is_none());
    assert_eq!(jobs.requests, (MAX_CONSECUTIVE_FAILURES - 1) as usize);
    assert!(jobs.stopped().is_none(), "two failures are not yet three: {:?}", warnings.borrow());
}

#[test]
fn the_run_budget_ends_the_lookups_once_spent_and_says_so_once() {
    let server = GithubServer::start();
    let answers = |run: u32| {
        server.route(
            &jobs_target("", REPO, &run.to_string(), 1),
            vec![Answer::status(404).delayed(Duration::from_millis(400))],
        )
    };
    for run in 0..20 {
        answers(run);
    }
    let (mut jobs, warnings) = client_with(&server, "", |o| o.budget = Duration::from_millis(1500));
    let started = Instant::now();
    for run in 0..20 {
        assert!(jobs.find(REPO, &run.to_string(), None, "r-slow-api").is_none());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500 + 1000), "the budget bounds the time spent: {took:?}");
    assert!(jobs.spent() <= Duration::from_millis(1500 + 500), "{:?}", jobs.spent());
    let asked = server.requests().len();
    assert!((3..=5).contains(&asked), "about 1.5 s / 0.4 s requests, then none: {asked}");
    let warnings = warnings.borrow();
    let budget: Vec<_> = warnings.iter().filter(|w| w.contains("budget")).collect();
    assert_eq!(budget.len(), 1, "said once: {warnings:?}");
    assert!(budget[0].contains("no more lookups in this run"), "{budget:?}");
    assert!(jobs.stopped().is_some());
}

#[test]
fn collect_against_a_black_hole_api_ends_in_seconds_and_every_storage_gets_its_events() {
    const RUNNERS: usize = 50;
    let hole = BlackHole::start();
    let root = StorageRoot::new();
    for i in 0..RUNNERS {
        let pre_job = format!(
            r#"{{"workflow": "w{i}", "repository": "{REPO}", "event": "push", "timestamp": 1700000100, "workflow_run_id": "{}"}}"#,
            5000 + i
        );
        root.runner(&format!("r-{i:03}"))
            .file(START, "1700000000")
            .file(INSTALLED, "1700000060")
            .file(PRE_JOB, pre_job)
            .file(POST_JOB, r#"{"timestamp": 1700000400, "status": "normal"}"#);
    }
    let token = root.outside().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let log = root.outside().join("metrics.log");
    let mut command = cli();
    command
        .args(["collect", "--json", "--flavor", "small", "--github-timeout", "1", "--github-api-url"])
        .arg(hole.url())
        .arg("--github-token-file")
        .arg(&token)
        .arg("--metrics-log")
        .arg(&log)
        .arg("--storage")
        .arg(root.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Only ever 127.0.0.1: no proxy from the environment may take the request.
    for var in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        command.env_remove(var);
    }
    command.env("NO_PROXY", "127.0.0.1");
    let _ = cli_binary(); // built before the clock starts
    let started = Instant::now();
    let mut child = command.spawn().expect("start collect");
    // The old code took one timeout per runner (~50 s): wait for it a
    // little longer than that, then fail instead of hanging.
    let deadline = Duration::from_secs(90);
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("collect did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(took < Duration::from_secs(20), "the run must not pay a timeout per runner: {took:?}\n{stderr}");
    let stops: Vec<_> = stderr.lines().filter(|l| l.contains("no more lookups")).collect();
    assert_eq!(stops.len(), 1, "said once:\n{stderr}");
    assert!(stops[0].contains("in a row"), "{stderr}");
    assert!(hole.connections() <= MAX_CONSECUTIVE_FAILURES as usize, "{} connections", hole.connections());
    let summary = json(stderr.lines().last().unwrap());
    assert_eq!((summary["extracted"].as_u64(), summary["failed"].as_u64()), (Some(RUNNERS as u64), Some(0)));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(json).collect();
    assert_eq!(lines.len(), 3 * RUNNERS);
    for i in 0..RUNNERS {
        let workflow = format!("w{i}");
        let starts = lines.iter().filter(|l| l["event"] == "runner_start" && l["workflow"] == workflow.as_str());
        let starts: Vec<_> = starts.collect();
        assert_eq!(starts.len(), 1, "runner {i}");
        assert!(starts[0].get("queue_duration").is_none(), "no job metrics without an answer");
    }
    assert_eq!(entries_besides_deleting(root.path()), Vec::<String>::new());
}

#[test]
fn a_redirect_to_another_port_of_the_same_host_never_sees_the_token() {
    // Issue 24 (5): ureq's `SameHost` sent the token to any port of the host.
    let api = GithubServer::start();
    let elsewhere = GithubServer::start();
    let ours = job(7, "r-moved", "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z", Some("success"));
    elsewhere.route(&jobs_target("", REPO, RUN, 1), vec![Answer::json(jobs_page(1, vec![ours]))]);
    let moved_to = format!("{}{}", elsewhere.url(), jobs_target("", REPO, RUN, 1));
    api.route(&jobs_target("", REPO, RUN, 1), vec![Answer::status(301).header("Location", &moved_to)]);
    let (mut jobs, warnings) = client(&api, "");

    assert!(jobs.find(REPO, RUN, None, "r-moved").is_none(), "the redirect elsewhere is not followed");
    assert!(elsewhere.requests().is_empty(), "{:?}", elsewhere.requests());
    assert_eq!(api.requests().len(), 1);
    let warnings = warnings.borrow();
    assert!(
        warnings.iter().any(|w| w.contains("outside the API's origin") && w.contains("not followed")),
        "{warnings:?}"
    );
    assert!(!warnings.iter().any(|w| w.contains(TOKEN)), "{warnings:?}");
}

#[test]
fn a_redirect_within_the_api_is_followed_with_the_token() {
    // GitHub answers a renamed repository with a 301 to its new path.
    let server = GithubServer::start();
    let ours = job(7, "r-renamed", "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z", Some("success"));
    let new_target = jobs_target("", "canonical/renamed", RUN, 1);
    server.route(&new_target, vec![Answer::json(jobs_page(1, vec![ours]))]);
    server.route(&jobs_target("", REPO, RUN, 1), vec![Answer::status(301).header("Location", &new_target)]);
    let (mut jobs, warnings) = client(&server, "");

    let found = jobs.find(REPO, RUN, None, "r-renamed").expect("found after the redirect");
    assert_eq!(found.queue_duration, 5.0);
    assert!(warnings.borrow().is_empty(), "{:?}", warnings.borrow());
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    }
}

#[test]
fn a_run_with_many_jobs_costs_at_most_three_pages() {
    // Issue 24 (10): the run id comes from the job; a huge run must not
    // spend the run's lookup budget (the reference manager reads 3 pages).
    let server = GithubServer::start();
    for page in 1..=5 {
        server.route(
            &jobs_target("", REPO, RUN, page),
            vec![Answer::json(jobs_page(1000, full_page(u64::from(page) * 100)))],
        );
    }
    let (mut jobs, warnings) = client(&server, "");
    assert!(jobs.find(REPO, RUN, None, "r-not-there").is_none());
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
    assert!(warnings.borrow().iter().any(|w| w.contains("first 3 pages")), "{:?}", warnings.borrow());
}
