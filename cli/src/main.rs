//! The `runner-metrics` command line.

fn main() -> std::process::ExitCode {
    runner_metrics_cli::main()
}
