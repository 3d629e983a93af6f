#!/usr/bin/env node
// The pg-saga CLI: the built CLI (dist/) when there is one, else the TypeScript sources through tsx.
import { existsSync } from "node:fs";
import process from "node:process";
import { setTimeout } from "node:timers";
import { URL } from "node:url";

const built = new URL("../dist/cli/main.js", import.meta.url);
let cli;
if (existsSync(built)) {
  cli = await import(built.href);
} else {
  const { register } = await import("tsx/esm/api");
  register();
  // Tells the worker command that TypeScript saga modules already load.
  globalThis[Symbol.for("pg-saga.tsx")] = true;
  cli = await import(new URL("../src/cli/main.ts", import.meta.url).href);
}
const code = await cli.main(process.argv);
process.exitCode = code;
// A CLI ends when its command is done, even if a library left a handle open.
setTimeout(() => process.exit(code), 1_000).unref();
