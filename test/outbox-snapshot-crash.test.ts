/**
 * Snapshot-tick delivery under overlapping transactions and killed processes: 20 transactions at a time write
 * saga events, each taking its xid first and its saga's row lock later, so they commit out of xid order (and a
 * later seq of a saga can have the lower xid); meanwhile the relay process and the processes of two durable
 * subscriptions are killed with SIGKILL at random points and started again. Delivered set = committed set,
 * the relay publishes each event once, a subscription repeats only the page open at a kill, and every
 * consumer sees each saga's events in seq order.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { useTestDatabase } from "./helpers/database.js";
import { type WorkerChild, spawnWorker, stopWorker } from "./helpers/processes.js";
import { insertEvents, rawListener, sleep, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();
const running = new Map<string, WorkerChild>();
const tags = new Map<string, string>();
const SUBSCRIPTIONS = ["snap-a", "snap-b"];
const PAGE = 7;

beforeAll(async () => {
  await db.pool.query(
    `create table test_deliveries (n bigint generated always as identity primary key, consumer text,
       event_id bigint, saga_id uuid, seq int);
     create table test_sagas (id uuid primary key, seq int not null default 0)`,
  );
});
afterAll(async () => {
  await Promise.all([...running.values()].map((c) => stopWorker(c)));
});

let incarnation = 0;
async function start(role: string): Promise<void> {
  const tag = `${role}#${++incarnation}`;
  const env = { DATABASE_URL: db.url, LEASE_MS: "800" };
  const child =
    role === "relay"
      ? await spawnWorker("relay-process.ts", { ...env, BATCH: "5" })
      : await spawnWorker("subscriber-durable.ts", { ...env, NAME: role, TAG: tag, BATCH: String(PAGE) });
  running.set(role, child);
  tags.set(role, tag);
}

/** One transaction of a saga transition, with its xid taken early: returns the ids it committed, or none. */
async function transition(client: pg.PoolClient, saga: string): Promise<number[]> {
  await client.query("begin");
  await client.query("select pg_current_xact_id()");
  await sleep(Math.random() * 30);
  const { rows } = await client.query<{ seq: number }>(
    "select seq from test_sagas where id = $1 for update",
    [saga],
  );
  const n = 1 + Math.floor(Math.random() * 3);
  const ids = await insertEvents(client, "crash", n, { id: saga, firstSeq: rows[0]!.seq + 1 });
  await client.query("update test_sagas set seq = seq + $2 where id = $1", [saga, n]);
  await sleep(Math.random() * 30);
  if (Math.random() < 0.15) {
    await client.query("rollback");
    return [];
  }
  await client.query("commit");
  return ids;
}

it("20 overlapping transactions out of xid order, relay and two durable subscriptions killed at random: every committed event once, in seq order per saga", async () => {
  const sagas = Array.from({ length: 6 }, () => randomUUID());
  await db.pool.query("insert into test_sagas (id) select unnest($1::uuid[])", [sagas]);
  const raw = await rawListener(db.url);
  const writers = new pg.Pool({ connectionString: db.url, max: 20, application_name: "test writers" });
  const kills = new Map<string, string[]>();
  const committed: number[] = [];
  try {
    await start("relay");
    for (const name of SUBSCRIPTIONS) await start(name);

    let writing = true;
    const killer = (async () => {
      const roles = ["relay", ...SUBSCRIPTIONS];
      for (let k = 0; writing || k < roles.length; k++) {
        await sleep(100 + Math.random() * 300);
        const role = roles[k % roles.length]!;
        const victim = running.get(role)!;
        victim.child.kill("SIGKILL");
        await victim.exited;
        kills.set(role, [...(kills.get(role) ?? []), tags.get(role)!]);
        await start(role);
      }
    })();
    for (let round = 0; round < 10; round++) {
      const results = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const client = await writers.connect();
          try {
            return await transition(client, sagas[(round + i) % sagas.length]!);
          } finally {
            client.release();
          }
        }),
      );
      committed.push(...results.flat());
    }
    writing = false;
    await killer;

    const delivered = async (name: string) =>
      (
        await db.pool.query<{ consumer: string; event_id: string; saga_id: string; seq: number }>(
          "select consumer, event_id, saga_id, seq from test_deliveries where consumer like $1 order by n",
          [`${name}#%`],
        )
      ).rows;
    const published = () => raw.messages.filter((m) => m.type === "crash");
    await waitUntil("the relay published everything", () => published().length >= committed.length, 60_000);
    for (const name of SUBSCRIPTIONS) {
      await waitUntil(
        `${name} delivered everything`,
        async () => {
          const got = new Set((await delivered(name)).map((d) => Number(d.event_id)));
          return committed.every((id) => got.has(id));
        },
        60_000,
      );
    }
    await sleep(300); // a late duplicate would arrive now

    expect(committed.length).toBeGreaterThan(100);
    // The case this suite is for happened: a saga's later seq written by a transaction with the lower xid.
    const inverted = await db.pool.query<{ n: number }>(
      `select count(*)::int as n from saga.outbox a join saga.outbox b on a.saga_id = b.saga_id
       where a.type = 'crash' and a.seq < b.seq and a.xid > b.xid`,
    );
    expect(inverted.rows[0]!.n).toBeGreaterThan(0);
    expect(kills.get("relay")?.length).toBeGreaterThanOrEqual(1);
    // The relay: NOTIFY and cursor commit together, so a kill never publishes an event twice.
    expect(
      published()
        .map((m) => m.id)
        .sort((a, b) => a - b),
    ).toEqual([...committed].sort((a, b) => a - b));
    const inOrder = (events: { sagaId: string | null; seq: number | null }[]) => {
      const last = new Map<string, number>();
      return events.every((e) => {
        const ok = e.seq! > (last.get(e.sagaId!) ?? 0);
        last.set(e.sagaId!, e.seq!);
        return ok;
      });
    };
    expect(inOrder(published())).toBe(true);

    for (const name of SUBSCRIPTIONS) {
      const rows = await delivered(name);
      expect(new Set(rows.map((r) => Number(r.event_id)))).toEqual(new Set(committed));
      // Repeats: only events a killed process handled after its last cursor commit, one page at most.
      const first = new Map<number, string>();
      let repeats = 0;
      for (const r of rows) {
        const id = Number(r.event_id);
        const by = first.get(id);
        if (by === undefined) first.set(id, r.consumer);
        else {
          repeats++;
          expect(kills.get(name)).toContain(by);
        }
      }
      expect(repeats).toBeLessThanOrEqual((kills.get(name)?.length ?? 0) * PAGE * 2);
      // Each process saw each saga's events in seq order.
      for (const consumer of new Set(rows.map((r) => r.consumer))) {
        expect(
          inOrder(
            rows.filter((r) => r.consumer === consumer).map((r) => ({ sagaId: r.saga_id, seq: r.seq })),
          ),
        ).toBe(true);
      }
    }
  } finally {
    await writers.end();
    await raw.close();
  }
}, 240_000);
