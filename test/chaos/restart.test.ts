/**
 * The chaos run with a Postgres restart half way (the suite's own throwaway server, `pg_ctl restart`).
 */
import { expect, it } from "vitest";
import { CALLS_TABLE } from "../fixtures/order-saga.js";
import { useThrowawayDatabase } from "../helpers/throwaway-postgres.js";
import { formatSummary, runChaos } from "./harness.js";

const db = useThrowawayDatabase({ setup: [CALLS_TABLE] });
const seed = Number(process.env.CHAOS_SEED ?? 7);

const lines: string[] = [];

it("a Postgres restart mid-run on top of the kills: every saga ends and every invariant holds", async () => {
  const summary = await runChaos({
    url: db.url,
    durationMs: 25_000,
    seed,
    restartPostgres: () => db.server.restart("fast"),
    log: (line) => lines.push(`${new Date().toISOString()} ${line}`),
  });
  console.info(`chaos with restart (seed ${seed})\n${lines.join("\n")}\n${formatSummary(summary)}`);
  expect(summary.restarts).toBe(1);
  expect(summary.invariants.filter((i) => !i.ok)).toEqual([]);
}, 240_000);
