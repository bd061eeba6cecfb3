// Runs the runner-metrics component (WIT 0.2.0, world `plugin`) on Node. The
// guest runs the whole collect in a worker thread (src/worker.js); its four
// `github-runner:metrics/host` imports block there (Atomics.wait) until this
// thread answers, re-checking every claim as host/src/imports.rs does. The
// worker's heap, the guest's memory and its time between two imports are
// capped; a trap, lie, crash or deadline kills the worker and the guest's
// `recover`, in a fresh one, finishes what was cut short (host/src/collect.rs
// does the same). See README.md.
import { closeSync, constants, fstatSync, fsyncSync, lstatSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';

export const DEFAULT_METRICS_LOG = '/var/log/github-runner-metrics.log';
export const METRICS_LOG_ENV = 'METRICS_LOG_PATH';
export const MAX_TRAPS_PER_RUN = 16;
/** Per sandbox: the guest's linear memory, the worker's V8 heap, guest time between two imports. */
export const DEFAULT_LIMITS = Object.freeze({ memoryBytes: 64 << 20, heapMb: 64, timeoutMs: 10_000 });
const [UNNAMED, DELETING, MAX_MESSAGE, MAX_LINE, MAX_FIELD] = ['<non-UTF-8 name>', '.deleting', 4096, 16 * 1024, 1024];
const KINDS = { 'runner-installed': 'runner_installed', 'runner-start': 'runner_start', 'runner-stop': 'runner_stop' };
const CONCLUSIONS = ['action-required', 'cancelled', 'failure', 'neutral', 'skipped', 'success', 'timed-out'];
const REASONS = ['oversized', 'not-regular-file', 'invalid-utf8', 'invalid-json', 'invalid-value', 'invalid-timestamp', 'sandbox-trap',
  'undeletable', 'excluded', 'not-included', 'too-young', 'not-a-directory', 'invalid-name', 'vanished'];
const COUNTS = { extracted: 'extracted', 'no-data': 'noData', quarantined: 'quarantined', skipped: 'skipped', failed: 'failed' };
const METRICS_FILES = ['runner-installation-start.timestamp', 'runner-installed.timestamp', 'pre-job-metrics.json', 'post-job-metrics.json'];

/** The run could not start or had to stop; `summary` has the reports so far. */
export class CollectError extends Error { constructor(message, summary, cause) { Object.assign(super(message, { cause }), { summary }); } }
/** A guest claim that does not hold, about `storage` (or none). */
class Lie extends Error { constructor(storage, what) { Object.assign(super(what), { storage }); } }

/** The transpiled component, compiled once (memory capped) and shared by every worker. */
export class Plugin {
  static async load(generatedDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'generated'), limits = {}) {
    const plugin = Object.assign(new Plugin(), { limits: { ...DEFAULT_LIMITS, ...limits }, modules: {} });
    plugin.glue = pathToFileURL(join(generatedDir, 'runner_metrics.js')).href;
    try {
      statSync(join(generatedDir, 'runner_metrics.js'));
      for (const f of readdirSync(generatedDir).filter((f) => f.endsWith('.wasm'))) {
        plugin.modules[f] = await WebAssembly.compile(capMemory(readFileSync(join(generatedDir, f)), plugin.limits.memoryBytes >>> 16));
      }
    } catch (e) {
      throw new Error(`cannot load the component from ${generatedDir} (run \`npm run transpile\` first): ${e.message}`);
    }
    return plugin;
  }
}

/** `wasm` with every memory it defines given a maximum of `pages` (64 KiB): growing past it fails. */
function capMemory(wasm, pages) {
  const enc = (n) => (n < 128 ? [n] : [(n % 128) | 128, ...enc(Math.floor(n / 128))]);
  const leb = (n = 0, scale = 1) => (wasm[p] & 128 ? leb(n + (wasm[p++] & 127) * scale, scale * 128) : n + wasm[p++] * scale);
  const out = [wasm.subarray(0, 8)];
  let p = 8;
  while (p < wasm.length) {
    const [start, id, size] = [p, wasm[p++], leb()];
    const [end, count] = [p + size, id === 5 ? leb() : 0]; // section 5: the memories the module defines
    const body = enc(count);
    for (let i = 0; i < count; i++) {
      const flags = wasm[p++];
      if (flags > 1) throw new Error(`a shared or 64-bit memory (flags ${flags}) cannot be capped`);
      const [min, max] = [leb(), flags ? leb() : Infinity];
      body.push(1, ...enc(min), ...enc(Math.min(max, pages)));
    }
    out.push(id === 5 ? Uint8Array.from([5, ...enc(body.length), ...body]) : wasm.subarray(start, end));
    p = end;
  }
  return Buffer.concat(out);
}

