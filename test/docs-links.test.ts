/**
 * Every relative link in README.md and docs/*.md points to a file of the repository and, when it names an
 * anchor, to a heading of that page.
 */
import { existsSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { anchors, links, markdownFiles, readDoc, repoRoot } from "./helpers/markdown.js";

const external = /^(?:[a-z][a-z0-9+.-]*:|\/\/)/i;

describe("links in the docs", () => {
  it("finds the pages and their links", () => {
    const files = markdownFiles();
    expect(files).toContain("docs/api.md");
    expect(links(readDoc("README.md")).length).toBeGreaterThan(10);
  });

  it.each(markdownFiles())("%s: every relative link resolves", (file) => {
    const broken: string[] = [];
    for (const { target, line } of links(readDoc(file))) {
      if (external.test(target)) continue;
      const [path = "", anchor] = target.split("#", 2);
      const resolved = path === "" ? file : normalize(join(dirname(file), decodeURIComponent(path)));
      const absolute = join(repoRoot, resolved);
      if (relative(repoRoot, absolute).startsWith("..") || !existsSync(absolute)) {
        broken.push(`${file}:${line} ${target}: no file ${resolved}`);
        continue;
      }
      if (anchor === undefined) continue;
      if (!statSync(absolute).isFile() || !resolved.endsWith(".md")) {
        broken.push(`${file}:${line} ${target}: an anchor into a file that is not Markdown`);
      } else if (!anchors(readDoc(resolved)).has(anchor)) {
        broken.push(`${file}:${line} ${target}: no heading #${anchor} in ${resolved}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
