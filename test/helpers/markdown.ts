/**
 * Reads the project's Markdown the way GitHub renders it, for the tests that keep the docs honest: fenced code
 * blocks (with the line they start on and an optional skip reason), links, and heading anchors.
 */
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** README.md and every page of docs/, as paths relative to the repository root. */
export function markdownFiles(): string[] {
  const docs = readdirSync(new URL("docs/", `file://${repoRoot}`)).filter((f) => f.endsWith(".md"));
  return ["README.md", ...docs.sort().map((f) => `docs/${f}`)];
}

export function readDoc(path: string): string {
  return readFileSync(`${repoRoot}${path}`, "utf8");
}

export interface CodeBlock {
  lang: string;
  code: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** Set when the block is preceded by `<!-- not type-checked: reason -->`. */
  skip: string | null;
}

const FENCE = /^```(\S*)\s*$/;
const SKIP = /^<!--\s*not type-checked:\s*(.+?)\s*-->$/;

export function codeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]!);
    const before =
      lines
        .slice(0, start)
        .reverse()
        .find((l) => l.trim() !== "") ?? "";
    blocks.push({
      lang: open[1]!,
      code: body.join("\n") + "\n",
      line: start + 1,
      skip: SKIP.exec(before.trim())?.[1] ?? null,
    });
  }
  return blocks;
}

/** The text outside fenced code blocks and inline code spans, where links and headings live. */
function prose(markdown: string): string[] {
  const out: string[] = [];
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (FENCE.test(line) || line === "```") {
      inFence = !inFence;
      out.push("");
      continue;
    }
    out.push(inFence ? "" : line);
  }
  return out;
}

export interface Link {
  target: string;
  line: number;
}

/** Inline links `[text](target)` outside code; `target` without its optional title. */
export function links(markdown: string): Link[] {
  const found: Link[] = [];
  prose(markdown).forEach((text, i) => {
    const withoutCode = text.replace(/`[^`]*`/g, "");
    for (const m of withoutCode.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g))
      found.push({ target: m[1]!, line: i + 1 });
  });
  return found;
}

/** GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces to hyphens, -1, -2 on repeats. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const line of prose(markdown)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = m[1]!
      .toLowerCase()
      .replace(/<[^>]+>/g, "")
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    result.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return result;
}