/** One worker holding one instance: `call` resolves to {ok} | {err} | {trap}. */
class Sandbox {
  constructor(plugin, run) {
    const { port1, port2 } = new MessageChannel();
    Object.assign(this, { run, port: port1, flag: new Int32Array(new SharedArrayBuffer(4)), ms: plugin.limits.timeoutMs });
    this.worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: { glue: plugin.glue, modules: plugin.modules, root: run.root, flag: this.flag, port: port2 }, transferList: [port2], env: {},
      resourceLimits: { maxOldGenerationSizeMb: plugin.limits.heapMb, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    }).on('message', (m) => this.message(m)).on('error', (e) => this.fail(`crashed: ${e.message}`)).on('exit', (c) => this.fail(`exited (${c})`));
  }
  call(fn, args) {
    if (this.dead) return { trap: this.dead };
    [this.what, this.result] = [fn, new Promise((settle) => (this.settle = settle))];
    this.arm();
    this.worker.postMessage({ fn, args });
    return this.result;
  }
  arm() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fail(`exceeded its ${this.ms} ms deadline`, true), this.ms);
  }
  async message(m) {
    if (this.dead) return; // what a killed guest still said is not trusted
    clearTimeout(this.timer);
    if (!m.import) return m.ready ? this.arm() : m.trap ? this.fail(m.trap) : this.settle(m); // ready: its time starts
    try {
      const reply = await IMPORTS[m.import](this.run, ...m.args);
      if (this.dead) return;
      this.port.postMessage(reply);
      Atomics.store(this.flag, 0, 1);
      Atomics.notify(this.flag, 0);
      this.arm(); // host time does not count against the guest
    } catch (e) {
      if (e instanceof Lie) this.run.lie = e;
      else this.run.stopped ??= e;
      this.fail(`${e instanceof Lie ? 'lied' : 'was stopped: a callback failed'}: ${e.message}`);
    }
  }
  fail(why, late = false) {
    if (this.dead) return;
    this.dead = `guest ${this.what} ${why}`;
    this.kill();
    // Wake a guest blocked opening a FIFO (a writer's open ends a reader's); nothing is written.
    for (const f of late && this.run.current ? METRICS_FILES : []) {
      const path = join(this.run.root, this.run.current, f);
      try { if (lstatSync(path).isFIFO()) closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW)); } catch {}
    }
    this.settle?.({ trap: this.dead });
  }
  kill() {
    clearTimeout(this.timer);
    this.dead ??= 'killed';
    this.worker.unref(); // a thread stuck in a syscall must not keep the process alive
    this.worker.terminate().catch(() => {});
  }
}

const bounded = (s) => (s.length <= MAX_MESSAGE ? s : `${s.slice(0, MAX_MESSAGE)}... (${s.length - MAX_MESSAGE} characters cut)`);
const q = (s) => JSON.stringify(bounded(String(s)));
const validName = (n) => n.length > 0 && n.length <= 255 && !n.startsWith('.') && /^[A-Za-z0-9._-]+$/.test(n);
const isTime = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0;
const isDir = (p) => { try { return lstatSync(p).isDirectory(); } catch { return false; } };
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const claim = (ok, what) => { if (!ok) throw new Error(what); };
const asLie = (storage, check) => { try { check(); } catch (e) { throw new Lie(storage, e.message); } };

function checkMetrics(root, name, m) {
  claim(m.runnerName === name, `guest answered for ${q(m.runnerName)} when asked about ${name}`);
  claim(isDir(join(root, name)), `guest extracted ${name}, which is not a directory of the storage root`);
  claim(m.installationStartTimestamp === undefined || isTime(m.installationStartTimestamp), 'bad installation start timestamp');
  claim(isTime(m.installedTimestamp), 'bad installed timestamp');
  claim(!m.postJob || isTime(m.postJob.timestamp), 'bad post-job timestamp');
  if (!m.preJob) return;
  claim(isTime(m.preJob.timestamp), 'bad pre-job timestamp');
  for (const key of ['workflow', 'workflowRunId', 'event']) claim(Buffer.byteLength(m.preJob[key]) <= MAX_FIELD, `${key} is longer than a metrics file can hold`);
  const repo = m.preJob.repository; // some '/' with a character on each side (spec 3.1): "//r" is fine
  claim(repo === undefined || (repo.slice(1, -1).includes('/') && Buffer.byteLength(repo) <= MAX_FIELD), `repository ${q(repo)} is not owner/repo`);
}

