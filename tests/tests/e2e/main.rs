//! The end-to-end tests: the real component, real temporary storage roots,
//! the `runner-metrics` binary. One test binary of modules (ripgrep's
//! layout), so wasmtime is linked once rather than once per file; shared
//! fixtures and helpers are in `tests/src/lib.rs` (`runner_metrics_e2e`).
//!
//! `cargo test -p runner-metrics-e2e MODULE::` runs one module, e.g.
//! `threats::` or `hostile_guest::`.

mod bounded;
mod cli;
mod code_cache;
mod concurrency;
mod crash;
mod durability;
mod events;
mod full_life;
mod github;
mod hooks;
mod hostile_guest;
mod ingest;
mod mounts;
mod os_sandbox;
mod outcomes;
mod prometheus;
mod prometheus_server;
mod schema;
mod storage;
mod threats;
