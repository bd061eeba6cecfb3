// Runs the runner-metrics plugin (WIT 0.4.0, world `plugin`) on Node, beside
// the keeper (world `keeper`), as host/src/collect.rs does. The plugin runs
// the whole collect in a worker thread (src/worker.js) whose memory, heap and
// time are capped; its `host` imports block there (Atomics.wait) until this
// thread answers. The keeper runs here, so it outlives the workers a trap
// kills: it re-checks every claim, keeps the run's books and says which
// plugin call comes next. This file only moves lines, counts and kills.
import { closeSync, constants, existsSync, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { countReport, jobAnswer, newSummary } from './shared.js';

export const DEFAULT_METRICS_LOG = '/var/log/github-runner-metrics.log';
/** Whether `collect` runs the Rust host library (the addon runner-metrics.node, native.js); else this file's WebAssembly host. */
export const NATIVE = existsSync(new URL('../runner-metrics.node', import.meta.url));
export const METRICS_LOG_ENV = 'METRICS_LOG_PATH';
/** Per sandbox: the guest's linear memory, the worker's V8 heap, guest time between two imports. */
export const DEFAULT_LIMITS = Object.freeze({ memoryBytes: 64 << 20, heapMb: 64, timeoutMs: 10_000 });
const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), '..');
const METRICS_FILES = ['runner-installation-start.timestamp', 'runner-installed.timestamp', 'pre-job-metrics.json', 'post-job-metrics.json'];
const POLICIES = ['strict', 'lenient'];
/** The pulled files `ingest` takes, by name, and their fields in the WIT `loose-files`. */
const PULLED_FILES = { 'runner-installed.timestamp': 'installed', 'pre-job-metrics.json': 'preJob', 'post-job-metrics.json': 'postJob' };
const RUNNER_NAME = /^(?!\.)[A-Za-z0-9._-]{1,255}$/; // core/src/names.rs


/** The run could not start or had to stop; `summary` has the reports so far. */
export class CollectError extends Error { constructor(message, summary, cause) { Object.assign(super(message, { cause }), { summary }); } }
/** The keeper refused a claim of the guest (and booked it). */
class Lie extends Error {}

/** A jco transpilation (`name`.js in `dir`): its glue and its core modules, compiled with every memory capped at `bytes`. */
async function compile(dir, name, bytes) {
  try {
    statSync(join(dir, `${name}.js`));
    const modules = {};
    for (const f of readdirSync(dir).filter((f) => f.endsWith('.wasm'))) modules[f] = await WebAssembly.compile(capMemory(readFileSync(join(dir, f)), bytes >>> 16));
    return { glue: pathToFileURL(join(dir, `${name}.js`)).href, modules };
  } catch (e) {
    throw new Error(`cannot load the component from ${dir} (run \`npm run transpile\` first): ${e.message}`);
  }
}

/** The transpiled plugin (shared by every worker) and keeper, compiled once. */
export class Plugin {
  static async load(generatedDir = join(PACKAGE, 'generated'), limits = {}, keeperDir = join(PACKAGE, 'generated-keeper')) {
    const all = { ...DEFAULT_LIMITS, ...limits };
    const [plugin, keeper] = [await compile(generatedDir, 'runner_metrics', all.memoryBytes), await compile(keeperDir, 'runner_metrics_keeper', 2 * all.memoryBytes + (32 << 20))]; // twice what the plugin can hand over (host/src/keeper.rs)
    // The keeper's WIT `run-bounds` (pulledFileBytes, pulledStreamBytes, messageBytes, trapsPerRun), asked of an instance that sees nothing.
    const { books } = await (await import(keeper.glue)).instantiate((name) => keeper.modules[name], new WASIShim({ sandbox: { preopens: {}, env: {}, args: [], enableNetwork: false } }).getImportObject());
    return Object.assign(new Plugin(), { limits: all, ...plugin, keeper, bounds: Object.freeze({ ...books.bounds() }) });
  }
}

/**
 * The keeper's bounds (of the bundled components): `pulledFileBytes` (1025, the 1024-byte limit plus one) and `pulledStreamBytes`
 * (65537, 64 KiB plus one) are the most bytes of a pulled file and of a tar stream that cross into the plugin (`ingest` cuts there,
 * so a longer one is found oversized); `messageBytes`, the longest message kept from the guest; `trapsPerRun`, the traps one run recovers from.
 */
