// What both Node hosts (index.js's WebAssembly host and native.js's binding of the Rust host)
// do alike with the caller's answers and the reports: written once.

const CONCLUSIONS = ['action-required', 'cancelled', 'failure', 'neutral', 'skipped', 'success', 'timed-out'];
const COUNTS = { extracted: 'extracted', 'no-data': 'noData', quarantined: 'quarantined', skipped: 'skipped', failed: 'failed' };

/**
 * The caller's `jobMetrics` answer ({queueDuration or queue_duration, conclusion}, or nothing) as
 * the WIT's `github-job-metrics`: `undefined` for none; a conclusion GitHub does not know is left
 * out (spec 5); a queue duration that is not a finite number is an error.
 */
export function jobAnswer(job) {
  if (job == null) return undefined;
  const queueDuration = Number(job.queueDuration ?? job.queue_duration);
  if (!Number.isFinite(queueDuration)) throw new Error(`jobMetrics gave a queue duration of ${queueDuration}`);
  const conclusion = String(job.conclusion).toLowerCase().replaceAll('_', '-');
  return { queueDuration, conclusion: CONCLUSIONS.includes(conclusion) ? conclusion : undefined };
}

/** A run's summary before any report. */
export const newSummary = () => ({ extracted: 0, noData: 0, quarantined: 0, skipped: 0, failed: 0, linesWritten: 0, reports: [] });

/** Counts one report into `summary`. */
export function countReport(summary, report) {
  summary[COUNTS[report.outcome]] += 1;
  summary.linesWritten += report.events;
  summary.reports.push(report);
}
