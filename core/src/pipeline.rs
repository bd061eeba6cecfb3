//! The collect pipeline (spec 4 and 5), written once for every host: scan
//! the root with a selection, decide each storage, issue its events, hand
//! a batch of them to the host to render and append durably, only then
//! delete the storages they came from, and report every root entry once.
//!
//! It runs over any [`StorageFs`] and any [`Host`]: in the component over
//! WASI with the imported `host` interface (the Rust, Python and Node
//! hosts), in the command component over WASI with stdout as the log (the
//! `wasmtime` CLI), and natively for unit tests and the benchmark.

use std::collections::{HashMap, HashSet};

use crate::extract::{self, Scan};
use crate::fs::StorageFs;
use crate::model::{
    CollectOptions, Emit, Event, Failure, GithubJobMetrics, Interrupted, Outcome, OutcomeKind, Policy, PulledMetrics,
    QuarantineReason, Rendered, RootEntry, RunnerMetrics, Selection, SkipReason, StorageOutput, StorageReport,
};
use crate::names::DELETING_DIR;
use crate::pulled::{self, Staged};
use crate::report::{undeletable_detail, with_dropped, UNNAMED};
use crate::{events, quarantine, render};

/// What only the host can do. Every argument is the guest's claim: a host
/// re-checks what it is handed.
pub trait Host {
    /// The pipeline starts on one root entry: extracting it, or deleting it
    /// once its lines are durable (`.deleting` for the purge). A host
    /// re-arms its per-storage deadline here and blames a trap on `name`.
    fn begin_storage(&mut self, name: &str);
    /// The pipeline is done with the storage it began, whose lines wait for
    /// the next append: a trap from now on belongs to no storage.
    fn end_storage(&mut self);
    /// GitHub's view of the runner's job (spec 5), when the host knows it.
    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics>;
    /// Appends the batch's lines (rendered by the host's keeper, or by the
    /// host: [`StorageOutput::lines`]); `Ok` only once they are durable.
    fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String>;
    /// One root entry reached its outcome.
    fn report(&mut self, report: StorageReport);
}

impl CollectOptions {
    /// Every storage, lifecycle events of `flavor`, batches of 64.
    pub fn events(flavor: impl Into<String>) -> Self {
        Self {
            selection: Selection::default(),
            emit: Emit::Events(flavor.into()),
            dry_run: false,
            batch_size: 64,
            purge_deleting: true,
            done: Vec::new(),
            done_unnamed: 0,
            policy: Policy::Strict,
            nonblocking_opens: false,
            pulled: None,
        }
    }
}

/// Root entries listed per step of the scan.
const SCAN_BATCH: usize = 256;

/// Runs one collect over the root `fs` sees (of the pulled runner
/// `options.pulled` names, whose files are `pulled`). `Err` when the run had
/// to stop (the root cannot be listed, an append failed): every storage
/// reported so far keeps its report, the rest are untouched.
pub fn collect<F: StorageFs>(
    fs: &F,
    options: &CollectOptions,
    pulled: Option<&PulledMetrics>,
    host: &mut impl Host,
) -> Result<(), Failure> {
    collect_with(fs, options, pulled, host, &mut Honest)
}

/// The decisions a collect takes at its few points of judgement, honest by
/// default ([`Honest`]). The test-only hostile plugin (`hostile.rs`,
/// feature `hostile`) is another conduct, so the pipeline itself carries no
/// test code.
pub trait Conduct {
    /// A root entry to handle before the next batch of the real listing.
    fn injected(&mut self) -> Option<RootEntry> {
        None
    }
    /// A batch of the real listing is about to be read.
    fn next_batch(&mut self) {}
    /// One storage's outcome, and what the lenient policy counted as missing.
    fn decide<F: StorageFs>(
        &mut self,
        fs: &F,
        name: &str,
        dry_run: bool,
        policy: Policy,
    ) -> (Outcome, Vec<extract::Dropped>) {
        extract::extract_storage_with(fs, name, dry_run, policy)
    }
    /// The events issued for one storage, as the plugin hands them over.
    fn events(&mut self, events: Vec<Event>) -> Rendered {
        Rendered::Events(events)
    }
    /// The storage `name` is about to be deleted, its lines durable.
    fn before_delete(&mut self, _name: &str) {}
}

/// The plugin's one conduct in every shipped build.
pub struct Honest;

impl Conduct for Honest {}

