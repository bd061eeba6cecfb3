//! Test-only (feature `escape-test`, the `runner-metrics-escape-test`
//! binary): once confined, the CLI tries what an escaped guest would and
//! prints one JSON line `{"escape_attempts": {...}}` on stderr, each
//! attempt `refused: <error>` or `ALLOWED`. The attempts' targets come
//! from `RUNNER_METRICS_ESCAPE_TEST` (JSON), so a test points them at files
//! and a port of its own.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Deserialize)]
struct Targets {
    /// A file beside the storage root, to read.
    outside: PathBuf,
    /// A new file next to the metrics log, to create.
    beside_log: PathBuf,
    /// A second "token" file, to read.
    token: PathBuf,
    /// A program to run (a copy the test made in its own directory).
    program: PathBuf,
    /// A TCP port on 127.0.0.1 the test listens on.
    tcp_port: u16,
    /// The compiled-code cache the run loaded its components from, and
    /// its entries (named by the test, which filled the cache: a listing
    /// from inside the walls would find nothing to try).
    cache_dir: PathBuf,
    cache_entries: Vec<PathBuf>,
    /// Files beneath the storage root that others trust, to open for
    /// writing: a runner's metrics file, the image of a quarantined
    /// bounded storage, an entry of the ingest ledger.
    runner_file: PathBuf,
    image: PathBuf,
    ledger_entry: PathBuf,
    /// The root's `.writing/`, where the run's staging directory is: the
    /// image is moved into it, to be written there.
    writing_dir: PathBuf,
}

/// Runs the attempts when the environment asks for them.
pub fn run_from_env() -> Option<serde_json::Value> {
    let text = std::env::var("RUNNER_METRICS_ESCAPE_TEST").ok()?;
    let targets: Targets = match serde_json::from_str(&text) {
        Ok(targets) => targets,
        Err(e) => return Some(serde_json::json!({"escape_attempts": {"error": e.to_string()}})),
    };
    let verdict = |result: std::io::Result<()>| match result {
        Ok(()) => "ALLOWED".to_owned(),
        Err(e) => format!("refused: {e}"),
    };
    let socket = |family: i32, kind: i32, protocol: i32| {
        // SAFETY: plain integer arguments; the descriptor is closed at once.
        let fd = unsafe { libc::socket(family, kind, protocol) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor this closure owns.
        unsafe { libc::close(fd) };
        Ok(())
    };
    let syscall = |result: libc::c_long| {
        if result < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    // Every entry of the cache opened for writing, a new file made there
    // and renamed over one, the key read: each would hand a later run code
    // of the attacker's choosing.
    let entries = &targets.cache_entries;
    let no_entry = || std::io::Error::other("the test named no cache entry to try");
    let write_entries = || -> std::io::Result<()> {
        if entries.is_empty() {
            return Err(no_entry());
        }
        for entry in entries {
            fs::OpenOptions::new().append(true).open(entry)?;
        }
        Ok(())
    };
    let replace_entry = || -> std::io::Result<()> {
        let first = entries.first().ok_or_else(no_entry)?;
        let planted = targets.cache_dir.join("planted.tmp");
        fs::write(&planted, b"planted code")?;
        fs::rename(&planted, first)
    };
    let open_for_writing = |path: &PathBuf| fs::OpenOptions::new().append(true).open(path).map(drop);
    let image_into_staging = || -> std::io::Result<()> {
        let staging = fs::read_dir(&targets.writing_dir)?
            .next()
            .ok_or_else(|| std::io::Error::other("no staging directory to move the image into"))??;
        let moved = staging.path().join("image");
        fs::rename(&targets.image, &moved)?;
        open_for_writing(&moved)
    };
    let attempts = serde_json::json!({
        "io_uring_setup": verdict(syscall({
            let mut params = [0u8; 120];
            // SAFETY: io_uring_setup(4, params): a zeroed params block of its size.
            unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) }
        })),
        // SAFETY: getpid through its x32 number (bit 30); no arguments.
        "x32_call": verdict(syscall(unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) })),
        // SAFETY: personality(0xffffffff) only asks; not on the allowlist.
        "outside_allowlist": verdict(syscall(unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) })),
        "fork": verdict({
            // SAFETY: a child, should one be made, ends at once.
            match unsafe { libc::fork() } {
                0 => unsafe { libc::_exit(0) },
                pid if pid > 0 => {
                    // SAFETY: reaping the child just made.
                    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                    Ok(())
                }
                _ => Err(std::io::Error::last_os_error()),
            }
        }),
        "write_cache_entry": verdict(write_entries()),
        "replace_cache_entry": verdict(replace_entry()),
        "read_cache_key": verdict(fs::read(targets.cache_dir.join(crate::plugin::cache::KEY_FILE)).map(drop)),
        "write_runner_file": verdict(open_for_writing(&targets.runner_file)),
        "write_image": verdict(open_for_writing(&targets.image)),
        "write_ledger_entry": verdict(open_for_writing(&targets.ledger_entry)),
        "image_into_staging": verdict(image_into_staging()),
        "read_outside": verdict(fs::read(&targets.outside).map(drop)),
        "write_beside_log": verdict(
            fs::OpenOptions::new().write(true).create_new(true).open(&targets.beside_log).and_then(|mut f| f.write_all(b"x"))
        ),
        "read_token": verdict(fs::read(&targets.token).map(drop)),
        "execve": verdict(std::process::Command::new(&targets.program).arg("--version").output().map(drop)),
        "tcp_connect": verdict(std::net::TcpStream::connect(("127.0.0.1", targets.tcp_port)).map(drop)),
        "netlink_socket": verdict(socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)),
        "unix_socket": verdict(socket(libc::AF_UNIX, libc::SOCK_STREAM, 0)),
    });
    Some(serde_json::json!({ "escape_attempts": attempts }))
}
