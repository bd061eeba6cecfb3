// `collect` over the Rust host library, bound with napi-rs (hosts/node/native, the addon
// runner-metrics.node): the code `runner-metrics collect` runs, with the confined filesystem,
// the root's lock, the caps, the keeper and bounded storages, on a thread of libuv's pool. The
// options and the summary are `collect`'s (index.js); `dryRun` is `keep`'s new name. The run asks
// for what the caller lends (jobMetrics per extracted runner, a sink's append per batch, reports
// in batches of 64); a callback may be async.
import { createRequire } from 'node:module';
import { realpathSync, statSync } from 'node:fs';

import { CollectError, DEFAULT_LIMITS, DEFAULT_METRICS_LOG, METRICS_LOG_ENV } from './index.js';
import { countReport, jobAnswer, newSummary } from './shared.js';

const addon = createRequire(import.meta.url)('../runner-metrics.node');


/** A report as index.js hands them over (absent reason and file left out; `errors`, the filesystem
 * errors `detail` names, as `{operation, path, code, cause}` spelt as the WIT spells them). */
function reportOf(r) {
  return {
    name: r.name, outcome: r.outcome, reason: r.reason ?? undefined, file: r.file ?? undefined, detail: r.detail,
    events: r.events, errors: r.errors,
  };
}

/** The addon's options and request handler for `options`, and how to turn its outcome into the summary. */
function lent(options) {
  const sink = typeof options.metricsLog?.append === 'function' ? options.metricsLog : null;
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  let failed = null; // the first exception of onReport, thrown after the run
  const requests = async (request) => {
    if (request.kind === 'reports') {
      for (const r of request.reports) {
        try { if (!failed) options.onReport(reportOf(r)); } catch (e) { failed = e; }
      }
      addon.answer(request.run, undefined, undefined, undefined);
      return;
    }
    try {
      if (request.kind === 'jobMetrics') {
        const job = jobAnswer(await options.jobMetrics(request.metrics));
        addon.answer(request.run, job?.queueDuration, job?.conclusion, undefined);
      } else {
        await sink.append(request.lines);
        addon.answer(request.run, undefined, undefined, undefined);
      }
    } catch (e) {
      addon.answer(request.run, undefined, undefined, String(e?.message ?? e));
    }
  };
  const native = {
    exclude: [...(options.exclude ?? [])],
    include: options.include == null ? undefined : [...options.include],
    minAge: options.minAge == null ? undefined : Number(options.minAge),
    dryRun: Boolean(options.dryRun ?? options.keep),
    batchSize: Math.min(Math.max(1, Math.floor(options.batchSize ?? 64)), 2 ** 32 - 1),
    waitSeconds: Number(options.wait ?? 0),
    policy: options.policy ?? 'strict',
    metricsLog: sink ? undefined : (options.metricsLog ?? (process.env[METRICS_LOG_ENV] || DEFAULT_METRICS_LOG)),
    jobMetrics: typeof options.jobMetrics === 'function',
    onReport: typeof options.onReport === 'function',
    memoryBytes: limits.memoryBytes,
    timeoutMs: limits.timeoutMs,
  };
  const summarize = (outcome) => {
    const summary = newSummary();
    for (const r of outcome.reports) countReport(summary, reportOf(r));
    if (outcome.error != null) throw new CollectError(outcome.error, summary, failed ?? undefined);
    if (outcome.callbackError != null) throw new CollectError(`a callback failed: ${outcome.callbackError}`, summary);
    if (failed) throw failed;
    return summary;
  };
  return { native, requests, summarize };
}

/** `dir` resolved, once it is seen to be a directory: the storage root of a run. */
function rootOf(dir) {
  const root = realpathSync(dir);
  if (!statSync(root).isDirectory()) throw new Error(`storage root ${root} is not a directory`);
  return root;
}

/**
 * Collects `storageRoot` for runners of `flavor`, as index.js's `collect`: resolves to
 * {extracted, noData, quarantined, skipped, failed, linesWritten, reports}; rejects with
 * CollectError when the run could not finish.
 */
export async function collect(storageRoot, flavor, options = {}) {
  const root = rootOf(storageRoot);
  const { native, requests, summarize } = lent(options);
  return summarize(await addon.collect(root, flavor, native, requests));
}

/**
 * Collects one runner the manager pulled itself, as index.js's `ingest` (which checks the
 * arguments and hands `files` over as `pulled`: a Uint8Array stream, or the loose files).
 */
export async function ingest(runnerName, pulled, quarantineDir, flavor, installationStart, options = {}) {
  const root = rootOf(quarantineDir);
  const { native, requests, summarize } = lent({ ...options, dryRun: false, keep: false });
  const [tar, loose] = pulled instanceof Uint8Array ? [Buffer.from(pulled), undefined] : [undefined, pulled];
  return summarize(await addon.ingest(runnerName, tar, loose, installationStart, root, flavor, native, requests));
}
