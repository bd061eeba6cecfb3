//! The `runner-metrics` command line over the `runner_metrics` library:
//! the arguments with their examples, one module per group of
//! subcommands, the live progress line and plain failure messages. Both
//! binaries (`runner-metrics` and the test-only `runner-metrics-escape-test`)
//! are [`main`].

mod args;
mod demo;
mod dispatch;
mod ingest;
mod lifecycle;
mod messages;
mod progress;
mod run;

pub use dispatch::main;
