// examples/collect-example.mjs runs and prints what it promises, so it cannot rot.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');

test('examples/collect-example.mjs', () => {
  const out = execFileSync(process.execPath, [join(pkg, 'examples', 'collect-example.mjs')], { encoding: 'utf8', timeout: 60_000 });
  const lines = out.trimEnd().split('\n');
  assert.ok(lines.includes('    no-data: small-n-ba9876543210: no installed timestamp; deleted'), out);
  assert.ok(lines.includes('  extracted: small-n-0123456789ab: deleted'), out);
  assert.ok(lines.includes('summary: {"extracted":1,"noData":1,"quarantined":0,"skipped":0,"failed":0,"linesWritten":3}'), out);
  const events = lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => e.event), ['runner_installed', 'runner_start', 'runner_stop']);
  assert.equal(events[1].queue_duration, 12.5);
  assert.equal(events[2].job_conclusion, 'success');
});