/// [`collect`] with a conduct of the caller's.
pub fn collect_with<F: StorageFs, C: Conduct>(
    fs: &F,
    options: &CollectOptions,
    pulled: Option<&PulledMetrics>,
    host: &mut impl Host,
    conduct: &mut C,
) -> Result<(), Failure> {
    let done = options.done.iter().map(String::as_str).collect();
    let host = Ends { host, owed: false };
    let mut run =
        Run { fs, options, done, host, conduct, pending: Vec::new(), unnamed_seen: 0, dropped: HashMap::new() };
    let result = run.collect(pulled);
    run.host.settle();
    result
}

/// The host, told of a storage's end only when it matters: a
/// `begin-storage` right after an `end-storage` implies it, so the end of
/// each storage but the last of a stretch costs no crossing (nor a keeper
/// call). Any other call, the root's listing and the end of the run say it
/// first, so a trap blames the same storage as if it had been said at once.
struct Ends<'a, H: Host> {
    host: &'a mut H,
    /// An `end-storage` not said yet.
    owed: bool,
}

impl<H: Host> Ends<'_, H> {
    /// Says the `end-storage` owed, if any.
    fn settle(&mut self) {
        if std::mem::take(&mut self.owed) {
            self.host.end_storage();
        }
    }
}

impl<H: Host> Host for Ends<'_, H> {
    fn begin_storage(&mut self, name: &str) {
        self.owed = false;
        self.host.begin_storage(name);
    }

    fn end_storage(&mut self) {
        self.owed = true;
    }

    fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
        self.settle();
        self.host.job_metrics(metrics)
    }

    fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String> {
        self.settle();
        self.host.append(batch)
    }

    fn report(&mut self, report: StorageReport) {
        self.settle();
        self.host.report(report);
    }
}

impl<F: StorageFs, H: Host, C: Conduct> Run<'_, F, H, C> {
    fn collect(&mut self, pulled: Option<&PulledMetrics>) -> Result<(), Failure> {
        let options = self.options;
        let run = self;
        if options.purge_deleting && !options.dry_run {
            run.purge_deleting();
        }
        if let Some(name) = &options.pulled {
            if !run.done.contains(name.as_str()) {
                let Some(pulled) = pulled else {
                    return Err(Failure::new(format!("the files of the pulled runner {name:?} were not handed over")));
                };
                run.pulled(name, pulled)?;
            }
            return run.flush();
        }
        let mut scan = Scan::new(run.fs, options.selection.clone())
            .map_err(|e| Failure::from(e).context("listing the storage root"))?;
        loop {
            if let Some(entry) = run.conduct.injected() {
                run.entry(entry)?;
                continue;
            }
            // The listing is no storage's work.
            run.host.settle();
            run.conduct.next_batch();
            let batch = match scan.next_batch(SCAN_BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    // What was extracted still gets its lines and a report.
                    run.flush()?;
                    return Err(Failure::from(e).context("listing the storage root"));
                }
            };
            if batch.is_empty() {
                break;
            }
            for entry in batch {
                run.entry(entry)?;
            }
        }
        run.flush()
    }
}

struct Run<'a, F: StorageFs, H: Host, C: Conduct> {
    fs: &'a F,
    options: &'a CollectOptions,
    /// `options.done`, for lookups.
    done: HashSet<&'a str>,
    host: Ends<'a, H>,
    conduct: &'a mut C,
    /// Extracted storages whose lines wait for the next append.
    pending: Vec<StorageOutput>,
    unnamed_seen: u32,
    /// What the lenient policy counted as missing, per pending storage, for
    /// its report.
    dropped: HashMap<String, String>,
}

