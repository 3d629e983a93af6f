/**
 * The shape of src/: the import graph has no cycle, and no file is longer than a reader can hold.
 * Imports are read with the TypeScript parser: `import`, `import type` and `export ... from` of a relative
 * path all count, so a type-only import that closes a loop fails here too.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const src = join(root, "src");

/** The longest a file of src/ may be, in lines. */
const MAX_LINES = 300;

/**
 * Files allowed over MAX_LINES for now, each with who brings it under. The lead removes an entry once the
 * branch that shortens its file is merged.
 */
const TOO_LONG_FOR_NOW: Record<string, string> = {};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

const name = (path: string) => relative(src, path).split("\\").join("/");

/** The relative modules a file imports or re-exports, as paths of src/. */
function importsOf(path: string, files: ReadonlySet<string>): string[] {
  const source = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, false);
  const found: string[] = [];
  for (const statement of source.statements) {
    const specifier =
      ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)
        ? statement.moduleSpecifier
        : undefined;
    if (!specifier || !ts.isStringLiteral(specifier) || !specifier.text.startsWith(".")) continue;
    const base = resolve(dirname(path), specifier.text).replace(/\.js$/, "");
    const target = [`${base}.ts`, join(base, "index.ts")].find((candidate) => files.has(candidate));
    if (!target) throw new Error(`${name(path)} imports ${specifier.text}, which is no file of src/`);
    found.push(target);
  }
  return found;
}

function importGraph(): Map<string, string[]> {
  const files = sourceFiles(src);
  const known = new Set(files);
  return new Map(files.map((file) => [name(file), importsOf(file, known).map(name)]));
}

/** Every cycle found by a depth-first walk, each as the files around it (first file repeated last). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const found: string[][] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const onPath = new Set<string>();
  const visit = (file: string) => {
    path.push(file);
    onPath.add(file);
    for (const next of graph.get(file) ?? []) {
      if (onPath.has(next)) found.push([...path.slice(path.indexOf(next)), next]);
      else if (!done.has(next)) visit(next);
    }
    path.pop();
    onPath.delete(file);
    done.add(file);
  };
  for (const file of [...graph.keys()].sort()) if (!done.has(file)) visit(file);
  return found;
}

describe("architecture of src/", () => {
  const graph = importGraph();

  it("reads the import graph", () => {
    expect(graph.size).toBeGreaterThan(50);
    expect(graph.get("worker/decide.ts")).toContain("model.ts");
    expect(graph.get("index.ts")?.length).toBeGreaterThan(20);
  });

  it("finds a cycle when there is one", () => {
    const looped = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts"]],
      ["c.ts", ["a.ts"]],
      ["d.ts", ["a.ts"]],
    ]);
    expect(cycles(looped)).toEqual([["a.ts", "b.ts", "c.ts", "a.ts"]]);
    expect(
      cycles(
        new Map([
          ["a.ts", ["b.ts"]],
          ["b.ts", []],
        ]),
      ),
    ).toEqual([]);
  });

  it("has no import cycle", () => {
    expect(cycles(graph).map((cycle) => cycle.join(" → "))).toEqual([]);
  });

  it(`has no file over ${MAX_LINES} lines`, () => {
    const tooLong: string[] = [];
    for (const file of graph.keys()) {
      const lines = readFileSync(join(src, file), "utf8").split("\n").length - 1;
      if (lines > MAX_LINES && !(file in TOO_LONG_FOR_NOW)) tooLong.push(`${file}: ${lines} lines`);
    }
    expect(tooLong).toEqual([]);
  });

  it("allows a long file only while it is long", () => {
    for (const file of Object.keys(TOO_LONG_FOR_NOW)) {
      const lines = readFileSync(join(src, file), "utf8").split("\n").length - 1;
      expect(lines, `${file} is ${lines} lines: remove it from TOO_LONG_FOR_NOW`).toBeGreaterThan(MAX_LINES);
    }
  });
});
