/**
 * Claims commit without waiting for the disk (Transition.claimOnly, `synchronous_commit = off` for that
 * transaction only). On a throwaway server whose WAL writer runs every 10 s and whose background writer writes
 * nothing, so an asynchronous commit stays in the server's memory until the next synchronous one, the server is
 * killed (`pg_ctl stop -m immediate`) while a step's handler runs right after its claim. Restarted: the claim
 * was lost with the crash, the saga still completes, the step runs once more (at-least-once), and the outbox
 * holds each event of the saga once. With the relay on, an event it published survives the crash: its
 * synchronous commit flushed the claim's WAL before the NOTIFY went out.
 */
import pg from "pg";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { z } from "zod";
import { type SagaEngine, type SagaWorker, createSagaEngine, defineSaga } from "../src/index.js";
import { type ThrowawayPostgres, startThrowawayPostgres } from "./helpers/throwaway-postgres.js";

vi.setConfig({ testTimeout: 120_000 });

let server: ThrowawayPostgres;
let pool: pg.Pool;

/** Per saga id: how many times step "one" was entered, and the gate its first call waits on. */
const entered = new Map<string, number>();
let gate: { open: () => void; opened: Promise<void> } = newGate();
let onEnter: ((id: string) => void) | undefined;

function newGate() {
  let open = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

const saga = defineSaga({ name: "async-claim", input: z.object({}) })
  .step("one", {
    execute: async (_d, ctx) => {
      const n = (entered.get(ctx.sagaId) ?? 0) + 1;
      entered.set(ctx.sagaId, n);
      onEnter?.(ctx.sagaId);
      if (n === 1) await gate.opened;
    },
  })
  .step("two", { execute: () => {} })
  .step("three", { execute: () => {} });

const EXPECTED = [
  "saga.started",
  "saga.step.started:one",
  "saga.step.completed:one",
  "saga.step.started:two",
  "saga.step.completed:two",
  "saga.step.started:three",
  "saga.step.completed:three",
  "saga.completed",
];

beforeAll(async () => {
  server = await startThrowawayPostgres({
    settings: {
      // Commits wait for the WAL flush unless they ask not to (the helper's default is off).
      synchronous_commit: "on",
      // Nothing else flushes an asynchronous commit soon: the WAL writer (every 10 s, its maximum, and it
      // hibernates only after many idle rounds) and the background writer (which flushes WAL before a page).
      wal_writer_delay: "10000ms",
      bgwriter_lru_maxpages: "0",
      autovacuum: "off",
    },
  });
  pool = new pg.Pool({ connectionString: server.url, max: 3 });
  pool.on("error", () => {});
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await server?.destroy();
});

async function runWorker(engine: SagaEngine, relay: boolean): Promise<SagaWorker> {
  return engine.runWorker({
    concurrency: 2,
    pollInterval: 100,
    heartbeatInterval: 60_000,
    reapInterval: 60_000,
    relay: relay ? { pollInterval: 20 } : false,
  });
}

async function until<T>(read: () => Promise<T | undefined>, what: string, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The saga's outbox rows as "type:step" in seq order, with their seqs. */
async function outbox(id: string): Promise<{ trail: string[]; seqs: number[] }> {
  const { rows } = await pool.query<{ type: string; step: string | null; seq: number }>(
    "select type, step, seq from saga.outbox where saga_id = $1 order by seq, id",
    [id],
  );
  return { trail: rows.map((r) => (r.step ? `${r.type}:${r.step}` : r.type)), seqs: rows.map((r) => r.seq) };
}

async function completed(id: string): Promise<boolean | undefined> {
  const { rows } = await pool.query<{ state: string }>("select state from saga.instances where id = $1", [
    id,
  ]);
  return rows[0]?.state === "completed" ? true : undefined;
}

/** Kills the server the hard way (no shutdown checkpoint, WAL buffers lost) and starts it again. */
async function crash(): Promise<void> {
  await server.stop("immediate");
  await server.start();
}

it("a claim lost in a server crash: the step runs once more, the saga completes, each event is in the outbox once", async () => {
  const engine = createSagaEngine({ connectionString: server.url, sagas: [saga] });
  const worker = await runWorker(engine, false);
  try {
    gate = newGate();
    const inHandler = new Promise<string>((resolve) => (onEnter = resolve));
    const { id } = await engine.start(saga, {});
    expect(await inHandler).toBe(id);

    // The claim is committed (another session sees it) and its WAL is not yet on disk.
    const before = await pool.query<{ status: string; attempt: number; unflushed: boolean }>(
      `select s.status, s.attempt, pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() as unflushed
       from saga.steps s where s.saga_id = $1 and s.index = 0`,
      [id],
    );
    expect(before.rows[0]).toEqual({ status: "running", attempt: 1, unflushed: true });

    await crash();
    // Lost with the crash: the saga is as its start left it.
    const after = await until(async () => {
      const { rows } = await pool.query<{ n: number; seq: number }>(
        "select (select count(*)::int from saga.steps where saga_id = $1) as n, seq from saga.instances where id = $1",
        [id],
      );
      return rows[0];
    }, "the restarted server");
    expect(after).toEqual({ n: 0, seq: 1 });
    expect((await outbox(id)).trail).toEqual(["saga.started"]);

    // The handler returns; its record finds no claim behind it, the step is claimed and run again.
    gate.open();
    await until(() => completed(id), "the saga to complete");
    expect(entered.get(id)).toBe(2);
    const { trail, seqs } = await outbox(id);
    expect(trail).toEqual(EXPECTED);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    const steps = await pool.query<{ index: number; status: string; attempt: number }>(
      "select index, status, attempt from saga.steps where saga_id = $1 order by index",
      [id],
    );
    expect(steps.rows).toEqual([
      { index: 0, status: "succeeded", attempt: 1 },
      { index: 1, status: "succeeded", attempt: 1 },
      { index: 2, status: "succeeded", attempt: 1 },
    ]);
  } finally {
    onEnter = undefined;
    gate.open();
    await worker.stop();
    await engine.close();
  }
});

it("an event the relay published survives a crash right after: the relay's commit flushed the claim", async () => {
  const engine = createSagaEngine({ connectionString: server.url, sagas: [saga] });
  const worker = await runWorker(engine, true);
  const listener = new pg.Client({ connectionString: server.url });
  listener.on("error", () => {});
  await listener.connect();
  try {
    gate = newGate();
    let id = "";
    const published = new Promise<{ id: number; seq: number }>((resolve) => {
      listener.on("notification", (n) => {
        const m = JSON.parse(n.payload ?? "{}") as { id: number; sagaId: string; seq: number; type: string };
        if (m.sagaId === id && m.type === "saga.step.started") resolve({ id: m.id, seq: m.seq });
      });
    });
    await listener.query("listen saga_events");
    const inHandler = new Promise<string>((resolve) => (onEnter = resolve));
    id = (await engine.start(saga, {})).id;
    await inHandler;
    const event = await published;
    await crash();

    // What a subscriber was told about is on disk: the event, and the claim that wrote it.
    const rows = await until(async () => {
      const { rows } = await pool.query<{ seq: number; type: string; step_status: string | null }>(
        `select o.seq, o.type, (select s.status from saga.steps s where s.saga_id = o.saga_id and s.index = 0) as step_status
         from saga.outbox o where o.id = $1`,
        [event.id],
      );
      return rows;
    }, "the restarted server");
    expect(rows).toEqual([{ seq: event.seq, type: "saga.step.started", step_status: "running" }]);

    gate.open();
    await until(() => completed(id), "the saga to complete");
    // The claim survived: the handler's record applies, the step ran once.
    expect(entered.get(id)).toBe(1);
    expect((await outbox(id)).trail).toEqual(EXPECTED);
  } finally {
    onEnter = undefined;
    gate.open();
    await listener.end().catch(() => {});
    await worker.stop();
    await engine.close();
  }
});

it("an event a durable subscriber was handed survives a crash right after: the page waits for the WAL flush", async () => {
  const engine = createSagaEngine({ connectionString: server.url, sagas: [saga] });
  const worker = await runWorker(engine, false);
  let id = "";
  let handed: ((e: { id: string; seq: number }) => void) | undefined;
  const received = new Promise<{ id: string; seq: number }>((resolve) => (handed = resolve));
  const sub = engine.subscribe(
    { types: ["saga.step.started"] },
    (event) => {
      if (event.sagaId === id) handed?.({ id: String(event.id), seq: event.seq ?? 0 });
    },
    { durable: "async-claim-bridge", from: "now" },
  );
  try {
    gate = newGate();
    const inHandler = new Promise<string>((resolve) => (onEnter = resolve));
    id = (await engine.start(saga, {})).id;
    await inHandler;
    // The handler has the claim's event (a bridge would have published it under its id): then the crash.
    const event = await received;
    await crash();
    const rows = await until(async () => {
      const { rows } = await pool.query<{ seq: number; type: string }>(
        "select seq, type from saga.outbox where id = $1",
        [event.id],
      );
      return rows;
    }, "the restarted server");
    expect(rows).toEqual([{ seq: event.seq, type: "saga.step.started" }]);
    gate.open();
    await until(() => completed(id), "the saga to complete");
    expect(entered.get(id)).toBe(1);
  } finally {
    onEnter = undefined;
    gate.open();
    await sub.close().catch(() => {});
    await worker.stop();
    await engine.close();
  }
});
