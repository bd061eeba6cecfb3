#!/usr/bin/env node
// `npm pack` / `npm publish` guard (package.json "prepack"): the package
// ships the transpiled component in generated/, so refuse to pack without it.
// scripts/package.sh transpiles into a staging copy and packs that.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const missing = ['runner_metrics.js', 'runner_metrics.core.wasm']
  .map((f) => join(pkg, 'generated', f))
  .filter((f) => !existsSync(f));
if (missing.length) {
  console.error(`not packing: ${missing.join(', ')} missing; run \`node scripts/transpile.mjs COMPONENT.wasm\` first (or scripts/package.sh from the repository root)`);
  process.exit(1);
}
