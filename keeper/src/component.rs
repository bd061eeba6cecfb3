//! The component's export: the `run` resource over [`Books`]. Conversions
//! only; the books and checks are plain Rust in `books.rs` and `check.rs`.

use std::cell::RefCell;

use crate::bindings::exports::github_runner::metrics::books::{Guest, GuestRun, RunBorrow};
use crate::bindings::exports::runner_metrics::keeper_batch::claims;
use crate::bindings::Claim;
use crate::bindings::{CollectOptions, Ended, NextCall, RunBounds, RunnerMetrics, StorageOutput, StorageReport};
use crate::books::Books;

// Where the host preopens the storage root (read-only), as for the plugin.
use runner_metrics_core::fs::GUEST_ROOT as ROOT;

struct Component;

crate::bindings::export!(Component with_types_in crate::bindings);

impl Guest for Component {
    type Run = Run;

    fn bounds() -> RunBounds {
        crate::books::bounds()
    }
}

pub struct Run(RefCell<Books>);

impl GuestRun for Run {
    fn new(options: CollectOptions) -> Self {
        Self(RefCell::new(Books::new(options, ROOT)))
    }

    fn next(&self, last: Option<Ended>) -> NextCall {
        self.0.borrow_mut().next(last)
    }

    fn begin_storage(&self, name: String) -> Result<(), String> {
        self.0.borrow_mut().begin_storage(name)
    }

    fn end_storage(&self) {
        self.0.borrow_mut().end_storage()
    }

    fn job_metrics(&self, metrics: RunnerMetrics) -> Result<(), String> {
        self.0.borrow_mut().job_metrics(&metrics)
    }

    fn append(&self, batch: Vec<StorageOutput>) -> Result<Vec<String>, String> {
        self.0.borrow_mut().append(&batch)
    }

    fn appended(&self, error: Option<String>) {
        self.0.borrow_mut().appended(error)
    }

    fn report(&self, report: StorageReport) -> Result<StorageReport, String> {
        self.0.borrow_mut().report(report).map(|(report, _)| report)
    }

    fn current(&self) -> Option<String> {
        self.0.borrow().current()
    }
}

/// The Rust host's batched calls (`wit/keeper-batch`): the claims first,
/// then what the `run` method of the same name does.
impl claims::Guest for Component {
    fn take(run: RunBorrow<'_>, claims: Vec<Claim>) -> Result<(), String> {
        run.get::<Run>().0.borrow_mut().take(claims)
    }

    fn job_metrics(run: RunBorrow<'_>, claims: Vec<Claim>, metrics: RunnerMetrics) -> Result<(), String> {
        let run = run.get::<Run>();
        run.0.borrow_mut().take(claims)?;
        run.job_metrics(metrics)
    }

    fn append(run: RunBorrow<'_>, claims: Vec<Claim>, batch: Vec<StorageOutput>) -> Result<Vec<String>, String> {
        let run = run.get::<Run>();
        run.0.borrow_mut().take(claims)?;
        run.append(batch)
    }

    fn report(run: RunBorrow<'_>, claims: Vec<Claim>, report: StorageReport) -> Result<Option<StorageReport>, String> {
        let mut books = run.get::<Run>().0.borrow_mut();
        books.take(claims)?;
        // Nothing cut: the host passes on the report it handed over, and is
        // spared lifting the same strings back out of the keeper.
        books.report(report).map(|(report, cut)| cut.then_some(report))
    }
}
