/**
 * The payload codec: with aes256gcm, no plaintext of an input, step output, result, error detail or event
 * payload is in any table or view (pg_dump --data-only), while handlers, subscribers and engine.get see
 * plaintext; a wrong or missing key is a typed error that writes nothing; rotation and `pg-saga reencrypt`.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import {
  BusinessError,
  type SagaEngine,
  type SagaEvent,
  type SagaWorker,
  aes256gcm,
  createSagaEngine,
  defineSaga,
  retry,
} from "../src/index.js";
import { waitUntil } from "./fixtures/subscriber-helpers.js";
import { useTestDatabase } from "./helpers/database.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();
const k1 = randomBytes(32);
const k2 = randomBytes(32).toString("base64");
const BIN = fileURLToPath(new URL("../bin/pg-saga.js", import.meta.url));
const seenByHandlers: unknown[] = [];

const order = defineSaga({ name: "secret-order", input: z.object({ card: z.string(), fail: z.boolean() }) })
  .step("address", {
    execute: (data) => {
      seenByHandlers.push(data);
      return { ...data, address: "1 PLAINTEXT-street" };
    },
    compensate: (data) => void seenByHandlers.push(data),
  })
  .step("charge", {
    execute: (data) => {
      if (data.fail) throw new BusinessError("DECLINED", "card declined", { issuer: "PLAINTEXT-bank" });
      return { ...data, receipt: "PLAINTEXT-receipt" };
    },
  });

/** Its first step's compensation fails while the vault is down: the saga ends compensation_failed. */
let vaultDown = true;
const refund = defineSaga({ name: "secret-refund", input: z.object({ card: z.string() }) })
  .step("hold", {
    execute: (data) => data,
    compensateRetry: retry.none(),
    compensate: () => {
      if (vaultDown) throw new Error("vault offline");
    },
  })
  .step("charge", {
    execute: () => {
      throw new BusinessError("DECLINED", "card declined", { issuer: "PLAINTEXT-bank" });
    },
  });

const open: { engine: SagaEngine; worker?: SagaWorker }[] = [];
async function engineWith(codec: ReturnType<typeof aes256gcm> | undefined, worker = true) {
  const engine = createSagaEngine({ connectionString: db.url, sagas: [order, refund], codec });
  const entry: { engine: SagaEngine; worker?: SagaWorker } = { engine };
  if (worker) entry.worker = await engine.runWorker({ pollInterval: 50 });
  open.push(entry);
  return entry;
}
afterAll(async () => {
  for (const { engine, worker } of open) {
    await worker?.stop();
    await engine.close();
  }
});

const dump = () =>
  execFileSync("pg_dump", ["--data-only", db.url], { encoding: "utf8", maxBuffer: 1 << 26 })
    .split("\n")
    .filter((line) => !/^\\(un)?restrict /.test(line))
    .join("\n");
const views = async () =>
  JSON.stringify(
    await Promise.all(
      ["saga.instances", "saga.steps", "saga.events", "saga.stuck"].map(
        async (v) => (await db.pool.query(`select * from ${v}`)).rows,
      ),
    ),
  );

