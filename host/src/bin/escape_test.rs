//! `runner-metrics-escape-test`: the `runner-metrics` CLI built with the
//! `escape-test` feature (`runner_metrics::os_sandbox::escape_test`): once
//! confined, it tries what an escaped guest would. Tests only; never
//! shipped (the release build does not enable the feature).

#[path = "../cli.rs"]
mod cli;
#[path = "../cli_ingest.rs"]
mod cli_ingest;
#[path = "../cli_lifecycle.rs"]
mod cli_lifecycle;
#[path = "../demo.rs"]
mod demo;

fn main() -> std::process::ExitCode {
    cli::main()
}
