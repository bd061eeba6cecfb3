//! Pulled metrics (spec 9, issue 15): `runner-metrics ingest` and the
//! library's `ingest`, on real tar streams and files in temporary
//! directories, through the real component.
//!
//! * The README's pipe, with a local `sh -c` standing in for `ssh`.
//! * Every hostile stream ends in a defined outcome with nothing lost: an
//!   entry of another kind (symlink, hard link, FIFO, device, a directory
//!   with a known name), GNU long-name and pax headers, `..`, absolute,
//!   NUL and non-UTF-8 names, duplicates, a header claiming 1 TiB, a
//!   truncated stream, and a stream that never ends (stopped at the bound,
//!   not at EOF).
//! * Files given by path: symlinks, FIFOs and directories are refused by
//!   name, without blocking.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use runner_metrics::ingest::{ingest, LooseFiles, PulledFiles, PulledRunner};
use runner_metrics::{CollectOptions, MemorySink, NoJobMetrics, OutcomeKind};
use runner_metrics_e2e::*;

/// A runner's metrics-exchange directory, as the runner VM holds it, and a
/// directory of its own for pulled runners, in one temporary directory.
struct Pulled {
    temp: tempfile::TempDir,
}

impl Pulled {
    fn new() -> Self {
        let temp = tempfile::Builder::new().prefix("runner-metrics-ingest-").tempdir().unwrap();
        std::fs::create_dir(temp.path().join("metrics-exchange")).unwrap();
        Self { temp }
    }

    /// The runner's metrics directory (what `tar -C` archives).
    fn exchange(&self) -> PathBuf {
        self.temp.path().join("metrics-exchange")
    }

    /// `--quarantine-dir`: not made in advance, `ingest` makes it.
    fn dir(&self) -> PathBuf {
        self.temp.path().join("pulled")
    }

    fn log(&self) -> PathBuf {
        self.temp.path().join("metrics.log")
    }

    fn write(&self, file: &str, content: impl AsRef<[u8]>) {
        std::fs::write(self.exchange().join(file), content).unwrap();
    }

    fn valid(&self) {
        for (file, content) in valid_files() {
            if file != START {
                self.write(file, content);
            }
        }
    }

