//! The runner-side writer scripts (`host/hooks/*.sh`, embedded in the
//! binary): run with `sh` (and `dash`/`bash` when installed) under hostile
//! environment values, then the storage goes through the real `collect`,
//! whose events must carry the exact original strings.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use runner_metrics::hooks;
use runner_metrics::{CollectOptions, OutcomeKind, RunnerMetrics};
use runner_metrics_e2e::*;

/// The shells to run the scripts with: `sh`, plus `dash` and `bash` when
/// they are installed (and not what `sh` already is).
fn shells() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for name in ["sh", "dash", "bash"] {
        let Some(path) = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        else {
            continue;
        };
        let real = fs::canonicalize(&path).unwrap_or(path.clone());
        if !found.iter().any(|f| fs::canonicalize(f).unwrap_or(f.clone()) == real) {
            found.push(path);
        }
    }
    assert!(!found.is_empty(), "no sh on PATH");
    found
}

/// The scripts, written out once per test into a directory of their own.
struct Scripts {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

impl Scripts {
    fn new() -> Self {
        let temp = tempfile::tempdir().unwrap();
        for (name, text) in hooks::ALL {
            fs::write(temp.path().join(format!("{name}.sh")), text).unwrap();
        }
        let dir = temp.path().to_path_buf();
        Self { _dir: temp, dir }
    }

