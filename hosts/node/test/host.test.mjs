// The Node host's own behaviour: the log, the API, callbacks, limits. Traps
// and lies of a hostile guest: traps.test.mjs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import { CollectError, NATIVE, Plugin, collect } from '../src/index.js';
import { buildCase, loadCases, snapshot } from '../test-support/conformance.mjs';

const VALID = loadCases().find((c) => c.name === 'valid-without-job-metrics');
const STORAGE = VALID.root['small-r-00000000000a'];
const LINES = VALID.expect['small-r-00000000000a'].lines;
const HOSTILE = join(dirname(fileURLToPath(import.meta.url)), '..', 'generated-hostile'); // see traps.test.mjs

let plugin;
const temps = [];
before(async () => {
  plugin = await Plugin.load();
});
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

function build(root, outside = {}) {
  const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-'));
  temps.push(base);
  return { base, root: buildCase({ root, outside }, base) };
}

test('a sink that fails keeps the storages and stops the run', async () => {
  const { root } = build({ 'runner-a': STORAGE, 'runner-b': STORAGE });
  const broken = { append() { throw new Error('disk full'); } };
  await assert.rejects(collect(root, 'small', { plugin, metricsLog: broken }), (e) => {
    assert.ok(e instanceof CollectError);
    assert.match(e.message, /disk full/);
    assert.equal(e.summary.failed, 2);
    return true;
  });
  assert.ok(existsSync(join(root, 'runner-a')) && existsSync(join(root, 'runner-b')));
});

test('lines are handed to the sink while the storage still exists', async () => {
  const { root } = build({ 'runner-a': STORAGE });
  const seen = [];
  const sink = { append(lines) { seen.push([existsSync(join(root, 'runner-a')), lines]); } };
  const summary = await collect(root, 'small', { plugin, metricsLog: sink });
  assert.deepEqual(seen, [[true, LINES]]);
  assert.equal(summary.extracted, 1);
  assert.ok(!existsSync(join(root, 'runner-a')));
});

test('the log is appended and a cut last line terminated', async () => {
  const { base, root } = build({ 'runner-a': STORAGE });
  const log = join(base, 'metrics.log');
  writeFileSync(log, '{"old": 1}\n{"cut');
  await collect(root, 'small', { plugin, metricsLog: log });
  assert.equal(readFileSync(log, 'utf8'), `{"old": 1}\n{"cut\n${LINES.map((l) => `${l}\n`).join('')}`);
});

test('keep changes nothing on disk', async () => {
  const kase = loadCases().find((c) => c.name === 'corrupt-storages');
  const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-'));
  temps.push(base);
  const root = buildCase(kase, base);
  const snap = snapshot(base);
  const summary = await collect(root, 'small', { plugin, metricsLog: { append() {} }, keep: true });
  assert.deepEqual(snapshot(base), snap);
  assert.equal(summary.quarantined, Object.keys(kase.expect).length);
});

test('job conclusions in GitHub spelling; unknown ones are left out', async () => {
  for (const [conclusion, rendered] of [['timed_out', 'timed_out'], ['action-required', 'action_required'], ['brand-new', undefined]]) {
    const { base, root } = build({ 'runner-a': STORAGE });
    const log = join(base, 'metrics.log');
    let got;
    await collect(root, 'small', {
      plugin,
      metricsLog: log,
      jobMetrics: (m) => {
        got = m;
        return { queueDuration: 12.5, conclusion };
      },
    });
    assert.equal(got.runnerName, 'runner-a');
    assert.equal(got.preJob.repository, 'canonical/example');
    assert.equal(got.postJob.statusInfo.code, 1n);
    const [, start, stop] = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(start.queue_duration, 12.5);
    assert.equal(stop.job_conclusion, rendered);
  }
});

test('the sandbox sees only the storage root', async () => {
  const { base, root } = build(
    { 'runner-a': { dir: { 'runner-installed.timestamp': { symlink: '../../outside/secret' } } } },
    { secret: { text: 'keep' } },
  );
  const summary = await collect(root, 'small', { plugin, metricsLog: join(base, 'log') });
  assert.deepEqual(summary.reports.map((r) => [r.outcome, r.reason]), [['quarantined', 'not-regular-file']]);
  assert.equal(readFileSync(join(base, 'outside', 'secret'), 'utf8'), 'keep');
});

