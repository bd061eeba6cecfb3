//! The full life of a runner with the project's own pieces, as a manager
//! would drive it: `runner-metrics storage create`, the runner-side scripts
//! (`hooks print`, run with `sh` as the runner would, with `GITHUB_*` set),
//! then `runner-metrics collect` with job metrics from a local GitHub API
//! server and a Prometheus textfile. The log must hold the three events with
//! GitHub's queue duration and conclusion, the textfile the matching
//! histograms, and the storage must be gone.

use std::fs;
use std::process::Command;

use runner_metrics_e2e::github_server::{job, jobs_page, jobs_target, without_proxies, Answer, GithubServer};
use runner_metrics_e2e::*;

const TOKEN: &str = "ghs_full-life-token";

#[test]
fn a_runner_from_creation_to_events_and_histograms() {
    let root = StorageRoot::new();
    let work = tempfile::tempdir().unwrap();
    let name = "full-life-n-0123456789ab";

    // The manager creates the storage.
    let created = output(cli().args(["storage", "create", "--storage"]).arg(root.path()).arg(name));
    assert_eq!(created.code, Some(0), "{created:?}");
    let storage = root.join(name);
    assert_eq!(created.stdout.trim(), storage.display().to_string());

    // The manager templates the scripts into the runner; the runner runs
    // them: installed before listening, pre-job as the job-started hook, and
    // post-job from the wrapper with the runner's exit code (1).
    for hook in ["installed", "pre-job", "post-job"] {
        let printed = output(cli().args(["hooks", "print", hook]));
        assert_eq!(printed.code, Some(0), "{printed:?}");
        fs::write(work.path().join(format!("{hook}.sh")), printed.stdout).unwrap();
    }
    for (hook, args) in [("installed", &[][..]), ("pre-job", &[][..]), ("post-job", &["1"][..])] {
        let out = output(
            Command::new("sh")
                .arg(work.path().join(format!("{hook}.sh")))
                .args(args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap())
                .env("RUNNER_METRICS_DIR", &storage)
                .env("GITHUB_WORKFLOW", "Build \"all\"")
                .env("GITHUB_REPOSITORY", "canonical/example")
                .env("GITHUB_EVENT_NAME", "pull_request")
                .env("GITHUB_RUN_ID", "4242"),
        );
        assert_eq!((out.code, out.stderr.as_str()), (Some(0), ""), "{hook}: {out:?}");
    }

    // GitHub knows the job: queued 95 s, failed.
    let server = GithubServer::start();
    let ours = job(9, name, "2024-05-01T10:00:00Z", "2024-05-01T10:01:35Z", Some("failure"));
    let other = job(8, "someone-else", "2024-05-01T10:00:00Z", "2024-05-01T10:00:01Z", Some("success"));
    server.route(&jobs_target("", "canonical/example", "4242", 1), vec![Answer::json(jobs_page(2, vec![other, ours]))]);
    let token_file = work.path().join("token");
    fs::write(&token_file, format!("  {TOKEN}\n")).unwrap();

    let log = work.path().join("metrics.log");
    let textfile = work.path().join("runner-metrics.prom");
    let out = output(without_proxies(
        cli()
            .args(["collect", "--flavor", "medium", "--storage"])
            .arg(root.path())
            .arg("--github-token-file")
            .arg(&token_file)
            .arg("--github-api-url")
            .arg(server.url())
            .arg("--prometheus-textfile")
            .arg(&textfile)
            .arg("--metrics-log")
            .arg(&log),
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains(TOKEN) && !out.stdout.contains(TOKEN), "the token is never printed");
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);

    // The three events, with GitHub's queue duration and conclusion.
    let lines: Vec<serde_json::Value> = fs::read_to_string(&log).unwrap().lines().map(json).collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["runner_installed", "runner_start", "runner_stop"]);
    for line in &lines {
        assert_eq!(line["flavor"], "medium");
    }
    assert!(lines[0]["duration"].as_f64().unwrap() >= 0.0);
    assert_eq!(lines[1]["workflow"], "Build \"all\"");
    assert_eq!(lines[1]["repo"], "canonical/example");
    assert_eq!(lines[1]["github_event"], "pull_request");
    assert_eq!(lines[1]["queue_duration"], 95.0);
    assert_eq!(lines[2]["status"], "abnormal");
    assert_eq!(lines[2]["status_info"], serde_json::json!({"code": 1}));
    assert_eq!(lines[2]["job_conclusion"], "failure");
    let schema = runner_metrics_e2e::schema::event_line_schema();
    for line in fs::read_to_string(&log).unwrap().lines() {
        schema.validate_line(line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    }

    // One request, with the token.
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));

    // The histograms: one sample each, the queue one in (60, 120].
    let text = fs::read_to_string(&textfile).unwrap();
    let sample = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series));
        line.unwrap_or_else(|| panic!("no {series} in\n{text}")).rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    for histogram in ["spawn_duration_seconds", "idle_seconds", "queue_duration_seconds", "job_duration_seconds"] {
        assert_eq!(sample(&format!("runner_metrics_{histogram}_count{{flavor=\"medium\"}}")), 1.0, "{histogram}");
        assert_eq!(
            sample(&format!("runner_metrics_{histogram}_bucket{{flavor=\"medium\",le=\"+Inf\"}}")),
            1.0,
            "{histogram}"
        );
    }
    assert_eq!(sample("runner_metrics_queue_duration_seconds_bucket{flavor=\"medium\",le=\"60\"}"), 0.0);
    assert_eq!(sample("runner_metrics_queue_duration_seconds_bucket{flavor=\"medium\",le=\"120\"}"), 1.0);
    assert_eq!(sample("runner_metrics_queue_duration_seconds_sum{flavor=\"medium\"}"), 95.0);
    assert_eq!(sample("runner_metrics_storages_total{outcome=\"extracted\"}"), 1.0);
    assert_eq!(sample("runner_metrics_events_total{event=\"runner_stop\",flavor=\"medium\"}"), 1.0);

    // And the storage is gone.
    assert!(!exists(&storage), "storage deleted");
    assert!(entries_besides_deleting(root.path()).is_empty());
}