    /// Runs `hook` with `shell` writing into `target`, with a clean
    /// environment (PATH only) plus `env`.
    fn run(&self, shell: &Path, hook: &str, target: &Path, env: &[(&str, &OsStr)], args: &[&str]) -> CliOutput {
        let mut command = Command::new(shell);
        command
            .arg(self.dir.join(format!("{hook}.sh")))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env(hooks::DIR_ENV, target);
        for (key, value) in env {
            command.env(key, value);
        }
        output(&mut command)
    }
}

/// The names in `dir`, sorted (temporary files included).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Hostile values for (GITHUB_WORKFLOW, GITHUB_REPOSITORY, GITHUB_EVENT_NAME,
/// GITHUB_RUN_ID).
fn hostile_sets() -> Vec<[String; 4]> {
    let controls: String = (1u8..0x20).chain([0x7f]).map(char::from).collect();
    vec![
        ["ci".into(), "canonical/example".into(), "push".into(), "123456".into()],
        [
            r#"say "hi" \ to 'them'"#.into(),
            r#"o"w\n/r\"e\\po"#.into(),
            "pull_request\"}, \"injected\": 1, {\"".into(),
            "\\u0000".into(),
        ],
        ["line one\nline two\r\nthree".into(), "own\ter/re\npo".into(), "\n".into(), "12\n34".into()],
        [
            "\u{1b}[31mred\u{1b}[0m \u{7}bell".into(),
            "\u{1b}]0;title\u{7}/x".into(),
            "\u{9b}2J".into(),
            "\u{1b}c".into(),
        ],
        ["héllo wörld — 日本語 😀 \u{2028}\u{2029}\u{feff}".into(), "ünï/cødé".into(), "пуш".into(), "٣٤".into()],
        [controls.clone(), format!("a{controls}/b"), controls.clone(), controls],
        [
            "$(touch pwned) `touch pwned2` ${HOME} %s%d%n \\0101 -n -e * ?".into(),
            "-n/-e".into(),
            "%s".into(),
            "$$".into(),
        ],
        ["  padded  ".into(), " / ".into(), " ".into(), "0".into()],
    ]
}

#[derive(Debug, Default)]
struct Seen {
    metrics: Vec<RunnerMetrics>,
}

/// Collects `root` (flavor "small"), returning the lines and the metrics
/// the job-metrics source was asked about (one per runner with a pre-job).
fn collect_root(root: &StorageRoot) -> (Collected, Vec<serde_json::Value>, Vec<RunnerMetrics>) {
    let seen = RefCell::new(Seen::default());
    let mut jobs = |m: &RunnerMetrics| {
        seen.borrow_mut().metrics.push(m.clone());
        None
    };
    let (collected, lines) = run(root.path(), &CollectOptions::events("small"), &mut jobs);
    let lines = lines.iter().map(|l| json(l)).collect();
    (collected, lines, seen.into_inner().metrics)
}

#[test]
fn the_hooks_write_files_whose_events_carry_the_exact_hostile_strings() {
    let scripts = Scripts::new();
    let shells = shells();
    let sets = hostile_sets();
    let root = StorageRoot::new();
    let mut expected = Vec::new();
    for (s, shell) in shells.iter().enumerate() {
        for (i, [workflow, repository, event, run_id]) in sets.iter().enumerate() {
            let name = format!("r-{s}-{i}");
            let storage = runner_metrics::storage::create(root.path(), &name).unwrap();
            let env: [(&str, &OsStr); 4] = [
                ("GITHUB_WORKFLOW", workflow.as_ref()),
                ("GITHUB_REPOSITORY", repository.as_ref()),
                ("GITHUB_EVENT_NAME", event.as_ref()),
                ("GITHUB_RUN_ID", run_id.as_ref()),
            ];
            for (hook, args) in [("installed", &[][..]), ("pre-job", &[][..]), ("post-job", &["3"][..])] {
                let out = scripts.run(shell, hook, &storage.path, &env, args);
                assert_eq!(out.code, Some(0), "{} {hook} (set {i}): {out:?}", shell.display());
                assert_eq!(out.stderr, "", "{} {hook} (set {i})", shell.display());
            }
            assert_eq!(
                names_in(&storage.path),
                [POST_JOB, PRE_JOB, START, INSTALLED],
                "{} (set {i}): only the four files, no temporary file left",
                shell.display()
            );
            assert!(
                !scripts.dir.join("pwned").exists() && !storage.path.join("pwned").exists(),
                "a value was executed"
            );
            expected.push((name, [workflow.clone(), repository.clone(), event.clone(), run_id.clone()]));
        }
    }
    let (collected, lines, metrics) = collect_root(&root);
    for (name, [workflow, repository, event, run_id]) in &expected {
        let report = collected.report(name);
        assert_eq!((report.outcome, report.events), (OutcomeKind::Extracted, 3), "{name}: {report:?}");
        let mine: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l.get("repo").and_then(|r| r.as_str()) == Some(repository.as_str())).collect();
        let start =
            mine.iter().find(|l| l["event"] == "runner_start" && l["workflow"] == workflow.as_str()).unwrap_or_else(
                || panic!("{name}: no runner_start with workflow {workflow:?} and repo {repository:?} in {lines:#?}"),
            );
        assert_eq!(start["github_event"], event.as_str(), "{name}");
        let stop = mine
            .iter()
            .find(|l| l["event"] == "runner_stop" && l["workflow"] == workflow.as_str())
            .expect("runner_stop");
        assert_eq!(
            (&stop["github_event"], &stop["status"], &stop["status_info"]),
            (&event.as_str().into(), &"abnormal".into(), &serde_json::json!({"code": 3})),
            "{name}"
        );
        let m = metrics.iter().find(|m| &m.runner_name == name).expect("job metrics asked for the runner");
        let pre = m.pre_job.as_ref().expect("pre-job");
        assert_eq!(
            (&pre.workflow, pre.repository.as_deref(), &pre.event, &pre.workflow_run_id),
            (workflow, Some(repository.as_str()), event, run_id),
            "{name}: the pre-job file read back"
        );
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(m.installation_start_timestamp.is_some_and(|t| (now - t).abs() < 600.0), "{m:?}");
        assert!((now - m.installed_timestamp).abs() < 600.0 && (now - pre.timestamp).abs() < 600.0, "{m:?}");
    }
    assert_eq!(collected.summary().extracted, expected.len());
}

