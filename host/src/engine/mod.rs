//! The middle floor: the WebAssembly runtime. [`plugin`] loads the
//! components once (through the MAC-checked code cache); [`sandbox`] is one
//! guest instance with its [`limits`]; [`imports`](mod@imports) are what
//! the guest calls, each handed to the run's [`keeper`] (a component of its
//! own that re-checks every claim); [`confined_fs`] serves the guest's
//! filesystem; [`bindings`] are the WIT's generated types. Uses `storage`
//! and `sinks` beneath it.

pub mod bindings;
pub mod confined_fs;
pub(crate) mod imports;
pub mod instance;
pub mod jobs;
pub mod keeper;
pub mod limits;
pub mod plugin;
