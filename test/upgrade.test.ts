/**
 * An upgrade with sagas in flight: a database built by the frozen 0.1.0 migrations, 200 sagas of a three-step
 * saga waiting for a retry of their second step, then this version's migrate() and worker. Every saga
 * completes, no event written before the upgrade is lost, and each saga's seq stays gap-free.
 *
 * Before the upgrade the sagas are advanced by this package's worker runtime without its schema check
 * (startWorker), standing in for a 0.1.0 worker: the SQL it calls is the 0.1.0 SQL in that database. The relay
 * is off there, so only the transition functions of 0.1.0 are exercised.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { resolveConnections } from "../src/connections.js";
import { RetryableError, createSagaEngine, defineSaga, retry } from "../src/index.js";
import { silentLogger } from "../src/logger.js";
import { migrate } from "../src/migrate.js";
import { readTableMigrations } from "../src/migration-plan.js";
import { readRepeatableFiles } from "../src/repeatable.js";
import { startWorker } from "../src/worker/run-worker.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventTrail } from "./helpers/engine.js";
import { MIGRATIONS_0_1_0, installRelease010 } from "./helpers/released-schema.js";

const db = useTestDatabase({ migrated: false });
const SAGAS = 200;

let upgraded = false;
const upgradeSaga = defineSaga({
  name: "upgrade-three-steps",
  input: z.object({ n: z.number() }),
  retry: retry.fixed({ maxAttempts: 1_000, delay: "2s" }),
})
  .step("reserve", { execute: async (data) => ({ ...data, reserved: true }) })
  .step("charge", {
    execute: async (data) => {
      // Until the upgrade every attempt fails: each saga waits for its next retry, across the upgrade.
      if (!upgraded) throw new RetryableError(new Error("gateway busy"));
      return { ...data, charged: true };
    },
  })
  .step("ship", { execute: async (data) => ({ ...data, shipped: true }) });

describe("upgrade from 0.1.0 with sagas in flight", () => {
  it("completes every saga after migrate(), no event lost, seq gap-free", { timeout: 180_000 }, async () => {
    await installRelease010(db.url);
    const engine = createSagaEngine({ connectionString: db.url, sagas: [upgradeSaga] });
    try {
      const ids: string[] = [];
      const old = await startWorker(
        engine.pool,
        resolveConnections({ connectionString: db.url }, {}),
        [upgradeSaga],
        silentLogger,
        {
          concurrency: 8,
          pollInterval: 100,
          relay: false,
        },
      );
      for (let i = 0; i < SAGAS; i++) ids.push((await engine.start(upgradeSaga, { n: i })).id);
      // Mid-flight: every saga's charge failed at least once and waits for its retry.
      for (let waited = 0; ; waited += 100) {
        const { rows } = await db.pool.query<{ n: number }>(
          "select count(distinct saga_id)::int as n from saga.outbox where type = 'saga.step.retrying'",
        );
        if (rows[0]!.n === SAGAS) break;
        if (waited > 60_000) throw new Error(`only ${rows[0]!.n} sagas reached their retry`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await old.stop();
      const before = await db.pool.query<{ id: string; saga_id: string; seq: number }>(
        "select id, saga_id, seq from saga.events order by id",
      );
      const running = await db.pool.query<{ n: number }>(
        "select count(*)::int as n from saga.instances where state = 'running'",
      );
      expect(running.rows[0]!.n).toBe(SAGAS);
      upgraded = true;

      // The table migrations after 0.1.0, then every sql/ file (0.1.0 recorded none), in one transaction.
      expect(await migrate(engine.pool)).toEqual({
        applied: readTableMigrations().length - readTableMigrations(MIGRATIONS_0_1_0).length,
        repeatable: readRepeatableFiles().map((f) => f.name),
      });
      const worker = await engine.runWorker({ concurrency: 8, pollInterval: 100 });
      try {
        for (const id of ids)
          expect((await engine.waitFor(id, { timeoutMs: 60_000 })).state).toBe("completed");
      } finally {
        await worker.stop();
      }

      const after = await db.pool.query<{ id: string }>("select id from saga.events");
      const kept = new Set(after.rows.map((r) => r.id));
      expect(before.rows.filter((r) => !kept.has(r.id))).toEqual([]);
      const trails = new Map<string, string[]>();
      for (const id of ids) trails.set(id, await eventTrail(db, id)); // throws on a seq gap
      // Retries before the upgrade, one success after it, then the rest: the same story for every saga.
      const story =
        /^saga\.started saga\.step\.started:reserve saga\.step\.completed:reserve (saga\.step\.started:charge saga\.step\.retrying:charge )+saga\.step\.started:charge saga\.step\.completed:charge saga\.step\.started:ship saga\.step\.completed:ship saga\.completed$/;
      for (const [id, trail] of trails) expect(trail.join(" "), id).toMatch(story);
    } finally {
      await engine.close();
    }
  });
});
