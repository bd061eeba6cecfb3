//! `collect --prometheus-textfile`: the file is parsed here with a parser of
//! its own (not the host's) and its histograms and counters checked against
//! a fixture whose durations are known; a second run adds to the first.
//! Also: with stderr not a terminal, collect draws no progress line; a FIFO,
//! a symlink or a directory where the textfile goes is refused (and a FIFO
//! does not hang the run).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use runner_metrics_e2e::*;

/// `(name, sorted labels)` -> value, and the `# TYPE` of each metric.
struct Textfile {
    samples: BTreeMap<(String, Vec<(String, String)>), f64>,
    types: BTreeMap<String, String>,
}

impl Textfile {
    /// Parses the exposition format as far as this file uses it: comments,
    /// `name{label="value",...} number`. Fails on anything else.
    fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), Vec::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let mut labels: Vec<(String, String)> = inner
                        .split("\",")
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    labels.sort();
                    (name.to_owned(), labels)
                }
            };
            assert!(samples.insert((name, labels), value).is_none(), "duplicate sample {line:?}");
        }
        Self { samples, types }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        labels.sort();
        *self.samples.get(&(name.to_owned(), labels.clone())).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    /// The `le` bounds of a histogram series, in file order, with counts.
    fn buckets(&self, name: &str, flavor: &str) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|((n, labels), _)| {
                n == &format!("{name}_bucket") && labels.iter().any(|(k, v)| k == "flavor" && v == flavor)
            })
            .map(|((_, labels), value)| {
                let le = &labels.iter().find(|(k, _)| k == "le").expect("le label").1;
                (if le == "+Inf" { f64::INFINITY } else { le.parse().expect("le number") }, *value)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// Two runners of known durations: installed 45 s / 700 s after creation,
/// idle 40 s / 2 s, job 400 s / 20 s; one corrupt storage, one without data.
fn fixture(root: &StorageRoot) {
    root.runner("r-a")
        .file(START, "1000")
        .file(INSTALLED, "1045")
        .file(
            PRE_JOB,
            r#"{"workflow": "ci", "repository": "o/r", "event": "push", "timestamp": 1085, "workflow_run_id": "1"}"#,
        )
        .file(POST_JOB, r#"{"timestamp": 1485, "status": "normal"}"#);
    root.runner("r-b")
        .file(START, "2000")
        .file(INSTALLED, "2700")
        .file(
            PRE_JOB,
            r#"{"workflow": "ci", "repository": "o/r", "event": "push", "timestamp": 2702, "workflow_run_id": "2"}"#,
        )
        .file(POST_JOB, r#"{"timestamp": 2722, "status": "abnormal", "status_info": {"code": 1}}"#);
    root.runner("r-corrupt").file(INSTALLED, "not a time");
    root.runner("r-no-data").file(START, "1");
}

fn collect_with_textfile(root: &StorageRoot, textfile: &Path, log: &Path) -> CliOutput {
    collect_with_options(root, textfile, log, &[])
}

/// `collect --flavor large` of `root` with `options`, into `textfile` and
/// `log`; it must succeed.
fn collect_with_options(root: &StorageRoot, textfile: &Path, log: &Path, options: &[&str]) -> CliOutput {
    let out = output(
        cli()
            .args(["collect", "--flavor", "large"])
            .args(options)
            .arg("--storage")
            .arg(root.path())
            .arg("--metrics-log")
            .arg(log)
            .arg("--prometheus-textfile")
            .arg(textfile),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    out
}

#[test]
fn the_textfile_has_the_histograms_and_counters_of_the_lines_written() {
    let root = StorageRoot::new();
    fixture(&root);
    let out_dir = tempfile::tempdir().unwrap();
    let textfile = out_dir.path().join("runner-metrics.prom");
    let log = out_dir.path().join("metrics.log");
    let out = collect_with_textfile(&root, &textfile, &log);
    assert!(
        !out.stderr.contains('\r') && !out.stderr.contains('\u{1b}'),
        "no progress line off a terminal: {:?}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&log).unwrap().lines().count(), 6);
    let names: Vec<String> =
        fs::read_dir(out_dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");

    let file = Textfile::parse(&fs::read_to_string(&textfile).unwrap());
    for name in ["spawn_duration_seconds", "idle_seconds", "queue_duration_seconds", "job_duration_seconds"] {
        assert_eq!(file.types[&format!("runner_metrics_{name}")], "histogram");
    }
    assert_eq!(file.types["runner_metrics_storages_total"], "counter");
    assert_eq!(file.types["runner_metrics_events_total"], "counter");

    let spawn = file.buckets("runner_metrics_spawn_duration_seconds", "large");
    let at = |buckets: &[(f64, f64)], le: f64| {
        buckets.iter().find(|(b, _)| *b == le).unwrap_or_else(|| panic!("no le={le}")).1
    };
    assert_eq!(
        (at(&spawn, 30.0), at(&spawn, 60.0), at(&spawn, 600.0), at(&spawn, 900.0), at(&spawn, f64::INFINITY)),
        (0.0, 1.0, 1.0, 2.0, 2.0)
    );
    assert!(spawn.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative buckets: {spawn:?}");
    assert_eq!(file.get("runner_metrics_spawn_duration_seconds_sum", &[("flavor", "large")]), 745.0);
    assert_eq!(file.get("runner_metrics_spawn_duration_seconds_count", &[("flavor", "large")]), 2.0);

    let idle = file.buckets("runner_metrics_idle_seconds", "large");
    assert_eq!((at(&idle, 1.0), at(&idle, 5.0), at(&idle, 30.0), at(&idle, 60.0)), (0.0, 1.0, 1.0, 2.0));
    assert_eq!(file.get("runner_metrics_idle_seconds_sum", &[("flavor", "large")]), 42.0);

    let job = file.buckets("runner_metrics_job_duration_seconds", "large");
    assert_eq!((at(&job, 10.0), at(&job, 30.0), at(&job, 300.0), at(&job, 600.0)), (0.0, 1.0, 1.0, 2.0));
    assert_eq!(file.get("runner_metrics_job_duration_seconds_count", &[("flavor", "large")]), 2.0);

    assert!(
        file.buckets("runner_metrics_queue_duration_seconds", "large").is_empty(),
        "no job metrics, no queue samples"
    );

    for (outcome, count) in
        [("extracted", 2.0), ("quarantined", 1.0), ("no-data", 1.0), ("skipped", 0.0), ("failed", 0.0)]
    {
        assert_eq!(file.get("runner_metrics_storages_total", &[("outcome", outcome)]), count, "{outcome}");
    }
    for event in ["runner_installed", "runner_start", "runner_stop"] {
        assert_eq!(file.get("runner_metrics_events_total", &[("event", event), ("flavor", "large")]), 2.0, "{event}");
    }

    // Jobs (one per runner_stop) by repository, GitHub event, conclusion
    // (no GitHub lookups here: unknown) and post-job status.
    let jobs = |suffix: &str, key: &str, value: &str| {
        file.get(&format!("runner_metrics_jobs_by_{suffix}_total"), &[("flavor", "large"), (key, value)])
    };
    for suffix in ["repository", "github_event", "conclusion", "status"] {
        assert_eq!(file.types[&format!("runner_metrics_jobs_by_{suffix}_total")], "counter", "{suffix}");
    }
    assert_eq!(jobs("repository", "repository", "o/r"), 2.0);
    assert_eq!(jobs("github_event", "github_event", "push"), 2.0);
    assert_eq!(jobs("conclusion", "conclusion", "unknown"), 2.0);
    assert_eq!(jobs("status", "status", "normal"), 1.0);
    assert_eq!(jobs("status", "status", "abnormal"), 1.0);
    let series = |suffix: &str| {
        file.samples.keys().filter(|(n, _)| n == &format!("runner_metrics_jobs_by_{suffix}_total")).count()
    };
    assert_eq!(
        (series("repository"), series("github_event"), series("conclusion"), series("status")),
        (1, 1, 1, 2),
        "only the values seen have series"
    );

    // A second run adds to the first (counters and histograms accumulate).
    let again = StorageRoot::new();
    fixture(&again);
    collect_with_textfile(&again, &textfile, &log);
    let file = Textfile::parse(&fs::read_to_string(&textfile).unwrap());
    assert_eq!(file.get("runner_metrics_spawn_duration_seconds_count", &[("flavor", "large")]), 4.0);
    assert_eq!(at(&file.buckets("runner_metrics_idle_seconds", "large"), 5.0), 2.0);
    assert_eq!(file.get("runner_metrics_storages_total", &[("outcome", "extracted")]), 4.0);
    assert_eq!(file.get("runner_metrics_events_total", &[("event", "runner_stop"), ("flavor", "large")]), 4.0);
    assert_eq!(file.get("runner_metrics_jobs_by_repository_total", &[("flavor", "large"), ("repository", "o/r")]), 4.0);
    assert_eq!(file.get("runner_metrics_jobs_by_status_total", &[("flavor", "large"), ("status", "abnormal")]), 2.0);
}

/// Runs collect with `textfile` as `--prometheus-textfile` and no standard
/// input; kills it and fails if it has not exited within 10 seconds.
fn collect_bounded(root: &StorageRoot, textfile: &Path, log: &Path) -> CliOutput {
    let mut child = cli()
        .args(["collect", "--flavor", "large", "--storage"])
        .arg(root.path())
        .arg("--metrics-log")
        .arg(log)
        .arg("--prometheus-textfile")
        .arg(textfile)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start runner-metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("wait for runner-metrics").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("collect with --prometheus-textfile {} hung: killed after 10 s", textfile.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect the output");
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

#[test]
fn a_fifo_as_the_textfile_is_refused_without_hanging() {
    let root = StorageRoot::new();
    fixture(&root);
    let out_dir = tempfile::tempdir().unwrap();
    let textfile = out_dir.path().join("runner-metrics.prom");
    mkfifo(&textfile).unwrap();
    let before = snapshot(root.path());
    let out = collect_bounded(&root, &textfile, &out_dir.path().join("metrics.log"));
    assert_eq!(out.code, Some(2), "{out:?}");
    // Refused before anything was touched: every storage is still there.
    assert_eq!(diff(&before, &snapshot(root.path())), "", "the storages must be left as they were");
    assert!(out.stderr.contains(&textfile.display().to_string()), "names the path: {}", out.stderr);
    assert!(out.stderr.contains("FIFO"), "says what it is: {}", out.stderr);
    assert!(fs::symlink_metadata(&textfile).unwrap().file_type().is_fifo(), "the FIFO is left as it was");
}

#[test]
fn prometheus_max_repositories_counts_the_rest_under_other() {
    let root = StorageRoot::new();
    fixture(&root);
    let out_dir = tempfile::tempdir().unwrap();
    let textfile = out_dir.path().join("runner-metrics.prom");
    collect_with_options(
        &root,
        &textfile,
        &out_dir.path().join("metrics.log"),
        &["--prometheus-max-repositories", "0"],
    );
    let text = fs::read_to_string(&textfile).unwrap();
    let by_repository: Vec<&str> =
        text.lines().filter(|l| l.starts_with("runner_metrics_jobs_by_repository_total{")).collect();
    assert!(!by_repository.is_empty(), "{text}");
    assert!(by_repository.iter().all(|l| l.contains(r#"repository="other""#)), "{by_repository:?}");
}

#[test]
fn prometheus_names_upstream_writes_upstreams_names_for_the_durations_and_job_counts() {
    let root = StorageRoot::new();
    fixture(&root);
    let out_dir = tempfile::tempdir().unwrap();
    let textfile = out_dir.path().join("runner-metrics.prom");
    collect_with_options(&root, &textfile, &out_dir.path().join("metrics.log"), &["--prometheus-names", "upstream"]);
    let text = fs::read_to_string(&textfile).unwrap();
    // The fixture: spawned in 45 s and 700 s, idle 40 s and 2 s, jobs of 400 s and 20 s.
    for line in [
        r#"runner_spawn_duration_seconds_bucket{flavor="large",le="60"} 1"#,
        r#"runner_spawn_duration_seconds_bucket{flavor="large",le="600"} 1"#,
        r#"runner_spawn_duration_seconds_count{flavor="large"} 2"#,
        r#"runner_idle_duration_seconds_bucket{flavor="large",le="5"} 1"#,
        r#"runner_idle_duration_seconds_sum{flavor="large"} 42"#,
        r#"job_duration_seconds_bucket{flavor="large",le="60"} 1"#,
        r#"job_duration_seconds_bucket{flavor="large",le="600"} 2"#,
        r#"extract_metrics_duration_seconds_count{flavor="large"} 1"#,
        r#"job_repository_count{repository="o/r"} 2"#,
        r#"job_event_count{event="push"} 2"#,
        r#"job_conclusion_count{conclusion="unknown"} 2"#,
        r#"job_status_count{status="abnormal"} 1"#,
        r#"runner_metrics_storages_total{outcome="quarantined"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    assert!(!text.contains("runner_metrics_job_duration") && !text.contains("runner_metrics_jobs_by"), "{text}");

    let out = output(
        cli().args(["collect", "--flavor", "large", "--prometheus-names", "theirs", "--storage"]).arg(root.path()),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("[possible values: ours, upstream]"), "{}", out.stderr);
}

#[test]
fn a_symlink_or_a_directory_as_the_textfile_is_refused() {
    let out_dir = tempfile::tempdir().unwrap();
    // The link points at a file inside this test's own temporary directory.
    let target = out_dir.path().join("elsewhere.txt");
    fs::write(&target, "not for runner-metrics\n").unwrap();
    let link = out_dir.path().join("link.prom");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dir = out_dir.path().join("dir.prom");
    fs::create_dir(&dir).unwrap();
    for (textfile, kind) in [(&link, "is a symlink,"), (&dir, "is a directory,")] {
        let root = StorageRoot::new();
        fixture(&root);
        let out = collect_bounded(&root, textfile, &out_dir.path().join("metrics.log"));
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr.contains(&textfile.display().to_string()) && out.stderr.contains(kind),
            "names the path and says it is a {kind}: {}",
            out.stderr
        );
    }
    assert_eq!(fs::read_to_string(&target).unwrap(), "not for runner-metrics\n", "the link's target is untouched");
    assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is left as it was");
    assert!(dir.is_dir());
}

#[test]
fn a_textfile_in_a_missing_directory_is_an_error_before_anything_is_touched() {
    let root = StorageRoot::new();
    fixture(&root);
    let before = snapshot(root.path());
    let out_dir = tempfile::tempdir().unwrap();
    let textfile = out_dir.path().join("missing").join("runner-metrics.prom");
    let out = output(
        cli()
            .args(["collect", "--flavor", "large", "--storage"])
            .arg(root.path())
            .arg("--metrics-log")
            .arg(out_dir.path().join("metrics.log"))
            .arg("--prometheus-textfile")
            .arg(&textfile),
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains(&textfile.display().to_string()), "names the path: {}", out.stderr);
    assert_eq!(snapshot(root.path()), before, "storages untouched");
}
