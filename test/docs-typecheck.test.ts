/**
 * The TypeScript in README.md and docs/*.md compiles: every ```ts block is type-checked, with the project's
 * compiler options, as a module of its own next to test/fixtures/docs-prelude.ts (the names pages use without
 * defining them). `pg-saga` resolves to src/ through tsconfig's paths. A block may opt out only with a
 * `<!-- not type-checked: reason -->` line before it.
 */
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { type CodeBlock, codeBlocks, markdownFiles, readDoc, repoRoot } from "./helpers/markdown.js";

interface Block extends CodeBlock {
  file: string;
  virtualPath: string;
}

function tsBlocks(): Block[] {
  return markdownFiles().flatMap((file) =>
    codeBlocks(readDoc(file))
      .filter((b) => b.lang === "ts" || b.lang === "typescript")
      .map((b) => ({
        ...b,
        file,
        virtualPath: join(repoRoot, "test", ".docs-blocks", `${file.replace(/[/.]/g, "_")}_${b.line}.ts`),
      })),
  );
}

function typeCheck(blocks: Block[]): string[] {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(repoRoot, "tsconfig.json"),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, "\n"));
      },
    },
  )!;
  const options = { ...config.options, noEmit: true };
  // Each block becomes a module (`export {}`), so top-level await works and its names stay its own.
  const sources = new Map(blocks.map((b) => [b.virtualPath, `${b.code}\nexport {};\n`]));
  const host = ts.createCompilerHost(options, true);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => sources.has(f) || fileExists.call(host, f);
  host.readFile = (f) => sources.get(f) ?? readFile.call(host, f);
  host.getSourceFile = (f, language, onError, create) => {
    const text = sources.get(f);
    return text === undefined
      ? getSourceFile.call(host, f, language, onError, create)
      : ts.createSourceFile(f, text, language, true);
  };
  const prelude = join(repoRoot, "test", "fixtures", "docs-prelude.ts");
  const program = ts.createProgram([prelude, ...sources.keys()], options, host);
  const byPath = new Map(blocks.map((b) => [b.virtualPath, b]));
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (!d.file) return text;
    const block = byPath.get(d.file.fileName);
    const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    // Line numbers point into the Markdown page: the fence is block.line, the code starts after it.
    return block
      ? `${block.file}:${block.line + 1 + line}: ${text}`
      : `${d.file.fileName}:${line + 1}: ${text}`;
  });
}

describe("TypeScript in the docs", () => {
  const blocks = tsBlocks();

  it("finds the blocks of the README and docs/api.md", () => {
    expect(blocks.filter((b) => b.file === "README.md").length).toBeGreaterThanOrEqual(1);
    expect(blocks.filter((b) => b.file === "docs/api.md").length).toBeGreaterThanOrEqual(2);
  });

  it("skips few blocks, each with a reason", () => {
    const skipped = blocks.filter((b) => b.skip !== null);
    expect(skipped.map((b) => `${b.file}: ${b.skip}`)).toEqual([
      "docs/observability.md: needs @opentelemetry/sdk-node and an exporter, which pg-saga does not install",
    ]);
  });

  it("type-checks every other block", () => {
    expect(typeCheck(blocks.filter((b) => b.skip === null))).toEqual([]);
  }, 120_000);
});
