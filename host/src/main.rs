//! The `runner-metrics` command line.

mod cli;
mod cli_ingest;
mod cli_lifecycle;
mod demo;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
