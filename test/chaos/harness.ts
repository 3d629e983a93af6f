/**
 * The chaos run: money transfers through 3 real worker processes while the harness SIGKILLs and replaces
 * workers, pauses one past its lease (SIGSTOP/SIGCONT), terminates random backends and, when given a server
 * of its own, restarts Postgres. Then every saga must end and every invariant hold.
 */
import pg from "pg";
import { type SagaEngine, createSagaEngine } from "../../src/index.js";
import { TRANSFER_TABLES, type TransferInput, transferSaga } from "../fixtures/transfer-saga.js";
import { type Invariant, checkInvariants } from "./invariants.js";
import { type ChaosWorker, spawnChaosWorker, stopChaosWorker, withAppName } from "./worker-processes.js";

export interface ChaosOptions {
  url: string;
  durationMs: number;
  seed: number;
  workers?: number;
  accounts?: number;
  /** A Postgres restart (of a throwaway server) half way through. */
  restartPostgres?: () => Promise<void>;
  deadAfterMs?: number;
  log?: (line: string) => void;
}

export interface ChaosSummary {
  seed: number;
  sagas: number;
  states: Record<string, number>;
  kills: number;
  /** Kills of a worker that held no step at that moment. */
  idleKills: number;
  /** Per kill of a worker holding steps: ms until no step was leased by it any more. */
  recoveries: number[];
  maxRecoveryMs: number;
  pauses: number;
  discarded: number;
  terminatedBackends: number;
  restarts: number;
  startErrors: number;
  recoveryBoundMs: number;
  invariants: Invariant[];
}

