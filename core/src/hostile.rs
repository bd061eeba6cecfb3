//! A deliberately malicious guest (feature `hostile`, tests only).
//!
//! The host must survive whatever a compromised guest does. Storages whose
//! name starts with `hostile-<behaviour>-` trigger one misbehaviour each;
//! every other storage is handled normally, so tests can check that the
//! others are unaffected.

use crate::extract;
use crate::fs::{BoundedRead, FsResult, Meta, StorageFs};
use crate::model::{
    Event, Failure, Outcome, Policy, PreJobMetrics, QuarantineInfo, QuarantineReason, Rendered, RootEntry,
    RunnerMetrics, Selection,
};
use crate::pipeline::{Conduct, Honest};
use crate::{files, FILE_SIZE_BYTES_LIMIT};

/// The hostile plugin's conduct: honest but for the storages, flavors and
/// exclude entries named `hostile-*` (the functions below).
pub struct Hostile {
    candidate: Option<String>,
    panics: bool,
    batches: u32,
}

impl Hostile {
    pub fn new(selection: &Selection) -> Self {
        Self { candidate: scan(&selection.exclude), panics: scan_panics(&selection.exclude), batches: 0 }
    }
}

impl Conduct for Hostile {
    fn injected(&mut self) -> Option<RootEntry> {
        self.candidate.take().map(|name| RootEntry { name: Some(name), skipped: None })
    }

    /// Panics before the second batch, after the first was acted on.
    fn next_batch(&mut self) {
        self.batches += 1;
        assert!(!(self.panics && self.batches > 1), "hostile scan panics on its second batch");
    }

    fn decide<F: StorageFs>(
        &mut self,
        fs: &F,
        name: &str,
        keep: bool,
        policy: Policy,
    ) -> (Outcome, Vec<extract::Dropped>) {
        match extract(fs, name) {
            Some(outcome) => (outcome, Vec::new()),
            None => Honest.decide(fs, name, keep, policy),
        }
    }

    fn events(&mut self, events: Vec<Event>) -> Rendered {
        Rendered::Events(tamper(events))
    }

    fn before_delete(&mut self, name: &str) {
        before_delete(name);
    }
}

/// Misbehaves for `hostile-*` storages; `None` means behave normally.
pub fn extract(fs: &impl StorageFs, name: &str) -> Option<Outcome> {
    let behaviour = name.strip_prefix("hostile-")?.split('-').next()?;
    let honest = |installed: f64| RunnerMetrics {
        installation_start_timestamp: None,
        installed_timestamp: installed,
        pre_job: None,
        post_job: None,
        runner_name: name.to_owned(),
    };
    Some(match behaviour {
        "panic" => panic!("hostile guest panics on {name}"),
        "loop" => spin_forever(),
        "alloc" => allocate_forever(),
        // Opens a metrics file without checking what it is first: blocks
        // in the host if it is a FIFO with no writer.
        "fifo" => {
            let _ = fs.read_bounded(&crate::fs::join(name, files::PRE_JOB), FILE_SIZE_BYTES_LIMIT);
            Outcome::Failed(Failure::new("hostile guest opened a FIFO and came back"))
        }
        // Opens a file again and again and never closes it: the host's
        // handle cap must stop it before the host runs out of descriptors.
        "handles" => {
            hoard_handles(&crate::fs::join(name, files::INSTALLED));
            Outcome::Failed(Failure::new("hostile guest hoarded handles and came back"))
        }
        "othername" => Outcome::Extracted(RunnerMetrics { runner_name: "someone-else".to_owned(), ..honest(1.0) }),
        "negative" => Outcome::Extracted(honest(-5.0)),
        "nan" => Outcome::Extracted(honest(f64::NAN)),
        "huge" => Outcome::Extracted(RunnerMetrics {
            pre_job: Some(PreJobMetrics {
                timestamp: 1.0,
                workflow: "w".repeat(1 << 20),
                workflow_run_id: "1".to_owned(),
                repository: Some("o/r".to_owned()),
                event: "push".to_owned(),
                workflow_run_attempt: None,
            }),
            ..honest(1.0)
        }),
        // Words past what any host keeps: the keeper must cut them.
        "longwords" => Outcome::Failed(Failure::new("hostile words ".repeat(1000))),
        "location" => Outcome::Quarantined(QuarantineInfo {
            reason: QuarantineReason::InvalidJson,
            file: None,
            detail: "lie".to_owned(),
            location: "../../etc".to_owned(),
        }),
        _ => return None,
    })
}

/// A storage named `hostile-delpanic-...` is extracted honestly, then the
/// guest panics while deleting it: after its lines are durable.
pub fn before_delete(name: &str) {
    assert!(!name.starts_with("hostile-delpanic-"), "hostile guest panics deleting {name}");
}

