// The sandbox thread (started by src/index.js): one instance of the plugin,
// WASI by preview2-shim with the storage root as its only preopen (/storage),
// no environment, arguments or network. The `host` imports post their
// arguments to the main thread, where the keeper checks them, and block
// until it answers.
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';
import { types } from '@bytecodealliance/preview2-shim/filesystem';

const { glue, modules, root, flag, port } = workerData;
let printed = ''; // what the guest prints (a panic message), bounded, for the trap's detail
process.stdout.write = process.stderr.write = (chunk, ...rest) => {
  if (printed.length < 4096) printed += typeof chunk === 'string' ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, Math.min(chunk.byteLength, 4096));
  rest.find((f) => typeof f === 'function')?.();
  return true;
};
// preview2-shim 0.26.1 refuses `read-directory` on a preopen itself (wasmtime
// allows it): list "." opened relative to it instead (no symlink following).
const readDirectory = types.Descriptor.prototype.readDirectory;
types.Descriptor.prototype.readDirectory = function () {
  try { return readDirectory.call(this); } catch (e) {
    if (e !== 'bad-descriptor') throw e;
    return readDirectory.call(this.openAt({ symlinkFollow: false }, '.', { directory: true }, { read: true }));
  }
};

const imports = new WASIShim({ sandbox: { preopens: { '/storage': root }, env: {}, args: [], enableNetwork: false } }).getImportObject();
imports['wasi:cli/environment'] = { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined };
imports['github-runner:metrics/host'] = Object.fromEntries(['beginStorage', 'endStorage', 'jobMetrics', 'append', 'report'].map((name) => [name, (...args) => {
  parentPort.postMessage({ import: name, args });
  Atomics.wait(flag, 0, 0); // until the main thread has answered (or kills this thread)
  Atomics.store(flag, 0, 0);
  return receiveMessageOnPort(port).message;
}]));
const { collector } = await (await import(glue)).instantiate((name) => modules[name], imports);
parentPort.on('message', ({ fn, args }) => { // fn: `collect` or `recover`, as the keeper asked
  try {
    parentPort.postMessage({ ok: collector[fn](...args) });
  } catch (e) {
    const said = printed.trim() ? `; guest stderr: ${printed.trim().slice(0, 4096)}` : '';
    parentPort.postMessage(e && Object.hasOwn(e, 'payload') ? { err: e.payload } : { trap: `trapped: ${e?.message ?? e}${said}` });
  }
});
parentPort.postMessage({ ready: true });
