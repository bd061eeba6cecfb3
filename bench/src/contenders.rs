//! The contenders, each run in a child process of its own so that its wall
//! time and peak RSS are its alone:
//!
//! 1. `sandboxed`: the real `runner-metrics collect` binary, once per build
//!    given (`--collect-bin`, repeatable: `1a`, `1b`, ... when several, so
//!    builds are compared side by side in one run);
//! 2. `native`: this binary's hidden `native-collect`, the same pipeline
//!    ([`runner_metrics::native::collect_native`]): the guest's pipeline
//!    compiled natively;
//! 3. `floor`: this binary's hidden `floor`, a bare pass that lists, lstats,
//!    reads (bounded) and deletes the same files.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use runner_metrics::native::collect_native;
use runner_metrics::summary::{OutcomeKind, StorageReport, Summary};
use runner_metrics::{CollectOptions, MetricsLog};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contender {
    /// The build at this index of [`Lineup::builds`].
    Sandboxed(usize),
    Native,
    Floor,
}

/// The contenders of a bench run: every build of `runner-metrics`, then
/// native and the floor.
#[derive(Debug, Clone)]
pub struct Lineup {
    pub builds: Vec<PathBuf>,
}

impl Lineup {
    pub fn contenders(&self) -> Vec<Contender> {
        let builds = (0..self.builds.len()).map(Contender::Sandboxed);
        builds.chain([Contender::Native, Contender::Floor]).collect()
    }

    /// `1` (or `1a`, `1b`, ... with several builds), `2`, `3`.
    pub fn tag(&self, contender: Contender) -> String {
        match contender {
            Contender::Sandboxed(_) if self.builds.len() == 1 => "1".to_owned(),
            Contender::Sandboxed(i) => format!("1{}", char::from(b'a' + (i % 26) as u8)),
            Contender::Native => "2".to_owned(),
            Contender::Floor => "3".to_owned(),
        }
    }

    pub fn label(&self, contender: Contender) -> String {
        let name = match contender {
            Contender::Sandboxed(_) => "sandboxed",
            Contender::Native => "native",
            Contender::Floor => "fs floor",
        };
        format!("{} {name}", self.tag(contender))
    }

    /// The command line of one contender on `root`; a build keeps its
    /// compiled code in a cache of its own under `base`.
    pub fn command(&self, contender: Contender, root: &Path, log: &Path, base: &Path) -> Result<Command> {
        let mut command = match contender {
            Contender::Sandboxed(i) => {
                let bin = self.builds.get(i).context("no such build")?;
                let mut c = Command::new(bin);
                c.arg("collect").arg("--cache-dir").arg(base.join(format!("cache-{i}")));
                c
            }
            Contender::Native => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("native-collect");
                c
            }
            Contender::Floor => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("floor").arg("--storage").arg(root);
                return Ok(c);
            }
        };
        command.arg("--storage").arg(root).arg("--flavor").arg("small").arg("--metrics-log").arg(log).arg("--json");
        Ok(command)
    }
}

/// What one child process cost.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    /// Peak resident set size, bytes (`ru_maxrss` from `wait4`).
    pub peak_rss: u64,
    /// User and system time (`ru_utime` + `ru_stime` from `wait4`).
    pub cpu: Duration,
}

/// Runs `command` through this binary's hidden `measured` subcommand and
/// returns what it cost.
///
/// Why the extra process: Linux carries the peak RSS of the address space a
/// process `exec`s from into the new program's `ru_maxrss`, and std spawns
/// with `vfork`, so a child's figure would include this (larger) parent's.
/// The small `measured` process spawns the contender and reports its
/// `wait4` rusage, so the figure is the contender's own.
pub fn measure(command: Command, stderr_file: &Path) -> Result<Measured> {
    let mut wrapper = Command::new(std::env::current_exe()?);
    wrapper.arg("measured").arg("--stderr").arg(stderr_file).arg("--").arg(command.get_program());
    wrapper.args(command.get_args());
    // Errors must not capture stack traces (see cli/src/dispatch.rs): the
    // same environment for every contender, whatever the caller's shell has.
    wrapper.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    let output = wrapper.stderr(Stdio::inherit()).output()?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stdout).trim());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>());
    match (fields.next(), fields.next(), fields.next()) {
        (Some(Ok(nanos)), Some(Ok(rss)), Some(Ok(cpu))) => {
            Ok(Measured { wall: Duration::from_nanos(nanos), peak_rss: rss, cpu: Duration::from_nanos(cpu) })
        }
        _ => bail!("measured: unexpected output {text:?}"),
    }
}

