// The shared conformance cases through the Node host (jco + preview2-shim).
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Plugin, collect } from '../src/index.js';
import { buildCase, checkRun, loadCases, snapshot } from '../test-support/conformance.mjs';

let plugin;
const temps = [];
before(async () => {
  plugin = await Plugin.load();
});
after(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

describe('conformance', () => {
  for (const kase of loadCases()) {
    test(kase.name, async () => {
      const base = mkdtempSync(join(tmpdir(), 'runner-metrics-node-'));
      temps.push(base);
      const root = buildCase(kase, base);
      const snap = snapshot(base);
      const log = join(base, 'metrics.log');
      const asked = [];
      const summary = await collect(root, kase.flavor, {
        plugin,
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
      const problems = checkRun(kase, base, snap, summary.reports, existsSync(log) ? readFileSync(log) : Buffer.alloc(0));
      assert.deepEqual(problems, []);
      assert.equal(summary.reports.length, Object.keys(kase.expect).length);
      assert.equal(summary.failed, 0);
      const extracted = Object.entries(kase.expect).filter(([, e]) => e.outcome === 'extracted').map(([n]) => n).sort();
      assert.deepEqual(asked.sort(), extracted, 'jobMetrics is asked once per extracted runner');
    });
  }
});
