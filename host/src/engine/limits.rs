//! Resource limits for one guest instance, and the epoch ticker that
//! enforces time limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How often the engine's epoch advances; the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Limits applied to every guest instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory one instance may grow to; growing past it traps.
    pub memory_bytes: usize,
    /// Wall-clock budget of the guest on one storage: restarted whenever it
    /// begins a storage or returns from a host call (and for each call of
    /// the fine-grained exports).
    pub call_timeout: Duration,
    /// Captured guest stderr (panic messages) kept per instance.
    pub stderr_bytes: usize,
    /// WASI handles (open files, directories, streams) one instance may
    /// hold at once; past it the guest's call fails, so a compromised guest
    /// cannot exhaust the host's file descriptors.
    pub max_handles: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            call_timeout: Duration::from_secs(10),
            stderr_bytes: 4096,
            max_handles: 256,
        }
    }
}

impl Limits {
    /// The call timeout in epoch ticks (at least one).
    pub fn deadline_ticks(&self) -> u64 {
        let ticks = self.call_timeout.as_millis() / EPOCH_TICK.as_millis();
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// Guest calls in flight, watched for host calls that block (a FIFO
/// swapped in between the guest's `lstat` and its `open`). Epoch deadlines
/// only fire while wasm code runs; a host call stuck in `open(2)` would
/// never return to wasm, so the ticker breaks such stalls itself. Only the
/// wasmtime-wasi fallback can block so: the confined filesystem opens
/// everything `O_NONBLOCK` (`crate::confined_fs`).
#[derive(Default)]
pub struct StallWatch {
    calls: Mutex<HashMap<u64, WatchedCall>>,
    next_id: AtomicU64,
}

struct WatchedCall {
    /// The storage directory the call works on.
    storage: PathBuf,
    deadline: Instant,
    broken: bool,
}

impl StallWatch {
    /// Registers a call on `storage` that should end by `deadline`.
    pub fn begin(&self, storage: PathBuf, deadline: Instant) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = WatchedCall { storage, deadline, broken: false };
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).insert(id, call);
        id
    }

    /// Ends the watch; `true` when the call had to be broken out of a
    /// blocked host call, so whatever it answered is not to be trusted.
    pub fn end(&self, id: u64) -> bool {
        let removed = self.calls.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        removed.is_some_and(|call| call.broken)
    }

    /// Breaks every call past its deadline (once each).
    fn break_overdue(&self, now: Instant) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        for call in calls.values_mut().filter(|c| !c.broken && now >= c.deadline) {
            call.broken = true;
            unblock_fifo_opens(&call.storage);
        }
    }
}

/// Wakes a reader blocked opening one of the storage's metrics files: a
/// FIFO's `open(O_RDONLY)` returns as soon as a writer opens it, and the
/// guest then sees a FIFO and quarantines the storage. Only the four known
/// names are touched, only if they are FIFOs, and nothing is ever written;
/// no path component is followed through a symlink.
fn unblock_fifo_opens(storage: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(dir_path) = CString::new(storage.as_os_str().as_bytes()) else { return };
    // SAFETY: plain syscalls on NUL-terminated paths; every fd is closed.
    unsafe {
        let dir =
            libc::open(dir_path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if dir < 0 {
            return;
        }
        for name in METRICS_FILE_NAMES {
            let Ok(name) = CString::new(name) else { continue };
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstatat(dir, name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) != 0
                || stat.st_mode & libc::S_IFMT != libc::S_IFIFO
            {
                continue;
            }
            let fd = libc::openat(
                dir,
                name.as_ptr(),
                libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            );
            if fd >= 0 {
                libc::close(fd);
            }
        }
        libc::close(dir);
    }
}

/// The files the guest opens inside a storage.
const METRICS_FILE_NAMES: [&str; 4] = [
    "runner-installation-start.timestamp",
    "runner-installed.timestamp",
    "pre-job-metrics.json",
    "post-job-metrics.json",
];

/// A background thread that advances the engine's epoch every
/// [`EPOCH_TICK`], so a guest stuck in a loop traps at its deadline, and
/// breaks stalled host calls (see [`StallWatch`]). Stopped and joined on drop.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine, watch: Arc<StallWatch>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("runner-metrics-epoch".into()).spawn(move || {
            // Parked rather than asleep, so that `drop` wakes it at once: a
            // sleeping ticker made every run wait up to one tick to exit.
            let mut next = Instant::now() + EPOCH_TICK;
            while !stop_flag.load(Ordering::Acquire) {
                let now = Instant::now();
                if now < next {
                    std::thread::park_timeout(next - now);
                    continue;
                }
                next = now + EPOCH_TICK;
                engine.increment_epoch();
                watch.break_overdue(now);
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
