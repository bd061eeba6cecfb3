// Runs the runner-metrics WebAssembly component on Node.
//
// The component is transpiled by jco (`npm run transpile`, into ../generated)
// and instantiated with the WASI preview2 shim. Every instance gets its own
// WASIShim whose only preopen is the storage root, as /storage; no
// environment, no arguments, no network.
//
// LIMITS: the shim runs the guest on Node's own WebAssembly engine, which has
// no per-instance memory cap, no fuel and no deadline: a guest that loops
// forever blocks the event loop, and one that allocates grows until V8's
// limit (4 GiB of wasm32 memory). The shim's filesystem is path based (it
// checks symlinks itself rather than opening relative to a directory
// handle). Use the Rust or Python host where those limits matter.
//
//   import { collect } from 'runner-metrics-node-host';
//   const summary = await collect('/home/ubuntu/runner-fs', 'small', {
//     exclude: busyRunners,
//     jobMetrics: (metrics) => ({ queueDuration: 12, conclusion: 'success' }), // or null
//     metricsLog: '/var/log/github-runner-metrics.log',
//   });
//
// Same pipeline and semantics as the Rust host (host/src/collect.rs): scan,
// decide each storage, append the lines and fsync, then delete; a trap
// quarantines the storage (`sandbox-trap`) with a fresh instance.

