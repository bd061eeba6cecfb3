//! The keeper: the books of one collect, and the re-checks of everything
//! the plugin claims, in a component of their own (world `keeper` of
//! `wit/0.4.0`).
//!
//! The plugin parses hostile files, so none of its answers is trusted. Each
//! host (Rust, Python, Node) instantiates this component once per run,
//! beside the plugin, and passes every import call of the plugin through
//! [`books::Books`] before acting on it; it also asks it which call to make
//! next (collect, or recover after a trap). So the checks and the trap
//! recovery are written once, here, and every host is a thin loop. The
//! checks parse untrusted lines (`serde_json`), so they too run sandboxed.

pub mod bindings;
pub mod books;
pub mod check;

#[cfg(target_arch = "wasm32")]
mod component;
