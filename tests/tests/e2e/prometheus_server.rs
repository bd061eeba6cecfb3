//! A real Prometheus reads our textfile: `collect --prometheus-textfile`
//! writes into a temporary textfile directory, Debian's node_exporter serves
//! it (textfile collector only, on 127.0.0.1), `promtool check metrics`
//! accepts it, and a Prometheus server (127.0.0.1, temporary config and
//! storage) scrapes node_exporter and answers PromQL queries over its HTTP
//! API with the values the metrics log implies.
//!
//! Needs `prometheus`, `promtool` and `prometheus-node-exporter` on PATH
//! (`scripts/install-test-deps.sh` installs them as root). Without them the
//! test prints a skip line and passes, unless `RUNNER_METRICS_REQUIRE_PROMETHEUS=1`
//! (set by `scripts/test.sh` when the install succeeded), where it fails.
//! Every server is killed when the test ends, pass or fail (a guard's Drop).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runner_metrics_e2e::github_server::{job, jobs_page, jobs_target, without_proxies, Answer, GithubServer};
use runner_metrics_e2e::*;

/// How long any one server may take to come up or to show a value.
const DEADLINE: Duration = Duration::from_secs(60);

/// A server process that is killed (and reaped) when dropped.
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl Server {
    /// Starts `command` with its output in `<dir>/<name>.log`, listening on
    /// a free 127.0.0.1 port that `args(port)` puts on its command line,
    /// and waits until `path` answers 200. Retries with another port if the
    /// server exits at once (the port was taken between the probe and it).
    fn start(
        name: &'static str,
        program: &Path,
        dir: &Path,
        args: impl Fn(SocketAddr) -> Vec<String>,
        path: &str,
    ) -> Self {
        let mut last_error = String::new();
        for attempt in 0..3 {
            let addr = free_local_port();
            let log = dir.join(format!("{name}.{attempt}.log"));
            let out = fs::File::create(&log).expect("server log");
            let child = Command::new(program)
                .args(args(addr))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("server log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
            let mut server = Server { name, child, log, addr };
            match server.wait_ready(path) {
                Ok(()) => return server,
                Err(e) => last_error = format!("{e}\n{}", server.output()),
            }
        }
        panic!("{name} did not come up on 127.0.0.1: {last_error}");
    }

    fn wait_ready(&mut self, path: &str) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("{} exited: {status}", self.name));
            }
            if let Ok((200, _)) = http_get(self.addr, path) {
                return Ok(());
            }
            if started.elapsed() > DEADLINE {
                return Err(format!("{} not ready on {} after {DEADLINE:?}", self.name, self.addr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the server printed, for failure messages.
    fn output(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!(
            "--- {} output ({}) ---\n{}",
            self.name,
            self.log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_local_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

/// `GET path` over HTTP/1.0 on a loopback address: (status, body). Bounded
/// by short timeouts; only ever used with 127.0.0.1.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    assert!(addr.ip().is_loopback(), "only loopback servers: {addr}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(16 << 20).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Percent-encodes a query parameter.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a sample line `series value` in an exposition-format text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Finds `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(name)).find(|p| p.is_file())
}

/// Prometheus, promtool and node_exporter, or `None` after a skip line
/// (a failure where `RUNNER_METRICS_REQUIRE_PROMETHEUS=1`).
fn tools(test: &str) -> Option<[PathBuf; 3]> {
    let found: Vec<Option<PathBuf>> =
        ["prometheus", "promtool", "prometheus-node-exporter"].iter().map(|t| which(t)).collect();
    if let [Some(prometheus), Some(promtool), Some(node_exporter)] = &found[..] {
        return Some([prometheus.clone(), promtool.clone(), node_exporter.clone()]);
    }
    let message = "prometheus, promtool or prometheus-node-exporter is not installed \
                   (scripts/install-test-deps.sh installs them as root)";
    assert!(std::env::var_os("RUNNER_METRICS_REQUIRE_PROMETHEUS").is_none_or(|v| v != "1"), "{message}");
    runner_metrics_test_skip::skip(test, message);
    None
}

/// node_exporter with the textfile collector alone, on `textfile_dir`.
fn start_exporter(node_exporter: &Path, dir: &Path, name: &'static str, textfile_dir: &Path) -> Server {
    Server::start(
        name,
        node_exporter,
        dir,
        |addr| {
            vec![
                format!("--web.listen-address={addr}"),
                "--collector.disable-defaults".into(),
                "--web.disable-exporter-metrics".into(),
                "--collector.textfile".into(),
                format!("--collector.textfile.directory={}", textfile_dir.display()),
            ]
        },
        "/metrics",
    )
}

/// Prometheus scraping `targets` every second (job `node`), evaluating
/// `rule_files` every second, its data under `dir`.
fn start_prometheus(prometheus: &Path, dir: &Path, targets: &[&Server], rule_files: &[PathBuf]) -> Server {
    let data = dir.join("prometheus-data");
    let config = dir.join("prometheus.yml");
    let targets: Vec<String> = targets.iter().map(|t| format!("'{}'", t.addr)).collect();
    let rules: Vec<String> = rule_files.iter().map(|r| format!("  - '{}'\n", r.display())).collect();
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}scrape_configs:\n  - job_name: node\n    \
             static_configs:\n      - targets: [{}]\n",
            if rules.is_empty() { "  []\n".to_owned() } else { rules.concat() },
            targets.join(", ")
        ),
    )
    .unwrap();
    Server::start(
        "prometheus",
        prometheus,
        dir,
        |addr| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", data.display()),
                format!("--web.listen-address={addr}"),
                "--storage.tsdb.retention.time=1h".into(),
            ]
        },
        "/-/ready",
    )
}

