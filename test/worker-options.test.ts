/**
 * resolveWorkerOptions(): the worker's defaults come from WORKER_DEFAULTS only, and the one copy SQL keeps
 * (saga._stale_after(), the operator views' dead-worker threshold) is pinned equal to deadWorkerAfter.
 */
import { describe, expect, it } from "vitest";
import { SagaError } from "../src/index.js";
import { WORKER_DEFAULTS, resolveWorkerOptions } from "../src/worker/worker-options.js";
import { useTestDatabase } from "./helpers/database.js";

const db = useTestDatabase();

describe("worker options", () => {
  it("fills in every default from WORKER_DEFAULTS", () => {
    const o = resolveWorkerOptions();
    expect(o).toMatchObject({
      concurrency: WORKER_DEFAULTS.concurrency,
      poolSize: WORKER_DEFAULTS.concurrency + WORKER_DEFAULTS.poolHeadroom,
      pollInterval: WORKER_DEFAULTS.pollInterval,
      heartbeatInterval: WORKER_DEFAULTS.heartbeatInterval,
      deadWorkerAfter: WORKER_DEFAULTS.deadWorkerAfter,
      reapInterval: WORKER_DEFAULTS.reapInterval,
      abortGrace: WORKER_DEFAULTS.abortGrace,
      schemaCheckInterval: WORKER_DEFAULTS.schemaCheckInterval,
      bridges: [],
    });
    expect(o.relay).not.toBeNull();
    expect(Object.isFrozen(o)).toBe(true);
  });

  it("keeps what is given, sizes the pool from the concurrency, and turns the relay off with false", () => {
    const o = resolveWorkerOptions({ concurrency: 3, deadWorkerAfter: 40_000, relay: false });
    expect(o).toMatchObject({
      concurrency: 3,
      poolSize: 3 + WORKER_DEFAULTS.poolHeadroom,
      deadWorkerAfter: 40_000,
    });
    expect(o.relay).toBeNull();
    expect(resolveWorkerOptions({ concurrency: 3, poolSize: 2 }).poolSize).toBe(2);
  });

  it("refuses an option out of range with INVALID_OPTIONS", () => {
    expect(() => resolveWorkerOptions({ concurrency: 0 })).toThrow(SagaError);
    expect(() => resolveWorkerOptions({ deadWorkerAfter: -1 })).toThrow(/deadWorkerAfter/);
  });

  it("saga._stale_after() defaults to deadWorkerAfter's default", async () => {
    const { rows } = await db.pool.query<{ ms: number }>(
      "select (extract(epoch from saga._stale_after()) * 1000)::int as ms",
    );
    expect(
      rows[0]!.ms,
      "sql/operator.sql saga._stale_after() and WORKER_DEFAULTS.deadWorkerAfter differ: change both",
    ).toBe(WORKER_DEFAULTS.deadWorkerAfter);
  });
});
