/**
 * Property: whatever a handler returns or throws, and whatever input start() is given (JSON-ish and hostile
 * values: lone surrogates, NUL, huge numbers, deep nesting, prototype keys, BigInt, cycles), ends in a stored
 * value or a typed error: never WORKER_LOST, never a raw SQLSTATE. Generated in batches started side by side.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, SagaError, defineSaga, retry } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const made = new Map<string, { kind: "return" | "throw"; value: unknown }>();
const received = new Map<string, unknown>();

const saga = defineSaga({ name: "anything", input: z.object({ key: z.string() }), retry: retry.none() })
  .step("make", {
    execute: (data) => {
      const it = made.get(data.key);
      if (it?.kind === "throw") throw it.value;
      return it?.value;
    },
  })
  .step("next", {
    execute: (data, ctx) => {
      received.set(ctx.sagaId, data);
    },
  });

const anyInput = defineSaga({ name: "any-input", input: z.unknown(), retry: retry.none() }).step("echo", {
  execute: () => undefined,
});

const harness = useEngine(db, () => [saga, anyInput], { concurrency: 10 });
const e = () => harness.engine;

// Every UTF-16 code unit: NUL and lone surrogates included.
const unit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
const text = fc.oneof(
  fc.string({ unit, maxLength: 8 }),
  fc.string({ maxLength: 8 }),
  fc.constantFrom("\u0000", "\ud800", "\udc00x", "\\u0000", "\\\u0000", "😀", "\ud83d", "a".repeat(3000)),
);
const key = fc.oneof(text, fc.constantFrom("__proto__", "constructor", "toString", "10", "2"));
const leaf = fc.oneof(
  text,
  fc.double(),
  fc.integer(),
  fc.constantFrom(1e308, -1e308, 5e-324, Number.MAX_SAFE_INTEGER + 2, -0, NaN, Infinity),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt(),
  fc.date({ noInvalidDate: true }),
);
const nested = (depth: number) => {
  let v: unknown = "bottom";
  for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { v };
  return v;
};
const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    leaf,
    fc.array(tie("tree"), { maxLength: 4 }),
    fc.dictionary(key, tie("tree"), { maxKeys: 4 }),
  ),
}));
const value = fc.oneof(
  { weight: 6, arbitrary: tree },
  fc.integer({ min: 900, max: 1_100 }).map(nested),
  fc.constant(JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as unknown),
  fc.constant(
    (() => {
      const cycle: Record<string, unknown> = { a: 1 };
      cycle.self = cycle;
      return cycle;
    })(),
  ),
  fc.constant(new Map([["k", "\u0000"]])),
);
const thrown = fc.oneof(
  value,
  fc.tuple(text).map(([m]) => new Error(m)),
  fc.tuple(text, text, value).map(([c, m, d]) => new BusinessError(c, m, d)),
  fc.tuple(text, value).map(([c, m]) => Object.assign(new Error("coded"), { code: c, details: m })),
  fc.constant(Symbol("thrown")),
  fc.constant(
    Object.defineProperty(new Error("getter"), "message", {
      get() {
        throw new Error("no message for you");
      },
    }),
  ),
);

/** Whether jsonb could hold `v` as JSON: checked independently of the engine's own check. */
function storable(v: unknown): boolean {
  let textOf: string | undefined;
  try {
    textOf = JSON.stringify(v);
  } catch {
    return false;
  }
  if (textOf === undefined) return true;
  const bad = (s: string) =>
    /\0|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
  const walk = (x: unknown, depth: number): boolean => {
    if (typeof x === "string") return !bad(x);
    if (typeof x !== "object" || x === null) return true;
    if (depth > 1_000) return false;
    if (Array.isArray(x)) return x.every((y) => walk(y, depth + 1));
    return Object.entries(x).every(([k, y]) => !bad(k) && walk(y, depth + 1));
  };
  return walk(JSON.parse(textOf), 1);
}

const rawSqlState = (err: unknown) =>
  !(err instanceof SagaError) && typeof (err as { code?: unknown })?.code === "string";

let next = 0;
async function runBatch(kind: "return" | "throw", values: unknown[]) {
  const started = await Promise.all(
    values.map(async (v) => {
      const k = `k${next++}`;
      made.set(k, { kind, value: v });
      return { v, k, id: (await e().start(saga, { key: k })).id };
    }),
  );
  for (const { v, k, id } of started) {
    const done = await e().waitFor(id, { timeoutMs: 30_000 });
    expect(done.error?.code).not.toBe("WORKER_LOST");
    expect(done.steps[0]?.attempt).toBe(1);
    if (kind === "throw") {
      expect(done.state).toBe("failed");
      expect(done.steps[0]?.error).toMatchObject({ outcome: "failed" });
      continue;
    }
    if (!storable(v)) {
      expect(done.state).toBe("failed");
      expect(done.error?.code).toBe("INVALID_OUTPUT");
      continue;
    }
    expect(done.state).toBe("completed");
    const output = done.steps[0]?.output;
    const plain = JSON.stringify(v) === undefined ? { key: k } : (JSON.parse(JSON.stringify(v)) as unknown);
    expect(output).toEqual(plain);
    // In-process, the next step got exactly what the database holds, keys in the same order.
    expect(JSON.stringify(received.get(id))).toBe(JSON.stringify(output));
  }
}

describe("hostile values end stored or refused with a typed error", () => {
  it("step outputs", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value, { minLength: 1, maxLength: 8 }), (vs) => runBatch("return", vs)),
      { numRuns: 12 },
    );
  });

  it("thrown values", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(thrown, { minLength: 1, maxLength: 8 }), (vs) => runBatch("throw", vs)),
      { numRuns: 12 },
    );
  });

  it("inputs of start()", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value, { minLength: 1, maxLength: 8 }), async (vs) => {
        for (const v of vs) {
          const result = await e()
            .start(anyInput, v)
            .then(
              (r) => ({ ok: true as const, id: r.id }),
              (err: unknown) => ({ ok: false as const, err }),
            );
          if (!result.ok) {
            expect(rawSqlState(result.err)).toBe(false);
            expect(result.err).toBeInstanceOf(SagaError);
            expect(["INVALID_INPUT", "PAYLOAD_TOO_LARGE"]).toContain((result.err as SagaError).code);
            expect(storable(v) && JSON.stringify(v) !== undefined).toBe(false);
            continue;
          }
          const done = await e().waitFor(result.id, { timeoutMs: 30_000 });
          expect(done.state).toBe("completed");
          const json = JSON.stringify(v);
          expect(done.input).toEqual(json === undefined ? null : (JSON.parse(json) as unknown));
        }
      }),
      { numRuns: 12 },
    );
  });
});
