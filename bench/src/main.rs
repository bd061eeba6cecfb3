//! `runner-metrics-bench`: how much the sandbox costs.
//!
//! Run with `cargo run --release -p runner-metrics-bench -- [OPTIONS]`; see
//! `docs/benchmarks.md`. Generates identical storage roots for the
//! contenders (the sandboxed `runner-metrics collect`, once per build given,
//! the same pipeline with the guest compiled natively, and a bare
//! filesystem pass), runs each in its own child process on tmpfs and on
//! disk, and prints markdown tables;
//! it also measures cold starts, the cost of one guest instance and the size
//! of the component, and writes a throughput plot (SVG).

mod contenders;
mod generate;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};

use contenders::{Contender, Lineup, Measured};
use report::{Cell, Column, Row};

#[derive(Debug, Parser)]
#[command(
    name = "runner-metrics-bench",
    about = "Benchmark the sandboxed collect against native code and the filesystem floor"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Write a storage root with N runners (deterministic per seed).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Contender 2 (used by the bench itself): collect with the native guest.
    #[command(hide = true)]
    NativeCollect {
        #[arg(long)]
        storage: PathBuf,
        #[arg(long)]
        flavor: String,
        #[arg(long)]
        metrics_log: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Runs a command and prints its wall time and peak RSS (used by the
    /// bench itself, see `contenders::measure`).
    #[command(hide = true)]
    Measured {
        #[arg(long)]
        stderr: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Contender 3 (used by the bench itself): the filesystem floor.
    #[command(hide = true)]
    Floor {
        #[arg(long)]
        storage: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Storage root sizes (runners), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Runs per contender and size (the median is reported); sizes of
    /// 100,000 and more run once.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A directory on tmpfs.
    #[arg(long, default_value = "/dev/shm")]
    tmpfs_dir: PathBuf,
    /// A directory on a disk filesystem.
    #[arg(long, default_value = "/var/tmp")]
    disk_dir: PathBuf,
    /// Run on tmpfs only.
    #[arg(long)]
    no_disk: bool,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// A `runner-metrics` binary to time (default: built with `cargo build
    /// --release` next to this one). Repeat it to time several builds side
    /// by side in one run: `1a`, `1b`, ... in the tables, each also against
    /// the first.
    #[arg(long)]
    collect_bin: Vec<PathBuf>,
    /// Where to write the throughput plot.
    #[arg(long, default_value = "docs/benchmarks.svg")]
    svg: PathBuf,
    /// Runs of each cold-start measurement (the median is reported).
    #[arg(long, default_value_t = 11)]
    cold_runs: usize,
    /// Skip the cold-start and instance measurements.
    #[arg(long)]
    skip_startup: bool,
    /// Storages in the root whose system calls are counted per contender
    /// (with `strace -f -c`, on tmpfs); 0 skips the count.
    #[arg(long, default_value_t = 2000)]
    syscalls_n: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::Generate { out, n, seed }) => {
            std::fs::create_dir_all(&out)?;
            let g = generate::generate(&out, n, seed)?;
            println!("{g:?}");
            Ok(())
        }
        Some(Sub::NativeCollect { storage, flavor, metrics_log, json: _ }) => {
            contenders::native_collect(&storage, &flavor, &metrics_log)
        }
        Some(Sub::Floor { storage }) => contenders::floor(&storage),
        Some(Sub::Measured { stderr, command }) => contenders::measured(&stderr, &command[0], &command[1..]),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> Result<()> {
    let builds = match args.collect_bin.as_slice() {
        [] => vec![build_collect_bin()?],
        given => given.to_vec(),
    };
    let lineup = Lineup { builds };
    println!("# runner-metrics benchmark\n");
    machine(&args)?;
    for (i, build) in lineup.builds.iter().enumerate() {
        println!("- collect binary {}: `{}`", lineup.tag(Contender::Sandboxed(i)), build.display());
    }
    println!(
        "- component: {} bytes (the fast build, which the CLI runs; the WASI build: {} bytes)",
        runner_metrics::plugin::EMBEDDED_FAST_COMPONENT.len(),
        runner_metrics::plugin::EMBEDDED_COMPONENT.len()
    );
    println!("- seed {}; mix: ~80% complete, 10% no post-job, 5% no installed timestamp, 5% corrupt\n", args.seed);

    let mut places = vec![("tmpfs", args.tmpfs_dir.clone())];
    if !args.no_disk {
        places.push(("disk", args.disk_dir.clone()));
    }
    if !args.skip_startup {
        for (i, build) in lineup.builds.iter().enumerate() {
            startup(build, &lineup.label(Contender::Sandboxed(i)), &places[0].1, args.cold_runs)?;
        }
        instance_cost(&places[0].1)?;
    }
    if args.syscalls_n > 0 {
        syscalls(&args, &lineup, &places[0].1)?;
    }
    let mut rows = Vec::new();
    for (label, dir) in &places {
        let fs_name = format!("{} ({})", filesystem_type(dir), label);
        let base = dir.join(format!("runner-metrics-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let result = sizes_on(&args, &lineup, &base, &fs_name, &mut rows);
        let _ = std::fs::remove_dir_all(&base);
        result?;
    }
    println!("## Throughput\n");
    println!("{}", report::table(&rows));
    println!("{}", report::paired_ratios(&rows));
    println!("{}", report::linearity(&rows));
    if let Some(parent) = args.svg.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let title = format!("runner-metrics collect: throughput against N ({})", cpu_model());
    std::fs::write(&args.svg, report::svg(&rows, &title))?;
    println!("plot: {}", args.svg.display());
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// Builds the product binary as shipped (no `native-guest` feature), with
/// this binary's profile, and returns its path.
fn build_collect_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("own directory")?.to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "-p", "runner-metrics", "--bin", "runner-metrics"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    eprintln!("building the runner-metrics binary: {command:?}");
    let status = command.status().context("running cargo")?;
    ensure!(status.success(), "cargo build of runner-metrics failed");
    let bin = dir.join("runner-metrics");
    ensure!(bin.is_file(), "{} was not built", bin.display());
    Ok(bin)
}

fn machine(args: &RunArgs) -> Result<()> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "- machine: {cpus} CPUs, {}, {:.1} GiB RAM, Linux {}",
        cpu_model(),
        mem as f64 / 1024.0 / 1024.0,
        kernel.trim()
    );
    println!("- tmpfs dir: {} ({})", args.tmpfs_dir.display(), filesystem_type(&args.tmpfs_dir));
    if !args.no_disk {
        println!(
            "- disk dir: {} ({}{})",
            args.disk_dir.display(),
            filesystem_type(&args.disk_dir),
            mount_options(&args.disk_dir)
        );
    }
    println!("- load average at the start: {}", load_average());
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The filesystem a directory is on, from `statfs`'s magic number.
fn filesystem_type(dir: &Path) -> &'static str {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return "unknown" };
    // SAFETY: an all-zero statfs is valid; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return "unknown";
    }
    match st.f_type as i64 {
        0x0102_1994 => "tmpfs",
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x794C_7630 => "overlayfs",
        _ => "other",
    }
}

/// `, mount options ...` of the mount holding `dir`, from /proc/mounts.
fn mount_options(dir: &Path) -> String {
    let Ok(dir) = dir.canonicalize() else { return String::new() };
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, _, options) = (f.next()?, f.next()?, f.next()?, f.next()?);
            dir.starts_with(point).then(|| (point.len(), options.to_owned()))
        })
        .max_by_key(|(len, _)| *len);
    best.map(|(_, o)| format!(", mounted {o}")).unwrap_or_default()
}

