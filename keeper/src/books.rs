//! The books of one collect run, across every plugin instance it needs (a
//! trap replaces the instance, not the run): which root entry the plugin
//! works on, which storages have durable lines but no report yet, which
//! entries were reported, and the lie caught, if any. From them it checks
//! each import call ([`crate::check`]) and says which plugin call comes
//! next ([`Books::next`]): `collect`, `recover` after a trap, or the end.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use runner_metrics_core::names::DELETING_DIR;
use runner_metrics_core::report::{bounded, UNNAMED};

use crate::bindings::{
    AppendedStorage, Claim, CollectOptions, Ended, Failure, Interrupted, NextCall, RunBounds, RunnerMetrics,
    StorageOutput, StorageReport,
};
use crate::check;

/// Traps one run survives; after that the rest of the root is left for the
/// next run, so a guest that traps on everything cannot churn through it.
pub const MAX_TRAPS_PER_RUN: usize = 16;

/// The sizes every host cuts pulled input to, and the run's bounds: said
/// here once (the keeper's `bounds` export), so no host re-declares them.
pub fn bounds() -> RunBounds {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    RunBounds {
        pulled_file_bytes: count(runner_metrics_core::pulled::MAX_LOOSE_BYTES),
        pulled_stream_bytes: count(runner_metrics_core::pulled::max_stream_bytes()),
        message_bytes: count(runner_metrics_core::report::MAX_MESSAGE_BYTES),
        traps_per_run: count(MAX_TRAPS_PER_RUN),
    }
}

/// A claim that does not hold: what it was, and the storage it concerns.
type Lie = (Option<String>, String);

pub struct Books {
    options: CollectOptions,
    root: PathBuf,
    batch_size: usize,
    /// The root entry the plugin said it works on, until it is reported.
    current: Option<String>,
    /// Storages whose lines are durable but that are not reported yet,
    /// with their line counts.
    appended: Durable,
    /// The batch checked last, until the host says it is durable.
    pending: Vec<(String, usize)>,
    /// Root entries reported so far that are still in the root (kept:
    /// skipped, failed, or anything in a dry run): each is reported once.
    /// A storage seen to have left the root is not kept here: beginning,
    /// appending or reporting it again is caught by the checks that it is
    /// a directory of the root, and it is in no listing any more. So the
    /// books grow with the storages kept (live runners, failures), not
    /// with the root.
    reported: HashSet<String>,
    unnamed_reported: u32,
    lie: Option<Lie>,
    /// Why the host could not append (its own words): the run's stop.
    append_error: Option<String>,
    /// A callback of the host failed (its words): the run stops once what
    /// was interrupted is recovered.
    halted: Option<String>,
    /// The recovery in progress, if any.
    recovering: Option<Interrupted>,
    traps: usize,
    started: bool,
}

/// The storages with durable lines and no report yet. Looked up by name
/// on every append and report (up to a batch of them at once), and handed
/// to a recovery in the order their lines were appended.
#[derive(Default)]
struct Durable {
    /// Each storage's place in the append order, and its line count.
    by_name: HashMap<String, (u64, usize)>,
    next_place: u64,
}

impl Durable {
    fn lines(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).map(|&(_, lines)| lines)
    }

    /// A name appended again (which the checks refuse) keeps its first place.
    fn insert(&mut self, name: String, lines: usize) {
        let place = self.next_place;
        self.next_place += 1;
        self.by_name.entry(name).or_insert((place, lines));
    }

    fn remove(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    fn in_append_order(&self) -> impl Iterator<Item = (&String, usize)> {
        let mut all: Vec<_> = self.by_name.iter().map(|(name, &(place, lines))| (place, name, lines)).collect();
        all.sort_unstable_by_key(|&(place, _, _)| place);
        all.into_iter().map(|(_, name, lines)| (name, lines))
    }
}

