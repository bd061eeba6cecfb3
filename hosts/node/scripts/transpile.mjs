#!/usr/bin/env node
// Transpiles the runner-metrics component into hosts/node/generated/ with jco:
// core wasm + JS glue whose `instantiate(getCoreModule, imports)` takes the
// WASI imports from us (so each instance gets its own sandboxed WASIShim).
//
//   node scripts/transpile.mjs [COMPONENT.wasm]
//
// COMPONENT defaults to $RUNNER_METRICS_COMPONENT, else
// <repo>/target/hosts/runner_metrics.wasm (written by
// `runner-metrics component --output ...`, see scripts/test-hosts.sh).
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const repo = resolve(pkg, '..', '..');
const component = resolve(
  process.argv[2] ?? process.env.RUNNER_METRICS_COMPONENT ?? join(repo, 'target', 'hosts', 'runner_metrics.wasm'),
);
if (!existsSync(component)) {
  console.error(`no component at ${component}: run \`cargo build -p runner-metrics && ./target/debug/runner-metrics component --output ${component}\``);
  process.exit(2);
}
const out = join(pkg, 'generated');
rmSync(out, { recursive: true, force: true });
const jco = join(pkg, 'node_modules', '.bin', 'jco');
execFileSync(jco, ['transpile', component, '-o', out, '--name', 'runner_metrics', '--instantiation', 'async', '--quiet'], {
  stdio: 'inherit',
});
console.error(`transpiled ${component} -> ${out}`);