impl<F: StorageFs, H: Host, C: Conduct> Run<'_, F, H, C> {
    fn entry(&mut self, entry: RootEntry) -> Result<(), Failure> {
        let Some(name) = entry.name else {
            self.unnamed_seen += 1;
            if self.unnamed_seen > self.options.done_unnamed {
                let reason = entry.skipped.unwrap_or(SkipReason::InvalidName);
                self.host.report(StorageReport::skipped(UNNAMED, &reason));
            }
            return Ok(());
        };
        if self.done.contains(name.as_str()) {
            return Ok(());
        }
        match entry.skipped {
            Some(reason) => self.host.report(StorageReport::skipped(name, &reason)),
            None => self.candidate(name)?,
        }
        Ok(())
    }

    /// Finishes deletions a crash cut short; a failure is reported and the
    /// leftovers stay in `.deleting/` for the next run.
    fn purge_deleting(&mut self) {
        self.host.begin_storage(DELETING_DIR);
        match extract::purge_deleting(self.fs) {
            Ok(_) => self.host.end_storage(),
            Err(e) => {
                let failure = e.context("leftover deletions kept");
                self.host.report(StorageReport::with_failure(DELETING_DIR, OutcomeKind::Failed, failure, 0));
            }
        }
    }

    /// Stages a pulled runner as a storage and collects it. A stream the
    /// guest refuses is quarantined while staging; `Err` when nothing could
    /// be staged (the run stops, the runner reported failed).
    fn pulled(&mut self, name: &str, pulled: &PulledMetrics) -> Result<(), Failure> {
        let name = name.to_owned();
        self.host.begin_storage(&name);
        if self.options.dry_run {
            let why = Failure::new("a dry run stages nothing, so pulled metrics cannot be collected in one");
            self.host.report(StorageReport::with_failure(
                name,
                OutcomeKind::Failed,
                why.clone().context("not staged"),
                0,
            ));
            return Err(why);
        }
        match pulled::stage(self.fs, &name, pulled) {
            Ok(Staged::Ready) => self.candidate(name),
            Ok(Staged::Quarantined(info)) => {
                self.host.report(StorageReport::quarantined(name, &info));
                Ok(())
            }
            Err(e) => {
                self.host.report(StorageReport::with_failure(
                    name,
                    OutcomeKind::Failed,
                    e.clone().context("not staged"),
                    0,
                ));
                Err(e)
            }
        }
    }

    fn candidate(&mut self, name: String) -> Result<(), Failure> {
        self.host.begin_storage(&name);
        let keep = self.options.dry_run;
        let (outcome, dropped) = self.conduct.decide(self.fs, &name, keep, self.options.policy);
        match outcome {
            Outcome::Extracted(metrics) => {
                let storage = self.output(name.clone(), metrics);
                self.host.end_storage();
                if !dropped.is_empty() {
                    self.dropped.insert(name, with_dropped("", &dropped));
                }
                self.pending.push(storage);
                if self.pending.len() >= usize::try_from(self.options.batch_size).unwrap_or(usize::MAX).max(1) {
                    self.flush()?;
                }
            }
            Outcome::NoData => {
                let mut report = StorageReport::no_data(name, keep);
                report.detail = with_dropped(&report.detail, &dropped);
                self.host.report(report)
            }
            Outcome::Quarantined(info) => self.host.report(StorageReport::quarantined(name, &info)),
            Outcome::Skipped(reason) => self.host.report(StorageReport::skipped(name, &reason)),
            Outcome::Failed(failure) => {
                self.host.report(StorageReport::with_failure(name, OutcomeKind::Failed, failure.context("kept"), 0))
            }
        }
        Ok(())
    }

    /// What one extracted storage gives the log: its events (or metrics),
    /// which the host's keeper renders.
    fn output(&mut self, name: String, metrics: RunnerMetrics) -> StorageOutput {
        match &self.options.emit {
            Emit::Metrics => StorageOutput { runner_name: name, source: Rendered::Metrics(metrics) },
            Emit::Events(flavor) => {
                let job = self.host.job_metrics(&metrics);
                let events = events::issue_events(metrics, flavor, job.as_ref());
                StorageOutput { runner_name: name, source: self.conduct.events(events) }
            }
        }
    }

    /// Appends the pending lines durably, then deletes their storages.
    fn flush(&mut self) -> Result<(), Failure> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let stored: Vec<(String, u32)> = batch.iter().map(|s| (s.runner_name.clone(), s.line_count())).collect();
        if let Err(e) = self.host.append(batch) {
            for (name, _) in stored {
                let detail = format!("kept: events not written: {e}");
                self.host.report(StorageReport::new(name, OutcomeKind::Failed, detail, 0));
            }
            return Err(Failure::new(format!("writing events: {e}")));
        }
        // One handle on `.deleting/` and one clock reading for the batch.
        let mut shared = extract::Shared::default();
        for (name, events) in stored {
            if !self.options.dry_run {
                self.host.begin_storage(&name);
                self.conduct.before_delete(&name);
            }
            let note = self.dropped.remove(&name);
            let mut report = settle(self.fs, name, events, self.options.dry_run, &mut shared);
            if let Some(note) = note {
                report.detail = format!("{note}{}", report.detail);
            }
            self.host.report(report);
        }
        Ok(())
    }
}

