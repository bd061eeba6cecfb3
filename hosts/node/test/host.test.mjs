// The Node host's own behaviour: traps, the log, the API.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { CollectError, GuestFailure, Plugin, collect } from '../src/index.js';
import { buildCase, loadCases, snapshot } from '../test-support/conformance.mjs';

const VALID = loadCases().find((c) => c.name === 'valid-without-job-metrics');
const STORAGE = VALID.root['small-r-00000000000a'];
const LINES = VALID.expect['small-r-00000000000a'].lines;

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

test('a trap quarantines the storage with a fresh instance and the run goes on', async () => {
  const { base, root } = build({ 'runner-victim': STORAGE, 'runner-fine': STORAGE });
  // A plugin whose instances trap on one storage (Node has no fuel to make
  // the real guest trap on demand).
  const trapping = Object.create(plugin);
  trapping.sandbox = async (r) => {
    const sandbox = await plugin.sandbox(r);
    const real = sandbox.extractStorage.bind(sandbox);
    sandbox.extractStorage = (name, keep) => {
      if (name === 'runner-victim') throw new GuestFailure('guest extraction trapped: unreachable');
      return real(name, keep);
    };
    return sandbox;
  };
  const log = join(base, 'metrics.log');
  const summary = await collect(root, 'small', { plugin: trapping, metricsLog: log });
  const byName = Object.fromEntries(summary.reports.map((r) => [r.name, r]));
  assert.equal(byName['runner-victim'].outcome, 'quarantined');
  assert.equal(byName['runner-victim'].reason, 'sandbox-trap');
  assert.equal(byName['runner-fine'].outcome, 'extracted');
  assert.equal(readFileSync(log, 'utf8'), LINES.map((l) => `${l}\n`).join(''));
  const reasonFile = readdirSync(join(root, '.quarantine')).find((f) => f.endsWith('.reason.json'));
  assert.equal(JSON.parse(readFileSync(join(root, '.quarantine', reasonFile), 'utf8')).reason, 'sandbox-trap');
});

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

/** A plugin whose instances render each line through `tamper`. */
function tampering(tamper) {
  const liar = Object.create(plugin);
  liar.sandbox = async (r) => {
    const sandbox = await plugin.sandbox(r);
    const real = sandbox.renderEvent.bind(sandbox);
    sandbox.renderEvent = (event) => tamper(real(event));
    return sandbox;
  };
  return liar;
}

test('a line with a key its event does not have is refused and nothing is written', async () => {
  // The line must hold exactly its event (issue 9): the storage is kept.
  const { base, root } = build({ 'runner-liar': STORAGE });
  const log = join(base, 'metrics.log');
  const liar = tampering((line) => `${line.slice(0, -1)}, "injected": true}`);
  const summary = await collect(root, 'small', { plugin: liar, metricsLog: log });
  assert.equal(summary.reports.length, 1);
  assert.equal(summary.reports[0].outcome, 'failed');
  assert.match(summary.reports[0].detail, /"injected"/);
  assert.equal(readFileSync(log, 'utf8'), '');
  assert.ok(existsSync(join(root, 'runner-liar')));
});

test('a line whose value differs from its event is refused', async () => {
  const { base, root } = build({ 'runner-liar': STORAGE });
  const liar = tampering((line) => line.replace('"flavor": "small"', '"flavor": "large"'));
  const summary = await collect(root, 'small', { plugin: liar, metricsLog: join(base, 'metrics.log') });
  assert.equal(summary.reports[0].outcome, 'failed');
  assert.match(summary.reports[0].detail, /"flavor" differs/);
});
