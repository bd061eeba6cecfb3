//! Builds the guest component for `wasm32-wasip2` so the host can embed it
//! and `runner-metrics` stays one self-contained executable.
//!
//! The guest is built by a nested `cargo` with its own target directory
//! (`target/guest-component`), so it neither deadlocks on the outer build's
//! lock nor inherits the host's flags. Set `RUNNER_METRICS_PREBUILT_COMPONENT` to the
//! path of a prebuilt component to skip the nested build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_PACKAGE: &str = "runner-metrics-guest";
const GUEST_ARTIFACT: &str = "runner_metrics_guest.wasm";
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("host/ lives inside the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let embedded = out_dir.join(GUEST_ARTIFACT);

    println!("cargo:rerun-if-env-changed=RUNNER_METRICS_PREBUILT_COMPONENT");
    for watched in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }

    let built = match env::var_os("RUNNER_METRICS_PREBUILT_COMPONENT") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => build_guest(&workspace),
    };
    std::fs::copy(&built, &embedded)
        .unwrap_or_else(|e| panic!("cannot copy the guest component {}: {e}", built.display()));
}

fn build_guest(workspace: &Path) -> PathBuf {
    let target_dir = workspace.join("target").join("guest-component");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "--profile", "component", "--package", GUEST_PACKAGE, "--target", TARGET, "--lib"])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host, not the guest.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited = key.starts_with("CARGO_")
            && !matches!(key, "CARGO_HOME" | "CARGO_NET_OFFLINE" | "CARGO_REGISTRIES_CRATES_IO_PROTOCOL");
        if inherited
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            )
        {
            command.env_remove(key);
        }
    }
    let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build the guest component: {e}"));
    if !status.success() {
        panic!(
            "building the guest component failed ({status}); is the `{TARGET}` target installed? \
             (`rustup target add {TARGET}`; rust-toolchain.toml lists it)"
        );
    }
    target_dir.join(TARGET).join("component").join(GUEST_ARTIFACT)
}