/// The result of an instant PromQL query: `Err` with Prometheus' error,
/// else the value of every series (NaN included).
fn query(server: &Server, promql: &str) -> Result<Vec<f64>, String> {
    let (status, body) =
        http_get(server.addr, &format!("/api/v1/query?query={}", encode(promql))).map_err(|e| e.to_string())?;
    let answer: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{status}: {e}: {body}"))?;
    if status != 200 || answer["status"] != "success" {
        return Err(format!("{status}: {body}"));
    }
    let result = answer["data"]["result"].as_array().ok_or_else(|| format!("no result: {body}"))?;
    Ok(result
        .iter()
        .map(|series| series["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN))
        .collect())
}

/// Three runners whose jobs ended (two `push`, one `schedule`; one abnormal)
/// and one that never ran a job.
fn fixture(root: &StorageRoot) {
    for (name, event, status) in [
        ("r-1", "push", r#""status": "normal""#),
        ("r-2", "push", r#""status": "abnormal", "status_info": {"code": 1}"#),
        ("r-3", "schedule", r#""status": "normal""#),
    ] {
        root.runner(name)
            .file(START, "1000")
            .file(INSTALLED, "1060")
            .file(
                PRE_JOB,
                format!(
                    r#"{{"workflow": "ci", "repository": "o/r", "event": "{event}", "timestamp": 1100, "workflow_run_id": "7"}}"#
                ),
            )
            .file(POST_JOB, format!(r#"{{"timestamp": 1400, {status}}}"#));
    }
    root.runner("r-idle").file(START, "1000").file(INSTALLED, "1030");
}

#[test]
fn node_exporter_serves_the_textfile_and_prometheus_answers_queries_about_it() {
    let Some([prometheus, promtool, node_exporter]) =
        tools("prometheus_server::node_exporter_serves_the_textfile_and_prometheus_answers_queries_about_it")
    else {
        return;
    };
    let (prometheus, promtool, node_exporter) = (&prometheus, &promtool, &node_exporter);

    // 1. collect into a textfile directory of our own.
    let temp = tempfile::tempdir().unwrap();
    let textfile_dir = temp.path().join("textfile");
    fs::create_dir(&textfile_dir).unwrap();
    let textfile = textfile_dir.join("runner-metrics.prom");
    let log = temp.path().join("metrics.log");
    let root = StorageRoot::new();
    fixture(&root);
    let out = output(
        cli()
            .args(["collect", "--flavor", "small", "--storage"])
            .arg(root.path())
            .arg("--metrics-log")
            .arg(&log)
            .arg("--prometheus-textfile")
            .arg(&textfile),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines = fs::read_to_string(&log).unwrap();
    // What Prometheus must report, from the log itself.
    let jobs = lines.lines().filter(|l| json(l)["event"] == "runner_stop").count() as f64;
    let abnormal =
        lines.lines().filter(|l| json(l)["event"] == "runner_stop" && json(l)["status"] == "abnormal").count() as f64;
    let installed = lines.lines().filter(|l| json(l)["event"] == "runner_installed").count() as f64;
    assert_eq!((jobs, abnormal, installed), (3.0, 1.0, 4.0), "the fixture's events:\n{lines}");

    // 2. promtool accepts the file as it is.
    let check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(fs::File::open(&textfile).unwrap())
        .output()
        .expect("run promtool");
    assert!(
        check.status.success(),
        "promtool check metrics failed ({}):\n{}{}",
        check.status,
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // 3. node_exporter with the textfile collector alone.
    let exporter = start_exporter(node_exporter, temp.path(), "node_exporter", &textfile_dir);
    let (status, scrape) = http_get(exporter.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_eq!(sample(&scrape, "node_textfile_scrape_error"), Some(0.0), "{scrape}\n{}", exporter.output());
    assert_eq!(sample(&scrape, r#"runner_metrics_job_duration_seconds_count{flavor="small"}"#), Some(jobs), "{scrape}");
    assert_eq!(
        sample(&scrape, r#"runner_metrics_jobs_by_status_total{flavor="small",status="abnormal"}"#),
        Some(abnormal),
        "{scrape}"
    );
    assert!(!scrape.contains("go_goroutines") && !scrape.contains("node_cpu_seconds_total"), "other collectors off");

    // 4. Prometheus scrapes node_exporter every second.
    let server = start_prometheus(prometheus, temp.path(), &[&exporter], &[]);

    // 5. PromQL over the HTTP API, polled until the first scrapes are in.
    let query = |promql: &str| -> Option<f64> { query(&server, promql).ok()?.first().copied() };
    let expectations = [
        (r#"sum(runner_metrics_job_duration_seconds_count{job="node"})"#, jobs),
        (r#"sum(runner_metrics_jobs_by_status_total{status="abnormal"})"#, abnormal),
        (r#"sum(runner_metrics_jobs_by_github_event_total{github_event="push"})"#, 2.0),
        (r#"sum(runner_metrics_events_total{event="runner_installed"})"#, installed),
        (r#"max(node_textfile_scrape_error)"#, 0.0),
    ];
    let started = Instant::now();
    let mut seen: Vec<Option<f64>>;
    loop {
        seen = expectations.iter().map(|(promql, _)| query(promql)).collect();
        if seen.iter().zip(&expectations).all(|(got, (_, want))| *got == Some(*want)) {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "Prometheus did not answer as expected within {DEADLINE:?}: {:?}\n{}\n{}",
            expectations.iter().map(|(q, w)| (q, w)).zip(&seen).collect::<Vec<_>>(),
            server.output(),
            exporter.output()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(server);
    drop(exporter);
}

/// The three panels of the upstream manager's dashboard that show the
/// series `--prometheus-names upstream` writes, as
/// canonical/github-runner-operator `src/grafana_dashboards/metrics_prometheus.json`
/// has them (commit 9e2549c0470ff5dc5d2da9f7039ab8a5d615c307).
const UPSTREAM_PANELS: [(&str, &str); 3] = [
    (
        "Job queue duration",
        "histogram_quantile(\n  $quantile,\n  sum by (flavor, le) (\n    rate(runner_queue_duration_seconds_bucket[10m])\n  )\n)",
    ),
    (
        "Runner idle duration",
        "histogram_quantile(1, sum by(flavor, le) (rate(runner_idle_duration_seconds_bucket{juju_application=~\"$juju_application\",juju_model=~\"$juju_model\",juju_model_uuid=~\"$juju_model_uuid\",juju_unit=~\"$juju_unit\"}[10m])))",
    ),
    (
        "Runner spawn duration",
        "histogram_quantile(1, sum by(flavor, le) (rate(runner_spawn_duration_seconds_bucket{juju_application=~\"$juju_application\",juju_model=~\"$juju_model\",juju_model_uuid=~\"$juju_model_uuid\",juju_unit=~\"$juju_unit\"}[10m])))",
    ),
];

/// A dashboard expression with its variables set as Grafana would with
/// "All" selected (`.*`), the default quantile, and windows that cover the
/// test's scrapes.
fn with_variables(expr: &str) -> String {
    let mut expr = expr.to_owned();
    for (variable, value) in [
        ("$__rate_interval", "5m"),
        ("$__range", "1h"),
        ("$quantile", "0.95"),
        ("$instance", ".*"),
        ("$flavor", ".*"),
        ("$juju_application", ".*"),
        ("$juju_model_uuid", ".*"),
        ("$juju_model", ".*"),
        ("$juju_unit", ".*"),
    ] {
        expr = expr.replace(variable, value);
    }
    assert!(!expr.contains('$'), "a variable the test does not set: {expr}");
    expr
}

/// Runners with a job each (run ids from `first_run`), and one storage that
/// is quarantined: the GitHub server knows every job, queued 95 s.
fn wave(root: &StorageRoot, github: &GithubServer, first_run: u64) {
    for i in 0..3u64 {
        let name = format!("r-{}", first_run + i);
        let run = (first_run + i).to_string();
        root.runner(&name)
            .file(START, "1000")
            .file(INSTALLED, (1030 + 20 * i).to_string())
            .file(
                PRE_JOB,
                format!(
                    r#"{{"workflow": "ci", "repository": "o/r", "event": "push", "timestamp": {}, "workflow_run_id": "{run}"}}"#,
                    1100 + i
                ),
            )
            .file(POST_JOB, format!(r#"{{"timestamp": {}, "status": "normal"}}"#, 1400 + 100 * i));
        let ours = job(first_run + i, &name, "2024-05-01T10:00:00Z", "2024-05-01T10:01:35Z", Some("success"));
        github.route(
            &jobs_target("", "o/r", &run, 1),
            vec![Answer::json(jobs_page(1, vec![ours])).header("X-RateLimit-Remaining", "4321")],
        );
    }
    root.runner(&format!("r-{first_run}-corrupt")).file(INSTALLED, "not a time");
}

#[test]
fn every_dashboard_panel_and_upstreams_three_panels_answer_with_data() {
    let Some([prometheus, _, node_exporter]) =
        tools("prometheus_server::every_dashboard_panel_and_upstreams_three_panels_answer_with_data")
    else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let temp = tempfile::tempdir().unwrap();
    let github = GithubServer::start();
    let token = temp.path().join("token");
    fs::write(&token, "ghs_dashboard-token\n").unwrap();

    // One textfile directory per naming, each served by its own node_exporter.
    let namings = ["ours", "upstream"];
    let dirs: Vec<PathBuf> = namings.iter().map(|n| temp.path().join(n)).collect();
    for dir in &dirs {
        fs::create_dir(dir).unwrap();
    }
    let exporters: Vec<Server> = dirs
        .iter()
        .zip(["node_exporter_ours", "node_exporter_upstream"])
        .map(|(dir, name)| start_exporter(&node_exporter, temp.path(), name, dir))
        .collect();
    let rules = repo.join("contrib/prometheus/runner-metrics.rules.yml");
    let server = start_prometheus(&prometheus, temp.path(), &exporters.iter().collect::<Vec<_>>(), &[rules]);

    // Two waves of collects, each seen by Prometheus, so that rates are not zero.
    let mut run = 100;
    for wave_number in 1..=2 {
        for (naming, dir) in namings.iter().zip(&dirs) {
            let root = StorageRoot::new();
            wave(&root, &github, run);
            run += 10;
            let out = output(without_proxies(
                cli()
                    .args(["collect", "--flavor", "small", "--prometheus-names", naming, "--storage"])
                    .arg(root.path())
                    .arg("--metrics-log")
                    .arg(temp.path().join("metrics.log"))
                    .arg("--prometheus-textfile")
                    .arg(dir.join("runner-metrics.prom"))
                    .arg("--github-token-file")
                    .arg(&token)
                    .arg("--github-api-url")
                    .arg(github.url()),
            ));
            assert_eq!(out.code, Some(0), "{naming}, wave {wave_number}: {out:?}");
            assert!(!out.stderr.contains("warning"), "{}", out.stderr);
        }
        // Prometheus has scraped this wave from both exporters.
        let stops = 3.0 * wave_number as f64;
        let promql = r#"runner_metrics_events_total{event="runner_stop"}"#;
        let started = Instant::now();
        while query(&server, promql).ok() != Some(vec![stops, stops]) {
            assert!(
                started.elapsed() < DEADLINE,
                "wave {wave_number} not scraped: {:?}\n{}",
                query(&server, promql),
                server.output()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // Every target of both dashboards, and upstream's three panels, answer
    // with at least one number (not an empty vector, not only NaN).
    let mut panels: Vec<(String, String)> = Vec::new();
    for file in ["runner-metrics.json", "runner-metrics-upstream-names.json"] {
        let path = repo.join("contrib/grafana").join(file);
        let board: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap();
                panels.push((format!("{file}: {}", panel["title"]), with_variables(expr)));
            }
        }
    }
    assert!(panels.len() >= 30, "{} targets", panels.len());
    for (title, expr) in UPSTREAM_PANELS {
        panels.push((format!("upstream's dashboard: {title}"), with_variables(expr)));
    }
    let answered = |expr: &str| query(&server, expr).is_ok_and(|values| values.iter().any(|v| v.is_finite()));
    let started = Instant::now();
    loop {
        let silent: Vec<(&String, Result<Vec<f64>, String>)> = panels
            .iter()
            .filter(|(_, expr)| !answered(expr))
            .map(|(title, expr)| (title, query(&server, expr)))
            .collect();
        if silent.is_empty() {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "panels without data: {silent:#?}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(500));
    }

    // The alert rules load and evaluate without error on the real series.
    let (status, body) = http_get(server.addr, "/api/v1/rules").unwrap();
    assert_eq!(status, 200, "{body}");
    let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
    let loaded: Vec<&serde_json::Value> =
        rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(loaded.len(), 6, "{body}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    drop(server);
    drop(exporters);
}