#[test]
fn empty_or_unset_values_are_written_as_empty_strings_and_a_bad_repository_is_left_out() {
    let scripts = Scripts::new();
    for shell in shells() {
        let root = StorageRoot::new();
        let cases: [(&str, Vec<(&str, &str)>); 4] = [
            (
                "r-empty",
                vec![
                    ("GITHUB_WORKFLOW", ""),
                    ("GITHUB_REPOSITORY", ""),
                    ("GITHUB_EVENT_NAME", ""),
                    ("GITHUB_RUN_ID", ""),
                ],
            ),
            ("r-unset", vec![]),
            (
                "r-noslash",
                vec![
                    ("GITHUB_WORKFLOW", "w"),
                    ("GITHUB_REPOSITORY", "noslash"),
                    ("GITHUB_EVENT_NAME", "push"),
                    ("GITHUB_RUN_ID", "1"),
                ],
            ),
            (
                "r-halfslash",
                vec![
                    ("GITHUB_WORKFLOW", "w"),
                    ("GITHUB_REPOSITORY", "owner/"),
                    ("GITHUB_EVENT_NAME", "push"),
                    ("GITHUB_RUN_ID", "1"),
                ],
            ),
        ];
        for (name, env) in &cases {
            let storage = runner_metrics::storage::create(root.path(), name).unwrap();
            let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, OsStr::new(v))).collect();
            for (hook, args) in [("installed", &[][..]), ("pre-job", &[][..]), ("post-job", &["0"][..])] {
                let out = scripts.run(&shell, hook, &storage.path, &env, args);
                assert_eq!(out.code, Some(0), "{} {hook}: {out:?}", shell.display());
            }
        }
        let (collected, lines, metrics) = collect_root(&root);
        // No repository: runner_installed only (spec 5), nothing quarantined.
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines.iter().all(|l| l["event"] == "runner_installed"), "{lines:#?}");
        for (name, _) in &cases {
            assert_eq!(collected.kind(name), OutcomeKind::Extracted, "{}: {name}", shell.display());
            let pre = metrics.iter().find(|m| &m.runner_name == name).and_then(|m| m.pre_job.clone()).expect("pre-job");
            assert_eq!(pre.repository, None, "{name}");
            if name.starts_with("r-empty") || name.starts_with("r-unset") {
                assert_eq!(
                    (pre.workflow.as_str(), pre.event.as_str(), pre.workflow_run_id.as_str()),
                    ("", "", ""),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn the_pre_job_hook_records_a_positive_run_attempt_and_nothing_else() {
    // GITHUB_RUN_ATTEMPT lets the job lookup find a job of a re-run
    // workflow (issue 28). Anything but 1 to 9 digits without a leading
    // zero is left out (a value the reader refuses would make the whole
    // storage corrupt), and the lookup then asks for every attempt.
    let scripts = Scripts::new();
    let cases = [
        ("r-a2", Some("2"), Some(2)),
        ("r-a1", Some("1"), Some(1)),
        ("r-amax", Some("999999999"), Some(999_999_999)),
        ("r-a0", Some("0"), None),
        ("r-aempty", Some(""), None),
        ("r-ax", Some("2x"), None),
        ("r-along", Some("1234567890"), None),
        ("r-alead", Some("01"), None),
        ("r-aunset", None, None),
    ];
    for shell in shells() {
        let root = StorageRoot::new();
        for (name, attempt, _) in &cases {
            let storage = runner_metrics::storage::create(root.path(), name).unwrap();
            let mut env: Vec<(&str, &OsStr)> = [
                ("GITHUB_WORKFLOW", "w"),
                ("GITHUB_REPOSITORY", "o/r"),
                ("GITHUB_EVENT_NAME", "push"),
                ("GITHUB_RUN_ID", "7"),
            ]
            .into_iter()
            .map(|(k, v)| (k, OsStr::new(v)))
            .collect();
            if let Some(attempt) = attempt {
                env.push(("GITHUB_RUN_ATTEMPT", OsStr::new(attempt)));
            }
            for hook in ["installed", "pre-job"] {
                let out = scripts.run(&shell, hook, &storage.path, &env, &[]);
                assert_eq!(out.code, Some(0), "{} {hook}: {out:?}", shell.display());
            }
        }
        let (collected, _, metrics) = collect_root(&root);
        for (name, attempt, expected) in &cases {
            assert_eq!(collected.kind(name), OutcomeKind::Extracted, "{}: {name}", shell.display());
            let pre = metrics.iter().find(|m| &m.runner_name == name).and_then(|m| m.pre_job.clone()).expect("pre-job");
            assert_eq!(pre.workflow_run_attempt, *expected, "{}: GITHUB_RUN_ATTEMPT={attempt:?}", shell.display());
        }
    }
}

#[test]
fn post_job_writes_normal_or_abnormal_from_the_exit_code() {
    let scripts = Scripts::new();
    for shell in shells() {
        let temp = tempfile::tempdir().unwrap();
        let cases: [(&[&str], Option<&str>); 7] = [
            (&["0"], Some(r#""status": "normal"}"#)),
            (&["1"], Some(r#""status": "abnormal", "status_info": {"code": 1}}"#)),
            (&["007"], Some(r#""status": "abnormal", "status_info": {"code": 7}}"#)),
            (&["000"], Some(r#""status": "normal"}"#)),
            (&["255"], Some(r#""status": "abnormal", "status_info": {"code": 255}}"#)),
            (
                &["--status", "repo-policy-check-failure", "403"],
                Some(r#""status": "repo-policy-check-failure", "status_info": {"code": 403}}"#),
            ),
            (
                &["--status", "external-contributor-check-failure", "0"],
                Some(r#""status": "external-contributor-check-failure", "status_info": {"code": 0}}"#),
            ),
        ];
        for (args, expected) in cases {
            let dir = tempfile::tempdir_in(temp.path()).unwrap();
            let out = scripts.run(&shell, "post-job", dir.path(), &[], args);
            assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
            let text = fs::read_to_string(dir.path().join(POST_JOB)).unwrap();
            let expected = expected.unwrap();
            assert!(
                text.starts_with("{\"timestamp\": ") && text.ends_with(&format!(", {expected}\n")),
                "{args:?}: {text:?}"
            );
            assert_eq!(names_in(dir.path()), [POST_JOB]);
        }
        for bad in [
            &[][..],
            &[""],
            &["abc"],
            &["1", "2"],
            &["1.5"],
            &["-"],
            &["1234567890"],
            &["--status", "weird", "1"],
            &["--status", "normal"],
        ] {
            let dir = tempfile::tempdir_in(temp.path()).unwrap();
            let out = scripts.run(&shell, "post-job", dir.path(), &[], bad);
            assert_eq!(out.code, Some(2), "{bad:?} is a usage error: {out:?}");
            assert!(out.stderr.contains("usage"), "{out:?}");
            assert_eq!(names_in(dir.path()), Vec::<String>::new(), "{bad:?} wrote something");
        }
    }
}

#[test]
fn post_job_never_overwrites_an_existing_post_job_file() {
    let scripts = Scripts::new();
    for shell in shells() {
        let root = StorageRoot::new();
        let storage = runner_metrics::storage::create(root.path(), "r-policy").unwrap();
        let env: [(&str, &OsStr); 4] = [
            ("GITHUB_WORKFLOW", "ci".as_ref()),
            ("GITHUB_REPOSITORY", "o/r".as_ref()),
            ("GITHUB_EVENT_NAME", "push".as_ref()),
            ("GITHUB_RUN_ID", "9".as_ref()),
        ];
        scripts.run(&shell, "installed", &storage.path, &env, &[]);
        scripts.run(&shell, "pre-job", &storage.path, &env, &[]);
        // The pre-job hook's policy check failed: it wrote the post-job file.
        let first =
            scripts.run(&shell, "post-job", &storage.path, &env, &["--status", "repo-policy-check-failure", "403"]);
        assert_eq!(first.code, Some(0), "{first:?}");
        let written = fs::read(storage.path.join(POST_JOB)).unwrap();
        // Then the wrapper runs post-job with the runner's exit code.
        for code in ["0", "1"] {
            let again = scripts.run(&shell, "post-job", &storage.path, &env, &[code]);
            assert_eq!(again.code, Some(0), "{again:?}");
            assert!(again.stderr.contains("already exists; kept"), "{again:?}");
            assert_eq!(fs::read(storage.path.join(POST_JOB)).unwrap(), written, "the post-job file was overwritten");
        }
        // Even a symlink or a directory in its place is kept, never followed.
        let other = tempfile::tempdir().unwrap();
        let dir2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path().join("target"), dir2.path().join(POST_JOB)).unwrap();
        let out = scripts.run(&shell, "post-job", dir2.path(), &[], &["1"]);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(!other.path().join("target").exists(), "wrote through a dangling symlink");
        assert_eq!(names_in(dir2.path()), [POST_JOB], "no temporary file left");

        assert_eq!(names_in(&storage.path), [POST_JOB, PRE_JOB, START, INSTALLED]);
        let (collected, lines, _) = collect_root(&root);
        assert_eq!(collected.kind("r-policy"), OutcomeKind::Extracted);
        let stop = lines.iter().find(|l| l["event"] == "runner_stop").expect("runner_stop");
        assert_eq!(
            (&stop["status"], &stop["status_info"]),
            (&"repo-policy-check-failure".into(), &serde_json::json!({"code": 403}))
        );
    }
}

#[test]
fn pre_job_and_installed_replace_their_file_atomically_and_leave_no_temporary_file() {
    let scripts = Scripts::new();
    for shell in shells() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(PRE_JOB), "old").unwrap();
        fs::write(dir.path().join(INSTALLED), "old").unwrap();
        // A symlink where the file goes is replaced, never written through.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), "untouched").unwrap();
        fs::remove_file(dir.path().join(INSTALLED)).unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), dir.path().join(INSTALLED)).unwrap();
        for _ in 0..3 {
            for hook in ["pre-job", "installed"] {
                let out = scripts.run(&shell, hook, dir.path(), &[("GITHUB_REPOSITORY", "o/r".as_ref())], &[]);
                assert_eq!(out.code, Some(0), "{out:?}");
            }
        }
        assert_eq!(fs::read_to_string(outside.path().join("victim")).unwrap(), "untouched");
        assert!(fs::symlink_metadata(dir.path().join(INSTALLED)).unwrap().is_file());
        assert!(fs::read_to_string(dir.path().join(PRE_JOB))
            .unwrap()
            .starts_with("{\"workflow\": \"\", \"repository\": \"o/r\""));
        assert_eq!(names_in(dir.path()), [PRE_JOB, INSTALLED], "temporary files left behind");
        // A missing target directory: an error naming it, nothing created.
        let missing = dir.path().join("missing");
        for hook in ["pre-job", "installed"] {
            let out = scripts.run(&shell, hook, &missing, &[], &[]);
            assert_eq!(out.code, Some(1), "{out:?}");
            assert!(out.stderr.contains(&*missing.to_string_lossy()), "{out:?}");
        }
        assert!(!missing.exists());
        assert_eq!(names_in(dir.path()), [PRE_JOB, INSTALLED]);
    }
}

#[test]
fn hooks_print_gives_the_embedded_scripts_which_are_the_repository_files() {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/hooks");
    let shared = |text: &str| -> String {
        let start = text.find("# --- shared by the runner-metrics hook scripts").expect("shared part start");
        let end = text.find("# --- end of the shared part ---").expect("shared part end");
        text[start..end].to_owned()
    };
    let first = shared(hooks::PRE_JOB);
    for (name, text) in hooks::ALL {
        assert_eq!(fs::read_to_string(sources.join(format!("{name}.sh"))).unwrap(), text, "{name}.sh");
        assert_eq!(shared(text), first, "{name}.sh: the shared part differs from pre-job.sh's");
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        assert!(!text.contains("jq"), "{name} must not need jq");
        let out = output(cli().args(["hooks", "print", name]));
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), text), "hooks print {name}");
    }
    let out = output(cli().args(["hooks", "print", "nope"]));
    assert_eq!(out.code, Some(2), "{out:?}");
}
