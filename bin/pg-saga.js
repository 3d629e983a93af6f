#!/usr/bin/env node
// The pg-saga CLI: in a checkout of the repository, the TypeScript sources through tsx (a dist/ left by a build
// could be stale there); in an installed package, which ships no sources, the built CLI (dist/).
import { existsSync } from "node:fs";
import process from "node:process";
import { setTimeout } from "node:timers";
import { URL } from "node:url";

const source = new URL("../src/cli/main.ts", import.meta.url);
const built = new URL("../dist/cli/main.js", import.meta.url);
const tsx = existsSync(source) ? await import("tsx/esm/api").catch(() => null) : null;
let cli;
if (tsx || !existsSync(built)) {
  if (!tsx) {
    process.stderr.write(
      "pg-saga: dist/ is missing: run npm run build (or install the package from npm, git or a tarball)\n",
    );
    process.exit(1);
  }
  tsx.register();
  // Tells the worker command that TypeScript saga modules already load.
  globalThis[Symbol.for("pg-saga.tsx")] = true;
  cli = await import(source.href);
} else {
  cli = await import(built.href);
}
const code = await cli.main(process.argv);
process.exitCode = code;
// A CLI ends when its command is done, even if a library left a handle open.
setTimeout(() => process.exit(code), 1_000).unref();
