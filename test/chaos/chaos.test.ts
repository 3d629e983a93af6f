/**
 * The bounded chaos run of `npm test` (a throwaway server of its own): 3 worker processes, random SIGKILLs
 * with replacements, a SIGSTOP past the lease, terminated backends. `npm run chaos` runs it longer.
 */
import { expect, it } from "vitest";
import { CALLS_TABLE } from "../fixtures/order-saga.js";
import { useThrowawayDatabase } from "../helpers/throwaway-postgres.js";
import { formatSummary, runChaos } from "./harness.js";

const db = useThrowawayDatabase({ setup: [CALLS_TABLE] });
const seed = Number(process.env.CHAOS_SEED ?? 20261125);

const lines: string[] = [];

it("kills, a zombie and terminated backends: every saga ends and every invariant holds", async () => {
  const summary = await runChaos({ url: db.url, durationMs: 30_000, seed, log: (l) => lines.push(l) });
  console.info(`chaos (seed ${seed})\n${lines.join("\n")}\n${formatSummary(summary)}`);
  expect(summary.kills).toBeGreaterThanOrEqual(2);
  expect(summary.pauses).toBe(1);
  expect(summary.invariants.filter((i) => !i.ok)).toEqual([]);
}, 240_000);