/// The hidden `measured` subcommand: runs `program args...`, prints
/// `<wall ns> <peak RSS bytes> <CPU ns>` (or the failure) on stdout.
pub fn measured(stderr_file: &Path, program: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> Result<()> {
    let mut command = Command::new(program);
    command.args(args);
    match measure_direct(command, stderr_file) {
        Ok(m) => {
            println!("{} {} {}", m.wall.as_nanos(), m.peak_rss, m.cpu.as_nanos());
            Ok(())
        }
        Err(e) => {
            println!("{e:#}");
            std::process::exit(1);
        }
    }
}

/// Spawns `command` with stdout discarded and stderr into `stderr_file`,
/// waits with `wait4` for its own rusage, and fails on a non-zero exit.
fn measure_direct(mut command: Command, stderr_file: &Path) -> Result<Measured> {
    let stderr = File::create(stderr_file)?;
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
    let started = Instant::now();
    let child = command.spawn().with_context(|| format!("spawning {command:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = loop {
        // SAFETY: plain syscall on our child's pid with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = started.elapsed();
    // The child is reaped: dropping `child` does not wait again.
    drop(child);
    if waited != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let text = std::fs::read_to_string(stderr_file).unwrap_or_default();
        let tail: String = text.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        bail!("{command:?} failed (status {status:#x}): {tail}");
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Measured { wall, peak_rss: usage.ru_maxrss as u64 * 1024, cpu: time(usage.ru_utime) + time(usage.ru_stime) })
}

/// The last line of a collect run's stderr: its `--json` summary.
pub fn summary_from_stderr(stderr_file: &Path) -> Result<Summary> {
    let text = std::fs::read_to_string(stderr_file)?;
    let last = text.lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(last).with_context(|| format!("summary line {last:?}"))?;
    let count = |key: &str| value.get(key).and_then(|v| v.as_u64()).unwrap_or(u64::MAX) as usize;
    Ok(Summary {
        extracted: count("extracted"),
        no_data: count("no_data"),
        quarantined: count("quarantined"),
        skipped: count("skipped"),
        failed: count("failed"),
        lines_written: count("lines_written"),
    })
}

/// The hidden `native-collect` subcommand: what `runner-metrics collect`
/// does, with the natively compiled guest. Prints the same lines on stderr
/// (one per quarantined or failed storage, then the JSON summary).
pub fn native_collect(storage: &Path, flavor: &str, metrics_log: &Path) -> Result<()> {
    let mut log = MetricsLog::open(metrics_log)?;
    let options = CollectOptions::events(flavor);
    // As the CLI does: one unbuffered write per reported line.
    let mut on_report = |r: &StorageReport| {
        if matches!(r.outcome, OutcomeKind::Quarantined | OutcomeKind::Failed) {
            use std::io::Write;
            let line = format!("{}: {}: {}\n", r.outcome.as_str(), r.name.escape_debug(), r.detail.escape_debug());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    };
    let summary = collect_native(storage, &options, &mut log, &mut on_report)?;
    eprintln!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// The four files a storage may hold (spec 2).
const FILES: [&str; 4] = [
    "runner-installation-start.timestamp",
    "runner-installed.timestamp",
    "pre-job-metrics.json",
    "post-job-metrics.json",
];

/// The hidden `floor` subcommand: the least any implementation must do.
/// For each root entry: `lstat` it; for each of the four files `lstat`,
/// open without following symlinks or blocking, read at most 1025 bytes;
/// then list the storage, unlink what is in it and remove it.
pub fn floor(storage: &Path) -> Result<()> {
    let mut buffer = [0u8; 1025];
    let mut storages = 0usize;
    let mut bytes = 0usize;
    for entry in std::fs::read_dir(storage)? {
        let entry = entry?;
        let dir = entry.path();
        if !std::fs::symlink_metadata(&dir)?.is_dir() {
            continue;
        }
        for name in FILES {
            let path = dir.join(name);
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if !meta.is_file() || meta.len() > 1024 {
                continue;
            }
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)?;
            let mut have = 0;
            while have < buffer.len() {
                match file.read(&mut buffer[have..])? {
                    0 => break,
                    n => have += n,
                }
            }
            bytes += have;
        }
        for inner in std::fs::read_dir(&dir)? {
            unlink(&inner?.path())?;
        }
        std::fs::remove_dir(&dir)?;
        storages += 1;
    }
    eprintln!("{{\"storages\": {storages}, \"bytes\": {bytes}}}");
    Ok(())
}

fn unlink(path: &Path) -> Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: NUL-terminated path; unlink never follows a final symlink.
    if unsafe { libc::unlink(c.as_ptr()) } != 0 {
        bail!("unlink {}: {}", path.display(), std::io::Error::last_os_error());
    }
    Ok(())
}
