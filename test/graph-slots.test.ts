/**
 * Branches claimed together count against the worker's concurrency as they are claimed, and a job whose
 * branches were claimed together ends only once every one of them has: stop() waits for them all.
 */
import { expect, it, vi } from "vitest";
import { z } from "zod";
import { type PayloadCodec, createSagaEngine, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";

vi.setConfig({ testTimeout: 120_000 });
const db = useTestDatabase();

it("never runs more handlers at once than the worker's concurrency", async () => {
  let inFlight = 0;
  let most = 0;
  const branch = {
    execute: async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 400));
      inFlight--;
      return 1;
    },
  };
  const wide = defineSaga({ name: "slots-wide", input: z.object({}) })
    .parallel({ a: branch, b: branch, c: branch, d: branch })
    .step("end", { execute: () => ({}) });
  const engine = createSagaEngine({ connectionString: db.url, sagas: [wide] });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await engine.start(wide, {})).id);
  const worker = await engine.runWorker({ concurrency: 4 });
  try {
    for (const id of ids) expect((await engine.waitFor(id, { timeoutMs: 60_000 })).state).toBe("completed");
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(4);
  } finally {
    await worker.stop();
    await engine.close();
  }
});

it("stop() waits for the siblings of a branch whose record threw", async () => {
  let inFlight = 0;
  let recordFailed = false;
  // A codec that cannot encode branch a's output: a's record throws while b, c and d still run.
  const codec: PayloadCodec = {
    currentKeyId: "plain",
    encode(value: unknown) {
      if (value === "boom") {
        recordFailed = true;
        throw new Error("this codec refuses boom");
      }
      return value;
    },
    decode: (value: unknown) => value,
  };
  const slow = {
    execute: async (_d: unknown, ctx: { signal: AbortSignal }) => {
      inFlight++;
      try {
        await new Promise<void>((resolve, reject) => {
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
          setTimeout(resolve, 3_000);
        });
        return 1;
      } finally {
        inFlight--;
      }
    },
  };
  const wide = defineSaga({ name: "slots-record-throws", input: z.object({}) })
    .parallel({ a: { execute: async () => "boom" }, b: slow, c: slow, d: slow })
    .step("end", { execute: (d) => d });
  const engine = createSagaEngine({ connectionString: db.url, sagas: [wide], codec });
  await engine.start(wide, {});
  const worker = await engine.runWorker({ concurrency: 4 });
  try {
    while (!recordFailed || inFlight < 3) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 1_000));
    expect(inFlight).toBe(3);
    await worker.stop({ timeoutMs: 10_000 });
    expect(inFlight).toBe(0);
  } finally {
    await worker.stop();
    await engine.close();
  }
});