/** What a line rendered from `event` must hold, key by key (spec 5). */
function expectedFields({ tag, val: e }) {
  const fields = { event: KINDS[tag], timestamp: e.timestamp, flavor: e.flavor };
  if (tag === 'runner-installed') return { ...fields, duration: e.duration };
  Object.assign(fields, { workflow: e.workflow, repo: e.repo, github_event: e.githubEvent });
  if (tag === 'runner-start') return { ...fields, idle: e.idle, ...(e.queueDuration !== undefined && { queue_duration: e.queueDuration }) };
  Object.assign(fields, { status: e.status, job_duration: e.jobDuration });
  if (e.statusInfo !== undefined) fields.status_info = { code: Number(e.statusInfo.code) };
  if (e.jobConclusion !== undefined) fields.job_conclusion = e.jobConclusion.replaceAll('-', '_');
  return fields;
}

const sameValue = (got, want) => (want === null || typeof want !== 'object' ? got === want
  : isObject(got) && Object.keys(got).length === Object.keys(want).length && Object.keys(want).every((k) => sameValue(got[k], want[k])));

/** The line holds exactly the keys and values of `event`, of `flavor`. */
function checkLine(line, event, flavor) {
  const kind = KINDS[event.tag];
  claim(event.val.flavor === flavor, `guest issued a ${kind} event of flavor ${q(event.val.flavor)}, not ${JSON.stringify(flavor)}`);
  claim(line.length <= MAX_LINE, 'guest rendered an over-long line');
  claim(/^[\x20-\x7e]*$/.test(line), 'guest rendered a line with control or non-ASCII characters');
  const value = (() => { try { return JSON.parse(line); } catch (e) { throw new Error(`guest rendered a line that is not JSON: ${e.message}`); } })();
  claim(isObject(value), `guest rendered a ${kind} line that is not a JSON object`);
  const expected = expectedFields(event);
  for (const [key, want] of Object.entries(expected)) {
    claim(key in value, `guest rendered a ${kind} line without ${JSON.stringify(key)}`);
    claim(sameValue(value[key], want), `guest rendered a ${kind} line whose ${JSON.stringify(key)} differs from the event`);
  }
  const extra = Object.keys(value).find((k) => !(k in expected));
  claim(extra === undefined, `guest rendered a ${kind} line with a key the event does not have: ${q(extra)}`);
}

/** One storage's lines: a real storage, its events of the asked flavor, each line holding exactly its event. */
function checkStorageLines(root, { runnerName: name, source: { tag, val: events }, lines }, flavor) {
  claim(validName(name), `named ${q(name)} as a storage, which is not a valid runner name`);
  claim(isDir(join(root, name)), `appended lines for ${q(name)}, which is not a directory of the storage root`);
  claim(tag === 'events', 'rendered metrics when events were asked for');
  claim(events.length <= 3, `guest issued ${events.length} events for one runner; at most 3 exist`);
  for (const { tag, val } of events) {
    for (const key of ['timestamp', 'duration', 'idle', 'queueDuration', 'jobDuration']) claim(val[key] === undefined || isTime(val[key]), `${tag} ${key} is not a finite number >= 0`);
  }
  claim(lines.length === events.length, `rendered ${lines.length} lines for ${events.length} events`);
  lines.forEach((line, i) => checkLine(line, events[i], flavor));
}

/** A report consistent with the run (each entry once, as many lines as appended), then counted and handed on. */
function report(run, { name, outcome, reason, file, detail, events }) {
  const lie = (what, storage = null) => { throw new Lie(storage, what); };
  if (Buffer.byteLength(name) > 255) lie(`reported on a ${Buffer.byteLength(name)}-byte name`);
  if (reason !== undefined && !REASONS.includes(reason)) lie(`reported an unknown reason ${q(reason)}`);
  if (name === UNNAMED || name === DELETING) {
    if (outcome !== (name === UNNAMED ? 'skipped' : 'failed') || events !== 0) lie(`reported ${name} as ${outcome} with ${events} lines`);
  } else {
    if (run.reported.has(name)) lie(`reported ${q(name)} twice`);
    if (!['skipped', 'failed'].includes(outcome) && !validName(name)) lie(`named ${q(name)} as a storage, which is not a valid runner name`);
    const i = run.appended.findIndex(([n]) => n === name);
    const count = run.appended[i]?.[1];
    const fits = i < 0 ? events === 0 && outcome !== 'extracted' : events === count && ['extracted', 'failed'].includes(outcome);
    if (!fits) lie(`reported ${q(name)} as ${outcome} with ${events} lines, but ${i < 0 ? 'none were' : `${count} lines were`} appended`, name);
    if (!run.keep && ['extracted', 'no-data', 'quarantined'].includes(outcome)) gone(run.root, name, outcome, detail, lie);
    if (i >= 0) run.appended.splice(i, 1);
  }
  deliver(run, { name, outcome, detail: bounded(detail), events, reason, file: file === undefined ? undefined : bounded(file) });
}

