// Pulled metrics (`ingest`, WIT 0.4.0 `collect-options.pulled` and `pulled-metrics`): a runner's
// files handed over by the manager (a tar stream or the files one by one),
// staged by the guest as a storage of the quarantine dir and collected
// through the same run as `collect`. Real temp dirs, the real component, the
// real `tar` command; the Rust CLI's output for the same input when
// $RUNNER_METRICS_BIN is set.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { CollectError, Plugin, bounds, ingest } from '../src/index.js';

// The keeper's bounds: the most bytes of a pulled file and of a stream that cross.
const { pulledFileBytes: MAX_LOOSE_BYTES, pulledStreamBytes: MAX_STREAM_BYTES } = await bounds();
import { loadCases, snapshot } from '../test-support/conformance.mjs';

const VALID = loadCases().find((c) => c.name === 'valid-without-job-metrics');
const FILES = VALID.root['small-r-00000000000a'].dir; // with runner-installation-start.timestamp 1700000000.5
const LINES = VALID.expect['small-r-00000000000a'].lines;
const START = Number(FILES['runner-installation-start.timestamp'].text);
const PULLED = ['runner-installed.timestamp', 'pre-job-metrics.json', 'post-job-metrics.json'];
const CORRUPT = Buffer.from('{"workflow": "ci", "repository": ');
const BIN = process.env.RUNNER_METRICS_BIN;
const HOSTILE = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'generated-hostile'); // see traps.test.mjs
const hostileMissing = !existsSync(join(HOSTILE, 'runner_metrics.js'));
if (hostileMissing && process.env.RUNNER_METRICS_HOSTILE_COMPONENT) {
  throw new Error(`$RUNNER_METRICS_HOSTILE_COMPONENT is set but ${HOSTILE} is missing: run node scripts/transpile.mjs`);
}

let plugin;
const temps = [];
before(async () => {
  plugin = await Plugin.load();
});
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

function tempBase() {
  const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-ingest-'));
  temps.push(base);
  return base;
}

/** The runner's metrics files (name -> bytes) as a plain directory in `base`. */
function metricsDir(base, files, name = 'metrics-exchange') {
  const dir = join(base, name);
  mkdirSync(dir);
  for (const [file, bytes] of Object.entries(files)) writeFileSync(join(dir, file), bytes);
  return dir;
}

/** What a manager gets from `ssh runner 'tar -C DIR -cf - .'`: the real tar command's stream. */
const tarOf = (dir) => execFileSync('tar', ['-C', dir, '-cf', '-', '.']);

/** The valid runner's three pulled files, optionally with some replaced. */
const validFiles = (replace = {}) => ({ ...Object.fromEntries(PULLED.map((f) => [f, Buffer.from(FILES[f].text)])), ...replace });

/** `ingest` into `<base>/pulled` with a log file; the summary or the CollectError, the log, the dir. */
async function run(base, runner, files, options = {}) {
  const dir = join(base, 'pulled');
  const log = join(base, 'metrics.log');
  let summary, error;
  try {
    summary = await ingest(runner, files, dir, 'small', { plugin, metricsLog: log, ...options });
  } catch (e) {
    if (!(e instanceof CollectError)) throw e;
    [error, summary] = [e, e.summary];
  }
  assert.equal(summary.reports.length, 1, 'the pulled runner, and only it, is reported');
  return { dir, summary, report: summary.reports[0], error, log: existsSync(log) ? readFileSync(log) : Buffer.alloc(0) };
}

/** The staged storage is gone and nothing was quarantined: the dir holds only the project's own entries. */
function nothingLeft(dir, runner) {
  assert.ok(!existsSync(join(dir, runner)), `${runner} is not left staged`);
  assert.deepEqual(readdirSync(dir).filter((n) => !n.startsWith('.')), []);
  assert.deepEqual(existsSync(join(dir, '.quarantine')) ? readdirSync(join(dir, '.quarantine')) : [], []);
}