test('a callback that throws stops the run; storages already written are still deleted', async () => {
  const { root } = build({ 'runner-a': STORAGE, 'runner-b': STORAGE });
  const seen = [];
  const jobMetrics = (m) => {
    seen.push(m.runnerName);
    if (seen.length === 2) throw new Error('GitHub is down');
    return null;
  };
  // One storage per batch: the first is written and deleted before the second is asked about.
  await assert.rejects(collect(root, 'small', { plugin, metricsLog: { append() {} }, jobMetrics, batchSize: 1 }), (e) => {
    assert.ok(e instanceof CollectError);
    assert.match(e.message, /a callback failed: GitHub is down/);
    assert.deepEqual(e.summary.reports.map((r) => [r.name, r.outcome]), [[seen[0], 'extracted']]);
    return true;
  });
  assert.ok(!existsSync(join(root, seen[0])), 'the storage whose lines were written is deleted');
  assert.ok(existsSync(join(root, seen[1])), 'the storage being handled stays');
});

test('onReport sees every report as it comes', async () => {
  const { base, root } = build({ 'runner-a': STORAGE, '.hidden': STORAGE });
  const seen = [];
  const summary = await collect(root, 'small', { plugin, metricsLog: join(base, 'log'), onReport: (r) => seen.push(r) });
  assert.deepEqual(seen, summary.reports);
  assert.deepEqual(seen.map((r) => [r.name, r.outcome, r.reason]).sort(), [['.hidden', 'skipped', 'invalid-name'], ['runner-a', 'extracted', undefined]]);
});

test("the worker's V8 heap is capped (resourceLimits)", async () => {
  const { base, root } = build({ 'runner-a': STORAGE });
  const tiny = await Plugin.load(undefined, { heapMb: 1 }); // too small even to load the glue
  await assert.rejects(collect(root, 'small', { plugin: tiny, metricsLog: join(base, 'log') }), /outside any storage: .*memory limit/);
  assert.ok(existsSync(join(root, 'runner-a')));
});

test("the worker does not inherit the caller's node flags (node --input-type=module -e)", async () => {
  // Issue 26: the Worker took the parent's execArgv, so called from
  // `node --input-type=module -e '...'` every collect failed with "guest
  // recover crashed: --input-type can only be used with string input".
  const { base, root } = build({ 'runner-a': STORAGE });
  const log = join(base, 'metrics.log');
  const index = new URL('../src/index.js', import.meta.url).href;
  const script = `import { collect } from ${JSON.stringify(index)};
const s = await collect(${JSON.stringify(root)}, 'small', { metricsLog: ${JSON.stringify(log)} });
console.log(JSON.stringify([s.extracted, s.failed]));`;
  const { execFileSync } = await import('node:child_process');
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(out.trim(), '[1,0]');
  assert.equal(readFileSync(log, 'utf8'), LINES.map((l) => `${l}\n`).join(''));
});

test('a missing transpile is explained', async () => {
  await assert.rejects(Plugin.load(join(tmpdir(), 'runner-metrics-no-such-dir')), /npm run transpile/);
});

test('storages written but not yet reported when the guest is stopped are deleted by a fresh instance', async () => {
  // Both lines go out in one batch; the guest is stopped (here: onReport
  // throws) after reporting the first deletion, before the second.
  const { base, root } = build({ 'runner-a': STORAGE, 'runner-b': STORAGE });
  const log = join(base, 'metrics.log');
  const onReport = () => { throw new Error('report sink closed'); };
  await assert.rejects(collect(root, 'small', { plugin, metricsLog: log, onReport, batchSize: 2 }), (e) => {
    assert.match(e.message, /a callback failed: report sink closed/);
    assert.deepEqual(e.summary.reports.map((r) => [r.outcome, r.detail, r.events]), [['extracted', 'deleted', 3], ['extracted', 'deleted', 3]]);
    return true;
  });
  assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('runner-')), []);
  assert.equal(readFileSync(log, 'utf8'), LINES.map((l) => `${l}\n`).join('').repeat(2));
});

