/**
 * `npm run chaos -- --minutes N --seed S [--restart]`: the chaos workload for longer than the bounded run in
 * `npm test`, on a throwaway Postgres server of its own; prints the summary table and exits 1 if an
 * invariant failed.
 */
import { parseArgs } from "node:util";
import pg from "pg";
import { formatSummary, runChaos } from "../test/chaos/harness.js";
import { CALLS_TABLE } from "../test/fixtures/order-saga.js";
import { startThrowawayPostgres } from "../test/helpers/throwaway-postgres.js";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "2" },
    seed: { type: "string", default: String(Date.now() % 1_000_000) },
    restart: { type: "boolean", default: false },
  },
});
const minutes = Number(values.minutes);
const seed = Number(values.seed);
if (!(minutes > 0) || !Number.isInteger(seed)) {
  process.stderr.write("usage: npm run chaos -- --minutes N --seed S [--restart]\n");
  process.exit(2);
}

const server = await startThrowawayPostgres();
let failed = true;
try {
  const pool = new pg.Pool({ connectionString: server.url, max: 1 });
  await pool.query(CALLS_TABLE);
  await pool.end();
  const summary = await runChaos({
    url: server.url,
    durationMs: minutes * 60_000,
    seed,
    ...(values.restart ? { restartPostgres: () => server.restart("fast") } : {}),
    log: (line) => process.stdout.write(`${new Date().toISOString()} ${line}\n`),
  });
  process.stdout.write(`\n${formatSummary(summary)}\n`);
  failed = summary.invariants.some((i) => !i.ok);
} finally {
  await server.destroy();
}
process.exit(failed ? 1 : 0);