/** The quarantined copy of `report`'s runner (`.quarantine/<location>/`) and its reason file. */
function quarantined(dir, report, reason, file) {
  assert.equal(report.outcome, 'quarantined', report.detail);
  assert.deepEqual([report.reason, report.file], [reason, file]);
  assert.ok(!existsSync(join(dir, report.name)), 'moved out of the root');
  const location = report.detail.match(/moved to \.quarantine\/([^;\s]+)/)?.[1];
  assert.ok(location?.startsWith(`${report.name}.`), report.detail);
  const kept = join(dir, '.quarantine', location);
  assert.ok(lstatSync(kept).isDirectory());
  const why = JSON.parse(readFileSync(`${kept}.reason.json`, 'utf8'));
  assert.equal(why.reason, reason);
  return kept;
}

describe('ingest', () => {
  test('the bounds come from the keeper: the guest\'s limits plus one byte', async () => {
    assert.deepEqual([MAX_LOOSE_BYTES, MAX_STREAM_BYTES], [1025, 65537]);
    const b = await bounds();
    assert.deepEqual([b.messageBytes, b.trapsPerRun], [4096, 16]);
  });

  test('a tar stream from the real tar command gives the three events and leaves nothing staged', async () => {
    const base = tempBase();
    const stream = tarOf(metricsDir(base, validFiles()));
    const { dir, summary, report, error, log } = await run(base, 'small-r-1', stream, { installationStart: START });
    assert.equal(error, undefined);
    assert.deepEqual([report.name, report.outcome, report.events], ['small-r-1', 'extracted', 3], report.detail);
    assert.deepEqual([summary.extracted, summary.linesWritten], [1, 3]);
    assert.equal(log.toString('ascii'), LINES.map((l) => `${l}\n`).join(''));
    nothingLeft(dir, 'small-r-1');
  });

  test('its lines are byte-identical to `runner-metrics ingest --metrics-log -`', { skip: !BIN && 'set RUNNER_METRICS_BIN to the Rust CLI' }, async () => {
    const base = tempBase();
    const stream = tarOf(metricsDir(base, validFiles()));
    writeFileSync(join(base, 'stream.tar'), stream);
    const { log, report } = await run(base, 'small-r-2', stream, { installationStart: START });
    assert.equal(report.outcome, 'extracted', report.detail);
    const cli = execFileSync(BIN, ['ingest', '--runner', 'small-r-2', '--flavor', 'small', '--quarantine-dir', join(base, 'cli-pulled'),
      '--installation-start', String(START), '--metrics-log', '-', '--tar', join(base, 'stream.tar')], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    assert.ok(cli.length > 0);
    assert.ok(log.equals(cli), `node:\n${log}\ncli:\n${cli}`);
  });

  test('strict: a corrupt pre-job file quarantines the runner with its bytes; no lines', async () => {
    const base = tempBase();
    const stream = tarOf(metricsDir(base, validFiles({ 'pre-job-metrics.json': CORRUPT })));
    const { dir, report, error, log } = await run(base, 'small-r-3', stream, { installationStart: START });
    assert.equal(error, undefined);
    const kept = quarantined(dir, report, 'invalid-json', 'pre-job-metrics.json');
    assert.deepEqual(readFileSync(join(kept, 'pre-job-metrics.json')), CORRUPT);
    assert.deepEqual(readFileSync(join(kept, 'post-job-metrics.json')), Buffer.from(FILES['post-job-metrics.json'].text));
    assert.deepEqual(readFileSync(join(kept, 'pulled.tar')), stream, 'the stream is kept with the runner');
    assert.equal(log.length, 0);
  });

  test('lenient: the same input gives runner_installed only, and the detail names the dropped file', async () => {
    const base = tempBase();
    const stream = tarOf(metricsDir(base, validFiles({ 'pre-job-metrics.json': CORRUPT })));
    const { dir, report, error, log } = await run(base, 'small-r-4', stream, { installationStart: START, policy: 'lenient' });
    assert.equal(error, undefined);
    assert.deepEqual([report.outcome, report.events], ['extracted', 1], report.detail);
    assert.match(report.detail, /^counted as missing \(lenient policy\): pre-job-metrics\.json \(invalid-json: /);
    assert.equal(log.toString('ascii'), `${LINES[0]}\n`);
    assert.equal(JSON.parse(LINES[0]).event, 'runner_installed');
    nothingLeft(dir, 'small-r-4');
  });

  test('the files one by one (an object of bytes or null)', async () => {
    const base = tempBase();
    const { dir, report, log } = await run(base, 'small-r-5', validFiles(), { installationStart: START });
    assert.deepEqual([report.outcome, report.events], ['extracted', 3], report.detail);
    assert.equal(log.toString('ascii'), LINES.map((l) => `${l}\n`).join(''));
    nothingLeft(dir, 'small-r-5');
    // Without an installation start and a post-job file: no runner_installed, no runner_stop.
    const more = await run(tempBase(), 'small-r-6', validFiles({ 'post-job-metrics.json': null }));
    assert.deepEqual([more.report.outcome, more.report.events], ['extracted', 1], more.report.detail);
    assert.equal(more.log.toString('ascii'), `${LINES[1]}\n`);
  });

  test('an oversized loose file is cut to 1025 bytes before it crosses, and quarantined oversized', async () => {
    const base = tempBase();
    const big = Buffer.alloc(5000, 0x20);
    const { dir, report, log } = await run(base, 'small-r-7', validFiles({ 'pre-job-metrics.json': big }), { policy: 'strict' });
    const kept = quarantined(dir, report, 'oversized', 'pre-job-metrics.json');
    assert.equal(readFileSync(join(kept, 'pre-job-metrics.json')).length, MAX_LOOSE_BYTES);
    assert.equal(big.length, 5000, "the caller's bytes are not changed");
    assert.equal(log.length, 0);
  });

  test('a stream longer than 64 KiB is cut to 65537 bytes and quarantined oversized, whole', async () => {
    const base = tempBase();
    const stream = tarOf(metricsDir(base, validFiles({ 'pre-job-metrics.json': Buffer.alloc(100_000, 0x20) })));
    assert.ok(stream.length > MAX_STREAM_BYTES);
    const { dir, report } = await run(base, 'small-r-8', stream, { policy: 'lenient' });
    const kept = quarantined(dir, report, 'oversized', 'pulled.tar');
    assert.deepEqual(readFileSync(join(kept, 'pulled.tar')), stream.subarray(0, MAX_STREAM_BYTES));
  });

  test('a hostile tar (a symlink named pre-job-metrics.json) is quarantined with the stream kept as pulled.tar, under both policies', async () => {
    for (const policy of ['strict', 'lenient']) {
      const base = tempBase();
      const files = metricsDir(base, { 'runner-installed.timestamp': FILES['runner-installed.timestamp'].text });
      symlinkSync('runner-installed.timestamp', join(files, 'pre-job-metrics.json')); // inside the tmp dir
      const stream = tarOf(files);
      const { dir, report, error, log } = await run(base, 'small-r-9', stream, { policy });
      assert.equal(error, undefined);
      const kept = quarantined(dir, report, 'not-regular-file', 'pulled.tar');
      assert.deepEqual(readFileSync(join(kept, 'pulled.tar')), stream);
      assert.deepEqual(readdirSync(kept), ['pulled.tar'], 'nothing of a refused stream is unpacked');
      assert.equal(log.length, 0);
    }
  });

  test('a runner already in the dir: CollectError, and that storage is untouched', async () => {
    const base = tempBase();
    const dir = join(base, 'pulled');
    mkdirSync(join(dir, 'small-r-10'), { recursive: true });
    writeFileSync(join(dir, 'small-r-10', 'runner-installed.timestamp'), '1700000060\n');
    const before = snapshot(dir);
    const { error, report, log } = await run(base, 'small-r-10', validFiles());
    assert.ok(error instanceof CollectError);
    assert.match(error.message, /small-r-10 is already in the storage root/);
    assert.equal(report.outcome, 'failed');
    assert.match(report.detail, /^not staged: .*already in the storage root/);
    assert.deepEqual(snapshot(dir), before);
    assert.equal(log.length, 0);
  });

  test('the quarantine dir is created if missing (one level only)', async () => {
    const base = tempBase();
    await assert.rejects(ingest('small-r-11', validFiles(), join(base, 'no', 'such'), 'small', { plugin, metricsLog: { append() {} } }), /creating .*no\/such: ENOENT/);
    assert.ok(!existsSync(join(base, 'no')));
    writeFileSync(join(base, 'file'), '');
    await assert.rejects(ingest('small-r-11', validFiles(), join(base, 'file'), 'small', { plugin, metricsLog: { append() {} } }), /not a directory/);
  });

  test('bad arguments are refused before anything is created', async () => {
    const base = tempBase();
    const dir = join(base, 'pulled');
    const call = (runner, files, options = {}) => ingest(runner, files, dir, 'small', { plugin, metricsLog: { append() {} }, ...options });
    await assert.rejects(call('small-r-12', { ...validFiles(), 'pre-job.json': Buffer.from('{}') }), (e) => e instanceof TypeError && /unknown file "pre-job\.json"/.test(e.message));
    await assert.rejects(call('small-r-12', { 'runner-installation-start.timestamp': Buffer.from('1') }), /give installationStart instead/);
    await assert.rejects(call('small-r-12', { 'pre-job-metrics.json': '{}' }), TypeError);
    await assert.rejects(call('small-r-12', [Buffer.from('x')]), TypeError);
    await assert.rejects(call('small-r-12', null), TypeError);
    await assert.rejects(call('small-r-12', new ArrayBuffer(4)), TypeError);
    for (const name of ['', '.hidden', '../x', 'a/b', 'x'.repeat(256), 'é']) await assert.rejects(call(name, validFiles()), RangeError, name);
    await assert.rejects(call(7, validFiles()), TypeError);
    for (const start of [-1, NaN, Infinity]) await assert.rejects(call('small-r-12', validFiles(), { installationStart: start }), RangeError);
    await assert.rejects(call('small-r-12', validFiles(), { installationStart: '1700000000' }), TypeError);
    await assert.rejects(call('small-r-12', validFiles(), { policy: 'relaxed' }), RangeError);
    await assert.rejects(call('small-r-12', validFiles(), { policy: true }), TypeError);
    await assert.rejects(call('small-r-12', validFiles(), { keep: true }), /dry run/);
    assert.ok(!existsSync(dir));
  });

  // The keeper counts a pulled runner as reported once it is, even when the
  // recovery moved it out of the root, so the resumed collect does not stage
  // it again (it once did, trap after trap, until the trap budget ran out).
  test('a trap while collecting the pulled runner quarantines it (sandbox-trap) and the run completes',
    { skip: hostileMissing && 'the hostile component is not transpiled (node scripts/transpile.mjs COMPONENT HOSTILE)' }, async () => {
      const base = tempBase();
      const dir = join(base, 'pulled');
      const stream = tarOf(metricsDir(base, validFiles()));
      const hostile = await Plugin.load(HOSTILE, { timeoutMs: 3000 });
      const seen = [];
      const log = join(base, 'metrics.log');
      const summary = await ingest('hostile-panic-1', stream, dir, 'small', { plugin: hostile, installationStart: START, metricsLog: log, onReport: (r) => seen.push(r) });
      // The first trap is recovered through the keeper: quarantined with the stream, nothing written.
      assert.deepEqual(seen, summary.reports);
      const [first] = seen;
      assert.match(first.detail, /^sandbox-trap: guest collect trapped: .*hostile guest panics on hostile-panic-1/s);
      const kept = quarantined(dir, first, 'sandbox-trap', undefined);
      assert.deepEqual(readFileSync(join(kept, 'pulled.tar')), stream);
      assert.ok(!existsSync(log) || readFileSync(log).length === 0, 'no lines');
      assert.deepEqual([summary.reports.length, summary.quarantined], [1, 1]);
      assert.equal(readdirSync(join(dir, '.quarantine')).filter((f) => f.endsWith('.reason.json')).length, 1);
      assert.deepEqual(readdirSync(dir).filter((n) => !n.startsWith('.')), [], 'nothing left staged');
    });
});
