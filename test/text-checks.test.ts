/**
 * One check for what jsonb and text columns can store, and one for saga ids, wherever a value comes in:
 * text that spells `\u0000` (backslash, u, four zeros) is stored as is, a real NUL character is refused with
 * a typed error before anything is written, and a saga id is a uuid everywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { SagaError, type SagaEngine, createSagaEngine, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();
let engine: SagaEngine;

const copyFiles = defineSaga({ name: "copy-files", input: z.object({ path: z.string() }) }).step("copy", {
  execute: (data) => data,
});

/** Six characters of text, `\u0000`, inside a Windows-looking path: no NUL character in it. */
const SPELT = "C:\\u0000dir";
const REAL_NUL = "C:\u0000dir";

beforeAll(() => {
  engine = createSagaEngine({ connectionString: db.url, sagas: [copyFiles] });
});
afterAll(async () => {
  await engine?.close();
});

const count = async (table: string) =>
  (await db.pool.query<{ n: number }>(`select count(*)::int as n from ${table}`)).rows[0]?.n;

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SagaError);
  return (err as SagaError).code;
}

describe("text that spells \\u0000 and a real NUL character", () => {
  it("the fixture strings are what they say", () => {
    expect(SPELT).toHaveLength(11);
    expect(SPELT.includes("\u0000")).toBe(false);
    expect(REAL_NUL.includes("\u0000")).toBe(true);
  });

  it("engine.start accepts C:\\u0000dir as text and stores it unchanged", async () => {
    const { id, created } = await engine.start(copyFiles, { path: SPELT });
    expect(created).toBe(true);
    expect((await engine.get(id))?.input).toEqual({ path: SPELT });
  });

  it("engine.start refuses a real NUL character with INVALID_INPUT, writing nothing", async () => {
    const before = await count("saga.instances");
    expect(await codeOf(engine.start(copyFiles, { path: REAL_NUL }))).toBe("INVALID_INPUT");
    expect(await codeOf(engine.start(copyFiles, { path: "x" }, { idempotencyKey: REAL_NUL }))).toBe(
      "INVALID_OPTIONS",
    );
    expect(await count("saga.instances")).toBe(before);
  });

  it("engine.publish accepts C:\\u0000dir as text and refuses a real NUL with INVALID_EVENT", async () => {
    const { ids } = await engine.publish({ type: "app.path", key: SPELT, payload: { path: SPELT } });
    const { rows } = await db.pool.query<{ key: string; payload: unknown }>(
      "select key, payload from saga.outbox where id = $1",
      [ids[0]],
    );
    expect(rows).toEqual([{ key: SPELT, payload: { path: SPELT } }]);

    const before = await count("saga.outbox");
    expect(await codeOf(engine.publish({ type: "app.path", payload: { path: REAL_NUL } }))).toBe(
      "INVALID_EVENT",
    );
    expect(await codeOf(engine.publish({ type: "app.path", payload: { path: "\udc00" } }))).toBe(
      "INVALID_EVENT",
    );
    expect(await codeOf(engine.publish({ type: "app.path", key: REAL_NUL }))).toBe("INVALID_EVENT");
    expect(await count("saga.outbox")).toBe(before);
  });
});

describe("saga ids", () => {
  it("a parentId that is not a uuid is INVALID_OPTIONS before anything is written", async () => {
    const before = await count("saga.instances");
    const notUuid = "-".repeat(36);
    expect(await codeOf(engine.start(copyFiles, { path: "x" }, { parentId: notUuid }))).toBe(
      "INVALID_OPTIONS",
    );
    expect(await count("saga.instances")).toBe(before);
    const { id } = await engine.start(copyFiles, { path: "x" });
    const child = await engine.start(copyFiles, { path: "y" }, { parentId: id.toUpperCase() });
    expect(child.created).toBe(true);
  });

  it("get, cancel and the list cursor refuse what is not a uuid the same way", async () => {
    expect(await engine.get("not-a-uuid")).toBeNull();
    expect(await codeOf(engine.retry("not-a-uuid"))).toBe("SAGA_NOT_FOUND");
    expect(await codeOf(engine.list({ cursor: Buffer.from('["1","x"]').toString("base64url") }))).toBe(
      "INVALID_OPTIONS",
    );
  });
});
