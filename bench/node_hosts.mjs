// The Node hosts side by side, in one process and one run (issue 26): the WebAssembly host
// (src/index.js handed a Plugin: jco, preview2-shim, a Worker) against the binding of the Rust
// host library (src/native.js, the addon runner-metrics.node: what `collect` runs), on
// identical copies of one storage root in the reference implementation's mix (80% complete,
// 10% without post-job, 5% no data, 5% corrupt), each after a warm-up run; the logs must be
// byte-identical.
//
//   node bench/node_hosts.mjs [--storages 2000] [--dir /dev/shm] [--job-metrics]
//
// Run scripts/test-hosts.sh first: it builds the addon and transpiles the components.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { Plugin, collect } from '../hosts/node/src/index.js';
import { collect as nativeCollect } from '../hosts/node/src/native.js';

const { values } = parseArgs({ options: { storages: { type: 'string', default: '2000' }, dir: { type: 'string', default: '/dev/shm' }, 'job-metrics': { type: 'boolean', default: false } } });
// A job-metrics callback that answers at once (what a cached lookup costs), asked per runner.
const jobMetrics = values['job-metrics'] ? () => ({ queueDuration: 12.5, conclusion: 'success' }) : undefined;
const n = Number(values.storages);
const PRE = '{"workflow": "ci", "repository": "canonical/example", "event": "push", "timestamp": 1700000100, "workflow_run_id": "123456"}';
const POST = '{"timestamp": 1700000400, "status": "abnormal", "status_info": {"code": 1}}';

function generate(root) {
  mkdirSync(root);
  for (let i = 0; i < n; i++) {
    const dir = join(root, `runner-${String(i).padStart(6, '0')}`);
    mkdirSync(dir);
    const kind = i % 20;
    if (kind === 19) continue; // 5% no data
    writeFileSync(join(dir, 'runner-installation-start.timestamp'), '1700000000.5\n');
    writeFileSync(join(dir, 'runner-installed.timestamp'), '1700000060\n');
    writeFileSync(join(dir, 'pre-job-metrics.json'), kind === 18 ? '{not json' : PRE); // 5% corrupt
    if (kind !== 16 && kind !== 17) writeFileSync(join(dir, 'post-job-metrics.json'), POST); // 10% without post-job
  }
}

const tmp = mkdtempSync(join(values.dir, 'runner-metrics-node-bench-'));
try {
  generate(join(tmp, 'template'));
  const plugin = await Plugin.load();
  const contenders = {
    'WebAssembly host': (root, log) => collect(root, 'small', { plugin, metricsLog: log, jobMetrics }),
    'Rust host binding': (root, log) => nativeCollect(root, 'small', { metricsLog: log, jobMetrics }),
  };
  const results = {};
  const logs = {};
  for (const [name, run] of Object.entries(contenders)) {
    cpSync(join(tmp, 'template'), join(tmp, 'warm'), { recursive: true });
    await run(join(tmp, 'warm'), join(tmp, 'warm.log'));
    rmSync(join(tmp, 'warm'), { recursive: true });
    cpSync(join(tmp, 'template'), join(tmp, 'root'), { recursive: true });
    const log = join(tmp, `${Object.keys(results).length}.log`);
    const start = process.hrtime.bigint();
    await run(join(tmp, 'root'), log);
    results[name] = Number(process.hrtime.bigint() - start) / 1e9;
    logs[name] = readFileSync(log, 'utf8');
    rmSync(join(tmp, 'root'), { recursive: true });
  }
  const identical = new Set(Object.values(logs)).size === 1;
  console.log(`${n} storages on ${values.dir}, ${jobMetrics ? 'a jobMetrics callback' : 'no callback'}, warm, one process; logs byte-identical: ${identical}`);
  const base = results['Rust host binding'];
  for (const [name, s] of Object.entries(results)) {
    console.log(`  ${name.padEnd(20)} ${s.toFixed(3).padStart(7)} s  ${((s / n) * 1e6).toFixed(0).padStart(6)} us/storage  ${(s / base).toFixed(1)}x`);
  }
  if (!identical) process.exitCode = 1;
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