    /// `tar -C EXCHANGE -cf - .`, as the runner VM would send it.
    fn tar(&self) -> Vec<u8> {
        let out = Command::new("tar").arg("-C").arg(self.exchange()).args(["-cf", "-", "."]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// The quarantined entries: each `(directory, reason file as JSON)`.
    fn quarantined(&self) -> Vec<(PathBuf, serde_json::Value)> {
        let Ok(dir) = std::fs::read_dir(self.dir().join(".quarantine")) else { return Vec::new() };
        let mut found: Vec<_> = dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .map(|p| {
                let reason = p.with_file_name(format!("{}.reason.json", p.file_name().unwrap().to_str().unwrap()));
                (p, json(&std::fs::read_to_string(reason).unwrap()))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }
}

/// `runner-metrics ingest` for runner `name` with `stdin` piped in.
fn ingest_cli(p: &Pulled, name: &str, args: &[&str], stdin: &[u8]) -> CliOutput {
    let mut command = cli();
    command
        .args(["ingest", "--runner", name, "--flavor", "small", "--quarantine-dir"])
        .arg(p.dir())
        .arg("--metrics-log")
        .arg(p.log())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // The CLI may stop reading early (at its bound): a broken pipe is fine.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// What DIR holds besides `.deleting/` (checked empty) and the ledger of
/// ingested runners (`.ingested/`).
fn staged_or_kept(p: &Pulled) -> Vec<String> {
    let mut names = entries_besides_deleting(&p.dir());
    names.retain(|n| n != runner_metrics::ingest::ledger::INGESTED_DIR);
    names
}

fn log_lines(p: &Pulled) -> Vec<serde_json::Value> {
    match std::fs::read_to_string(p.log()) {
        Ok(text) => text.lines().map(json).collect(),
        Err(_) => Vec::new(),
    }
}

fn events(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().map(|l| l["event"].as_str().unwrap()).collect()
}

#[test]
fn the_readme_pipe_with_sh_standing_in_for_ssh() {
    let p = Pulled::new();
    p.valid();
    p.write("runner.log", "other files of the directory are ignored");
    std::fs::create_dir(p.exchange().join("cache")).unwrap();
    // The README's command, with `ssh runner-7` replaced by `sh -c`.
    let pipe = format!(
        "sh -c 'tar -C {} -cf - .' | {} --cache-dir {} ingest --runner runner-7 --flavor small \
         --quarantine-dir {} --installation-start 1700000000.5 --metrics-log {} --json \
         --prometheus-textfile {}",
        p.exchange().display(),
        cli_binary().display(),
        cache_dir().display(),
        p.dir().display(),
        p.log().display(),
        p.temp.path().join("runner-metrics.prom").display()
    );
    let out = Command::new("sh").args(["-c", &pipe]).env_remove("METRICS_LOG_PATH").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines = log_lines(&p);
    assert_eq!(events(&lines), ["runner_installed", "runner_start", "runner_stop"]);
    assert_eq!(lines[0]["duration"], 59.5);
    assert_eq!(lines[2]["status"], "abnormal");
    // The summary, as for collect.
    let summary = json(stderr.lines().last().unwrap());
    assert_eq!((summary["extracted"].as_u64(), summary["lines_written"].as_u64()), (Some(1), Some(3)), "{summary}");
    // The Prometheus counters, as for collect.
    let prom = std::fs::read_to_string(p.temp.path().join("runner-metrics.prom")).unwrap();
    for sample in [
        "runner_metrics_storages_total{outcome=\"extracted\"} 1",
        "runner_metrics_events_total{event=\"runner_stop\",flavor=\"small\"} 1",
    ] {
        assert!(prom.lines().any(|l| l == sample), "{sample} missing from:\n{prom}");
    }
    // The staged storage is gone, and so is the lock file.
    assert!(staged_or_kept(&p).is_empty(), "{:?}", staged_or_kept(&p));
}

#[test]
fn strict_keeps_a_corrupt_runner_whole_and_lenient_issues_the_rest() {
    for (policy, runner) in [("strict", "strict-1"), ("lenient", "lenient-1")] {
        let p = Pulled::new();
        p.valid();
        p.write(PRE_JOB, "{\"timestamp\": ");
        let stream = p.tar();
        let out = ingest_cli(&p, runner, &["--policy", policy, "--installation-start", "1700000000", "-v"], &stream);
        assert_eq!(out.code, Some(0), "{policy}: {}", out.stderr);
        match policy {
            "strict" => {
                assert!(log_lines(&p).is_empty());
                let [(kept, reason)] = p.quarantined().try_into().unwrap();
                assert_eq!((reason["reason"].as_str(), reason["file"].as_str()), (Some("invalid-json"), Some(PRE_JOB)));
                // Nothing lost: the stream and every file in it are kept.
                assert_eq!(std::fs::read(kept.join("pulled.tar")).unwrap(), stream);
                assert_eq!(std::fs::read(kept.join(PRE_JOB)).unwrap(), b"{\"timestamp\": ");
                assert!(out.stderr.contains("quarantined: strict-1: invalid-json"), "{}", out.stderr);
            }
            _ => {
                assert_eq!(events(&log_lines(&p)), ["runner_installed"]);
                assert!(p.quarantined().is_empty());
                assert!(
                    out.stderr.contains("counted as missing (lenient policy): pre-job-metrics.json (invalid-json"),
                    "{}",
                    out.stderr
                );
            }
        }
    }
}

/// A 512-byte ustar header.
fn header(name: &[u8], flag: u8, size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 0o77777777777 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        // base-256, as GNU tar writes sizes past 8 GiB
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A stream of one entry with `data`, ended as tar ends it.
fn one_entry(name: &[u8], flag: u8, data: &[u8]) -> Vec<u8> {
    let mut s = header(name, flag, data.len() as u64);
    s.extend(data);
    s.resize(s.len().div_ceil(512) * 512 + 1024, 0);
    s
}

#[test]
fn every_hostile_stream_is_quarantined_with_its_reason_and_its_bytes() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/tar_stream");
    let seed = |name: &str| std::fs::read(seeds.join(name)).unwrap();
    let mut huge = header(b"./pre-job-metrics.json", b'0', 1 << 40);
    huge.resize(4096, 0);
    let truncated = {
        let mut s = header(b"./runner-installed.timestamp", b'0', 600);
        s.extend([b'1'; 100]);
        s
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("symlink", seed("symlink"), "not-regular-file"),
        ("hard link", seed("hardlink"), "not-regular-file"),
        ("FIFO", seed("fifo"), "not-regular-file"),
        ("device", one_entry(b"./pre-job-metrics.json", b'3', b""), "not-regular-file"),
        ("known name as a directory", one_entry(b"./pre-job-metrics.json/", b'5', b""), "not-regular-file"),
        ("GNU long name", seed("long_name"), "invalid-archive"),
        ("pax header", seed("pax_header"), "invalid-archive"),
        ("dot-dot", seed("dotdot"), "invalid-archive"),
        ("duplicate", seed("duplicate"), "invalid-archive"),
        ("absolute", one_entry(b"/runner-installed.timestamp", b'0', b"1"), "invalid-archive"),
        ("non-UTF-8 name", one_entry(b"./runner-\xff.timestamp", b'0', b"1"), "invalid-archive"),
        ("a known file over 1 KiB", seed("oversized"), "oversized"),
        ("a header claiming 1 TiB", huge, "invalid-archive"),
        ("truncated", truncated, "invalid-archive"),
        ("not tar at all", b"<html>404</html>".to_vec(), "invalid-archive"),
    ];
    for (what, stream, reason) in cases {
        let p = Pulled::new();
        let out = ingest_cli(&p, "hostile-stream", &[], &stream);
        assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
        assert!(log_lines(&p).is_empty(), "{what}");
        let [(kept, record)] = p.quarantined().try_into().unwrap_or_else(|q| panic!("{what}: {q:?}"));
        assert_eq!(record["reason"].as_str(), Some(reason), "{what}: {record}");
        assert_eq!(std::fs::read(kept.join("pulled.tar")).unwrap(), stream, "{what}: the stream is kept as it came");
        assert_eq!(staged_or_kept(&p), [".quarantine"], "{what}");
    }
}

/// A NUL ends a tar name (the field is NUL-padded), so whatever follows it
/// is not part of the name: the entry is read as tar readers read it.
#[test]
fn a_nul_ends_a_name_as_tar_reads_it() {
    let p = Pulled::new();
    let stream = one_entry(b"./runner-installed.timestamp\0.evil", b'0', b"1700000060");
    let out = ingest_cli(&p, "nul-name", &["--installation-start", "1700000000", "--json"], &stream);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(events(&log_lines(&p)), ["runner_installed"]);
    // And a name cut short by a NUL is just an unknown file: ignored.
    let stream = one_entry(b"./runner-installed\0.timestamp", b'0', b"1700000060");
    let out = ingest_cli(&p, "nul-name-2", &["--json"], &stream);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(json(out.stderr.lines().last().unwrap())["no_data"], 1, "{}", out.stderr);
}

#[test]
fn a_stream_that_never_ends_is_cut_at_the_bound_not_read_to_eof() {
    let p = Pulled::new();
    std::fs::create_dir_all(p.dir()).unwrap();
    // `yes` never ends: the CLI reads its bound and stops.
    let pipe = format!(
        "yes | {} --cache-dir {} ingest --runner endless --flavor small --quarantine-dir {} --metrics-log {}",
        cli_binary().display(),
        cache_dir().display(),
        p.dir().display(),
        p.log().display()
    );
    let out = within(Duration::from_secs(60), "ingest of an endless stream", move || {
        Command::new("sh").args(["-c", &pipe]).output().unwrap()
    });
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let [(kept, record)] = p.quarantined().try_into().unwrap();
    assert_eq!(record["reason"], "oversized", "{record}");
    let kept = std::fs::read(kept.join("pulled.tar")).unwrap();
    assert_eq!(kept.len(), runner_metrics::ingest::max_stream_bytes(), "what was read is kept, and no more was read");
    assert!(kept.chunks(2).all(|c| c == b"y\n" || c == b"y"));
}

#[test]
fn files_given_by_path_are_read_bounded_and_never_followed() {
    let p = Pulled::new();
    p.valid();
    let ex = p.exchange();
    let arg = |f: &str| ex.join(f).to_str().unwrap().to_owned();
    let loose = ["--installed", &arg(INSTALLED), "--pre-job", &arg(PRE_JOB), "--post-job", &arg(POST_JOB)];
    let out = ingest_cli(&p, "loose-1", &loose, b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(events(&log_lines(&p)), ["runner_start", "runner_stop"]);
    // A missing file counts as missing.
    let out = ingest_cli(&p, "loose-2", &["--installed", &arg(INSTALLED), "--pre-job", &arg("absent.json")], b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // A symlink (to a file beside it), a FIFO, a directory: refused by
    // name, nothing staged, and the FIFO does not block.
    std::os::unix::fs::symlink(ex.join(PRE_JOB), ex.join("link.json")).unwrap();
    mkfifo(&ex.join("fifo.json")).unwrap();
    std::fs::create_dir(ex.join("dir.json")).unwrap();
    let _ = cli_binary();
    for (file, what) in [("link.json", "symlink"), ("fifo.json", "FIFO"), ("dir.json", "directory")] {
        let path = arg(file);
        let out = within(Duration::from_secs(60), "ingest of a FIFO", {
            let p_dir = p.dir();
            let log = p.log();
            move || {
                output(
                    cli()
                        .args(["ingest", "--runner", "loose-3", "--flavor", "small", "--pre-job", &path])
                        .arg("--quarantine-dir")
                        .arg(p_dir)
                        .arg("--metrics-log")
                        .arg(log),
                )
            }
        });
        assert_eq!(out.code, Some(2), "{what}: {}", out.stderr);
        assert!(out.stderr.contains(what) && out.stderr.contains(file), "{what}: {}", out.stderr);
        assert!(!p.dir().join("loose-3").exists());
    }
    // An oversized file: what crossed (the limit and a byte) is kept.
    p.write("big.json", vec![b' '; 5000]);
    let out = ingest_cli(&p, "loose-4", &["--installed", &arg(INSTALLED), "--pre-job", &arg("big.json")], b"");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let [(kept, record)] = p.quarantined().try_into().unwrap();
    assert_eq!(record["reason"], "oversized");
    assert_eq!(std::fs::read(kept.join(PRE_JOB)).unwrap().len(), FILE_SIZE_LIMIT + 1);
}

#[test]
fn bad_requests_are_refused_before_anything_is_touched() {
    let p = Pulled::new();
    p.valid();
    let stream = p.tar();
    for (runner, args, expected) in [
        ("../escape", &[][..], "not a valid runner name"),
        (".quarantine", &[][..], "not a valid runner name"),
        ("r", &["--installation-start", "-1"][..], "--installation-start must be a UNIX time >= 0, got -1"),
        ("r", &["--installation-start", "NaN"][..], "--installation-start must be a UNIX time >= 0, got NaN"),
        ("r", &["--tar", "-", "--pre-job", "x"][..], "cannot be used with"),
    ] {
        let out = ingest_cli(&p, runner, args, &stream);
        assert_eq!(out.code, Some(2), "{runner} {args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{runner} {args:?}: {}", out.stderr);
        assert!(!p.dir().exists(), "{runner} {args:?}: the directory was made");
    }
    // An empty stream: the pull failed (ssh could not connect); there is
    // nothing to keep, so nothing is staged and the manager hears of it.
    let out = ingest_cli(&p, "empty-stream", &[], b"");
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("is empty (did the pull fail?)"), "{}", out.stderr);
    assert!(!p.dir().join("empty-stream").exists());
    // A runner already staged there (a crash, or a second pull): refused,
    // and the storage there is untouched.
    let staged = p.dir().join("twice");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join(INSTALLED), "5").unwrap();
    let out = ingest_cli(&p, "twice", &[], &stream);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("already in the storage root"), "{}", out.stderr);
    assert_eq!(std::fs::read(staged.join(INSTALLED)).unwrap(), b"5");
    assert!(log_lines(&p).is_empty());
}

#[test]
fn the_library_call_takes_the_bytes_and_cuts_what_is_too_long() {
    let p = Pulled::new();
    let pulled = PulledRunner {
        runner_name: "lib-1".into(),
        installation_start: Some(1.0),
        files: PulledFiles::Loose(LooseFiles {
            installed: Some(b"2.0".to_vec()),
            pre_job: Some(F_PRE_JOB.as_bytes().to_vec()),
            post_job: Some(F_POST_JOB.as_bytes().to_vec()),
        }),
    };
    let mut sink = MemorySink::default();
    let mut reports = Vec::new();
    let options = CollectOptions::events("small");
    let summary =
        ingest(plugin(), &p.dir(), pulled, &options, &mut NoJobMetrics, &mut sink, &mut |r| reports.push(r.clone()))
            .unwrap();
    assert_eq!((summary.extracted, reports.len()), (1, 1));
    // Fixture F of the spec, as collect gives it.
    let lines: Vec<_> = sink.lines.iter().map(|l| json(l)).collect();
    assert_eq!(events(&lines), ["runner_installed", "runner_start", "runner_stop"]);
    assert_eq!((lines[0]["duration"].as_f64(), lines[1]["idle"].as_f64()), (Some(1.0), Some(1.0)));
    // A megabyte handed over is cut to the limit and a byte: oversized.
    let pulled = PulledRunner {
        runner_name: "lib-2".into(),
        installation_start: None,
        files: PulledFiles::Loose(LooseFiles { installed: Some(vec![b'1'; 1 << 20]), pre_job: None, post_job: None }),
    };
    let mut reports = Vec::new();
    ingest(plugin(), &p.dir(), pulled, &options, &mut NoJobMetrics, &mut sink, &mut |r| reports.push(r.clone()))
        .unwrap();
    assert_eq!((reports[0].outcome, reports[0].reason.as_deref()), (OutcomeKind::Quarantined, Some("oversized")));
    let [(kept, _)] = p.quarantined().try_into().unwrap();
    assert_eq!(std::fs::metadata(kept.join(INSTALLED)).unwrap().len(), FILE_SIZE_LIMIT as u64 + 1);
    // A name no storage may have is refused by the keeper before any plugin
    // call (it used to be a lie, trap after trap, for a long name).
    for name in ["../x".to_owned(), "x".repeat(300)] {
        let pulled = PulledRunner {
            runner_name: name.clone(),
            installation_start: None,
            files: PulledFiles::Tar(vec![0; 1024]),
        };
        let mut reports = Vec::new();
        let e = ingest(plugin(), &p.dir(), pulled, &options, &mut NoJobMetrics, &mut sink, &mut |r| {
            reports.push(r.clone())
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("refusing to collect the pulled runner"), "{e:#}");
        assert!(reports.is_empty());
    }
    assert_eq!(p.quarantined().len(), 1);
}

/// A manager pulling several runners at once: each ingest waits for the
/// directory's lock (60 s unless --wait says), so all of them land.
#[test]
fn ingests_started_together_wait_for_each_other() {
    let p = std::sync::Arc::new(Pulled::new());
    p.valid();
    let stream = p.tar();
    let _ = cli_binary();
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let (p, stream) = (p.clone(), stream.clone());
            std::thread::spawn(move || {
                ingest_cli(&p, &format!("together-{i}"), &["--installation-start", "1"], &stream)
            })
        })
        .collect();
    for run in runs {
        let out = run.join().unwrap();
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let lines = log_lines(&p);
    assert_eq!(lines.len(), 12, "{lines:?}");
    assert!(staged_or_kept(&p).is_empty());
    // With --wait 0, one that finds the lock held gives up with status 3.
    let lock = runner_metrics::RootLock::acquire(&p.dir(), Duration::ZERO).unwrap();
    let out = ingest_cli(&p, "late", &["--wait", "0"], &stream);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    drop(lock);
    assert!(!p.dir().join("late").exists());
}

/// Issue 24 (6): two ingests of one runner at once both exited 0 and the
/// log held its events twice; so did a retry after the first one landed.
#[test]
fn one_runner_ingested_twice_at_once_or_again_later_is_logged_once() {
    let p = std::sync::Arc::new(Pulled::new());
    p.valid();
    let stream = p.tar();
    let _ = cli_binary();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (p, stream) = (p.clone(), stream.clone());
            std::thread::spawn(move || ingest_cli(&p, "r-twice", &["--installation-start", "1"], &stream))
        })
        .collect();
    let mut codes: Vec<Option<i32>> = runs.into_iter().map(|run| run.join().unwrap()).map(|out| out.code).collect();
    codes.sort();
    assert_eq!(codes, [Some(0), Some(4)], "one logs, the other finds it ingested");
    assert_eq!(events(&log_lines(&p)), ["runner_installed", "runner_start", "runner_stop"]);

    // The manager's retry after a timeout: refused, said, nothing logged.
    let retry = ingest_cli(&p, "r-twice", &["--installation-start", "1"], &stream);
    assert_eq!(retry.code, Some(4), "{}", retry.stderr);
    assert!(retry.stderr.contains("r-twice was already ingested into"), "{}", retry.stderr);
    assert_eq!(log_lines(&p).len(), 3);
    assert!(staged_or_kept(&p).is_empty(), "{:?}", staged_or_kept(&p));

    // A runner quarantined is remembered too (its bytes are kept once).
    let corrupt = ingest_cli(&p, "r-corrupt", &[], b"not a tar stream at all, but long enough to be read");
    assert_eq!(corrupt.code, Some(0), "{}", corrupt.stderr);
    let again = ingest_cli(&p, "r-corrupt", &[], b"not a tar stream at all, but long enough to be read");
    assert_eq!(again.code, Some(4), "{}", again.stderr);
    assert_eq!(p.quarantined().len(), 1);

    // --remember 0 turns the ledger off: the same runner is logged again.
    let forgetful = ingest_cli(&p, "r-twice", &["--installation-start", "1", "--remember", "0"], &stream);
    assert_eq!(forgetful.code, Some(0), "{}", forgetful.stderr);
    assert_eq!(log_lines(&p).len(), 6);
}