export async function bounds() {
  return (sharedPlugin ??= await Plugin.load()).bounds;
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

/** One worker holding one plugin instance: `call` resolves to {ok} | {err} | {trap}. */
class Sandbox {
  constructor(plugin, run) {
    const { port1, port2 } = new MessageChannel();
    Object.assign(this, { run, port: port1, flag: new Int32Array(new SharedArrayBuffer(4)), ms: plugin.limits.timeoutMs });
    this.worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: { glue: plugin.glue, modules: plugin.modules, root: run.root, flag: this.flag, port: port2 }, transferList: [port2], env: {},
      // Not the caller's node flags: `--input-type` (say) makes every worker fail to start.
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: plugin.limits.heapMb, maxYoungGenerationSizeMb: 16, stackSizeMb: 4 },
    }).on('message', (m) => this.message(m)).on('error', (e) => this.fail(`crashed: ${e.message}`)).on('exit', (c) => this.fail(`exited (${c})`));
  }
  call(fn, args) {
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
      Atomics.store(this.flag, 0, 1); Atomics.notify(this.flag, 0); // the worker takes the reply
      this.arm(); // host time does not count against the guest
    } catch (e) {
      if (!(e instanceof Lie) && !this.run.broken) this.run.failed ??= e; // a callback of the caller's: halt
      this.fail(e instanceof Lie ? `lied: ${e.message}` : `was stopped: ${this.run.broken ? 'the keeper failed' : 'a callback failed'}: ${e.message}`);
    }
  }
  fail(why, late = false) {
    if (this.dead) return;
    this.dead = `guest ${this.what} ${why}`;
    this.kill();
    // Wake a guest blocked opening a FIFO (a writer's open ends a reader's); nothing is written.
    let current; // the keeper's word: a name it accepted, so a path component of the root
    try { current = late ? this.run.keeper.current() : undefined; } catch {}
    for (const f of current ? METRICS_FILES : []) {
      const path = join(this.run.root, current, f);
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

/** The `host` imports (WIT 0.3.0): each claim goes through the keeper first; its refusal (a Lie) stops the guest. */
const IMPORTS = {
  beginStorage: (run, name) => run.check(() => run.keeper.beginStorage(name)),
  endStorage: (run) => run.check(() => run.keeper.endStorage()),
  async jobMetrics(run, metrics) {
    run.check(() => run.keeper.jobMetrics(metrics));
    return jobAnswer(run.jobs ? await run.jobs(metrics) : null);
  },
  async append(run, batch) {
    const lines = run.check(() => run.keeper.append(batch)); // rendered by the keeper: the plugin hands over none
    let error; // the lines are durable before the guest may delete
    try { await run.sink.append(lines); } catch (e) { error = e; }
    // The keeper books them as durable, or the failure in our words (the run's stop); the guest gets the sink's words.
    run.check(() => run.keeper.appended(error && `writing events to ${run.sink.path ?? 'the sink'}: ${error.message}`));
    return error && { tag: 'err', val: String(error.message) };
  },
  report(run, claimed) {
    const report = run.check(() => run.keeper.report(claimed)); // its strings bounded
    countReport(run.summary, report);
    try { run.onReport?.(report); } catch (e) {
      if (run.calling === 'collect') throw e; // halts it; a recovery goes on: its storages' lines are out
      run.failed ??= e;
    }
  },
};

/** The JSON-lines log at `path`: `append` returns once the lines are on disk; a line cut by a crash is ended first. */
const logFile = (path) => ({
  path,
  append(lines) {
    const fd = openSync(path, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_CLOEXEC, 0o644);
    try {
      const [st, last] = [fstatSync(fd), Buffer.alloc(1)];
      if (!st.isFile()) throw new Error(`metrics log ${path}: not a regular file`);
      const cut = st.size > 0 && readSync(fd, last, 0, 1, st.size - 1) === 1 && last[0] !== 0x0a;
      const data = Buffer.from(`${cut ? '\n' : ''}${lines.map((l) => `${l}\n`).join('')}`, 'ascii');
      for (let done = 0; done < data.length;) done += writeSync(fd, data, done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
});

/** The run's keeper: one instance in this thread, the root its only preopen (read-only: it imports no `open-at`, only `stat`s). */
async function startKeeper({ keeper }, root, options) {
  const wasi = new WASIShim({ sandbox: { preopens: { '/storage': root }, env: {}, args: [], enableNetwork: false } }).getImportObject();
  const { books } = await (await import(keeper.glue)).instantiate((name) => keeper.modules[name], wasi);
  return new books.Run(options);
}

let sharedPlugin;

/** `policy` as the WIT enum: what a corrupt metrics file does to its runner ('strict' by default, or 'lenient'). */
function policyOf(policy) {
  if (policy == null) return 'strict';
  if (typeof policy !== 'string') throw new TypeError(`policy must be 'strict' or 'lenient', not a ${typeof policy}`);
  if (!POLICIES.includes(policy)) throw new RangeError(`policy ${JSON.stringify(policy)}: must be 'strict' or 'lenient'`);
  return policy;
}

/** The WIT `collect-options` for `flavor` and the caller's `options` (no pulled runner). */
function witOptions(flavor, options) {
  const keep = Boolean(options.keep);
  const batchSize = Math.min(Math.max(1, Math.floor(options.batchSize ?? 64)), 2 ** 32 - 1);
  const selection = { exclude: [...(options.exclude ?? [])], include: options.include == null ? undefined : [...options.include],
    minAgeSeconds: options.minAge == null ? undefined : Number(options.minAge) };
  return { selection, emit: { tag: 'events', val: flavor }, dryRun: keep, batchSize, purgeDeleting: !keep, done: [], doneUnnamed: 0,
    policy: policyOf(options.policy), nonblockingOpens: false /* the shim's opens may block on a FIFO */, pulled: undefined };
}

/** `dir` resolved, once it is seen to be a directory: the storage root of a run. */
function rootOf(dir) {
  const root = realpathSync(dir);
  if (!statSync(root).isDirectory()) throw new Error(`storage root ${root} is not a directory`);
  return root;
}

/**
 * Collects `storageRoot` for runners of `flavor` (README.md "Use"). Resolves
 * to {extracted, noData, quarantined, skipped, failed, linesWritten,
 * reports}; rejects with CollectError when the run could not finish.
 */
export async function collect(storageRoot, flavor, options = {}) {
  // The binding of the Rust host (native.js) unless handed a Plugin or not built.
  if (!options.plugin && NATIVE) return (await import('./native.js')).collect(storageRoot, flavor, options);
  const wit = witOptions(flavor, options);
  return runWith(rootOf(storageRoot), wit, options);
}

/**
 * Collects one runner whose metrics the manager pulled itself (README.md
 * "Pulled metrics"): `files` is the tar stream of its metrics directory (a
 * Uint8Array or Buffer) or an object of its files by name
 * (`runner-installed.timestamp`, `pre-job-metrics.json`,
 * `post-job-metrics.json`; each bytes, or null when missing). The guest
 * stages it as the storage `<quarantineDir>/<runnerName>` (the directory is
 * created if missing, one level) and collects that one storage as `collect`
 * does; a corrupt runner stays under `<quarantineDir>/.quarantine/`. Resolves
 * and rejects as `collect`; a runner of that name already in `quarantineDir`
 * is reported failed and the run rejects with CollectError.
 */
export async function ingest(runnerName, files, quarantineDir, flavor, options = {}) {
  if (typeof runnerName !== 'string') throw new TypeError(`runnerName must be a string, not a ${typeof runnerName}`);
  if (!RUNNER_NAME.test(runnerName)) {
    throw new RangeError(`runnerName ${JSON.stringify(runnerName)}: not a valid runner name (1 to 255 bytes of [A-Za-z0-9._-], not starting with '.')`);
  }
  const start = options.installationStart ?? undefined;
  if (start !== undefined && typeof start !== 'number') throw new TypeError(`installationStart must be a number (UNIX seconds), not a ${typeof start}`);
  if (start !== undefined && !(Number.isFinite(start) && start >= 0)) throw new RangeError(`installationStart must be a UNIX time >= 0, got ${start}`);
  if (options.keep) throw new Error('pulled metrics are staged on disk, so they cannot be collected in a dry run (keep)');
  // Only the pulled runner is looked at: no selection, and never a dry run. The keeper sees its name; only the plugin, its files.
  const pulled = pulledFiles(files);
  const wit = { ...witOptions(flavor, { batchSize: options.batchSize, policy: options.policy }), pulled: runnerName };
  try { mkdirSync(quarantineDir); } catch (e) { if (e.code !== 'EEXIST') throw new Error(`creating ${quarantineDir}: ${e.message}`, { cause: e }); }
  if (!options.plugin && NATIVE) {
    const bytes = (b) => (b === undefined ? undefined : Buffer.from(b));
    const native = pulled.tag === 'tar' ? pulled.val
      : { installed: bytes(pulled.val.installed), preJob: bytes(pulled.val.preJob), postJob: bytes(pulled.val.postJob) };
    return (await import('./native.js')).ingest(runnerName, native, quarantineDir, flavor, start, options);
  }
  return runWith(rootOf(quarantineDir), wit, options, (bounds) => ({ installationStart: start, files: cut(pulled, bounds) }));
}

/** Pulled files cut to what may cross into the guest, by the keeper's bounds (as host/src/run/ingest `bounded` does). */
function cut(pulled, bounds) {
  if (pulled.tag === 'tar') return { tag: 'tar', val: pulled.val.subarray(0, bounds.pulledStreamBytes) };
  return { tag: 'loose', val: Object.fromEntries(Object.entries(pulled.val).map(([field, bytes]) => [field, bytes.subarray(0, bounds.pulledFileBytes)])) };
}

/** `files` as the WIT `pulled-files`, checked (uncut). */
function pulledFiles(files) {
  if (files instanceof Uint8Array) return { tag: 'tar', val: files };
  const proto = files !== null && typeof files === 'object' ? Object.getPrototypeOf(files) : undefined;
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(`files must be the tar stream of the runner's metrics directory (a Uint8Array or Buffer) or an object of its files by name, not ${files === null ? 'null' : proto?.constructor?.name ?? typeof files}`);
  }
  const loose = {};
  for (const [name, bytes] of Object.entries(files)) {
    if (!Object.hasOwn(PULLED_FILES, name)) {
      throw new TypeError(`files: unknown file ${JSON.stringify(name)} (known: ${Object.keys(PULLED_FILES).join(', ')}${name === METRICS_FILES[0] ? '; give installationStart instead' : ''})`);
    }
    if (bytes == null) continue; // missing
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`files[${JSON.stringify(name)}] must be a Uint8Array, Buffer or null, not a ${typeof bytes}`);
    loose[PULLED_FILES[name]] = bytes;
  }
  return { tag: 'loose', val: loose };
}

/** One run over `root` with the WIT options `wit` (collect and ingest): the keeper's loop, each plugin call on a fresh worker. `pulled(bounds)`: the pulled runner's files for the plugin's `collect`. */
async function runWith(root, wit, options, pulled) {
  const plugin = options.plugin ?? (sharedPlugin ??= await Plugin.load());
  const files = pulled ? pulled(plugin.bounds) : undefined;
  const summary = newSummary();
  // calling: the plugin call in progress (`collect` or `recover`); failed: a callback of the caller's that failed in it (the
  // call is halted); halted: the first such, the stop's cause; broken: the keeper failed, so the run stops at once.
  const run = {
    root, summary, keeper: await startKeeper(plugin, root, wit), jobs: options.jobMetrics, onReport: options.onReport,
    sink: typeof options.metricsLog?.append === 'function' ? options.metricsLog : logFile(options.metricsLog ?? (process.env[METRICS_LOG_ENV] || DEFAULT_METRICS_LOG)),
    calling: null, failed: null, halted: null, broken: null,
    /** A keeper call: `err` (jco throws its payload) is a lie; anything else it throws, the keeper failing. */
    check(call) {
      try { return call(); } catch (e) { if (e && Object.hasOwn(e, 'payload')) throw new Lie(e.payload); throw (this.broken ??= e); }
    },
  };
  const stop = (message, cause) => new CollectError(message, summary, cause ?? run.halted ?? undefined);
  let last; // how the last plugin call ended (books.ended)
  for (;;) {
    let next;
    try { next = run.keeper.next(last); } catch (e) { throw stop(`the keeper failed: ${e.message}`, e); }
    if (next.tag === 'done') return summary;
    if (next.tag === 'stop') throw stop(next.val.message);
    const sandbox = new Sandbox(plugin, run);
    [run.calling, run.failed] = [next.tag, null];
    const result = await sandbox.call(next.tag, next.tag === 'collect' ? [next.val, files] : [next.val]);
    sandbox.kill();
    if (run.broken) throw stop(`the keeper failed: ${run.broken.message}`, run.broken);
    run.halted ??= run.failed;
    last = run.failed ? { tag: 'halted', val: `a callback failed: ${run.failed.message}` }
      : 'trap' in result ? { tag: 'trapped', val: result.trap } : { tag: 'returned', val: result.err };
  }
}
