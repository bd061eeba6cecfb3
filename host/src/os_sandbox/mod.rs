//! The second wall (issue 14): the host process confined by the kernel,
//! so that a bug in wasmtime, Cranelift or our host code does not hand a
//! hostile runner everything the process can do.
//!
//! [`confine`] applies, to the calling thread and every thread started
//! after it (call it before any other thread exists):
//!
//! * **Landlock** ([`landlock`](self::landlock)): beneath the storage root,
//!   reading, making and removing files and directories and moving them,
//!   but opening for writing only the run's fresh staging directory
//!   (`storage::staging`, where the guest's new files are made): no
//!   runner's file, no image of a bounded storage, no ledger entry can be
//!   rewritten; writing in the directories given (the Prometheus
//!   textfile's), and reading the few system files a GitHub lookup needs;
//!   no execution of any file; no TCP connect but to the GitHub API's port,
//!   no TCP bind; no abstract UNIX socket or signal outside the process.
//!   Not the compiled-code cache: both components are loaded from it (their
//!   MACs checked) or compiled into it before (`plugin::cache`), so nothing
//!   a confined run writes is ever run by a later one.
//! * **seccomp** ([`seccomp`](self::seccomp)): an allowlist of the calls a
//!   run makes; everything else (`execve`, a new process, `io_uring`,
//!   mounting, `bpf`, x32 numbers, whatever the next kernel adds) is
//!   refused, and every socket but IPv4/IPv6 (none at all without GitHub
//!   lookups).
//!
//! Files the run needs and nothing else may touch (the metrics log, the
//! token file, the root's lock) are opened before: an open descriptor
//! stays usable. Bounded storages are unmounted by a helper process forked
//! before confinement ([`unmount_helper`]), which takes nothing but names.
//!
//! Where the kernel lacks a layer, or a newer Landlock ABI, [`confine`]
//! applies what it has and says which layers are active ([`Confinement`]),
//! for the CLI to print once and put in `--json`.

pub mod landlock;
pub mod seccomp;
pub use crate::storage::bounded::unmount_helper;

#[cfg(feature = "escape-test")]
pub mod escape_test;

use std::path::PathBuf;
use std::sync::Arc;

use crate::storage::staging::Staging;

use serde::Serialize;

/// What a confined run may still do.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// The storage root: read, create and remove files and directories,
    /// rename across them; no execution, no device, FIFO, socket or
    /// symlink made, and no file opened for writing (but in `staging`).
    pub storage_root: PathBuf,
    /// The run's staging directory beneath the root: the one place there
    /// where a file may be opened for writing.
    pub staging: Option<Arc<Staging>>,
    /// Files beneath the root may be opened for writing: only where the
    /// guest's filesystem is wasmtime-wasi's fallback, which makes new
    /// files in place and cannot use a staging directory.
    pub root_files_writable: bool,
    /// Directories whose files are read, created, written and replaced
    /// (the Prometheus textfile's directory).
    pub write_dirs: Vec<PathBuf>,
    /// Files and directories only read (those that do not exist are left
    /// out).
    pub read_paths: Vec<PathBuf>,
    /// TCP ports that may be connected to (the GitHub API's); with none,
    /// no TCP connection and no IP socket at all.
    pub tcp_connect: Vec<u16>,
}

/// Which layers to apply (all, unless turned off for debugging or to
/// simulate a kernel without one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    pub landlock: bool,
    pub seccomp: bool,
}

impl Default for Layers {
    fn default() -> Self {
        Self { landlock: true, seccomp: true }
    }
}

/// Which layers are active, in words: what the CLI prints once and puts
/// in `--json` (`os_sandbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confinement {
    pub landlock: String,
    pub seccomp: String,
    /// Whether every layer asked for is fully in force.
    pub complete: bool,
}

impl std::fmt::Display for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "os sandbox: landlock {}; seccomp {}", self.landlock, self.seccomp)
    }
}

/// Confines the calling thread and every thread it starts afterwards.
/// Landlock goes first: the seccomp filter then also refuses the calls a
/// compromised process could use to undo it (`unshare`, `setns`...).
pub fn confine(grants: &Grants, layers: Layers) -> anyhow::Result<Confinement> {
    // A layer the kernel (or a seccomp filter around us, such as a systemd
    // unit's SystemCallFilter=) refuses is reported, not fatal: the run
    // goes on with the walls it has, and says so.
    // Landlock confines the calling thread and those it starts later, not
    // threads already running: refuse to pretend otherwise.
    let threads = std::fs::read_dir("/proc/self/task").map_or(1, Iterator::count);
    let (landlock, landlock_full) = if layers.landlock && threads > 1 {
        (format!("not applied ({threads} threads already run; it would confine only this one)"), false)
    } else if layers.landlock {
        landlock::restrict(grants).unwrap_or_else(|e| (format!("unavailable ({e:#})"), false))
    } else {
        ("off (turned off by an option)".to_owned(), false)
    };
    let (seccomp, seccomp_on) = if layers.seccomp {
        match seccomp::restrict(!grants.tcp_connect.is_empty()) {
            Ok(status) => (status, true),
            Err(e) => (format!("unavailable ({e:#})"), false),
        }
    } else {
        ("off (turned off by an option)".to_owned(), false)
    };
    Ok(Confinement { landlock, seccomp, complete: landlock_full && seccomp_on })
}

