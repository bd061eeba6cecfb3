//! `main`: the subcommand run, and its errors turned into exit statuses.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use runner_metrics::ingest::ledger::AlreadyIngested;
use runner_metrics::lock::LockError;

use crate::args::*;
use crate::messages::*;
use crate::run::*;

/// The whole command: `main` of `runner-metrics` (and of the test-only
/// `runner-metrics-escape-test`, `src/bin/escape_test.rs`).
pub fn main() -> ExitCode {
    quiet_library_backtraces();
    let args = <Cli as clap::Parser>::parse();
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner-metrics: error: {}", plain_error(&error));
            ExitCode::from(EXIT_ERROR)
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
pub(crate) fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

/// Runs a subcommand. A root whose lock another run holds is exit status
/// [`EXIT_BUSY`], with the lock file and the holder's pid on stderr.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match run_command(cli) {
        Err(error) => match error.downcast_ref::<LockError>() {
            Some(busy @ LockError::Busy { .. }) => {
                eprintln!("runner-metrics: {busy} (--wait SECONDS waits longer)");
                Ok(ExitCode::from(EXIT_BUSY))
            }
            _ => match error.downcast_ref::<AlreadyIngested>() {
                Some(already) => {
                    eprintln!("runner-metrics: {already}");
                    Ok(ExitCode::from(EXIT_ALREADY_INGESTED))
                }
                None => Err(error),
            },
        },
        done => done,
    }
}

pub(crate) fn run_command(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Collect(args) => run_collect(&cli.sandbox, args),
        Command::Ingest(args) => crate::ingest::run(&cli.sandbox, args),
        Command::Extract(args) => run_extract(&cli.sandbox, args),
        Command::Quarantine(QuarantineCommand::List { storage, json }) => {
            run_quarantine_list(&cli.sandbox, &storage, json)
        }
        Command::Quarantine(QuarantineCommand::More(command)) => crate::lifecycle::run_quarantine(command),
        Command::Storage(command) => crate::lifecycle::run_storage(command),
        Command::Hooks(command) => crate::lifecycle::run_hooks(command),
        Command::Demo(args) => crate::demo::run(&cli.sandbox.plugin()?, args.keep_files),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "runner-metrics", &mut script);
            write_stdout(&script)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page).context("rendering the man page")?;
            write_stdout(&page)
        }
        Command::Component { output, kind } => {
            let bytes = match kind {
                ComponentKind::Plugin => runner_metrics::plugin::EMBEDDED_COMPONENT,
                ComponentKind::Keeper => runner_metrics::plugin::EMBEDDED_KEEPER,
                ComponentKind::Command => runner_metrics::plugin::EMBEDDED_COMMAND,
            };
            std::fs::write(&output, bytes).with_context(|| format!("writing the component to {}", output.display()))?;
            eprintln!("wrote {} ({} bytes)", output.display(), bytes.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes generated text on stdout, saying so when that fails (a closed pipe).
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}
