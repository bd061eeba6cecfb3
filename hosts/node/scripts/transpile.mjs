#!/usr/bin/env node
// Transpiles the runner-metrics plugin into hosts/node/generated/ and the
// keeper into hosts/node/generated-keeper/ with jco: core wasm + JS glue whose
// `instantiate(getCoreModule, imports)` takes every import from us: WASI (a
// sandboxed preview2-shim per instance) and, for the plugin, the
// `github-runner:metrics/host` interface (src/worker.js forwards it to
// src/index.js).
//
//   node scripts/transpile.mjs [COMPONENT.wasm [HOSTILE.wasm]]
//
// COMPONENT defaults to $RUNNER_METRICS_COMPONENT, else
// <repo>/target/hosts/runner_metrics.wasm (written by
// `runner-metrics component --output ...`, see scripts/test-hosts.sh); the
// keeper is $RUNNER_METRICS_KEEPER_COMPONENT, else
// <repo>/target/hosts/runner_metrics_keeper.wasm (`--kind keeper`).
// HOSTILE (default $RUNNER_METRICS_HOSTILE_COMPONENT) is the guest built
// with `--features hostile` (core/src/hostile.rs); it goes to
// generated-hostile/ for the trap-recovery tests (test/traps.test.mjs),
// which are skipped without it. Without HOSTILE, generated-hostile/ is
// removed so that no stale hostile build is tested.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const repo = resolve(pkg, '..', '..');
const jco = join(pkg, 'node_modules', '.bin', 'jco');

function transpile(component, out, name = 'runner_metrics', kind = 'plugin') {
  if (!existsSync(component)) {
    console.error(`no component at ${component}: run \`cargo build -p runner-metrics && ./target/debug/runner-metrics component --kind ${kind} --output ${component}\``);
    process.exit(2);
  }
  rmSync(out, { recursive: true, force: true });
  execFileSync(jco, ['transpile', component, '-o', out, '--name', name, '--instantiation', 'async', '--quiet'], {
    stdio: 'inherit',
  });
  console.error(`transpiled ${component} -> ${out}`);
}

transpile(
  resolve(process.argv[2] ?? process.env.RUNNER_METRICS_COMPONENT ?? join(repo, 'target', 'hosts', 'runner_metrics.wasm')),
  join(pkg, 'generated'),
);
transpile(
  resolve(process.env.RUNNER_METRICS_KEEPER_COMPONENT ?? join(repo, 'target', 'hosts', 'runner_metrics_keeper.wasm')),
  join(pkg, 'generated-keeper'),
  'runner_metrics_keeper',
  'keeper',
);
const hostile = process.argv[3] ?? process.env.RUNNER_METRICS_HOSTILE_COMPONENT;
if (hostile) {
  transpile(resolve(hostile), join(pkg, 'generated-hostile'));
} else {
  rmSync(join(pkg, 'generated-hostile'), { recursive: true, force: true });
}