/// No layer at all (`--no-os-sandbox`).
pub fn unconfined() -> Confinement {
    let off = "off (--no-os-sandbox)".to_owned();
    Confinement { landlock: off.clone(), seccomp: off, complete: false }
}

impl Grants {
    /// What a walk over `storage_root` needs (`storage delete`,
    /// `quarantine purge`): deleting and moving beneath it, and a fresh
    /// staging directory (`storage::staging`, installed for the run)
    /// for the files it makes (the reason file of a storage quarantined as
    /// undeletable). Bounded storages are mounted again first (under the
    /// root's lock, which the caller holds unless `keep`, a dry run that
    /// writes nothing), and, if the root has any, the unmount helper is
    /// forked and the system files the mount checks read are granted: so
    /// call it while the process has one thread, before [`confine`].
    pub fn for_walk(storage_root: &std::path::Path, keep: bool) -> anyhow::Result<Self> {
        use crate::storage::bounded;
        let mut grants = Self { storage_root: storage_root.to_owned(), ..Self::default() };
        let (found, failed) = bounded::reattach_all(storage_root, keep)?;
        if !found.is_empty() || !failed.is_empty() {
            if !keep {
                unmount_helper::start(storage_root)?;
            }
            // `cannot_move_mounts` and `mount_of`: capabilities, mount
            // table, and the loop devices' backing files.
            grants.read_paths.extend(["/proc/self", "/sys/devices/virtual/block"].map(PathBuf::from));
        }
        if !keep {
            grants.staging = Some(Staging::create(storage_root)?.install());
        }
        Ok(grants)
    }

    /// What a collect, extract or ingest over `storage_root` needs: a
    /// walk's grants, the guest's new files (reason files, pulled runners'
    /// files) made in the staging directory by the confined filesystem.
    /// wasmtime-wasi's fallback (`confined_fs == false`) makes them in
    /// place, so there every file beneath the root stays writable (said in
    /// the Landlock status).
    pub fn for_collect(storage_root: &std::path::Path, keep: bool, confined_fs: bool) -> anyhow::Result<Self> {
        let mut grants = Self::for_walk(storage_root, keep)?;
        grants.root_files_writable = !keep && !confined_fs;
        Ok(grants)
    }

    /// Adds what GitHub lookups at `api_url` need: a TCP connection to its
    /// port (and to a proxy's, from the environment), and reading the
    /// resolver's and TLS's system files (the C library's name service
    /// modules included).
    pub fn with_github(mut self, api_url: &str) -> Self {
        self.tcp_connect.push(url_port(api_url));
        // The client goes through the proxy the environment names, if any
        // (as `ureq::Proxy::try_from_env` reads it).
        for var in ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            if let Some(proxy) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                self.tcp_connect.push(url_port(&proxy));
            }
        }
        self.read_paths.extend(
            [
                "/etc/resolv.conf",
                "/etc/hosts",
                "/etc/nsswitch.conf",
                "/etc/host.conf",
                "/etc/gai.conf",
                "/etc/ssl/certs",
                "/etc/ca-certificates",
                "/usr/share/ca-certificates",
                "/lib",
                "/lib64",
                "/usr/lib",
                "/usr/lib64",
            ]
            .map(PathBuf::from),
        );
        self
    }
}

/// The TCP port of a `scheme://host[:port]/...` URL (the API's, or a
/// proxy's of any scheme; 443 when it cannot be read: the client would
/// refuse such a URL anyway).
fn url_port(url: &str) -> u16 {
    crate::github::Origin::parse(url).map_or(443, |origin| origin.port)
}

#[cfg(test)]
mod tests {
    use super::url_port;

    #[test]
    fn ports_of_api_urls() {
        assert_eq!(url_port("https://api.github.com"), 443);
        assert_eq!(url_port("https://ghe.example.com/api/v3"), 443);
        assert_eq!(url_port("http://127.0.0.1:8123/"), 8123);
        assert_eq!(url_port("http://localhost/x"), 80);
        assert_eq!(url_port("https://[::1]:9443/api"), 9443);
        assert_eq!(url_port("https://[::1]/api"), 443);
        assert_eq!(url_port("https://user@host:444"), 444);
        // A proxy of another scheme keeps its port.
        assert_eq!(url_port("socks5://proxy.local:1080"), 1080);
    }
}
