//! The `runner-metrics` command line.

mod cli;
mod cli_lifecycle;
mod demo;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_library_backtraces();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner-metrics: error: {}", cli::plain(&format!("{error:#}"), None));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

/// With `RUST_BACKTRACE=1` set (common on developer machines), every error
/// value wasmtime-wasi creates captures a full stack trace, and the guest's
/// expected errors (a missing optional file, a free name probed) cost about
/// 8% of a run's CPU time in stack unwinding. We never print those traces
/// (`{:#}` omits them), so unless the user asked for library backtraces
/// explicitly, turn them off; panics still honour `RUST_BACKTRACE`. Called
/// first, before any thread exists, so changing the environment is sound.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}
