// npm's `prepare`: builds dist/ when pg-saga is packed (npm pack, npm publish) or installed from git or a folder,
// so `import "pg-saga"` works there. Not on `npm ci` / `npm install` inside this repository itself: development
// runs the TypeScript sources, and a dist/ left behind would go stale.
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { relative } from "node:path";
import process from "node:process";

const command = process.env.npm_command;
const from = relative(process.cwd(), process.env.INIT_CWD ?? "");
const installingHere = (command === "ci" || command === "install") && !from.startsWith("..");
if (installingHere) {
  process.stdout.write("pg-saga: not building dist/ for this checkout (npm run build builds it)\n");
} else {
  execFileSync(
    process.execPath,
    [createRequire(import.meta.url).resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"],
    {
      stdio: "inherit",
    },
  );
}