/// After a trap, in a fresh instance: finishes what the trapped one left,
/// reporting each storage through `host`. Every storage whose lines are
/// durable is deleted, so it is never extracted twice (the one being deleted
/// when the trap came has its deletion finished, or is quarantined); the
/// storage to blame is quarantined as `sandbox-trap`, or kept and reported
/// failed when the guest lied about it, in a dry run, or when its recovery
/// trapped too. `Err` when the trap belongs to no storage: the run stops.
pub fn recover<F: StorageFs>(fs: &F, x: &Interrupted, host: &mut impl Host) -> Result<(), Failure> {
    let cause = &x.cause;
    for appended in &x.appended {
        let (name, events) = (appended.name.clone(), appended.lines);
        let report = |kind, detail: String| StorageReport::new(name.clone(), kind, detail, events);
        let trapped_here = x.blamed.as_ref() == Some(&name) && !x.lied;
        host.begin_storage(&name);
        let renamed = || fs.lstat(&name).is_err_and(|e| e.code == crate::fs::FsErrorCode::NotFound);
        let report = if x.dry_run {
            settle(fs, name.clone(), events, true, &mut extract::Shared::default())
        } else if trapped_here && renamed() {
            // Renamed into .deleting/ already: finish that (unless finishing
            // it is what trapped: the next run's purge does it then).
            let later = |why: Failure| {
                let failure = why.context("deleted from the root; the next run finishes .deleting/");
                StorageReport::with_failure(name.clone(), OutcomeKind::Extracted, failure, events)
            };
            if x.trapped_again {
                later(Failure::new(cause.clone()))
            } else {
                match extract::purge_deleting(fs) {
                    Ok(_) => report(OutcomeKind::Extracted, format!("deleted (the deletion was cut short: {cause})")),
                    Err(e) => later(e),
                }
            }
        } else if trapped_here && x.trapped_again {
            report(OutcomeKind::Failed, format!("events written but storage kept: {cause}"))
        } else if trapped_here {
            match quarantine::quarantine_storage(fs, &name, QuarantineReason::SandboxTrap, None, cause) {
                Ok(info) => report(OutcomeKind::Extracted, undeletable_detail(&info)),
                Err(e) => StorageReport::with_failure(
                    name.clone(),
                    OutcomeKind::Failed,
                    e.reworded(|e| format!("events written but storage kept: {cause}; {e}")),
                    events,
                ),
            }
        } else {
            settle(fs, name.clone(), events, false, &mut extract::Shared::default())
        };
        host.report(report);
    }
    let Some(name) = x.blamed.clone() else {
        return if x.lied {
            Ok(())
        } else {
            Err(Failure::new(format!("the sandbox failed outside any storage: {cause}")))
        };
    };
    if x.appended.iter().any(|appended| appended.name == name) {
        return Ok(()); // it trapped deleting a storage handled above
    }
    let report = if name == DELETING_DIR {
        StorageReport::new(name, OutcomeKind::Failed, format!("leftover deletions kept: {cause}"), 0)
    } else if x.lied || x.dry_run || x.trapped_again {
        StorageReport::new(name, OutcomeKind::Failed, format!("kept: {cause}"), 0)
    } else {
        host.begin_storage(&name);
        match quarantine::quarantine_storage(fs, &name, QuarantineReason::SandboxTrap, None, cause) {
            Ok(info) => StorageReport::quarantined(name, &info),
            Err(e) => {
                StorageReport::with_failure(name, OutcomeKind::Failed, e.reworded(|e| format!("kept: {cause}; {e}")), 0)
            }
        }
    };
    host.report(report);
    Ok(())
}

/// The end of an extracted storage whose lines are durable: deleted (or,
/// when it cannot be, quarantined as `undeletable`, so it is never
/// extracted twice), or left as it is in a dry run; its report.
/// `shared`: what the caller's deletions share.
fn settle<F: StorageFs>(
    fs: &F,
    name: String,
    events: u32,
    keep: bool,
    shared: &mut extract::Shared<F::Dir>,
) -> StorageReport {
    if keep {
        return StorageReport::new(name, OutcomeKind::Extracted, "kept (dry run)", events);
    }
    match extract::delete_storage_sharing(fs, &name, shared) {
        Ok(None) => StorageReport::new(name, OutcomeKind::Extracted, "deleted", events),
        Ok(Some(info)) => StorageReport::new(name, OutcomeKind::Extracted, undeletable_detail(&info), events),
        Err(e) => {
            StorageReport::with_failure(name, OutcomeKind::Failed, e.context("events written but storage kept"), events)
        }
    }
}