describe("codec", () => {
  let completedId = "";

  it("keeps plaintext out of every table and view; handlers, subscribers and get() see it", async () => {
    const { engine, worker } = await engineWith(aes256gcm({ keys: { k1 }, current: "k1" }));
    const live: SagaEvent[] = [];
    const durable: SagaEvent[] = [];
    const a = engine.subscribe({}, (e) => void live.push(e));
    const b = engine.subscribe({}, (e) => void durable.push(e), { durable: "codec", pollInterval: 50 });
    try {
      await a.ready;
      const ok = await engine.start(order, { card: "PLAINTEXT-card-4242", fail: false });
      const declined = await engine.start(order, { card: "PLAINTEXT-card-0000", fail: true });
      await engine.publish({ type: "note.added", payload: { note: "PLAINTEXT-note" } });
      completedId = ok.id;
      const done = await engine.waitFor(ok.id, { timeoutMs: 20_000 });
      expect(done.state).toBe("completed");
      expect(done.input).toEqual({ card: "PLAINTEXT-card-4242", fail: false });
      expect(done.steps[1]!.output).toMatchObject({ receipt: "PLAINTEXT-receipt" });
      const failed = await engine.waitFor(declined.id, { timeoutMs: 20_000 });
      expect(failed.state).toBe("compensated");
      expect(failed.steps[1]!.error).toMatchObject({
        code: "DECLINED",
        details: { issuer: "PLAINTEXT-bank" },
      });
      expect(seenByHandlers).toContainEqual({
        card: "PLAINTEXT-card-0000",
        fail: true,
        address: "1 PLAINTEXT-street",
      });
      await waitUntil(`subscribers saw the completion, the failure and the note`, () =>
        [live, durable].every(
          (got) =>
            ["note.added", "saga.completed", "saga.step.failed"].every((type) => got.some((e) => e.type === type)),
        ),
      );
      for (const got of [live, durable]) {
        expect(got.find((e) => e.type === "note.added")!.payload).toEqual({ note: "PLAINTEXT-note" });
        expect(JSON.stringify(got)).toContain("PLAINTEXT-bank");
      }
    } catch (err) {
      throw new Error(
        `${String(err)} live=${live.map((e) => e.type).join(",")} durable=${durable.map((e) => e.type).join(",")} ${JSON.stringify(await a.metrics())}`,
      );
    } finally {
      await a.close();
      await b.close();
      await worker!.stop();
    }
    const data = dump();
    expect(data).toContain('"$encrypted": "k1"');
    expect(data).not.toContain("PLAINTEXT");
    const seen = await views();
    expect(seen).not.toContain("PLAINTEXT");
    const { rows } = await db.pool.query(
      "select distinct payload from saga.events where type = 'note.added'",
    );
    expect(rows).toEqual([{ payload: { $encrypted: "k1" } }]);
  });

  it("a wrong or missing key is a typed error and writes nothing", async () => {
    const before = dump();
    const wrong = (await engineWith(aes256gcm({ keys: { k1: randomBytes(32) }, current: "k1" }), false))
      .engine;
    await expect(wrong.get(completedId)).rejects.toMatchObject({ code: "CODEC_DECRYPT_FAILED" });
    const missing = (await engineWith(aes256gcm({ keys: { k2 }, current: "k2" }), false)).engine;
    await expect(missing.get(completedId)).rejects.toMatchObject({ code: "CODEC_KEY_MISSING" });
    const none = (await engineWith(undefined, false)).engine;
    await expect(none.get(completedId)).rejects.toMatchObject({ code: "CODEC_KEY_MISSING" });
    // A failed saga a wrong-key engine tries to retry: refused before anything is written.
    const { rows } = await db.pool.query<{ id: string }>(
      "select id from saga.instances where state = 'compensated'",
    );
    await expect(wrong.retry(rows[0]!.id)).rejects.toMatchObject({
      code: expect.stringMatching(/CODEC_|INVALID_STATE/),
    });
    expect(dump()).toBe(before);
    expect(() => aes256gcm({ keys: { k1: randomBytes(16) }, current: "k1" })).toThrow(/32/);
  });

  it("rotation: new writes use the current key, old ones still decode, reencrypt rewrites them", async () => {
    const { engine, worker } = await engineWith(aes256gcm({ keys: { k1, k2 }, current: "k2" }));
    const { id } = await engine.start(order, { card: "PLAINTEXT-card-new", fail: false });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
    await worker!.stop();
    expect((await engine.get(completedId))?.input).toMatchObject({ card: "PLAINTEXT-card-4242" });
    expect(dump()).toContain('"$encrypted": "k2"');

    const run = spawnSync(process.execPath, [BIN, "reencrypt", "--json"], {
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        PG_SAGA_KEYS: JSON.stringify({ k1: k1.toString("base64"), k2 }),
        PG_SAGA_KEY: "k2",
      },
      encoding: "utf8",
    });
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { rewritten: Record<string, number> };
    expect(result.rewritten["saga.instances.input"]).toBeGreaterThan(0);
    expect(result.rewritten["saga.outbox.payload"]).toBeGreaterThan(0);
    const after = dump();
    expect(after).not.toContain('"$encrypted": "k1"');
    expect(after).not.toContain("PLAINTEXT");
    const k2only = (await engineWith(aes256gcm({ keys: { k2 }, current: "k2" }), false)).engine;
    expect((await k2only.get(completedId))?.steps[1]!.output).toMatchObject({ receipt: "PLAINTEXT-receipt" });
  });

  it("a retry from SQL needs no key: the worker performs it and decodes the saga", async () => {
    const { engine, worker } = await engineWith(aes256gcm({ keys: { k2 }, current: "k2" }));
    const { id } = await engine.start(refund, { card: "PLAINTEXT-card-7" });
    expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("compensation_failed");
    vaultDown = false;
    const { rows } = await db.pool.query("select saga.retry($1, 'vault back') as state", [id]);
    expect(rows[0].state).toBe("compensating");
    const done = await engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("compensated");
    // The failure that started the compensation, restored from the encrypted error: the worker decoded it.
    expect(done.error).toMatchObject({ code: "DECLINED", details: { issuer: "PLAINTEXT-bank" } });
    await worker!.stop();
    expect(dump()).not.toContain("PLAINTEXT");
  });
});
