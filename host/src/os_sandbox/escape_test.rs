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
    let attempts = serde_json::json!({
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
