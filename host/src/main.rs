//! The `runner-metrics` command line.

mod cli;
mod demo;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("runner-metrics: error: {error:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