/// Cold starts of one build on an empty root.
fn startup(collect_bin: &Path, label: &str, dir: &Path, runs: usize) -> Result<()> {
    let base = dir.join(format!("runner-metrics-bench-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let empty = base.join("empty");
    let cache = base.join("cache");
    std::fs::create_dir_all(&empty)?;
    let start = |cache: Option<&Path>| -> Result<Measured> {
        let mut c = Command::new(collect_bin);
        c.arg("collect").arg("--storage").arg(&empty).arg("--flavor").arg("small");
        c.arg("--metrics-log").arg(base.join("cold.log")).arg("--json");
        match cache {
            Some(dir) => c.arg("--cache-dir").arg(dir),
            None => c.arg("--no-cache"),
        };
        contenders::measure(c, &base.join("cold.stderr"))
    };
    let first = start(Some(&cache))?;
    let warm: Vec<Measured> = (0..runs.max(1)).map(|_| start(Some(&cache))).collect::<Result<_>>()?;
    let uncached: Vec<Measured> = (0..runs.clamp(1, 3)).map(|_| start(None)).collect::<Result<_>>()?;
    let median = |m: &[Measured]| {
        let mut walls: Vec<Duration> = m.iter().map(|m| m.wall).collect();
        walls.sort();
        walls[walls.len() / 2]
    };
    let max_rss = |m: &[Measured]| m.iter().map(|m| m.peak_rss).max().unwrap_or(0);
    println!("## Cold start of `runner-metrics collect` ({label}) on an empty root ({})\n", filesystem_type(dir));
    println!("| case | wall (median) | runs | peak RSS MiB |");
    println!("|---|---:|---:|---:|");
    println!(
        "| first start, empty cache (compiles, writes the cache) | {:.1} ms | 1 | {:.1} |",
        ms(first.wall),
        mib(first.peak_rss)
    );
    println!(
        "| warm compiled-code cache | {:.1} ms | {} | {:.1} |",
        ms(median(&warm)),
        warm.len(),
        mib(max_rss(&warm))
    );
    println!(
        "| `--no-cache` (compiles every time) | {:.1} ms | {} | {:.1} |\n",
        ms(median(&uncached)),
        uncached.len(),
        mib(max_rss(&uncached))
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// The cost of one guest instance in this process (the library this bench
/// is linked with): a store, WASI context with the preopen, and the
/// instantiation from the pre-instance; averaged after a warm-up.
fn instance_cost(dir: &Path) -> Result<()> {
    let base = dir.join(format!("runner-metrics-bench-instance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty)?;
    let options = runner_metrics::PluginOptions { cache_dir: Some(base.join("cache")), ..Default::default() };
    drop(runner_metrics::Plugin::open(&options)?);
    let opened = Instant::now();
    let plugin = runner_metrics::Plugin::open(&options)?;
    let open_time = opened.elapsed();
    for _ in 0..20 {
        drop(plugin.instance(&empty)?);
    }
    let count = 500;
    let t = Instant::now();
    for _ in 0..count {
        drop(plugin.instance(&empty)?);
    }
    let per_instance = t.elapsed() / count;
    println!("- `Plugin::open` with a warm cache, in process: {:.2} ms", ms(open_time));
    println!(
        "- one guest instance (`Plugin::instance`, create + drop, mean of {count}): {:.1} µs\n",
        per_instance.as_secs_f64() * 1e6
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs every size on one filesystem, appending a row per size.
fn sizes_on(args: &RunArgs, lineup: &Lineup, base: &Path, fs_name: &str, rows: &mut Vec<Row>) -> Result<()> {
    // Warm each build's compiled-code cache so it measures a normal start.
    let empty = base.join("empty");
    std::fs::create_dir_all(&empty)?;
    let contenders = lineup.contenders();
    for &contender in contenders.iter().filter(|c| matches!(c, Contender::Sandboxed(_))) {
        let warm = lineup.command(contender, &empty, &base.join("warm.log"), base)?;
        contenders::measure(warm, &base.join("warm.stderr"))?;
    }

    for &n in &args.sizes {
        let runs = if n >= 100_000 { 1 } else { args.repeat.max(1) };
        let mut measured: Vec<Vec<Measured>> = vec![Vec::new(); contenders.len()];
        for run in 0..runs {
            let mut logs = vec![None; contenders.len()];
            // Rotate the order so no contender always runs first.
            for k in 0..contenders.len() {
                let i = (k + run) % contenders.len();
                let contender = contenders[i];
                let (m, log) = one_run(lineup, contender, n, args.seed, base)?;
                logs[i] = log;
                eprintln!(
                    "  {fs_name} N={n} run {}/{runs} {}: {:.3} s (CPU {:.3} s), {:.1} MiB",
                    run + 1,
                    lineup.label(contender),
                    m.wall.as_secs_f64(),
                    m.cpu.as_secs_f64(),
                    mib(m.peak_rss)
                );
                measured[i].push(m);
            }
            // Same root, same guest logic: the metrics logs must be identical.
            let native = contenders.iter().position(|&c| c == Contender::Native).and_then(|i| logs[i]);
            for (i, log) in logs.iter().enumerate().filter(|(_, log)| log.is_some()) {
                ensure!(*log == native, "N={n}: the metrics logs of {} and native differ", lineup.label(contenders[i]));
            }
        }
        let columns = contenders
            .iter()
            .zip(measured)
            .map(|(&contender, runs)| {
                let walls: Vec<Duration> = runs.iter().map(|m| m.wall).collect();
                let mut sorted = walls.clone();
                sorted.sort();
                let cell = Cell {
                    wall: sorted[sorted.len() / 2],
                    peak_rss: runs.iter().map(|m| m.peak_rss).max().unwrap_or(0),
                    runs: runs.len(),
                };
                Column { contender, tag: lineup.tag(contender), label: lineup.label(contender), cell, walls }
            })
            .collect();
        rows.push(Row { filesystem: fs_name.to_owned(), n, columns });
    }
    Ok(())
}

/// Counts every contender's system calls per storage on one generated root
/// (`strace -f -c`, all threads): on these VMs they are where the time goes.
fn syscalls(args: &RunArgs, lineup: &Lineup, dir: &Path) -> Result<()> {
    println!("## System calls per storage (N = {}, tmpfs, `strace -f -c`)\n", args.syscalls_n);
    if Command::new("strace").arg("-V").output().is_err() {
        println!("strace is not installed: not counted.\n");
        return Ok(());
    }
    let base = dir.join(format!("runner-metrics-syscalls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let fresh_root = || -> Result<PathBuf> {
        let root = base.join("root");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        generate::generate(&root, args.syscalls_n, args.seed)?;
        Ok(root)
    };
    let mut counts = Vec::new();
    for contender in lineup.contenders() {
        let mut root = fresh_root()?;
        if let Contender::Sandboxed(_) = contender {
            // A warm cache, as in the timed runs.
            std::fs::create_dir_all(base.join("empty"))?;
            lineup.command(contender, &base.join("empty"), &base.join("w.log"), &base)?.output()?;
            let inner = lineup.command(contender, &root, &base.join("metrics.log"), &base)?;
            boundary_calls(&inner, &lineup.label(contender), args)?;
            root = fresh_root()?;
        }
        let out = base.join("strace.txt");
        let inner = lineup.command(contender, &root, &base.join("metrics.log"), &base)?;
        let mut traced = Command::new("strace");
        traced.args(["-f", "-c", "-o"]).arg(&out).arg(inner.get_program()).args(inner.get_args());
        let status = traced.output()?.status;
        ensure!(status.success() || contender != Contender::Floor, "strace of {} failed", lineup.label(contender));
        let text = std::fs::read_to_string(&out)?;
        // The last line: "100.00 <seconds> <usecs/call> <calls> [<errors>] total".
        let calls = text
            .lines()
            .rev()
            .find(|l| l.trim_end().ends_with("total"))
            .and_then(|l| l.split_whitespace().nth(3).and_then(|w| w.parse::<u64>().ok()))
            .context("no total line in the strace summary")?;
        counts.push((contender, calls as f64 / args.syscalls_n as f64));
        let _ = std::fs::remove_dir_all(&root);
    }
    let floor = counts.iter().find(|(c, _)| *c == Contender::Floor).map(|(_, n)| *n).unwrap_or(f64::NAN);
    println!("| contender | syscalls per storage | / floor |\n| --- | ---: | ---: |");
    for (contender, per) in &counts {
        println!("| {} | {per:.1} | {:.2}x |", lineup.label(*contender), per / floor);
    }
    println!();
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// The calls across each boundary of the sandboxed collect, per storage
/// (`RUNNER_METRICS_COUNT_CALLS=1`, host/src/run/collect.rs): one untraced run.
fn boundary_calls(command: &Command, label: &str, args: &RunArgs) -> Result<()> {
    let mut counted = Command::new(command.get_program());
    counted.args(command.get_args()).env("RUNNER_METRICS_COUNT_CALLS", "1");
    let output = counted.output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|l| l.starts_with("{\"calls\"")).context("no call counts on stderr")?;
    let value: serde_json::Value = serde_json::from_str(line)?;
    let calls = value.get("calls").and_then(|c| c.as_object()).context("call counts are not an object")?;
    println!("Calls across the boundaries of the sandboxed collect ({label}), per storage:\n");
    println!("| boundary | calls in the run | per storage |\n| --- | ---: | ---: |");
    for (key, count) in calls {
        let count = count.as_f64().unwrap_or(f64::NAN);
        println!("| {key} | {count} | {:.2} |", count / args.syscalls_n as f64);
    }
    println!();
    Ok(())
}

/// Generates a fresh root, runs one contender on it, checks what it did.
/// Returns the measurement and, for the collect contenders, a digest of the
/// metrics log.
fn one_run(lineup: &Lineup, contender: Contender, n: usize, seed: u64, base: &Path) -> Result<(Measured, Option<u64>)> {
    let root = base.join("root");
    let log = base.join("metrics.log");
    let stderr = base.join("contender.stderr");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_file(&log);
    std::fs::create_dir_all(&root)?;
    let generated = generate::generate(&root, n, seed)?;
    // Written data reaches the disk before the clock starts.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let measured = contenders::measure(lineup.command(contender, &root, &log, base)?, &stderr)?;
    let mut log_digest = None;
    match contender {
        Contender::Floor => {
            let left = std::fs::read_dir(&root)?.count();
            ensure!(left == 0, "the floor left {left} entries");
        }
        Contender::Sandboxed(_) | Contender::Native => {
            let s = contenders::summary_from_stderr(&stderr)?;
            if (s.extracted, s.no_data, s.quarantined, s.failed)
                != (generated.extracted, generated.no_data, generated.quarantined, 0)
            {
                bail!("{}: summary {s:?} does not match the generated root {generated:?}", lineup.label(contender));
            }
            // Only `.quarantine/` (and an empty `.deleting/`) may be left.
            let left: Vec<_> = std::fs::read_dir(&root)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".quarantine" && n != ".deleting")
                .collect();
            ensure!(left.is_empty(), "{}: left {} storages", lineup.label(contender), left.len());
            let text = std::fs::read(&log)?;
            let lines = text.iter().filter(|&&b| b == b'\n').count();
            ensure!(
                lines == s.lines_written,
                "{}: {lines} lines in the log, summary says {}",
                lineup.label(contender),
                s.lines_written
            );
            log_digest = Some(
                text.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    Ok((measured, log_digest))
}