impl StorageOutput {
    /// How many lines it renders to, as a report counts them.
    pub fn line_count(&self) -> u32 {
        match &self.source {
            Rendered::Events(events) => u32::try_from(events.len()).unwrap_or(u32::MAX),
            Rendered::Metrics(_) => 1,
        }
    }

    /// Its lines: one JSON line per event, or the metrics line, each
    /// without a newline. The renderer every host's lines come from (the
    /// keeper's, after its checks; the command component's).
    pub fn lines(&self) -> Vec<String> {
        match &self.source {
            Rendered::Events(events) => events.iter().map(render::render_event).collect(),
            Rendered::Metrics(metrics) => vec![render::render_metrics(metrics)],
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::fs::NativeFs;
    use runner_metrics_fixtures::StorageRoot;

    /// Records the host calls, and checks each against the storage the
    /// calls so far make current, as the keeper's books do.
    #[derive(Default)]
    struct Recording {
        calls: Vec<String>,
        current: Option<String>,
    }

    impl Host for Recording {
        fn begin_storage(&mut self, name: &str) {
            self.calls.push(format!("begin {name}"));
            self.current = Some(name.to_owned());
        }
        fn end_storage(&mut self) {
            self.calls.push("end".into());
            self.current = None;
        }
        fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Option<GithubJobMetrics> {
            self.calls.push(format!("job-metrics {}", metrics.runner_name));
            None
        }
        fn append(&mut self, batch: Vec<StorageOutput>) -> Result<(), String> {
            assert_eq!(self.current, None, "an append while {:?} is current: {:?}", self.current, self.calls);
            self.calls.push(format!("append {}", batch.len()));
            Ok(())
        }
        fn report(&mut self, report: StorageReport) {
            if self.current.as_deref() == Some(report.name.as_str()) {
                self.current = None;
            }
            assert_eq!(
                self.current, None,
                "{} reported while {:?} is current: {:?}",
                report.name, self.current, self.calls
            );
            self.calls.push(format!("report {}", report.name));
        }
    }

    #[test]
    fn an_end_is_said_before_any_call_but_a_begin() {
        let metrics = RunnerMetrics {
            installation_start_timestamp: None,
            installed_timestamp: 1.0,
            pre_job: None,
            post_job: None,
            runner_name: "b".into(),
        };
        let mut recording = Recording::default();
        let mut host = Ends { host: &mut recording, owed: false };
        host.begin_storage("a");
        host.end_storage();
        host.begin_storage("b");
        host.end_storage();
        host.report(StorageReport::new("s", OutcomeKind::Skipped, "x", 0));
        host.begin_storage("b");
        host.end_storage();
        host.job_metrics(&metrics);
        host.end_storage();
        host.append(Vec::new()).unwrap();
        host.end_storage();
        host.settle();
        host.settle();
        let expected =
            ["begin a", "begin b", "end", "report s", "begin b", "end", "job-metrics b", "end", "append 0", "end"];
        assert_eq!(recording.calls, expected);
    }

    #[test]
    fn a_storage_ends_before_anything_but_the_next_begin_and_once_per_stretch() {
        let root = StorageRoot::new();
        for name in ["r-1", "r-2", "r-3"] {
            root.valid_runner(name);
        }
        root.root_file("stray-file", "x");
        let mut host = Recording::default();
        let options = CollectOptions { purge_deleting: false, ..CollectOptions::events("small") };
        collect(&NativeFs::new(root.path()), &options, None, &mut host).unwrap();
        assert_eq!(host.current, None, "a storage still current at the end: {:?}", host.calls);
        let count = |prefix: &str| host.calls.iter().filter(|call| call.starts_with(prefix)).count();
        assert_eq!((count("report r-"), count("report stray"), count("append")), (3, 1, 1), "{:?}", host.calls);
        // The three extractions form one or two stretches (the stray file's
        // report may come between them, in listing order): one end each.
        let stretches = if host.calls.iter().position(|c| c == "report stray-file").is_some_and(|at| {
            let begins = host.calls[..at].iter().filter(|c| c.starts_with("begin r-")).count();
            begins > 0 && begins < 3
        }) {
            2
        } else {
            1
        };
        assert_eq!(count("end"), stretches, "{:?}", host.calls);
    }
}
