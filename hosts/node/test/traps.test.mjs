// Trap recovery and lies, with the deliberately hostile guest
// (core/src/hostile.rs: storages named `hostile-<behaviour>-...` make it
// panic, spin, allocate without bound, block on a FIFO, or lie). It is
// transpiled into generated-hostile/ by
// `node scripts/transpile.mjs COMPONENT HOSTILE` (or with
// $RUNNER_METRICS_HOSTILE_COMPONENT set); without it these tests are skipped,
// unless $RUNNER_METRICS_HOSTILE_COMPONENT is set, when they fail.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';

import { CollectError, Plugin, bounds, collect } from '../src/index.js';

const { trapsPerRun: MAX_TRAPS_PER_RUN } = await bounds();
import { buildCase, loadCases, snapshot } from '../test-support/conformance.mjs';

const HOSTILE = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'generated-hostile');
const missing = !existsSync(join(HOSTILE, 'runner_metrics.js'));
if (missing && process.env.RUNNER_METRICS_HOSTILE_COMPONENT) {
  throw new Error(`$RUNNER_METRICS_HOSTILE_COMPONENT is set but ${HOSTILE} is missing: run node scripts/transpile.mjs`);
}
const skip = missing && 'the hostile component is not transpiled (node scripts/transpile.mjs COMPONENT HOSTILE)';

const VALID = loadCases().find((c) => c.name === 'valid-without-job-metrics');
const STORAGE = VALID.root['small-r-00000000000a'];
const LINES = VALID.expect['small-r-00000000000a'].lines;
const HOSTILE_STORAGE = { dir: { 'runner-installed.timestamp': { text: '100\n' } } };
const TIMEOUT_MS = 3000; // room for a worker to start on a loaded machine

let plugin;
const temps = [];
before(async () => {
  if (!skip) plugin = await Plugin.load(HOSTILE, { timeoutMs: TIMEOUT_MS });
});
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

/** `hostile` (a storage name, or names) beside two valid storages, collected into a log. */
async function run(hostile, options = {}, extra = {}) {
  const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-'));
  temps.push(base);
  const names = [hostile].flat();
  const root = buildCase({ root: { 'runner-a': STORAGE, 'runner-c': STORAGE, ...Object.fromEntries(names.map((n) => [n, HOSTILE_STORAGE])), ...extra } }, base);
  const before = snapshot(base);
  const log = join(base, 'metrics.log');
  const started = Date.now();
  let summary, error;
  try {
    summary = await collect(root, options.flavor ?? 'small', { plugin, metricsLog: log, ...options });
  } catch (e) {
    if (!(e instanceof CollectError)) throw e;
    [error, summary] = [e, e.summary];
  }
  const byName = Object.fromEntries(summary.reports.map((r) => [r.name, r]));
  assert.equal(Object.keys(byName).length, summary.reports.length, 'each storage is reported once');
  return { base, root, before, summary, byName, error, seconds: (Date.now() - started) / 1000, log: existsSync(log) ? readFileSync(log, 'utf8') : '' };
}

/** The valid storages were extracted and deleted, their events in the log exactly once. */
function othersExtracted({ root, byName, log }) {
  for (const name of ['runner-a', 'runner-c']) {
    assert.equal(byName[name]?.outcome, 'extracted', `${name}: ${byName[name]?.detail}`);
    assert.equal(byName[name].events, LINES.length);
    assert.ok(!existsSync(join(root, name)), `${name} is deleted`);
  }
  assert.equal(log, LINES.map((l) => `${l}\n`).join('').repeat(2), 'each valid storage\'s events exactly once');
}

/** `name` was moved to .quarantine/ with reason sandbox-trap. */
function quarantinedForTrap({ root, byName }, name, detail) {
  assert.equal(byName[name]?.outcome, 'quarantined', byName[name]?.detail);
  assert.equal(byName[name].reason, 'sandbox-trap');
  assert.match(byName[name].detail, detail);
  assert.ok(!existsSync(join(root, name)));
  const reasons = readdirSync(join(root, '.quarantine')).filter((f) => f.startsWith(`${name}.`) && f.endsWith('.reason.json'));
  assert.equal(reasons.length, 1);
  assert.equal(JSON.parse(readFileSync(join(root, '.quarantine', reasons[0]), 'utf8')).reason, 'sandbox-trap');
}

