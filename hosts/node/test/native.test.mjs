// The Node binding of the Rust host library (src/native.js, the addon runner-metrics.node from
// hosts/node/native): what a caller lends it (async callbacks, a sink of its own, reports) and
// gets back when one fails. The conformance cases run through it in conformance.test.mjs. Skipped (and so
// refused under CI=true) when the addon is not built: scripts/test-hosts.sh builds it.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { CollectError } from '../src/index.js';

const built = existsSync(new URL('../runner-metrics.node', import.meta.url));
const skip = !built && 'the addon runner-metrics.node is not built (scripts/test-hosts.sh builds it)';
const { collect } = built ? await import('../src/native.js') : {};

const temps = [];
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});
function temp() {
  const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-native-'));
  temps.push(base);
  return base;
}

function fixtureF(root, name) {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'runner-installation-start.timestamp'), '1.0');
  writeFileSync(join(dir, 'runner-installed.timestamp'), '2.0');
  writeFileSync(join(dir, 'pre-job-metrics.json'), '{"timestamp": 3.0, "workflow": "workflow1", "workflow_run_id": "workflow_run_id1", "repository": "org1/repository1", "event": "push"}');
  writeFileSync(join(dir, 'post-job-metrics.json'), '{"timestamp": 3.0, "status": "normal", "status_info": null}');
}

function rootWith(n) {
  const root = join(temp(), 'root');
  mkdirSync(root);
  for (let i = 0; i < n; i++) fixtureF(root, `r-${i}`);
  return root;
}

test('a sink of the caller\'s gets the lines in batches; every report arrives before the promise settles', { skip }, async () => {
  const root = rootWith(5);
  const batches = [];
  const seen = [];
  const summary = await collect(root, 'small', {
    metricsLog: { async append(lines) { batches.push(lines.length); } }, batchSize: 2, onReport: (r) => seen.push(r.name),
  });
  assert.deepEqual(batches, [6, 6, 3], 'three lines a runner, two runners a batch');
  assert.equal(summary.extracted, 5);
  assert.equal(summary.linesWritten, 15);
  assert.deepEqual(seen.sort(), ['r-0', 'r-1', 'r-2', 'r-3', 'r-4']);
  assert.deepEqual(readdirSync(root).filter((n) => !n.startsWith('.')), [], 'all deleted');
});

test('a sink that fails stops the run and deletes nothing', { skip }, async () => {
  const root = rootWith(2);
  await assert.rejects(collect(root, 'small', { metricsLog: { append() { throw new Error('the disk is full'); } } }), (e) => {
    assert.ok(e instanceof CollectError);
    assert.match(e.message, /the disk is full/);
    return true;
  });
  assert.deepEqual(readdirSync(root).filter((n) => n.startsWith('r-')).sort(), ['r-0', 'r-1'], 'nothing deleted before its lines are durable');
});

test('a jobMetrics that throws is reported after the run; the lines are all written once', { skip }, async () => {
  const root = rootWith(2);
  const log = join(temp(), 'log');
  await assert.rejects(collect(root, 'small', { metricsLog: log, jobMetrics: () => { throw new Error('rate limited'); } }), (e) => {
    assert.ok(e instanceof CollectError);
    assert.match(e.message, /a callback failed: rate limited/);
    assert.equal(e.summary.extracted, 2);
    return true;
  });
  assert.equal(readFileSync(log, 'utf8').split('\n').filter(Boolean).length, 6);
});

test('a dry run changes nothing; a missing root is an error naming it', { skip }, async () => {
  const root = rootWith(1);
  const summary = await collect(root, 'small', { metricsLog: join(temp(), 'log'), dryRun: true });
  assert.equal(summary.extracted, 1);
  assert.ok(existsSync(join(root, 'r-0', 'pre-job-metrics.json')));
  await assert.rejects(collect(join(root, 'missing'), 'small', { metricsLog: join(temp(), 'log') }), /missing/);
});

test("the package's collect is the binding (it holds the root's lock) unless handed a Plugin", { skip }, async () => {
  const index = await import('../src/index.js');
  assert.equal(index.NATIVE, true);
  const locked = async (options) => {
    const root = rootWith(1);
    let seen;
    const jobMetrics = () => { seen = existsSync(join(root, '.lock')); return null; };
    const summary = await index.collect(root, 'small', { metricsLog: join(temp(), 'log'), jobMetrics, ...options });
    assert.equal(summary.extracted, 1);
    return seen;
  };
  assert.equal(await locked({}), true, 'the Rust host holds `<root>/.lock` during the run');
  assert.equal(await locked({ plugin: await index.Plugin.load() }), false, 'the WebAssembly host takes no lock');
});

test("the package's ingest is the binding too: loose files logged once, a bad stream quarantined whole", { skip }, async () => {
  const index = await import('../src/index.js');
  const dir = join(temp(), 'pulled');
  const log = join(temp(), 'log');
  let locked;
  const files = {
    'runner-installed.timestamp': Buffer.from('2.0'),
    'pre-job-metrics.json': Buffer.from('{"timestamp": 3.0, "workflow": "w", "workflow_run_id": "1", "repository": "o/r", "event": "push"}'),
    'post-job-metrics.json': null,
  };
  const jobMetrics = () => { locked = existsSync(join(dir, '.lock')); return null; };
  const summary = await index.ingest('r-pulled', files, dir, 'small', { installationStart: 1.0, metricsLog: log, jobMetrics });
  assert.equal(locked, true, 'the Rust host holds the directory\'s lock');
  assert.deepEqual([summary.extracted, summary.linesWritten], [1, 2]);
  assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).event), ['runner_installed', 'runner_start']);
  const bad = await index.ingest('r-bad', Buffer.from('not a tar stream at all'), dir, 'small', { metricsLog: log });
  assert.equal(bad.quarantined, 1);
  assert.equal(bad.reports[0].reason, 'invalid-archive');
});