impl Books {
    /// A run of `options` over `root` (`/storage` in the component).
    pub fn new(options: CollectOptions, root: impl Into<PathBuf>) -> Self {
        let batch_size = options.batch_size.max(1) as usize;
        // Names the host reported itself (a bounded storage it could not
        // mount) count as reported from the start.
        let reported = options.done.iter().cloned().collect();
        Self {
            options,
            root: root.into(),
            batch_size,
            current: None,
            appended: Durable::default(),
            pending: Vec::new(),
            reported,
            unnamed_reported: 0,
            lie: None,
            append_error: None,
            halted: None,
            recovering: None,
            traps: 0,
            started: false,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dry_run(&self) -> bool {
        self.options.dry_run
    }

    pub fn current(&self) -> Option<String> {
        self.current.clone()
    }

    pub fn was_reported(&self, name: &str) -> bool {
        self.reported.contains(name)
    }

    /// The durable lines of a storage not reported yet (`None`: none).
    pub fn appended_lines(&self, name: &str) -> Option<usize> {
        self.appended.lines(name)
    }

    /// A name other than the pulled runner's, in a collect of one pulled
    /// runner (`.deleting` aside): the plugin has no business with it.
    fn beyond_pulled(&self, name: &str) -> Option<String> {
        let pulled = self.options.pulled.as_ref()?;
        (name != pulled && name != DELETING_DIR)
            .then(|| format!("touched {:?} while collecting the pulled runner {pulled:?}", bounded(name)))
    }

    /// Records a lie; its words are what the host stops the plugin with.
    fn lied<T>(&mut self, storage: Option<String>, what: String) -> Result<T, String> {
        self.lie = Some((storage, what.clone()));
        Err(what)
    }

    pub fn begin_storage(&mut self, name: String) -> Result<(), String> {
        if let Some(lie) = self.beyond_pulled(&name) {
            return self.lied(None, lie);
        }
        if name != DELETING_DIR {
            if let Err(lie) = check::storage_name(&name) {
                // Reported under that name (when it can be), so that the
                // resumed collect does not offer it again.
                let storage = (name.len() <= 255).then(|| name.clone());
                return self.lied(storage, lie);
            }
            if self.reported.contains(&name) {
                return self.lied(None, format!("began work on {name:?}, which it had already reported"));
            }
        }
        self.current = Some(name);
        Ok(())
    }

    /// Its lines wait for the next append: a trap from now on belongs to no
    /// storage.
    pub fn end_storage(&mut self) {
        self.current = None;
    }

    /// Claims that wanted no answer, handed over together by a host that
    /// held them (`wit/keeper-batch`): each taken as its own call takes it,
    /// in order, up to the first lie.
    pub fn take(&mut self, claims: Vec<Claim>) -> Result<(), String> {
        for claim in claims {
            match claim {
                Claim::BeginStorage(name) => self.begin_storage(name)?,
                Claim::EndStorage => self.end_storage(),
                Claim::JobMetrics(metrics) => self.job_metrics(&metrics)?,
            }
        }
        Ok(())
    }

    pub fn job_metrics(&mut self, metrics: &RunnerMetrics) -> Result<(), String> {
        let Some(current) = self.current.clone() else {
            return self.lied(None, "asked for job metrics outside any storage".to_owned());
        };
        match check::metrics(&current, metrics) {
            Ok(()) => Ok(()),
            Err(lie) => self.lied(Some(current), lie),
        }
    }

    /// The lines of a batch the plugin hands over, rendered here from its
    /// checked events (or metrics), in order: the host appends these.
    pub fn append(&mut self, batch: &[StorageOutput]) -> Result<Vec<String>, String> {
        if batch.len() > self.batch_size {
            let lie = format!("appended {} storages at once; batches hold at most {}", batch.len(), self.batch_size);
            return self.lied(None, lie);
        }
        let mut names = HashSet::with_capacity(batch.len());
        let mut lines = Vec::new();
        for storage in batch {
            let name = &storage.runner_name;
            if let Some(lie) = self.beyond_pulled(name) {
                return self.lied(None, lie);
            }
            let again = self.reported.contains(name) || self.appended_lines(name).is_some();
            if again || !names.insert(name.as_str()) {
                return self.lied(None, format!("appended lines for {:?} twice", bounded(name)));
            }
            match check::storage_output(&self.root, storage, &self.options.emit) {
                Ok(rendered) => lines.extend(rendered),
                Err(lie) => return self.lied(Some(name.clone()), lie),
            }
        }
        self.pending = batch.iter().map(|s| (s.runner_name.clone(), s.line_count() as usize)).collect();
        Ok(lines)
    }

    /// What the host's append of the batch checked last came to.
    pub fn appended(&mut self, error: Option<String>) {
        let batch = std::mem::take(&mut self.pending);
        match error {
            None => batch.into_iter().for_each(|(name, lines)| self.appended.insert(name, lines)),
            Some(error) => self.append_error = Some(error),
        }
    }

    pub fn report(&mut self, report: StorageReport) -> Result<(StorageReport, bool), String> {
        if let Some(lie) = self.beyond_pulled(&report.name) {
            self.lie = Some((None, lie.clone()));
            return Err(lie);
        }
        let (report, cut) = match check::report(report, self) {
            Ok(checked) => checked,
            Err((storage, lie)) => {
                self.lie = Some((storage, lie.clone()));
                return Err(lie);
            }
        };
        if report.name == UNNAMED {
            self.unnamed_reported = self.unnamed_reported.saturating_add(1);
        } else if report.name != DELETING_DIR {
            self.appended.remove(&report.name);
            // A pulled runner stays reported even once it left the root:
            // the resumed collect must not stage it again.
            let pulled = self.options.pulled.as_ref().is_some_and(|p| *p == report.name);
            if pulled || !check::leaves_the_root(self.dry_run(), report.outcome) {
                self.reported.insert(report.name.clone());
            }
        }
        if self.current.as_deref() == Some(report.name.as_str()) {
            self.current = None;
        }
        Ok((report, cut))
    }

    /// The plugin call to make next, given how the last one ended.
    pub fn next(&mut self, last: Option<Ended>) -> NextCall {
        let Some(last) = last else {
            if std::mem::replace(&mut self.started, true) {
                return NextCall::Stop(Failure::new("the keeper was asked for the first call twice"));
            }
            // The host's request, not the plugin's claim: a pulled runner
            // with a name no storage may have is refused before any call
            // (the plugin would be caught lying about it, trap after trap).
            if let Some(pulled) = &self.options.pulled {
                if let Err(why) = check::storage_name(pulled) {
                    return NextCall::Stop(Failure::new(format!("refusing to collect the pulled runner: {why}")));
                }
            }
            return NextCall::Collect(self.options.clone());
        };
        match last {
            Ended::Returned(None) => match (self.recovering.take(), self.halted.take()) {
                (_, Some(halted)) => NextCall::Stop(Failure::new(halted)),
                (None, None) => NextCall::Done,
                // Recovered: the collect resumes without what was reported,
                // unless the run has used up its traps.
                (Some(_), None) if self.traps >= MAX_TRAPS_PER_RUN => NextCall::Stop(Failure::new(format!(
                    "stopped after {} sandbox traps; the storages not reported are left for the next run",
                    self.traps
                ))),
                (Some(_), None) => {
                    let mut done: Vec<String> = self.reported.iter().cloned().collect();
                    done.sort_unstable();
                    self.options.done = done;
                    self.options.done_unnamed = self.unnamed_reported;
                    self.options.purge_deleting = false;
                    NextCall::Collect(self.options.clone())
                }
            },
            Ended::Returned(Some(stopped)) => NextCall::Stop(
                self.halted
                    .take()
                    .or_else(|| self.append_error.take())
                    .map_or_else(|| check::failure(stopped), Failure::new),
            ),
            Ended::Trapped(cause) => self.interrupted(cause, false),
            Ended::Halted(why) => {
                self.halted.get_or_insert(why.clone());
                self.interrupted(why, true)
            }
        }
    }

    /// What a trap interrupted, for the plugin's `recover` in a fresh
    /// instance: the storages durable but not reported, the storage to
    /// blame (the one the plugin lied about, or the one it was working on;
    /// none when the host halted it), and whether that storage's recovery
    /// trapped too. A recovery is always tried, even past the trap budget,
    /// so that storages whose lines are out get deleted; it makes progress
    /// (a storage whose recovery trapped is not tried again), but one that
    /// traps outside any storage is not retried.
    fn interrupted(&mut self, failure: String, halted: bool) -> NextCall {
        self.traps += 1;
        let previous = self.recovering.take();
        let lie = self.lie.take();
        let current = self.current.take();
        let lied = lie.is_some();
        let (blamed, mut cause) = match lie {
            Some((storage, what)) => (storage, format!("guest lied: {}", bounded(&what))),
            None => (current.filter(|_| !halted), bounded(&failure)),
        };
        let trapped_again = previous.as_ref().is_some_and(|p| p.blamed.is_some() && p.blamed == blamed);
        if let (true, Some(p)) = (trapped_again, &previous) {
            cause = bounded(&format!("{}; trapped again: {cause}", p.cause));
        }
        if let Some(previous) = previous.as_ref().filter(|_| blamed.is_none() && !lied) {
            return NextCall::Stop(Failure::new(self.halted.take().unwrap_or_else(|| {
                format!(
                    "the recovery trapped outside any storage: {}; it was recovering from: {}",
                    bounded(&failure),
                    previous.cause
                )
            })));
        }
        if self.traps > MAX_TRAPS_PER_RUN + self.batch_size {
            return NextCall::Stop(Failure::new(format!("stopped after {} sandbox traps", self.traps)));
        }
        let lines = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let x = Interrupted {
            appended: self
                .appended
                .in_append_order()
                .map(|(n, l)| AppendedStorage { name: n.clone(), lines: lines(l) })
                .collect(),
            blamed,
            cause,
            lied,
            trapped_again,
            dry_run: self.options.dry_run,
        };
        self.recovering = Some(x.clone());
        NextCall::Recover(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::OutcomeKind;

    fn books(root: &Path) -> Books {
        let options = CollectOptions { batch_size: 4, ..CollectOptions::events("small") };
        Books::new(options, root)
    }

    fn report(name: &str, outcome: OutcomeKind, events: u32) -> StorageReport {
        StorageReport::new(name, outcome, "x", events)
    }

    fn recover(call: NextCall) -> Interrupted {
        match call {
            NextCall::Recover(x) => x,
            NextCall::Collect(_) => panic!("collect, not recover"),
            NextCall::Done => panic!("done, not recover"),
            NextCall::Stop(why) => panic!("stop, not recover: {why}"),
        }
    }

    fn stop(call: NextCall) -> String {
        match call {
            NextCall::Stop(why) => why.message,
            _ => panic!("the run goes on"),
        }
    }

    #[test]
    fn a_collect_of_a_pulled_runner_may_touch_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(dir.path());
        b.options.pulled = Some("p1".into());
        assert!(b.begin_storage("p1".into()).is_ok());
        assert!(b.begin_storage(DELETING_DIR.into()).is_ok());
        let lie = b.begin_storage("other".into()).unwrap_err();
        assert!(lie.contains("while collecting the pulled runner"), "{lie}");
        let lie = b.report(report("other", OutcomeKind::Failed, 0)).unwrap_err();
        assert!(lie.contains("\"other\""), "{lie}");
        assert!(b.report(report("p1", OutcomeKind::Failed, 0)).is_ok());
    }

    #[test]
    fn a_pulled_runner_with_a_name_no_storage_may_have_is_refused_before_any_call() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["../x", ".quarantine", "", &"x".repeat(256)] {
            let mut b = books(dir.path());
            b.options.pulled = Some(name.into());
            let why = stop(b.next(None));
            assert!(why.starts_with("refusing to collect the pulled runner: "), "{name:?}: {why}");
        }
    }

    #[test]
    fn a_pulled_runner_once_reported_is_done_even_when_it_left_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = books(dir.path());
        b.options.pulled = Some("p1".into());
        assert!(matches!(b.next(None), NextCall::Collect(_)));
        b.begin_storage("p1".into()).unwrap();
        // It traps; the recovery quarantines it (it leaves the root).
        let x = recover(b.next(Some(Ended::Trapped("boom".into()))));
        assert_eq!(x.blamed.as_deref(), Some("p1"));
        let mut quarantined = report("p1", OutcomeKind::Quarantined, 0);
        quarantined.detail = "sandbox-trap: boom; moved to .quarantine/p1.1.000000".into();
        b.report(quarantined).unwrap();
        match b.next(Some(Ended::Returned(None))) {
            NextCall::Collect(o) => assert_eq!(o.done, ["p1"], "staged again otherwise"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_trap_is_recovered_then_the_collect_resumes_without_what_was_reported() {
        let root = tempfile::tempdir().unwrap();
        let mut books = books(root.path());
        assert!(matches!(books.next(None), NextCall::Collect(o) if o.done.is_empty() && o.purge_deleting));
        books.begin_storage("r1".into()).unwrap();
        books.report(report("r1", OutcomeKind::NoData, 0)).unwrap();
        books.begin_storage("r2".into()).unwrap();
        let x = recover(books.next(Some(Ended::Trapped("boom".into()))));
        assert_eq!(
            (x.blamed.as_deref(), x.cause.as_str(), x.lied, x.trapped_again),
            (Some("r2"), "boom", false, false)
        );
        books.report(report("r2", OutcomeKind::Quarantined, 0)).unwrap_err(); // names no quarantine location: a lie
        let again = recover(books.next(Some(Ended::Trapped("trap in recovery".into()))));
        assert!(again.lied && again.blamed.as_deref() == Some("r2"), "{}", again.cause);
        books.report(report("r2", OutcomeKind::Failed, 0)).unwrap();
        // r1 was seen to leave the root (no data: deleted), so it is in no
        // listing any more and not remembered; r2 failed and is still there.
        assert!(!books.was_reported("r1") && books.was_reported("r2"));
        match books.next(Some(Ended::Returned(None))) {
            NextCall::Collect(o) => assert!(o.done == ["r2"] && !o.purge_deleting, "{:?}", o.done),
            _ => panic!("the collect must resume"),
        }
        assert!(matches!(books.next(Some(Ended::Returned(None))), NextCall::Done));
    }

    #[test]
    fn the_books_remember_only_the_storages_still_in_the_root() {
        // A run over 10,000 storages that all leave the root keeps no name,
        // so the keeper's memory does not grow with the root.
        let root = tempfile::tempdir().unwrap();
        let mut books = books(root.path());
        books.next(None);
        for i in 0..10_000 {
            let name = format!("r{i}");
            books.begin_storage(name.clone()).unwrap();
            books.report(report(&name, OutcomeKind::NoData, 0)).unwrap();
        }
        books.begin_storage("kept".into()).unwrap();
        books.report(report("kept", OutcomeKind::Failed, 0)).unwrap();
        assert_eq!(books.reported.len(), 1);
        assert!(books.report(report("kept", OutcomeKind::Failed, 0)).unwrap_err().contains("twice"));
    }

    #[test]
    fn lies_are_booked_against_the_storage_they_concern() {
        let root = tempfile::tempdir().unwrap();
        let mut books = books(root.path());
        books.next(None);
        assert!(books.begin_storage("../etc".into()).is_err());
        let x = recover(books.next(Some(Ended::Trapped("stopped".into()))));
        assert!(
            x.lied && x.blamed.as_deref() == Some("../etc") && x.cause.starts_with("guest lied: named"),
            "{}",
            x.cause
        );
        // A report of a name never appended, claiming lines.
        assert!(books.report(report("r3", OutcomeKind::Failed, 2)).is_err());
        assert!(books
            .job_metrics(&RunnerMetrics {
                installation_start_timestamp: None,
                installed_timestamp: 1.0,
                pre_job: None,
                post_job: None,
                runner_name: "r3".into(),
            })
            .unwrap_err()
            .contains("outside any storage"));
    }

    #[test]
    fn lines_count_once_durable_and_a_failed_append_stops_the_run_in_the_hosts_words() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("r1")).unwrap();
        let mut books = books(root.path());
        books.next(None);
        let batch = [StorageOutput { runner_name: "r1".into(), source: crate::bindings::Rendered::Events(vec![]) }];
        books.append(&batch).unwrap();
        books.appended(None);
        assert_eq!(books.appended_lines("r1"), Some(0));
        assert!(books.append(&batch).unwrap_err().contains("twice"));
        books.lie = None;
        let batch = [StorageOutput { runner_name: "r2".into(), source: crate::bindings::Rendered::Events(vec![]) }];
        assert!(books.append(&batch).unwrap_err().contains("not a directory of the storage root"));
        books.lie = None;
        std::fs::create_dir(root.path().join("r2")).unwrap();
        books.append(&batch).unwrap();
        books.appended(Some("writing events to log: disk full".into()));
        assert_eq!(books.appended_lines("r2"), None);
        assert_eq!(
            stop(books.next(Some(Ended::Returned(Some(Failure::new("append failed")))))),
            "writing events to log: disk full"
        );
    }

    #[test]
    fn a_recovery_gets_the_durable_storages_in_the_order_they_were_appended() {
        let root = tempfile::tempdir().unwrap();
        let names = ["r7", "r1", "r5", "r3", "r9", "r2", "r8"];
        for name in names {
            std::fs::create_dir(root.path().join(name)).unwrap();
        }
        let mut books = books(root.path());
        books.next(None);
        let output =
            |name: &str| StorageOutput { runner_name: name.into(), source: crate::bindings::Rendered::Events(vec![]) };
        books.append(&names[..4].iter().map(|n| output(n)).collect::<Vec<_>>()).unwrap();
        books.appended(None);
        books.append(&names[4..].iter().map(|n| output(n)).collect::<Vec<_>>()).unwrap();
        books.appended(None);
        std::fs::remove_dir(root.path().join("r5")).unwrap();
        books.report(report("r5", OutcomeKind::Extracted, 0)).unwrap();
        let x = recover(books.next(Some(Ended::Trapped("trap".into()))));
        let order: Vec<&str> = x.appended.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(order, ["r7", "r1", "r3", "r9", "r2", "r8"]);
    }

    #[test]
    fn held_claims_are_taken_in_order_up_to_the_first_lie() {
        let root = tempfile::tempdir().unwrap();
        let mut books = books(root.path());
        books.next(None);
        let metrics = |name: &str| RunnerMetrics {
            installation_start_timestamp: None,
            installed_timestamp: 1.0,
            pre_job: None,
            post_job: None,
            runner_name: name.into(),
        };
        books
            .take(vec![
                Claim::BeginStorage("r1".into()),
                Claim::JobMetrics(metrics("r1")),
                Claim::EndStorage,
                Claim::BeginStorage("r2".into()),
            ])
            .unwrap();
        assert_eq!(books.current().as_deref(), Some("r2"));
        // Job metrics of another storage than the current one: a lie.
        let lie = books.take(vec![Claim::JobMetrics(metrics("r1"))]).unwrap_err();
        assert!(lie.contains("r1"), "{lie}");
        books.lie = None;
        let lie = books
            .take(vec![Claim::EndStorage, Claim::BeginStorage("../etc".into()), Claim::BeginStorage("r3".into())])
            .unwrap_err();
        assert!(lie.starts_with("named"), "{lie}");
        // Taken up to the lie, not past it.
        assert_eq!(books.current(), None);
        let x = recover(books.next(Some(Ended::Trapped(format!("guest lied: {lie}")))));
        assert!(x.lied && x.blamed.as_deref() == Some("../etc"), "{x:?}");
    }

    #[test]
    fn a_halted_run_recovers_blaming_no_storage_then_stops() {
        let root = tempfile::tempdir().unwrap();
        let mut books = books(root.path());
        books.next(None);
        books.begin_storage("r1".into()).unwrap();
        let x = recover(books.next(Some(Ended::Halted("a callback failed: nope".into()))));
        assert_eq!(x.blamed, None);
        assert_eq!(stop(books.next(Some(Ended::Returned(None)))), "a callback failed: nope");
    }

    #[test]
    fn traps_are_budgeted_and_a_recovery_trapping_outside_any_storage_stops_the_run() {
        let root = tempfile::tempdir().unwrap();
        let mut books = books(root.path());
        books.next(None);
        for trap in 1..=MAX_TRAPS_PER_RUN {
            recover(books.next(Some(Ended::Trapped("trap".into()))));
            let after = books.next(Some(Ended::Returned(None)));
            if trap < MAX_TRAPS_PER_RUN {
                assert!(matches!(after, NextCall::Collect(_)), "trap {trap}");
            } else {
                assert!(stop(after).starts_with("stopped after 16 sandbox traps"));
            }
        }
        let mut books = self::books(root.path());
        books.next(None);
        recover(books.next(Some(Ended::Trapped("first".into()))));
        let why = stop(books.next(Some(Ended::Trapped("second".into()))));
        assert_eq!(why, "the recovery trapped outside any storage: second; it was recovering from: first");
    }
}