describe('trap recovery with the hostile guest', { skip }, () => {
  test('a panic quarantines that storage (sandbox-trap); the others are extracted exactly once', async () => {
    const r = await run('hostile-panic-a');
    assert.equal(r.error, undefined);
    quarantinedForTrap(r, 'hostile-panic-a', /trapped: .*guest stderr: .*hostile guest panics on hostile-panic-a/s);
    othersExtracted(r);
    assert.deepEqual([r.summary.extracted, r.summary.quarantined, r.summary.failed, r.summary.linesWritten], [2, 1, 0, 2 * LINES.length]);
  });

  test('an endless loop is stopped at the deadline and quarantined', async () => {
    const r = await run('hostile-loop-b');
    quarantinedForTrap(r, 'hostile-loop-b', new RegExp(`exceeded its ${TIMEOUT_MS} ms deadline`));
    othersExtracted(r);
    assert.ok(r.seconds < 20, `took ${r.seconds}s`);
  });

  test('a dry run (keep) reports the trapped storage as failed and changes nothing', async () => {
    const r = await run('hostile-panic-a', { keep: true, metricsLog: { append() {} } });
    assert.equal(r.byName['hostile-panic-a'].outcome, 'failed');
    assert.match(r.byName['hostile-panic-a'].detail, /^kept: guest collect trapped: /);
    for (const name of ['runner-a', 'runner-c']) assert.deepEqual([r.byName[name].outcome, r.byName[name].detail], ['extracted', 'kept (dry run)']);
    assert.deepEqual(snapshot(r.base), r.before);
  });

  test('unbounded allocation hits the memory cap and is quarantined', async () => {
    const r = await run('hostile-alloc-c');
    quarantinedForTrap(r, 'hostile-alloc-c', /memory allocation of \d+ bytes failed/);
    othersExtracted(r);
  });

  test('a guest blocked opening a FIFO is woken at the deadline and quarantined', async () => {
    const fifo = { dir: { ...HOSTILE_STORAGE.dir, 'pre-job-metrics.json': { fifo: true } } };
    const r = await run([], {}, { 'hostile-fifo-d': fifo });
    quarantinedForTrap(r, 'hostile-fifo-d', /deadline/);
    othersExtracted(r);
  });

  test('a guest that lies about a storage gets it kept, not quarantined', async () => {
    const r = await run(['hostile-negative-e', 'hostile-othername-f', 'hostile-huge-g', 'hostile-location-h']);
    for (const [name, said] of [['hostile-negative-e', /installed timestamp is -5, not a finite number/], ['hostile-othername-f', /answered for "someone-else"/],
      ['hostile-huge-g', /workflow is \d+ bytes long, more than a metrics file can hold/],
      ['hostile-location-h', /reported quarantine location "\.\.\/\.\.\/etc"/]]) {
      assert.equal(r.byName[name].outcome, 'failed');
      assert.match(r.byName[name].detail, /^kept: guest lied: /);
      assert.match(r.byName[name].detail, said);
      assert.ok(existsSync(join(r.root, name)));
    }
    othersExtracted(r);
  });

  test('an event of a flavor nobody asked for is refused and nothing is written', async () => {
    const r = await run([], { flavor: 'hostile-otherflavor' });
    for (const name of ['runner-a', 'runner-c']) {
      assert.equal(r.byName[name].outcome, 'failed');
      assert.match(r.byName[name].detail, /kept: guest lied: .*event of flavor "injected", not "hostile-otherflavor"/);
      assert.ok(existsSync(join(r.root, name)));
    }
    assert.equal(r.log, '');
  });

  test(`after ${MAX_TRAPS_PER_RUN} traps the run stops and the rest is left for the next run`, async () => {
    const panics = Array.from({ length: MAX_TRAPS_PER_RUN + 1 }, (_, i) => `hostile-panic-${i}`);
    const r = await run(panics);
    assert.match(r.error?.message ?? '', /stopped after 16 sandbox traps/);
    assert.equal(r.summary.quarantined, MAX_TRAPS_PER_RUN);
    assert.equal(panics.filter((n) => existsSync(join(r.root, n))).length, 1);
  });
});
