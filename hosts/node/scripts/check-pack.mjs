#!/usr/bin/env node
// `npm pack` / `npm publish` guard (package.json "prepack"): the package
// ships the binding of the Rust host (runner-metrics.node) and the
// transpiled plugin in generated/ and keeper in generated-keeper/, so refuse
// to pack without them.
// scripts/package.sh transpiles into a staging copy and packs that.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const missing = ['runner-metrics.node', 'generated/runner_metrics.js', 'generated/runner_metrics.core.wasm',
  'generated-keeper/runner_metrics_keeper.js', 'generated-keeper/runner_metrics_keeper.core.wasm']
  .map((f) => join(pkg, f))
  .filter((f) => !existsSync(f));
if (missing.length) {
  console.error(`not packing: ${missing.join(', ')} missing; run scripts/package.sh from the repository root (it builds the addon and transpiles the components)`);
  process.exit(1);
}