import { closeSync, fstatSync, fsyncSync, openSync, readSync, realpathSync, statSync, writeSync, constants, lstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { types as filesystemTypes } from '@bytecodealliance/preview2-shim/filesystem';

export const DEFAULT_METRICS_LOG = '/var/log/github-runner-metrics.log';
export const METRICS_LOG_ENV = 'METRICS_LOG_PATH';
export const GUEST_ROOT = '/storage';

// preview2-shim 0.26.1 refuses `read-directory` on a preopened directory
// itself ("bad-descriptor": its preopen descriptors have no path of their
// own), while wasmtime allows it. The guest lists the root that way, so
// such a call is answered by listing "." opened relative to the preopen
// (no symlink following, directory only, read only): same entries, same
// sandbox.
{
  const { Descriptor } = filesystemTypes;
  const original = Descriptor.prototype.readDirectory;
  if (!original.runnerMetricsPatched) {
    const patched = function readDirectory() {
      try {
        return original.call(this);
      } catch (e) {
        if (e !== 'bad-descriptor') throw e;
        const self = this.openAt({ symlinkFollow: false }, '.', { directory: true }, { read: true });
        return original.call(self);
      }
    };
    patched.runnerMetricsPatched = true;
    Descriptor.prototype.readDirectory = patched;
  }
}

const here = dirname(fileURLToPath(import.meta.url));
const DEFAULT_GENERATED = resolve(here, '..', 'generated');
const EXTRACTION = 'github-runner:metrics/extraction@0.1.0';
const EVENTS = 'github-runner:metrics/events@0.1.0';
const SCAN_BATCH = 256;
// How much of a runner name starts a quarantine location (host/src/check.rs).
const ENTRY_NAME_PREFIX = 200;
const MAX_MESSAGE = 4096;
const MAX_LINE = 16 * 1024;
const MAX_FIELD = 1024;
const EVENT_KINDS = { 'runner-installed': 'runner_installed', 'runner-start': 'runner_start', 'runner-stop': 'runner_stop' };
const CONCLUSIONS = ['action-required', 'cancelled', 'failure', 'neutral', 'skipped', 'success', 'timed-out'];

/** A guest call that did not return (a trap) or an instantiation failure. */
export class GuestFailure extends Error {}

/** The run could not start or had to stop; `summary` has the reports so far. */
export class CollectError extends Error {
  constructor(message, summary) {
    super(message);
    this.summary = summary;
  }
}

/** The transpiled component, compiled once; sandboxes are made from it. */
export class Plugin {
  static async load(generatedDir = DEFAULT_GENERATED) {
    const glue = join(generatedDir, 'runner_metrics.js');
    let mod;
    try {
      mod = await import(pathToFileURL(glue).href);
    } catch (e) {
      throw new Error(`cannot load ${glue} (run \`npm run transpile\` first): ${e.message}`);
    }
    const modules = new Map();
    const getCoreModule = async (name) => {
      if (!modules.has(name)) {
        modules.set(name, WebAssembly.compile(await readFile(join(generatedDir, name))));
      }
      return modules.get(name);
    };
    return new Plugin(mod.instantiate, getCoreModule);
  }

  constructor(instantiate, getCoreModule) {
    this.instantiate = instantiate;
    this.getCoreModule = getCoreModule;
  }

  /** One instance whose only capability is `storageRoot`, as /storage. */
  async sandbox(storageRoot) {
    const shim = new WASIShim({
      sandbox: { preopens: { [GUEST_ROOT]: storageRoot }, env: {}, args: [], enableNetwork: false },
    });
    const imports = shim.getImportObject();
    // Nothing about the host leaks through the environment interface either.
    imports['wasi:cli/environment'] = {
      getEnvironment: () => [],
      getArguments: () => [],
      initialCwd: () => undefined,
    };
    try {
      const root = await this.instantiate(this.getCoreModule, imports);
      return new Sandbox(root);
    } catch (e) {
      throw new GuestFailure(`instantiating the runner-metrics component: ${e.message}`);
    }
  }
}

/** Calls into one instance; a trap becomes a GuestFailure, a WIT `err` a value. */
class Sandbox {
  constructor(root) {
    this.extraction = root.extraction ?? root[EXTRACTION];
    this.events = root.events ?? root[EVENTS];
    if (!this.extraction || !this.events) throw new GuestFailure('the component lacks the runner-metrics exports');
  }

  /** `{ ok }` or `{ err }` for a WIT result; throws GuestFailure on a trap. */
  call(what, f) {
    try {
      return { ok: f() };
    } catch (e) {
      if (e && Object.prototype.hasOwnProperty.call(e, 'payload')) return { err: e.payload };
      throw new GuestFailure(`guest ${what} trapped: ${e?.message ?? e}`);
    }
  }

  startScan(selection) {
    return this.call('scan', () => new this.extraction.Scan(selection)).ok;
  }
  nextBatch(scan, max) {
    return this.call('scan', () => scan.nextBatch(max));
  }
  extractStorage(name, keep) {
    return this.call('extraction', () => this.extraction.extractStorage(name, keep)).ok;
  }
  deleteStorage(name) {
    return this.call('deletion', () => this.extraction.deleteStorage(name));
  }
  quarantineStorage(name, reason, detail) {
    return this.call('quarantine', () => this.extraction.quarantineStorage(name, reason, detail));
  }
  purgeDeleting() {
    return this.call('purge', () => this.extraction.purgeDeleting());
  }
  listQuarantine() {
    return this.call('quarantine listing', () => this.extraction.listQuarantine());
  }
  issueEvents(metrics, flavor, job) {
    return this.call('events', () => this.events.issueEvents(metrics, flavor, job)).ok;
  }
  renderEvent(event) {
    return this.call('rendering', () => this.events.renderEvent(event)).ok;
  }
}

/** Append-only JSON-lines log; `append` returns once the lines are on disk. */
export class MetricsLog {
  constructor(path) {
    this.path = path;
    this.fd = openSync(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_CLOEXEC, 0o644);
    try {
      const st = fstatSync(this.fd);
      if (!st.isFile()) throw new Error(`metrics log ${path}: not a regular file`);
      // A line cut by a crash is terminated, so ours start on their own line.
      if (st.size > 0) {
        const last = Buffer.alloc(1);
        readSync(this.fd, last, 0, 1, st.size - 1);
        if (last[0] !== 0x0a) {
          writeSync(this.fd, '\n');
          fsyncSync(this.fd);
        }
      }
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }
  append(lines) {
    if (lines.length === 0) return;
    const data = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'ascii');
    let offset = 0;
    while (offset < data.length) offset += writeSync(this.fd, data, offset);
    fsyncSync(this.fd);
  }
  close() {
    closeSync(this.fd);
  }
  describe() {
    return this.path;
  }
}

const bounded = (s) => (s.length <= MAX_MESSAGE ? s : `${s.slice(0, MAX_MESSAGE)}... (${s.length - MAX_MESSAGE} characters cut)`);
const validName = (n) => typeof n === 'string' && n.length > 0 && n.length <= 255 && !n.startsWith('.') && /^[A-Za-z0-9._-]+$/.test(n);
const isTime = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function checkMetrics(root, name, m) {
  if (m.runnerName !== name) throw new Error(`guest answered for ${JSON.stringify(bounded(m.runnerName))} when asked about ${name}`);
  let st;
  try {
    st = lstatSync(join(root, name));
  } catch {
    st = null;
  }
  if (!st?.isDirectory()) throw new Error(`guest extracted ${name}, which is not a directory of the storage root`);
  if (m.installationStartTimestamp !== undefined && !isTime(m.installationStartTimestamp)) throw new Error('bad installation start timestamp');
  if (!isTime(m.installedTimestamp)) throw new Error('bad installed timestamp');
  if (m.preJob) {
    if (!isTime(m.preJob.timestamp)) throw new Error('bad pre-job timestamp');
    for (const key of ['workflow', 'workflowRunId', 'event']) {
      if (Buffer.byteLength(m.preJob[key]) > MAX_FIELD) throw new Error(`${key} is longer than a metrics file can hold`);
    }
    const repo = m.preJob.repository;
    // Some '/' with at least one character on each side (spec 3.1), as the
    // reference's `.+/.+`: "//r" is fine.
    if (repo !== undefined && (!repo.slice(1, -1).includes('/') || Buffer.byteLength(repo) > MAX_FIELD)) {
      throw new Error(`repository ${JSON.stringify(bounded(repo))} is not owner/repo`);
    }
  }
  if (m.postJob && !isTime(m.postJob.timestamp)) throw new Error('bad post-job timestamp');
}

function checkEvents(events) {
  if (events.length > 3) throw new Error(`guest issued ${events.length} events for one runner; at most 3 exist`);
  for (const e of events) {
    if (!(e.tag in EVENT_KINDS)) throw new Error(`guest issued an unknown event ${e.tag}`);
    for (const key of ['timestamp', 'duration', 'idle', 'queueDuration', 'jobDuration']) {
      if (e.val[key] !== undefined && !isTime(e.val[key])) throw new Error(`${e.tag} ${key} is not a finite number >= 0`);
    }
  }
}

/** What a line rendered from `event` must hold, key by key (spec 5). */
function expectedFields(event) {
  const e = event.val;
  const fields = { event: EVENT_KINDS[event.tag], timestamp: e.timestamp, flavor: e.flavor };
  if (event.tag === 'runner-installed') return { ...fields, duration: e.duration };
  Object.assign(fields, { workflow: e.workflow, repo: e.repo, github_event: e.githubEvent });
  if (event.tag === 'runner-start') {
    fields.idle = e.idle;
    if (e.queueDuration !== undefined) fields.queue_duration = e.queueDuration;
    return fields;
  }
  Object.assign(fields, { status: e.status, job_duration: e.jobDuration });
  if (e.statusInfo !== undefined) fields.status_info = { code: Number(e.statusInfo.code) };
  if (e.jobConclusion !== undefined) fields.job_conclusion = e.jobConclusion.replaceAll('-', '_');
  return fields;
}

function sameValue(got, want) {
  if (want !== null && typeof want === 'object') {
    if (got === null || typeof got !== 'object' || Array.isArray(got)) return false;
    const keys = Object.keys(want);
    return Object.keys(got).length === keys.length && keys.every((k) => sameValue(got[k], want[k]));
  }
  return got === want;
}

/** The line holds exactly the keys and values of `event`, of `flavor`. */
function checkLine(line, event, flavor) {
  const kind = EVENT_KINDS[event.tag];
  if (event.val.flavor !== flavor) throw new Error(`guest issued a ${kind} event of flavor ${JSON.stringify(bounded(String(event.val.flavor)))}, not ${JSON.stringify(flavor)}`);
  if (typeof line !== 'string' || line.length > MAX_LINE) throw new Error('guest rendered an over-long line');
  if (!/^[\x20-\x7e]*$/.test(line)) throw new Error('guest rendered a line with control or non-ASCII characters');
  let value;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new Error(`guest rendered a line that is not JSON: ${e.message}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`guest rendered a ${kind} line that is not a JSON object`);
  const expected = expectedFields(event);
  for (const [key, want] of Object.entries(expected)) {
    if (!(key in value)) throw new Error(`guest rendered a ${kind} line without ${JSON.stringify(key)}`);
    if (!sameValue(value[key], want)) throw new Error(`guest rendered a ${kind} line whose ${JSON.stringify(key)} differs from the event`);
  }
  const extra = Object.keys(value).find((k) => !(k in expected));
  if (extra !== undefined) throw new Error(`guest rendered a ${kind} line with a key the event does not have: ${JSON.stringify(bounded(extra))}`);
}

function jobToWit(job) {
  if (job === null || job === undefined) return undefined;
  const queueDuration = Number(job.queueDuration ?? job.queue_duration);
  if (!Number.isFinite(queueDuration)) throw new Error(`queue duration ${queueDuration} is not finite`);
  let conclusion = job.conclusion ?? undefined;
  if (conclusion !== undefined) {
    conclusion = String(conclusion).toLowerCase().replaceAll('_', '-');
    if (!CONCLUSIONS.includes(conclusion)) conclusion = undefined; // unknown: left out (spec 5)
  }
  return { queueDuration, conclusion };
}

function skipDetail(reason) {
  switch (reason.tag) {
    case 'too-young':
      return `too young (${reason.val.toFixed(0)}s old)`;
    case 'excluded':
      return 'excluded';
    case 'not-included':
      return 'not included';
    case 'not-a-directory':
      return 'not a plain directory; left alone';
    case 'invalid-name':
      return 'not a valid runner name; left alone';
    case 'vanished':
      return 'gone before it was handled';
    default:
      return reason.tag;
  }
}

function quarantineDetail(info) {
  const place = info.location ? `moved to .quarantine/${info.location}` : 'would be quarantined';
  const file = info.file ? ` ${info.file}` : '';
  return `${info.reason}:${file} ${bounded(info.detail)}; ${place}`;
}

function openSink(metricsLog) {
  if (metricsLog && typeof metricsLog === 'object' && typeof metricsLog.append === 'function') return { sink: metricsLog, owned: false };
  const path = metricsLog ?? (process.env[METRICS_LOG_ENV] || DEFAULT_METRICS_LOG);
  return { sink: new MetricsLog(path), owned: true };
}

let sharedPlugin;

/**
 * Extracts every selected storage under `storageRoot`, appends the events of
 * the `flavor` runners to the metrics log, and deletes or quarantines the
 * storages, as the Rust host does.
 *
 * options: exclude (names never touched), include (only these), minAge
 * (seconds), jobMetrics(metrics) -> {queueDuration, conclusion} | null,
 * metricsLog (path, default $METRICS_LOG_PATH else
 * /var/log/github-runner-metrics.log, or an object with append(lines)),
 * keep (dry run), plugin, onReport(report), batchSize.
 *
 * Resolves to a summary {extracted, noData, quarantined, skipped, failed,
 * linesWritten, reports}; rejects with CollectError when the run could not
 * start or had to stop.
 */
export async function collect(storageRoot, flavor, options = {}) {
  const plugin = options.plugin ?? (sharedPlugin ??= await Plugin.load());
  const root = realpathSync(storageRoot);
  if (!statSync(root).isDirectory()) throw new Error(`storage root ${root} is not a directory`);
  const selection = {
    exclude: [...(options.exclude ?? [])],
    include: options.include == null ? undefined : [...options.include],
    minAgeSeconds: options.minAge == null ? undefined : Number(options.minAge),
  };
  const { sink, owned } = openSink(options.metricsLog);
  const run = new Run(plugin, root, flavor, options, sink);
  try {
    await run.go(selection);
  } finally {
    if (owned) sink.close();
  }
  return run.summary;
}

class Run {
  constructor(plugin, root, flavor, options, sink) {
    this.plugin = plugin;
    this.root = root;
    this.flavor = flavor;
    this.keep = Boolean(options.keep);
    this.jobs = options.jobMetrics;
    this.onReport = options.onReport;
    this.batchSize = Math.max(1, options.batchSize ?? 64);
    this.sink = sink;
    this.worker = null;
    this.pending = [];
    this.summary = { extracted: 0, noData: 0, quarantined: 0, skipped: 0, failed: 0, linesWritten: 0, reports: [] };
  }

  fail(message) {
    return new CollectError(message, this.summary);
  }

  report(name, outcome, detail, { events = 0, reason, file } = {}) {
    const report = { name, outcome, detail, events, reason, file };
    const key = { extracted: 'extracted', 'no-data': 'noData', quarantined: 'quarantined', skipped: 'skipped', failed: 'failed' }[outcome];
    this.summary[key] += 1;
    this.summary.linesWritten += events;
    this.summary.reports.push(report);
    this.onReport?.(report);
  }

  async getWorker() {
    this.worker ??= await this.plugin.sandbox(this.root);
    return this.worker;
  }

  async go(selection) {
    let scanner, scan;
    try {
      scanner = await this.plugin.sandbox(this.root);
      scan = scanner.startScan(selection);
    } catch (e) {
      throw this.fail(`starting the scan of ${this.root}: ${e.message}`);
    }
    if (!this.keep) await this.purgeDeleting();
    for (;;) {
      let batch;
      try {
        batch = scanner.nextBatch(scan, SCAN_BATCH);
      } catch (e) {
        throw this.fail(`listing the storage root ${this.root}: ${e.message}`);
      }
      if ('err' in batch) throw this.fail(`listing the storage root ${this.root}: ${bounded(String(batch.err))}`);
      if (batch.ok.length === 0) break;
      for (const entry of batch.ok) {
        const label = entry.name ?? '<non-UTF-8 name>';
        if (entry.skipped !== undefined) {
          this.report(label, 'skipped', skipDetail(entry.skipped), { reason: entry.skipped.tag });
        } else if (!validName(entry.name)) {
          this.report(label, 'failed', `guest offered ${JSON.stringify(bounded(label))} as a storage, which is not a valid runner name`);
        } else {
          await this.candidate(entry.name);
        }
      }
    }
    await this.flush();
    try {
      scan[Symbol.dispose]?.();
    } catch {
      // the scanner is dropped either way
    }
  }

  /** Finishes deletions a crash cut short (already extracted storages in
   * `.deleting/`). A failure is reported and the run goes on. */
  async purgeDeleting() {
    let problem;
    try {
      const result = (await this.getWorker()).purgeDeleting();
      if (!('err' in result)) return;
      problem = bounded(String(result.err));
    } catch (trap) {
      this.worker = null;
      problem = trap.message;
    }
    this.report('.deleting', 'failed', `leftover deletions kept: ${problem}`);
  }

  async candidate(name) {
    let outcome;
    try {
      outcome = (await this.getWorker()).extractStorage(name, this.keep);
    } catch (e) {
      return this.afterTrap(name, e.message);
    }
    const { tag, val } = outcome;
    if (tag === 'extracted') {
      try {
        checkMetrics(this.root, name, val);
      } catch (e) {
        this.worker = null; // a lying guest is not trusted with the next storage
        return this.report(name, 'failed', `kept: ${e.message}`);
      }
      return this.extracted(name, val);
    }
    if (tag === 'no-data') {
      return this.report(name, 'no-data', this.keep ? 'no installed timestamp; would be deleted' : 'no installed timestamp; deleted');
    }
    if (tag === 'quarantined') {
      const loc = val.location;
      // One entry name under .quarantine/, starting with (up to 200 bytes
      // of) the runner name, within the 255-byte name limit.
      if (loc && (!loc.startsWith(name.slice(0, ENTRY_NAME_PREFIX)) || loc.includes('/') || Buffer.byteLength(loc) > 255 || loc.startsWith('.'))) {
        this.worker = null;
        return this.report(name, 'failed', `kept: guest reported quarantine location ${JSON.stringify(bounded(loc))}`);
      }
      return this.report(name, 'quarantined', quarantineDetail(val), { reason: val.reason, file: val.file });
    }
    if (tag === 'skipped') return this.report(name, 'skipped', skipDetail(val), { reason: val.tag });
    return this.report(name, 'failed', `kept: ${bounded(String(val))}`);
  }

  /** The guest trapped on this storage: quarantine it with a fresh instance. */
  async afterTrap(name, detail) {
    this.worker = null;
    if (this.keep) return this.report(name, 'failed', `kept: ${detail}`);
    detail = bounded(detail);
    let result;
    try {
      result = (await this.getWorker()).quarantineStorage(name, 'sandbox-trap', detail);
    } catch (again) {
      this.worker = null;
      return this.report(name, 'failed', `kept: ${detail}; quarantine trapped too: ${again.message}`);
    }
    if ('err' in result) return this.report(name, 'failed', `kept: ${detail}; quarantine failed: ${bounded(String(result.err))}`);
    return this.report(name, 'quarantined', `sandbox-trap: ${detail}; moved to .quarantine/${result.ok.location}`, { reason: 'sandbox-trap' });
  }

  async extracted(name, metrics) {
    const job = this.jobs ? await this.jobs(metrics) : null;
    let lines;
    try {
      const worker = await this.getWorker();
      const events = worker.issueEvents(metrics, this.flavor, jobToWit(job));
      checkEvents(events);
      lines = events.map((event) => {
        const line = worker.renderEvent(event);
        checkLine(line, event, this.flavor);
        return line;
      });
    } catch (e) {
      if (e instanceof GuestFailure) return this.afterTrap(name, e.message);
      this.worker = null;
      return this.report(name, 'failed', `kept: ${e.message}`);
    }
    this.pending.push({ name, lines });
    if (this.pending.length >= this.batchSize) await this.flush();
  }

  /** Writes the queued lines durably, then deletes their storages. */
  async flush() {
    if (this.pending.length === 0) return;
    const pending = this.pending;
    this.pending = [];
    try {
      await this.sink.append(pending.flatMap((p) => p.lines));
    } catch (e) {
      for (const p of pending) this.report(p.name, 'failed', `kept: events not written: ${e.message}`);
      throw this.fail(`writing events to ${this.sink.describe?.() ?? 'the sink'}: ${e.message}`);
    }
    for (const { name, lines } of pending) {
      const events = lines.length;
      if (this.keep) {
        this.report(name, 'extracted', 'kept (dry run)', { events });
        continue;
      }
      let result;
      try {
        result = (await this.getWorker()).deleteStorage(name);
      } catch (trap) {
        this.worker = null;
        this.report(name, 'failed', `events written but storage kept: ${trap.message}`, { events });
        continue;
      }
      if ('err' in result) {
        this.report(name, 'failed', `events written but storage kept: ${bounded(String(result.err))}`, { events });
      } else if (result.ok === undefined) {
        this.report(name, 'extracted', 'deleted', { events });
      } else {
        this.report(name, 'extracted', `could not be deleted, so moved to .quarantine/${result.ok.location}: ${bounded(result.ok.detail)}`, { events });
      }
    }
  }
}
