//! Builds the four components for `wasm32-wasip2` so the host can embed
//! them and `runner-metrics` stays one self-contained executable: the
//! plugin (world `plugin`, which the host loads where wasmtime-wasi serves
//! the filesystem, and which `runner-metrics component --kind plugin`
//! writes for the other hosts), its fast build (world `plugin-fast`,
//! feature `fast-fs`, which the host loads over its confined
//! filesystem), the keeper (world `keeper`, crate `keeper/`, which the host
//! runs beside the plugin) and the command component (world `command`,
//! feature `command`, which `runner-metrics component --kind command`
//! writes for `wasmtime run`).
//!
//! Each is built by a nested `cargo` with its own target directory
//! (`target/guest-component`, `target/guest-fast`, `target/guest-keeper`,
//! `target/guest-command`),
//! so it neither deadlocks on the outer build's lock nor inherits the host's
//! flags, and the feature sets do not rebuild each other. Set
//! `RUNNER_METRICS_PREBUILT_COMPONENT`, `..._PREBUILT_FAST`,
//! `..._PREBUILT_KEEPER` and `..._PREBUILT_COMMAND` to the paths of prebuilt components to skip the
//! nested builds.
//!
//! `rust-toolchain.toml` lists the `wasm32-wasip2` target, but rustup adds
//! listed targets only when it installs the toolchain itself: a toolchain
//! that was already there (or `RUSTUP_AUTO_INSTALL=0`) lacks it, and the
//! nested build would fail with "can't find crate for `core`" after the
//! whole of wasmtime has compiled. So before the nested build this looks for
//! the target's standard library in the sysroot of the `rustc` cargo uses,
//! and when it is missing runs `rustup target add wasm32-wasip2` (with a
//! warning), or stops at once with the command to run.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const CORE_PACKAGE: &str = "runner-metrics-core";
const PLUGIN_ARTIFACT: &str = "runner_metrics_plugin.wasm";
const FAST_ARTIFACT: &str = "runner_metrics_plugin_fast.wasm";
const KEEPER_PACKAGE: &str = "runner-metrics-keeper";
const KEEPER_ARTIFACT: &str = "runner_metrics_keeper.wasm";
const COMMAND_ARTIFACT: &str = "runner_metrics_command.wasm";
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().expect("host/ lives inside the workspace").to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    println!("cargo:rerun-if-env-changed=RUNNER_METRICS_PREBUILT_COMPONENT");
    println!("cargo:rerun-if-env-changed=RUNNER_METRICS_PREBUILT_FAST");
    println!("cargo:rerun-if-env-changed=RUNNER_METRICS_PREBUILT_KEEPER");
    println!("cargo:rerun-if-env-changed=RUNNER_METRICS_PREBUILT_COMMAND");
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    for watched in ["core/src", "core/Cargo.toml", "keeper/src", "keeper/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }

    let prebuilt = |var: &str| env::var_os(var).map(PathBuf::from);
    let wanted = [
        ("RUNNER_METRICS_PREBUILT_COMPONENT", CORE_PACKAGE, "guest-component", None, PLUGIN_ARTIFACT),
        ("RUNNER_METRICS_PREBUILT_FAST", CORE_PACKAGE, "guest-fast", Some("fast-fs"), FAST_ARTIFACT),
        ("RUNNER_METRICS_PREBUILT_KEEPER", KEEPER_PACKAGE, "keeper-component", None, KEEPER_ARTIFACT),
        ("RUNNER_METRICS_PREBUILT_COMMAND", CORE_PACKAGE, "guest-command", Some("command"), COMMAND_ARTIFACT),
    ];
    if wanted.iter().any(|(var, ..)| prebuilt(var).is_none()) {
        ensure_target_installed(&workspace);
    }
    for (var, package, dir, features, artifact) in wanted {
        let built = prebuilt(var).unwrap_or_else(|| build_component(&workspace, package, dir, features));
        std::fs::copy(&built, out_dir.join(artifact))
            .unwrap_or_else(|e| panic!("cannot copy the component {}: {e}", built.display()));
    }
}

/// The directory of the target's standard library in `rustc`'s sysroot,
/// whether it exists or not; an error if rustc cannot say where its sysroot is.
fn target_libdir(rustc: &std::ffi::OsStr, workspace: &Path) -> Result<PathBuf, String> {
    let output = Command::new(rustc)
        .current_dir(workspace)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run `{} --print sysroot`: {e}", rustc.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed ({}): {}",
            rustc.to_string_lossy(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(Path::new(&sysroot).join("lib").join("rustlib").join(TARGET).join("lib"))
}

/// Makes sure the `wasm32-wasip2` standard library is installed for the
/// toolchain cargo builds with, adding it through rustup if it is not.
fn ensure_target_installed(workspace: &Path) {
    // Cargo gives build scripts the rustc it uses; the nested cargo inherits
    // the same RUSTC (and RUSTUP_TOOLCHAIN), so this is the sysroot it uses.
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = match target_libdir(&rustc, workspace) {
        Ok(libdir) => libdir,
        Err(e) => {
            // Leave the verdict to the nested build; say why we could not check.
            println!("cargo:warning=cannot check for the {TARGET} target: {e}");
            return;
        }
    };
    if libdir.is_dir() {
        return;
    }
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok().filter(|t| !t.is_empty());
    let manual = match &toolchain {
        Some(toolchain) => format!("rustup target add {TARGET} --toolchain {toolchain}"),
        None => format!("rustup target add {TARGET}"),
    };
    println!(
        "cargo:warning=the {TARGET} target (needed to build the sandboxed guest) is not installed \
         ({} is missing); running `{manual}`",
        libdir.display()
    );
    let mut rustup = Command::new("rustup");
    rustup.current_dir(workspace).args(["target", "add", TARGET]).env("RUST_BACKTRACE", "0");
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    let outcome = match rustup.output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => {
            Err(format!("it failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
        }
        Err(e) => Err(format!("rustup could not be run: {e}")),
    };
    let installed = target_libdir(&rustc, workspace).map(|dir| dir.is_dir()).unwrap_or(false);
    match (outcome, installed) {
        (Ok(()), true) => println!("cargo:warning=installed the {TARGET} target"),
        (outcome, _) => {
            let why = outcome.err().unwrap_or_else(|| format!("{} is still missing afterwards", libdir.display()));
            panic!(
                "\n\nThe {TARGET} target is not installed for this toolchain, and adding it failed: {why}\n\n\
                 Install it with:\n\n    {manual}\n\n\
                 then build again (or set RUNNER_METRICS_PREBUILT_COMPONENT to a prebuilt component).\n"
            );
        }
    }
}

/// Builds `package` with `features` in `target/<dir>`; returns the component.
fn build_component(workspace: &Path, package: &str, dir: &str, features: Option<&str>) -> PathBuf {
    let target_dir = workspace.join("target").join(dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["rustc", "--profile", "component", "--package", package, "--target", TARGET, "--lib"])
        .args(["--crate-type", "cdylib"])
        .arg("--target-dir")
        .arg(&target_dir);
    if let Some(features) = features {
        command.args(["--features", features]);
    }
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
    let status = command.status().unwrap_or_else(|e| panic!("cannot run cargo to build the component {package}: {e}"));
    if !status.success() {
        panic!(
            "building the component {package} failed ({status}); is the `{TARGET}` target installed? \
             (`rustup target add {TARGET}`; rust-toolchain.toml lists it)"
        );
    }
    target_dir.join(TARGET).join("component").join(format!("{}.wasm", package.replace('-', "_")))
}
