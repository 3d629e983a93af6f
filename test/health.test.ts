/**
 * engine.health() and checkHealth(): what an operator's probe sees, healthy and each way of being unhealthy.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { checkHealth, createSagaEngine, defineSaga } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const ping = defineSaga({ name: "ping", input: z.object({}) }).step("pong", { execute: (d) => d });
const t = useEngine(db, () => [ping], { pollInterval: 50 });

describe("health", () => {
  it("is healthy with migrations applied and a live worker, and names the versions it serves", async () => {
    const { id } = await t.engine.start(ping, {});
    await t.engine.waitFor(id, { timeoutMs: 20_000 });
    const report = await t.engine.health({ requireWorkers: true });
    expect(report).toMatchObject({
      healthy: true,
      problems: [],
      database: { ok: true, latencyMs: expect.any(Number) },
      migrations: { ok: true, pending: [] },
      workers: { live: 1, stale: 0 },
      versions: { served: ["ping@1"], unserved: [] },
      relay: { maxLagMs: expect.any(Number) },
      deadLetters: 0,
      stuck: 0,
    });
    expect(report.migrations.applied).toBe(report.migrations.expected);
    expect(report.workers.list[0]).toMatchObject({ id: t.worker.id, sagas: ["ping@1"], live: true });
  });

  it("is unhealthy for sagas of a version no live worker runs, and warns about silent workers", async () => {
    await db.pool.query(
      `insert into saga.definitions (name, version, fingerprint, steps) values ('ghost', 2, 'f', '[{"name":"boo"}]')`,
    );
    const ghost = (await db.pool.query("select saga.start('ghost', '{}') as id")).rows[0].id as string;
    await db.pool.query(
      `insert into saga.workers (id, hostname, pid, sagas, heartbeat_at) values ('old:1:x', 'old', 1, '["ghost@2"]', now() - interval '1 minute')`,
    );
    const report = await checkHealth(db.pool);
    expect(report.healthy).toBe(false);
    expect(report.problems).toEqual(["1 active saga(s) of ghost@2 and no live worker runs ghost@2"]);
    expect(report.versions.unserved).toEqual([{ saga: "ghost@2", active: 1 }]);
    expect(report.workers).toMatchObject({ live: 1, stale: 1 });
    expect(report.warnings).toEqual(
      expect.arrayContaining([
        "1 worker(s) stopped heartbeating (not yet reaped)",
        "1 saga(s) not moving: see pg-saga stuck",
      ]),
    );
    await db.pool.query("delete from saga.instances where id = $1", [ghost]);
    await db.pool.query("delete from saga.workers where id = 'old:1:x'");
  });

  it("reports relay lag per durable subscription and dead letters not delivered", async () => {
    await db.pool.query("insert into saga.subscriptions (name) values ('billing')");
    await db.pool.query(
      `insert into saga.dead_letters (subscription, event_id, event, error, attempts) values ('billing', 1, '{}', '{}', 5)`,
    );
    const events = (await db.pool.query("select count(*)::int as n from saga.outbox")).rows[0].n as number;
    const report = await t.engine.health({ maxRelayLagMs: 0 });
    // The relay's own cursor may be listed too: it is relay lag as well.
    expect(report.relay?.subscriptions).toEqual(
      expect.arrayContaining([{ name: "billing", pendingEvents: events, lagMs: expect.any(Number) }]),
    );
    expect(report.relay!.maxLagMs).toBeGreaterThan(0);
    expect(report.deadLetters).toBe(1);
    expect(report.problems).toEqual([expect.stringMatching(/^relay lag \d+ ms is over 0 ms$/)]);
    expect(report.warnings).toContain("1 dead letter(s) not delivered: see engine.deadLetters()");
    await db.pool.query("delete from saga.dead_letters");
    await db.pool.query("delete from saga.subscriptions where name = 'billing'");
  });

  it("names the migrations that are not applied", async () => {
    const { rows } = await db.pool.query<{ id: number; created_at: string }>(
      "select id, created_at from saga.__drizzle_migrations order by id desc limit 1",
    );
    await db.pool.query("update saga.__drizzle_migrations set created_at = 1 where id = $1", [rows[0]!.id]);
    try {
      const report = await t.engine.health();
      expect(report.healthy).toBe(false);
      expect(report.migrations.ok).toBe(false);
      expect(report.migrations.pending).toEqual([expect.stringMatching(/^\d{4}_\w+$/)]);
      expect(report.problems[0]).toMatch(/^1 migration\(s\) not applied \(\d{4}_\w+\): run pg-saga migrate$/);
    } finally {
      await db.pool.query("update saga.__drizzle_migrations set created_at = $2 where id = $1", [
        rows[0]!.id,
        rows[0]!.created_at,
      ]);
    }
  });

  it("reports an unreachable database instead of throwing, password masked", async () => {
    const engine = createSagaEngine({
      connectionString: "postgres://app:s3cret@127.0.0.1:1/nowhere",
      sagas: [],
    });
    try {
      const report = await engine.health({ timeoutMs: 3_000 });
      expect(report).toMatchObject({ healthy: false, database: { ok: false, latencyMs: null } });
      expect(report.problems).toEqual([expect.stringMatching(/^database unreachable: .*ECONNREFUSED/)]);
      expect(JSON.stringify(report)).not.toContain("s3cret");
    } finally {
      await engine.close();
    }
  });
});