/** A storage reported deleted or quarantined has left the root, for a location of its own under .quarantine/ (check.rs `gone`). */
function gone(root, name, outcome, detail, lie) {
  if (outcome === 'quarantined') {
    const at = detail.lastIndexOf('moved to .quarantine/');
    const location = at < 0 ? null : detail.slice(at + 'moved to .quarantine/'.length);
    const plain = location !== null && !location.includes('/') && Buffer.byteLength(location) <= 255 && !location.startsWith('.');
    if (!plain || !location.startsWith(name.slice(0, 200))) lie(`reported quarantine location ${q(location ?? '')} for ${q(name)}`, name);
  }
  try { lstatSync(join(root, name)); } catch (e) { if (e.code === 'ENOENT') return; }
  lie(`reported ${q(name)} as ${outcome}, but it is still in the storage root`, name);
}

function deliver(run, report) {
  if (report.name === UNNAMED) run.unnamed += 1;
  else if (report.name !== DELETING) run.reported.add(report.name);
  if (run.current === report.name) run.current = null;
  run.summary[COUNTS[report.outcome]] += 1;
  run.summary.linesWritten += report.events;
  run.summary.reports.push(report);
  try {
    run.onReport?.(report);
  } catch (e) {
    run.stopped ??= e; // the guest is stopped (IMPORTS.report), but a recovery goes on
  }
}

/** The `host` imports (WIT 0.2.0): every argument is the guest's claim, re-checked; a Lie stops the guest. */
const IMPORTS = {
  beginStorage(run, name) {
    if (name !== DELETING && !validName(name)) throw new Lie(null, `named ${q(name)} as a storage, which is not a valid runner name`);
    if (run.reported.has(name)) throw new Lie(null, `began work on ${q(name)}, which it had already reported`);
    run.current = name;
  },
  endStorage(run) {
    run.current = null; // its lines wait for the next append: a trap now belongs to no storage
  },
  async jobMetrics(run, metrics) {
    if (run.current === null) throw new Lie(null, 'asked for job metrics outside any storage');
    asLie(run.current, () => checkMetrics(run.root, run.current, metrics));
    const job = run.jobs ? await run.jobs(metrics) : null;
    if (job == null) return undefined;
    const queueDuration = Number(job.queueDuration ?? job.queue_duration);
    claim(Number.isFinite(queueDuration), `jobMetrics gave a queue duration of ${queueDuration}`);
    const conclusion = String(job.conclusion).toLowerCase().replaceAll('_', '-');
    return { queueDuration, conclusion: CONCLUSIONS.includes(conclusion) ? conclusion : undefined }; // unknown: left out (spec 5)
  },
  async append(run, batch) {
    if (batch.length > run.batchSize) throw new Lie(null, `appended ${batch.length} storages at once; batches hold at most ${run.batchSize}`);
    const names = new Set();
    for (const storage of batch) {
      const name = storage.runnerName;
      if (run.reported.has(name) || names.has(name) || run.appended.some(([n]) => n === name)) throw new Lie(null, `appended lines for ${q(name)} twice`);
      asLie(name, () => checkStorageLines(run.root, storage, run.flavor));
      names.add(name);
    }
    try {
      await run.sink.append(batch.flatMap((s) => s.lines)); // durable before the guest may delete
    } catch (e) {
      run.appendError = `writing events to ${run.sink.path ?? 'the sink'}: ${e.message}`;
      return { tag: 'err', val: String(e.message) };
    }
    for (const s of batch) run.appended.push([s.runnerName, s.lines.length]);
  },
  report(run, storageReport) {
    report(run, storageReport);
    if (run.stopped && !run.recovering) throw run.stopped; // a recovery goes on: its storages' lines are out
  },
};

