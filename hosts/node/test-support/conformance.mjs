// The shared conformance fixtures (tests/conformance/cases.json) for Node:
// a port of tests/conformance/conformance.py (build a case on disk, snapshot
// it, check what a host did). Keep the two in step.
import { execFileSync } from 'node:child_process';
import {
  existsSync, lstatSync, lutimesSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO = resolve(here, '..', '..', '..');
export const MANIFEST = join(REPO, 'tests', 'conformance', 'cases.json');

export function loadCases() {
  const manifest = JSON.parse(readFileSync(MANIFEST, 'utf8'));
  if (manifest.format !== 1) throw new Error(`${MANIFEST}: unsupported format ${manifest.format}`);
  return manifest.cases;
}

function fileBytes(node) {
  let data;
  if ('text' in node) data = Buffer.from(node.text, 'utf8');
  else if ('hex' in node) data = Buffer.from(node.hex, 'hex');
  else if ('repeat' in node) data = Buffer.from(node.repeat.repeat(node.count), 'utf8');
  else throw new Error(`not a file node: ${JSON.stringify(node)}`);
  if (node.pad_to !== undefined) {
    if (data.length > node.pad_to) throw new Error(`content longer than pad_to ${node.pad_to}`);
    data = Buffer.concat([data, Buffer.alloc(node.pad_to - data.length, 0x20)]);
  }
  return data;
}

function buildNode(path, node, now) {
  if ('dir' in node) {
    mkdirSync(path);
    for (const [name, child] of Object.entries(node.dir)) buildNode(join(path, name), child, now);
  } else if ('symlink' in node) {
    symlinkSync(node.symlink, path);
  } else if ('fifo' in node) {
    execFileSync('mkfifo', [path]); // Node has no mkfifo(3)
  } else {
    writeFileSync(path, fileBytes(node));
  }
  if (node.age !== undefined) {
    const t = now - node.age;
    lutimesSync(path, t, t);
  }
}

/** Builds `base/runner-fs` (the root) and `base/outside`; returns the root. */
export function buildCase(kase, base) {
  const now = Date.now() / 1000;
  buildNode(join(base, 'outside'), { dir: kase.outside ?? {} }, now);
  buildNode(join(base, 'runner-fs'), { dir: kase.root }, now);
  return join(base, 'runner-fs');
}

/** path -> description of every entry under `path`, never following symlinks. */
export function snapshot(path) {
  const found = new Map();
  const walk = (p, rel) => {
    const st = lstatSync(p);
    if (st.isDirectory()) {
      found.set(rel, 'dir');
      for (const child of readdirSync(p).sort()) walk(join(p, child), rel ? `${rel}/${child}` : child);
    } else if (st.isSymbolicLink()) {
      found.set(rel, `symlink ${readlinkSync(p)}`);
    } else if (st.isFile()) {
      found.set(rel, `file ${readFileSync(p).toString('hex')}`);
    } else {
      found.set(rel, `other ${st.mode & 0o170000}`);
    }
  };
  walk(path, '');
  return found;
}

function under(snap, prefix, strip = false) {
  const out = new Map();
  for (const [k, v] of snap) {
    if (k === prefix || k.startsWith(`${prefix}/`)) out.set(strip ? k.slice(prefix.length) : k, v);
  }
  return out;
}

const sameMap = (a, b) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

/** The log a host must have written, in the order it reported the storages. */
export function expectedLog(kase, reports) {
  let out = '';
  for (const r of reports) {
    const e = kase.expect[r.name];
    if (e && e.outcome === 'extracted' && r.outcome === 'extracted') out += e.lines.map((l) => `${l}\n`).join('');
  }
  return Buffer.from(out, 'ascii');
}

/** Everything wrong with one run; empty when the host conforms. */
export function checkRun(kase, base, before, reports, log) {
  const problems = [];
  const root = join(base, 'runner-fs');
  const seen = new Map();
  for (const r of reports) {
    if (seen.has(r.name)) problems.push(`${r.name}: reported twice`);
    seen.set(r.name, r);
  }
  for (const [name, expect] of Object.entries(kase.expect)) {
    const r = seen.get(name);
    if (!r) {
      problems.push(`${name}: not reported (expected ${expect.outcome})`);
      continue;
    }
    if (r.outcome !== expect.outcome) {
      problems.push(`${name}: outcome ${r.outcome} (${r.detail}), expected ${expect.outcome}`);
      continue;
    }
    if ((expect.outcome === 'quarantined' || expect.outcome === 'skipped') && r.reason != null && r.reason !== expect.reason) {
      problems.push(`${name}: reason ${r.reason}, expected ${expect.reason}`);
    }
    if (expect.outcome === 'quarantined' && r.file !== undefined && r.file !== null && r.file !== expect.file) {
      problems.push(`${name}: file ${r.file}, expected ${expect.file}`);
    }
    if (expect.outcome === 'extracted' && r.events != null && r.events !== expect.lines.length) {
      problems.push(`${name}: ${r.events} events, expected ${expect.lines.length}`);
    }
    problems.push(...checkDisk(name, expect, root, base, before));
  }
  for (const name of seen.keys()) if (!(name in kase.expect)) problems.push(`${name}: reported but not in the case`);
  for (const rel of kase.gone_after ?? []) {
    if (lexists(join(root, rel))) problems.push(`${rel}: still there after the run`);
  }
  const want = expectedLog(kase, reports);
  if (!want.equals(log)) problems.push(`log differs:\n--- expected\n${want}--- got\n${log}`);
  if (!sameMap(under(before, 'outside'), under(snapshot(base), 'outside'))) problems.push('the directory outside the root changed');
  return problems;
}

function lexists(p) {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function checkDisk(name, expect, root, base, before) {
  const exists = lexists(join(root, name));
  const { outcome } = expect;
  if (outcome === 'extracted' || outcome === 'no-data') return exists ? [`${name}: still on disk after ${outcome}`] : [];
  if (outcome === 'skipped' || outcome === 'failed') {
    if (!exists) return [`${name}: gone, but ${outcome} storages stay`];
    const prefix = `runner-fs/${name}`;
    return sameMap(under(before, prefix), under(snapshot(base), prefix)) ? [] : [`${name}: changed although ${outcome}`];
  }
  const problems = exists ? [`${name}: still in the root although quarantined`] : [];
  const qdir = join(root, '.quarantine');
  const reasons = existsSync(qdir)
    ? readdirSync(qdir).filter((f) => f.startsWith(`${name}.`) && f.endsWith('.reason.json') && /^\d/.test(f.slice(name.length + 1)))
    : [];
  if (reasons.length !== 1) return [...problems, `${name}: ${reasons.length} reason files in .quarantine, expected 1`];
  const record = JSON.parse(readFileSync(join(qdir, reasons[0]), 'utf8'));
  if (record.runner_name !== name || record.reason !== expect.reason || record.file !== expect.file) {
    problems.push(`${name}: reason file ${JSON.stringify(record)}, expected reason ${expect.reason} file ${expect.file}`);
  }
  const moved = reasons[0].slice(0, -'.reason.json'.length);
  const was = under(before, `runner-fs/${name}`, true);
  const now = under(snapshot(base), `runner-fs/.quarantine/${moved}`, true);
  if (!sameMap(was, now)) problems.push(`${name}: the quarantined copy differs from the storage`);
  return problems;
}
