// One collect, end to end: a storage root with two runners in a temporary
// directory, job metrics from a callback, events appended to a log.
//
//   node scripts/transpile.mjs ../../target/hosts/runner_metrics.wasm   # once
//   node examples/collect-example.mjs
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { collect } from '../src/index.js'; // installed: from 'runner-metrics-node-host'

const base = mkdtempSync(join(tmpdir(), 'runner-metrics-example-'));
const root = join(base, 'runner-fs');
const log = join(base, 'metrics.log');
try {
  // What runners leave in their storages: a finished job, and a runner that never came up.
  const storage = (name, files) => {
    mkdirSync(join(root, name), { recursive: true });
    for (const [file, text] of Object.entries(files)) writeFileSync(join(root, name, file), text);
  };
  storage('small-n-0123456789ab', {
    'runner-installation-start.timestamp': '1700000000',
    'runner-installed.timestamp': '1700000060',
    'pre-job-metrics.json': JSON.stringify({ workflow: 'ci', repository: 'org/repo', event: 'push', timestamp: 1700000100, workflow_run_id: '42' }),
    'post-job-metrics.json': JSON.stringify({ timestamp: 1700000400, status: 'normal' }),
  });
  storage('small-n-ba9876543210', {}); // no installed timestamp: no data, deleted

  const summary = await collect(root, 'small', {
    // What the manager knows from GitHub about the job (or null).
    jobMetrics: (metrics) => (metrics.runnerName === 'small-n-0123456789ab' ? { queueDuration: 12.5, conclusion: 'success' } : null),
    metricsLog: log,
    onReport: (r) => console.log(`${r.outcome.padStart(11)}: ${r.name}: ${r.detail}`),
  });
  const { reports, ...counts } = summary;
  console.log('summary:', JSON.stringify(counts));
  process.stdout.write(readFileSync(log, 'utf8'));
} finally {
  rmSync(base, { recursive: true, force: true });
}