/** What a trap interrupted, for the guest's `recover` in a fresh instance. `run.appended` is not cleared: the reports `recover` sends take its storages off. */
function interrupted(run, trap, previous) {
  const [lie, current] = [run.lie, run.current];
  [run.lie, run.current] = [null, null];
  const blamed = lie ? lie.storage : run.stopped ? null : current; // a failed callback is no storage's fault
  let cause = lie ? `guest lied: ${bounded(lie.message)}` : bounded(trap);
  const trappedAgain = previous !== null && blamed !== null && blamed === (previous.blamed ?? null);
  if (trappedAgain) cause = bounded(`${previous.cause}; trapped again: ${cause}`);
  return { appended: run.appended.map(([name, lines]) => ({ name, lines })), blamed: blamed ?? undefined, cause, lied: Boolean(lie), trappedAgain, keep: run.keep };
}

/** The JSON-lines log at `path`: `append` returns once the lines are on disk; a line cut by a crash is ended first. */
const logFile = (path) => ({
  path,
  append(lines) {
    const fd = openSync(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_CLOEXEC, 0o644);
    try {
      const [st, last] = [fstatSync(fd), Buffer.alloc(1)];
      claim(st.isFile(), `metrics log ${path}: not a regular file`);
      const cut = st.size > 0 && readSync(fd, last, 0, 1, st.size - 1) === 1 && last[0] !== 0x0a;
      const data = Buffer.from(`${cut ? '\n' : ''}${lines.map((l) => `${l}\n`).join('')}`, 'ascii');
      for (let done = 0; done < data.length;) done += writeSync(fd, data, done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
});

let sharedPlugin;

/**
 * Collects `storageRoot` for runners of `flavor` (README.md "Use"). Resolves
 * to {extracted, noData, quarantined, skipped, failed, linesWritten,
 * reports}; rejects with CollectError when the run could not finish.
 */
export async function collect(storageRoot, flavor, options = {}) {
  const plugin = options.plugin ?? (sharedPlugin ??= await Plugin.load());
  const root = realpathSync(storageRoot);
  claim(statSync(root).isDirectory(), `storage root ${root} is not a directory`);
  const sink = typeof options.metricsLog?.append === 'function' ? options.metricsLog : logFile(options.metricsLog ?? (process.env[METRICS_LOG_ENV] || DEFAULT_METRICS_LOG));
  const batchSize = Math.min(Math.max(1, Math.floor(options.batchSize ?? 64)), 2 ** 32 - 1);
  const summary = { extracted: 0, noData: 0, quarantined: 0, skipped: 0, failed: 0, linesWritten: 0, reports: [] };
  const run = { root, flavor, sink, batchSize, summary, keep: Boolean(options.keep), jobs: options.jobMetrics, onReport: options.onReport,
    current: null, appended: [], reported: new Set(), unnamed: 0, lie: null, stopped: null, appendError: null, recovering: false };
  const selection = { exclude: [...(options.exclude ?? [])], include: options.include == null ? undefined : [...options.include],
    minAgeSeconds: options.minAge == null ? undefined : Number(options.minAge) };
  const wit = { selection, emit: { tag: 'events', val: flavor }, keep: run.keep, batchSize, purgeDeleting: !run.keep, done: [], doneUnnamed: 0 };
  let [x, traps] = [null, 0]; // x: what the last trap interrupted, for `recover`
  for (;;) {
    const sandbox = new Sandbox(plugin, run);
    run.recovering = x !== null;
    const result = await (x ? sandbox.call('recover', [x]) : sandbox.call('collect', [wit]));
    sandbox.kill();
    if (run.stopped && !('trap' in result)) throw new CollectError(`a callback failed: ${run.stopped.message}`, summary, run.stopped);
    if ('ok' in result && !x) return summary;
    if ('ok' in result) { // recovered: resume without what was reported, within the budget
      x = null;
      if (traps >= MAX_TRAPS_PER_RUN) throw new CollectError(`stopped after ${traps} sandbox traps; the storages not reported are left for the next run`, summary);
      Object.assign(wit, { done: [...run.reported], doneUnnamed: run.unnamed, purgeDeleting: false });
      continue;
    }
    if ('err' in result) throw new CollectError(run.appendError ?? bounded(result.err), summary); // for recover: a trap outside any storage
    // A recovery is always tried, even past the budget, so that storages whose lines are out get
    // deleted (a storage whose recovery trapped is not tried again); one that traps outside any storage is not retried.
    traps += 1;
    const next = interrupted(run, result.trap, x);
    if (traps > MAX_TRAPS_PER_RUN + batchSize) throw new CollectError(`stopped after ${traps} sandbox traps`, summary);
    if (x && next.blamed === undefined && !next.lied) {
      throw new CollectError(run.stopped ? `a callback failed: ${run.stopped.message}` : `the recovery trapped outside any storage: ${next.cause}; it was recovering from: ${x.cause}`, summary, run.stopped ?? undefined);
    }
    x = next;
  }
}
