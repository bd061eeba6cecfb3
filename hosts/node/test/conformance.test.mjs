// The shared conformance cases through both Node hosts: the binding of the Rust host (what
// `collect` runs; skipped, and so refused under CI=true, when the addon is not built) and the
// WebAssembly host (jco + preview2-shim: `collect` handed a Plugin).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { NATIVE, Plugin, collect } from '../src/index.js';
import { buildCase, checkRun, loadCases, snapshot } from '../test-support/conformance.mjs';

let plugin;
const temps = [];
before(async () => {
  plugin = await Plugin.load();
});
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

for (const host of ['native', 'wasm']) describe(`conformance (${host})`, { skip: host === 'native' && !NATIVE && 'the addon runner-metrics.node is not built (scripts/test-hosts.sh builds it)' }, () => {
  for (const kase of loadCases()) {
    test(kase.name, async () => {
      const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-'));
      temps.push(base);
      const root = buildCase(kase, base);
      const snap = snapshot(base);
      const log = join(base, 'metrics.log');
      const asked = [];
      const summary = await collect(root, kase.flavor, {
        plugin: host === 'wasm' ? plugin : undefined,
        exclude: kase.selection.exclude ?? [],
        include: kase.selection.include ?? undefined,
        minAge: kase.selection.min_age ?? undefined,
        jobMetrics: (metrics) => {
          asked.push(metrics.runnerName);
          const job = kase.jobs[metrics.runnerName];
          return job ? { queueDuration: job.queue_duration, conclusion: job.conclusion } : null;
        },
        metricsLog: log,
      });
      // The lock file the Rust host leaves (empty, `<root>/.lock`) is its own.
      if (existsSync(join(root, '.lock'))) rmSync(join(root, '.lock'));
      const problems = checkRun(kase, base, snap, summary.reports, existsSync(log) ? readFileSync(log) : Buffer.alloc(0));
      assert.deepEqual(problems, []);
      assert.equal(summary.reports.length, Object.keys(kase.expect).length);
      assert.equal(summary.failed, 0);
      const extracted = Object.entries(kase.expect).filter(([, e]) => e.outcome === 'extracted').map(([n]) => n).sort();
      assert.deepEqual(asked.sort(), extracted, 'jobMetrics is asked once per extracted runner');
    });
  }
});