#[test]
fn a_bad_token_file_is_an_error_naming_it_before_anything_is_touched() {
    let root = StorageRoot::new();
    root.fixture_f("r-kept");
    let work = tempfile::tempdir().unwrap();
    for (label, content) in [("empty", Some("  \n")), ("missing", None)] {
        let token_file = work.path().join(format!("token-{label}"));
        if let Some(content) = content {
            fs::write(&token_file, content).unwrap();
        }
        let out = output(
            cli()
                .args(["collect", "--flavor", "small", "--storage"])
                .arg(root.path())
                .arg("--github-token-file")
                .arg(&token_file)
                .arg("--metrics-log")
                .arg(work.path().join("metrics.log")),
        );
        assert_eq!(out.code, Some(2), "{label}: {out:?}");
        assert!(out.stderr.contains(&token_file.display().to_string()), "{label}: {}", out.stderr);
        assert!(exists(&root.join("r-kept")), "{label}: storage kept");
    }
}

#[test]
fn the_plugin_asks_for_job_metrics_only_when_a_token_can_answer() {
    // Three runners that each ran a job, collected without a token and with
    // one (GitHub knows none of the jobs: 404). The plugin's calls of the
    // host are counted (`RUNNER_METRICS_COUNT_CALLS`, as the bench does).
    // On the confined filesystem (the fast build): one `job-metrics` per
    // runner with a token, none without, where the answer could only be
    // `none`. On the wasmtime-wasi fallback (the WASI build, every other
    // host's): asked either way. The logs are the same in all four runs.
    let server = GithubServer::start();
    let run = |token: bool, layer: &str| -> (u64, String) {
        let root = StorageRoot::new();
        for name in ["asks-a", "asks-b", "asks-c"] {
            root.valid_runner(name);
        }
        let work = tempfile::tempdir().unwrap();
        let log = work.path().join("metrics.log");
        let mut command = cli();
        command.args(["collect", "--flavor", "small", "--storage"]).arg(root.path()).arg("--metrics-log").arg(&log);
        command.env("RUNNER_METRICS_COUNT_CALLS", "1").env("RUNNER_METRICS_FILESYSTEM", layer);
        if token {
            let token_file = work.path().join("token");
            fs::write(&token_file, TOKEN).unwrap();
            command.arg("--github-token-file").arg(&token_file).arg("--github-api-url").arg(server.url());
        }
        let out = output(without_proxies(&mut command));
        assert_eq!(out.code, Some(0), "{out:?}");
        let counts = out.stderr.lines().find(|l| l.starts_with("{\"calls\"")).unwrap_or_else(|| panic!("{out:?}"));
        let imports = json(counts)["calls"]["host_imports"].as_u64().unwrap();
        (imports, fs::read_to_string(&log).unwrap())
    };
    let (without, log) = run(false, "confined");
    assert_eq!(log.lines().count(), 9, "{log}");
    let (with, log_with) = run(true, "confined");
    assert_eq!(with, without + 3, "confined: one job-metrics call per runner, only with a token");
    assert_eq!(log_with, log, "GitHub knew none of the jobs");
    let (without, log_without) = run(false, "wasi");
    let (with, log_with) = run(true, "wasi");
    assert_eq!(with, without, "the WASI build asks either way");
    assert_eq!((&log_without, &log_with), (&log, &log));
    assert_eq!(server.requests().len(), 6, "each runner looked up once per run with a token");
}