/// The hostile plugin's filesystem: the real one, except that a storage
/// named `hostile-renamepanic-...` makes the guest panic once it has moved
/// the storage into `.deleting/`, before emptying it.
pub struct HostileFs<F>(pub F);

impl<F> From<F> for HostileFs<F> {
    fn from(fs: F) -> Self {
        Self(fs)
    }
}

impl<F: StorageFs> StorageFs for HostileFs<F> {
    type Listing = F::Listing;
    type Dir = F::Dir;
    fn open_dir(&self, name: &str) -> FsResult<Self::Dir> {
        self.0.open_dir(name)
    }
    fn enter_dir(&self, name: &str) -> FsResult<()> {
        self.0.enter_dir(name)
    }
    fn list(&self, dir: &str) -> FsResult<Self::Listing> {
        self.0.list(dir)
    }
    fn lstat(&self, path: &str) -> FsResult<Meta> {
        self.0.lstat(path)
    }
    fn read_bounded(&self, path: &str, limit: usize) -> FsResult<BoundedRead> {
        self.0.read_bounded(path, limit)
    }
    fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.0.rename(from, to)
    }
    fn move_into(&self, name: &str, dir: &Self::Dir, new_name: &str) -> FsResult<()> {
        self.0.move_into(name, dir, new_name)?;
        assert!(!name.starts_with("hostile-renamepanic-"), "hostile guest panics in .deleting/ with {name}");
        Ok(())
    }
    fn create_dir(&self, path: &str) -> FsResult<()> {
        self.0.create_dir(path)
    }
    fn write_new_file(&self, path: &str, bytes: &[u8]) -> FsResult<()> {
        self.0.write_new_file(path, bytes)
    }
    fn remove_file(&self, path: &str) -> FsResult<()> {
        self.0.remove_file(path)
    }
    fn now(&self) -> f64 {
        self.0.now()
    }
    fn opens_block(&self) -> bool {
        self.0.opens_block()
    }
}

/// The events handed to the keeper, tampered with by the flavor: with
/// `hostile-moreevents` four of them (three exist); with
/// `hostile-otherflavor` the first of another flavor; with
/// `hostile-bigevent` the first with a 100 MiB flavor (for a plugin given the
/// memory to hold it; under wasmtime's 128 MiB per host call).
pub fn tamper(mut events: Vec<Event>) -> Vec<Event> {
    let flavor = events.first().map(|e| e.flavor().to_owned()).unwrap_or_default();
    let set_flavor = |event: &mut Event, to: String| match event {
        Event::RunnerInstalled(e) => e.flavor = to,
        Event::RunnerStart(e) => e.flavor = to,
        Event::RunnerStop(e) => e.flavor = to,
    };
    match (flavor.as_str(), events.first_mut()) {
        ("hostile-moreevents", Some(first)) => {
            let copy = first.clone();
            events.extend(std::iter::repeat_n(copy, 4 - events.len().min(4)));
        }
        ("hostile-otherflavor", Some(first)) => set_flavor(first, "injected".to_owned()),
        ("hostile-bigevent", Some(first)) => set_flavor(first, "x".repeat(100 << 20)),
        _ => {}
    }
    events
}

/// An exclude list containing `hostile-scan` makes the scan offer a path
/// that climbs out of the root as a candidate.
pub fn scan(exclude: &[String]) -> Option<String> {
    exclude.iter().any(|e| e == "hostile-scan").then(|| "../../etc".to_owned())
}

/// An exclude list containing `hostile-scan-panic` makes the scan panic on
/// its second batch, after the host has acted on the first.
pub fn scan_panics(exclude: &[String]) -> bool {
    exclude.iter().any(|e| e == "hostile-scan-panic")
}

/// Opens `path` up to a million times, leaking every descriptor.
#[cfg(target_arch = "wasm32")]
fn hoard_handles(path: &str) {
    use wasi::filesystem::types::{DescriptorFlags, OpenFlags, PathFlags};
    let Some((root, _)) = wasi::filesystem::preopens::get_directories().into_iter().next() else { return };
    for _ in 0..1_000_000u32 {
        match root.open_at(PathFlags::empty(), path, OpenFlags::empty(), DescriptorFlags::READ) {
            Ok(file) => std::mem::forget(file),
            Err(_) => break,
        }
    }
    std::mem::forget(root);
}

#[cfg(not(target_arch = "wasm32"))]
fn hoard_handles(_: &str) {}

#[allow(clippy::empty_loop)]
fn spin_forever() -> ! {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn allocate_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
