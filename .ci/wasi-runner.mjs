#!/usr/bin/env node
// Runs a wasm32-wasip1 test binary under Node's WASI (preview1): cargo passes the .wasm path
// and the test harness arguments. A trap exits 101, like a Rust panic.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit } from "node:process";

const [file, ...args] = argv.slice(2);
const wasi = new WASI({
  version: "preview1",
  args: [file, ...args],
  env,
  preopens: { ".": ".", "/tmp": "/tmp" },
  returnOnExit: true,
});
try {
  const module = await WebAssembly.compile(await readFile(file));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  exit(wasi.start(instance));
} catch (e) {
  console.error(e);
  exit(101);
}