test('a lie is caught by the keeper: a name out of the root is booked failed and the run goes on',
  { skip: !existsSync(join(HOSTILE, 'runner_metrics.js')) && 'the hostile component is not transpiled' }, async () => {
    // The hostile scan (exclude "hostile-scan") offers "../../etc" as a
    // storage: the keeper refuses its begin-storage, the worker is killed,
    // the recovery reports it failed (kept) and the collect resumes.
    const { base, root } = build({ 'runner-a': STORAGE });
    const summary = await collect(root, 'small', { plugin: await Plugin.load(HOSTILE), metricsLog: join(base, 'log'), exclude: ['hostile-scan'] });
    const byName = Object.fromEntries(summary.reports.map((r) => [r.name, r]));
    assert.equal(summary.reports.length, 2);
    assert.equal(byName['../../etc'].outcome, 'failed');
    assert.match(byName['../../etc'].detail, /^kept: guest lied: named "\.\.\/\.\.\/etc" as a storage, which is not a valid runner name/);
    assert.deepEqual([byName['runner-a'].outcome, byName['runner-a'].events], ['extracted', LINES.length]);
    assert.equal(readFileSync(join(base, 'log'), 'utf8'), LINES.map((l) => `${l}\n`).join(''));
  });

test('policy: strict (the default) quarantines a corrupt runner; lenient counts the file as missing; anything else is refused', async () => {
  const corrupt = { dir: { ...STORAGE.dir, 'pre-job-metrics.json': { text: '{"workflow": ' } } };
  const outcomes = {};
  for (const policy of [undefined, 'strict', 'lenient']) {
    const { base, root } = build({ 'runner-a': corrupt });
    const log = join(base, 'metrics.log');
    const [report] = (await collect(root, 'small', { plugin, metricsLog: log, policy })).reports;
    outcomes[policy] = [report.outcome, report.reason, existsSync(log) ? readFileSync(log, 'utf8') : ''];
    if (policy === 'lenient') assert.match(report.detail, /^counted as missing \(lenient policy\): pre-job-metrics\.json/);
  }
  assert.deepEqual(outcomes[undefined], ['quarantined', 'invalid-json', '']);
  assert.deepEqual(outcomes.strict, outcomes[undefined]);
  assert.deepEqual(outcomes.lenient, ['extracted', undefined, `${LINES[0]}\n`]); // runner_installed only
  const { root } = build({ 'runner-a': STORAGE });
  await assert.rejects(collect(root, 'small', { plugin, metricsLog: { append() {} }, policy: 'Lenient' }), RangeError);
  await assert.rejects(collect(root, 'small', { plugin, metricsLog: { append() {} }, policy: 1 }), TypeError);
  assert.ok(existsSync(join(root, 'runner-a')));
});

// Each host fails a storage with a tmpfs mounted on it its own way: the Rust host's confined
// filesystem never enters a mount it did not make; the WebAssembly host moves it and gets EBUSY.
// Either way the report names the error, typed, as the WIT spells it.
for (const host of ['native', 'wasm']) {
  const skip = (process.getuid() !== 0 && 'mounting a tmpfs needs root')
    || (host === 'native' && !NATIVE && 'the addon runner-metrics.node is not built (scripts/test-hosts.sh builds it)');
  test(`a failed storage names its filesystem errors (${host})`, { skip }, async () => {
    const { base, root } = build({});
    const storage = join(root, 'r-tmpfs');
    mkdirSync(storage);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', storage]);
    try {
      const seen = [];
      const options = { metricsLog: join(base, 'metrics.log'), onReport: (r) => seen.push(r) };
      const summary = await collect(root, 'small', host === 'native' ? options : { ...options, plugin });
      assert.equal(summary.failed, 1);
      const expected = host === 'native'
        ? { operation: 'open-directory', path: 'r-tmpfs', code: 'permission-denied', cause: 'Operation not permitted' }
        : { operation: 'move', path: 'r-tmpfs', code: 'other', cause: 'Device or resource busy' };
      assert.deepEqual(seen.map((r) => r.errors.map((e) => ({ ...e }))), [[expected]]);
      assert.ok(seen[0].detail.includes(`"${expected.path}": ${expected.cause}`), seen[0].detail);
    } finally {
      execFileSync('umount', ['-l', storage]);
    }
  });
}
