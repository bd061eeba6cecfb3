//! `runner-metrics-escape-test`: the `runner-metrics` CLI built with the
//! `escape-test` feature (`runner_metrics::os_sandbox::escape_test`): once
//! confined, it tries what an escaped guest would. Tests only; never
//! shipped (the release build does not enable the feature).

fn main() -> std::process::ExitCode {
    runner_metrics_cli::main()
}
