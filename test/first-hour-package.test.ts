/**
 * pg-saga as an application gets it: `npm pack` (which builds dist/), the tarball installed into a fresh project
 * outside the repository, a file importing it type-checked under moduleResolution node16 and bundler, and a
 * saga run from it against a test database.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { useTestDatabase } from "./helpers/database.js";

const exec = promisify(execFile);
const repo = fileURLToPath(new URL("..", import.meta.url));
const tsc = join(repo, "node_modules/typescript/bin/tsc");
const db = useTestDatabase();
const folders: string[] = [];
afterAll(async () => {
  for (const folder of folders) await rm(folder, { recursive: true, force: true });
});

const consumer = `import { createSagaEngine, defineSaga } from "pg-saga";
import { z } from "zod";

const greet = defineSaga({ name: "consumer.greet", input: z.object({ who: z.string() }) })
  .step("greet", { execute: async (data) => ({ ...data, greeting: \`hello \${data.who}\` }) });

const url: string = process.argv[2] ?? "";
const engine = createSagaEngine({ connectionString: url, sagas: [greet] });
await engine.migrate();
const worker = await engine.runWorker({ concurrency: 2, pollInterval: 100 });
const { id } = await engine.start(greet, { who: "world" });
const done = await engine.waitFor(id, { timeoutMs: 20_000 });
console.log(JSON.stringify({ state: done.state, data: done.data }));
await worker.stop();
await engine.close();
`;

// The node16 check also checks pg-saga's declaration files (skipLibCheck off); the bundler one only resolves.
const tsconfig = (module: string, moduleResolution: string, skipLibCheck: boolean) =>
  JSON.stringify({
    compilerOptions: {
      target: "es2022",
      module,
      moduleResolution,
      strict: true,
      outDir: "out",
      types: ["node"],
      skipLibCheck,
    },
    files: ["index.ts"],
  });

describe("the packed package", () => {
  // Builds dist/ and type-checks twice: ~60 s of CPU, more on a busy machine.
  it(
    "installs from its tarball, type-checks under node16 and bundler, and runs a saga",
    { timeout: 900_000 },
    async () => {
      const root = await mkdtemp(join(tmpdir(), "pg-saga-pack-"));
      folders.push(root);
      // A copy of the package to pack, so this repository never gets a dist/ of its own (the CLI would prefer it).
      const pkg = join(root, "pkg");
      await mkdir(pkg);
      for (const entry of [
        "package.json",
        "tsconfig.json",
        "tsconfig.build.json",
        "src",
        "bin",
        "sql",
        "migrations",
        "scripts",
      ])
        await cp(join(repo, entry), join(pkg, entry), { recursive: true });
      await symlink(join(repo, "node_modules"), join(pkg, "node_modules"));
      const { stdout: packed } = await exec("npm", ["pack", "--json", "--pack-destination", root], {
        cwd: pkg,
      });
      const [info] = JSON.parse(packed.slice(packed.indexOf("["))) as {
        filename: string;
        files: { path: string }[];
      }[];
      const files = info!.files.map((f) => f.path);
      expect(files).toContain("dist/index.js");
      expect(files).toContain("dist/index.d.ts");
      expect(files).toContain("dist/cli/main.js");
      expect(files.some((f) => f.startsWith("src/"))).toBe(false);

      const app = join(root, "app");
      await mkdir(app);
      await writeFile(
        join(app, "package.json"),
        JSON.stringify({ name: "app", private: true, type: "module" }),
      );
      await exec(
        "npm",
        [
          "install",
          join(root, info!.filename),
          "@types/node@20",
          "--prefer-offline",
          "--no-audit",
          "--no-fund",
        ],
        { cwd: app },
      );
      await writeFile(join(app, "index.ts"), consumer);
      await writeFile(join(app, "tsconfig.bundler.json"), tsconfig("esnext", "bundler", true));
      await exec(process.execPath, [tsc, "-p", "tsconfig.bundler.json", "--noEmit"], { cwd: app });
      await writeFile(join(app, "tsconfig.json"), tsconfig("node16", "node16", false));
      await exec(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: app });

      const { stdout } = await exec(process.execPath, ["out/index.js", db.url], {
        cwd: app,
        timeout: 30_000,
      });
      expect(JSON.parse(stdout.trim())).toEqual({
        state: "completed",
        data: { who: "world", greeting: "hello world" },
      });
    },
  );
});