/** A small seeded generator (mulberry32): the same seed, the same schedule of faults. */
export function seeded(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const APP = "chaos-worker";

/**
 * Runs the chaos workload and returns the summary with invariant results (it does not throw on a failed one).
 *
 * @example
 * const summary = await runChaos({ url, durationMs: 60_000, seed: 42 });
 */
export async function runChaos(o: ChaosOptions): Promise<ChaosSummary> {
  const log = o.log ?? (() => {});
  const rng = seeded(o.seed);
  const accounts = o.accounts ?? 20;
  const deadAfterMs = o.deadAfterMs ?? 1_500;
  const reapMs = 250;
  const pool = new pg.Pool({ connectionString: o.url, max: 4 });
  pool.on("error", () => {});
  await pool.query(TRANSFER_TABLES);
  await pool.query("insert into accounts (id, balance) select g, 1000 from generate_series(1, $1::int) g", [
    accounts,
  ]);
  const engine: SagaEngine = createSagaEngine({ connectionString: o.url, sagas: [transferSaga(pool)] });

  const delivered = new Set<string>();
  // engine.subscribe (the outbox relay's durable subscriptions) when this build has it.
  type Subscribe = (
    filter: { names?: string[] },
    handler: (e: { sagaId: string | null; seq: number | null }) => unknown,
    options: { durable: string; pollInterval: string },
  ) => { close(): Promise<void> };
  const subscribe = (engine as unknown as { subscribe?: Subscribe }).subscribe;
  const subscription =
    typeof subscribe === "function"
      ? subscribe.call(
          engine,
          { names: ["transfer"] },
          (e: { sagaId: string | null; seq: number | null }) => {
            delivered.add(`${e.sagaId}/${e.seq}`);
          },
          { durable: "chaos-audit", pollInterval: "250ms" },
        )
      : null;

  const env = {
    DATABASE_URL: withAppName(o.url, APP),
    CONCURRENCY: "4",
    DEAD_AFTER_MS: String(deadAfterMs),
    REAP_MS: String(reapMs),
    HEARTBEAT_MS: "200",
  };
  const workers: ChaosWorker[] = [];
  const all: ChaosWorker[] = [];
  const spawn = async () => {
    const w = await spawnChaosWorker(env);
    workers.push(w);
    all.push(w);
    return w;
  };
  for (let i = 0; i < (o.workers ?? 3); i++) await spawn();

  const summary: ChaosSummary = {
    seed: o.seed,
    sagas: 0,
    states: {},
    kills: 0,
    idleKills: 0,
    recoveries: [],
    maxRecoveryMs: 0,
    pauses: 0,
    discarded: 0,
    terminatedBackends: 0,
    restarts: 0,
    startErrors: 0,
    recoveryBoundMs: deadAfterMs + reapMs + 10_000,
    invariants: [],
  };
  const background: Promise<unknown>[] = [];
  const recoveryFailures: string[] = [];

  /** Time until no step is leased by the killed worker any more (its work was taken over). */
  const trackRecovery = async (workerId: string, killedAt: number) => {
    for (let first = true; ; first = false) {
      const leased = await pool
        .query<{ n: number }>("select count(*)::int as n from saga.steps where lease_owner = $1", [workerId])
        .then((r) => r.rows[0]?.n ?? 0)
        .catch(() => -1);
      if (leased === 0 && first) {
        summary.idleKills++; // it held no step: nothing to recover
        return;
      }
      if (leased === 0) {
        summary.recoveries.push(Date.now() - killedAt);
        log(`recovered ${workerId} in ${Date.now() - killedAt} ms`);
        return;
      }
      if (Date.now() - killedAt > 120_000) {
        recoveryFailures.push(workerId);
        return;
      }
      await sleep(50);
    }
  };

  const started = Date.now();
  const until = started + o.durationMs;
  let nextKill = started + rng.int(2_000, 4_000);
  let nextTerminate = started + rng.int(1_000, 2_000);
  let pauseAt = started + Math.floor(o.durationMs * 0.3);
  let paused: ChaosWorker | null = null;
  let restartAt = o.restartPostgres ? started + Math.floor(o.durationMs * 0.5) : Infinity;

  const startTransfer = async () => {
    const from = rng.int(1, accounts);
    const input: TransferInput = {
      from,
      to: ((from + rng.int(0, accounts - 2)) % accounts) + 1,
      amount: rng.int(1, 60),
      slowMs: rng.int(0, 250),
    };
    const roll = rng.next();
    if (roll < 0.08) input.failAt = "credit";
    else if (roll < 0.16) input.failAt = "notify-bank";
    try {
      await engine.start(transferSaga(pool), input);
      summary.sagas++;
    } catch {
      summary.startErrors++; // Postgres restarting: the caller would retry; this one is simply not started
    }
  };

  while (Date.now() < until) {
    const batch = rng.int(1, 4);
    await Promise.all(Array.from({ length: batch }, startTransfer));
    const now = Date.now();
    if (now >= nextKill) {
      nextKill = now + rng.int(2_000, 4_000);
      // Kills and the pause always leave a healthy worker: recovery is measured, not starved.
      const victims = workers.filter((w) => w.alive && w !== paused);
      const victim = victims[rng.int(0, victims.length - 1)];
      if (victim && victims.length >= 2) {
        victim.child.kill("SIGKILL");
        workers.splice(workers.indexOf(victim), 1);
        summary.kills++;
        log(`kill -9 ${victim.workerId}`);
        background.push(trackRecovery(victim.workerId, now));
        background.push(spawn().catch((err: unknown) => log(`respawn failed: ${String(err)}`)));
      }
    }
    const healthy = workers.filter((w) => w.alive && w !== paused);
    if (now >= pauseAt && healthy.length >= 2) {
      // Pause the worker holding the most running steps, so there is a late result to fence out.
      const { rows: leases } = await pool
        .query<{ owner: string; n: number }>(
          "select lease_owner as owner, count(*)::int as n from saga.steps where lease_owner = any($1) group by 1",
          [healthy.map((w) => w.workerId)],
        )
        .catch(() => ({ rows: [] as { owner: string; n: number }[] }));
      const busiest = leases.sort((a, b) => b.n - a.n)[0];
      const zombie = healthy.find((w) => w.workerId === busiest?.owner);
      if (zombie || now > started + o.durationMs * 0.8) {
        pauseAt = Infinity;
        const target = zombie ?? healthy[0];
        if (target) {
          target.child.kill("SIGSTOP");
          summary.pauses++;
          paused = target;
          log(`SIGSTOP ${target.workerId} for ${deadAfterMs + 1_500} ms, holding ${busiest?.n ?? 0} step(s)`);
          background.push(
            sleep(deadAfterMs + 1_500).then(() => {
              target.child.kill("SIGCONT");
              paused = null;
            }),
          );
        }
      }
    }
    if (now >= nextTerminate) {
      nextTerminate = now + rng.int(1_000, 2_500);
      const { rows } = await pool
        .query<{ ok: boolean }>(
          `select pg_terminate_backend(pid) as ok from (select pid from pg_stat_activity
             where application_name = $1 order by random() limit $2) p`,
          [APP, rng.int(1, 3)],
        )
        .catch(() => ({ rows: [] as { ok: boolean }[] }));
      summary.terminatedBackends += rows.filter((r) => r.ok).length;
    }
    if (now >= restartAt && o.restartPostgres) {
      restartAt = Infinity;
      log("restarting Postgres");
      await o.restartPostgres();
      log("Postgres restarted");
      summary.restarts++;
    }
    await sleep(rng.int(50, 200));
  }

  log(`chaos over after ${summary.sagas} sagas; waiting for every saga to end`);
  await Promise.all(background);
  while (workers.filter((w) => w.alive).length < (o.workers ?? 3)) await spawn();
  const settleUntil = Date.now() + 120_000;
  for (;;) {
    const { rows } = await pool.query<{ n: number }>(
      "select count(*)::int as n from saga.instances where finished_at is null",
    );
    if (rows[0]?.n === 0 || Date.now() > settleUntil) break;
    await sleep(250);
  }
  if (subscription) {
    // The subscription catches up from its cursor: give it until it has every committed event.
    const catchUpUntil = Date.now() + 30_000;
    for (;;) {
      const { rows } = await pool.query<{ n: number }>("select count(*)::int as n from saga.events");
      if (delivered.size >= (rows[0]?.n ?? 0) || Date.now() > catchUpUntil) break;
      await sleep(250);
    }
  }
  await Promise.all(workers.map((w) => stopChaosWorker(w)));
  summary.discarded = all.reduce(
    (n, w) => n + w.logs.filter((l) => l.message.startsWith("late or duplicate result discarded")).length,
    0,
  );
  summary.maxRecoveryMs = Math.max(0, ...summary.recoveries);
  if (process.env.CHAOS_DEBUG === "1")
    for (const w of all)
      for (const l of w.logs)
        if (!l.message.startsWith("step attempt failed")) log(`${w.workerId} ${JSON.stringify(l)}`);
  summary.invariants = await checkInvariants(pool, {
    accounts,
    initialBalance: 1000,
    ...(subscription ? { delivered } : {}),
  });
  summary.invariants.push({
    name: "recovery after each kill within deadWorkerAfter + reap interval + 10 s",
    ok:
      recoveryFailures.length === 0 &&
      summary.recoveries.length + summary.idleKills === summary.kills &&
      summary.maxRecoveryMs <= summary.recoveryBoundMs,
    detail: `${summary.recoveries.length} kills of workers holding steps recovered (${summary.idleKills} held none); max ${summary.maxRecoveryMs} ms (bound ${summary.recoveryBoundMs} ms)`,
  });
  const { rows } = await pool.query<{ state: string; n: number }>(
    "select state, count(*)::int as n from saga.instances group by state order by state",
  );
  summary.states = Object.fromEntries(rows.map((r) => [r.state, r.n]));
  await subscription?.close();
  await engine.close();
  await pool.end();
  return summary;
}

/** The summary as a table, for the script and the test logs. */
export function formatSummary(s: ChaosSummary): string {
  const rows: [string, string][] = [
    ["seed", String(s.seed)],
    ["sagas", `${s.sagas} ${JSON.stringify(s.states)}`],
    ["kills (SIGKILL)", `${s.kills} (${s.idleKills} of a worker holding no step)`],
    ["recoveries", `${s.recoveries.length}; max ${s.maxRecoveryMs} ms; bound ${s.recoveryBoundMs} ms`],
    ["pauses (SIGSTOP)", String(s.pauses)],
    ["late results discarded", String(s.discarded)],
    ["backends terminated", String(s.terminatedBackends)],
    ["Postgres restarts", String(s.restarts)],
    ["starts refused during restarts", String(s.startErrors)],
    ...s.invariants.map((i): [string, string] => [`${i.ok ? "PASS" : "FAIL"} ${i.name}`, i.detail]),
  ];
  const width = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n");
}
