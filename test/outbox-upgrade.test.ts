/**
 * Upgrade of the cursors: (xid, id) positions written by the relay and durable subscriptions before snapshot
 * ticks become ticks in migration 0007, with no event lost or repeated, a transaction open across the upgrade
 * included.
 */
import { readMigrationFiles } from "drizzle-orm/migrator";
import { expect, it } from "vitest";
import { createSagaEngine, type SagaEvent } from "../src/index.js";
import { MIGRATIONS_FOLDER } from "../src/migrate.js";
import { useTestDatabase } from "./helpers/database.js";
import { insertEvents, rawListener, sleep, testRelay, waitUntil } from "./fixtures/subscriber-helpers.js";

const db = useTestDatabase();

it("converts (xid, id) cursors into ticks: each cursor goes on exactly after what it had consumed", async () => {
  // Back to the table shape before migration 0007.
  const ticks = readMigrationFiles({ migrationsFolder: MIGRATIONS_FOLDER }).find((m) =>
    m.sql.some((s) => s.includes('ADD COLUMN "tick"')),
  )!;
  await db.pool.query(
    `alter table saga.subscriptions drop column tick, drop column batch_tick, drop column ahead;
     delete from saga.__drizzle_migrations where created_at = ${ticks.folderMillis}`,
  );

  const t1 = await insertEvents(db.pool, "up", 3);
  const t2 = await insertEvents(db.pool, "up", 2);
  const open = await db.pool.connect();
  const engine = createSagaEngine({ connectionString: db.url, sagas: [] });
  try {
    await open.query("begin");
    const t3 = await insertEvents(open, "up", 1); // open across the upgrade
    const t4 = await insertEvents(db.pool, "up", 2); // committed, but above the old watermark (t3 is open)
    const xidOf = async (id: number) =>
      (await db.pool.query<{ x: string }>("select xid::text as x from saga.outbox where id = $1", [id]))
        .rows[0]!.x;
    // Old cursors as the old readers left them: 'legacy' inside t1's transaction, the relay past t2 (it
    // could not pass the open t3), 'fresh' at the start.
    await db.pool.query(
      `insert into saga.subscriptions (name, cursor_xid, cursor_id) values
         ('legacy', $1::xid8, $2), ('fresh', '0', 0)`,
      [await xidOf(t1[1]!), t1[1]],
    );
    await db.pool.query(
      "update saga.subscriptions set cursor_xid = $1::xid8, cursor_id = $2 where name = '$relay'",
      [await xidOf(t2[1]!), t2[1]],
    );

    await engine.migrate();
    const converted = await db.pool.query<{ name: string; tick: string }>(
      "select name, tick::text as tick from saga.subscriptions order by name",
    );
    expect(converted.rows.find((r) => r.name === "fresh")?.tick).toBe("1:1:");

    const raw = await rawListener(db.url);
    const legacy: SagaEvent[] = [];
    const fresh: SagaEvent[] = [];
    const subs = [
      engine.subscribe({ types: ["up"] }, (e) => void legacy.push(e), {
        durable: "legacy",
        pollInterval: 20,
      }),
      engine.subscribe({ types: ["up"] }, (e) => void fresh.push(e), { durable: "fresh", pollInterval: 20 }),
    ];
    const relay = testRelay(db.url, db.pool);
    try {
      const ids = (events: { id: number }[]) => events.map((e) => e.id).sort((a, b) => a - b);
      await waitUntil("legacy caught up", () => legacy.length >= 3);
      await waitUntil("fresh caught up", () => fresh.length >= 7);
      await waitUntil("relay caught up", () => raw.messages.length >= 2);
      await sleep(300);
      expect(ids(legacy)).toEqual([t1[2]!, ...t2, ...t4]);
      expect(ids(fresh)).toEqual([...t1, ...t2, ...t4]);
      expect(ids(raw.messages)).toEqual(t4);

      await open.query("commit");
      await waitUntil("t3 everywhere", () =>
        [legacy, fresh, raw.messages].every((got) => got.some((e) => e.id === t3[0])),
      );
      await sleep(300);
      expect(ids(legacy)).toEqual([t1[2]!, ...t2, ...t3, ...t4]);
      expect(ids(fresh)).toEqual([...t1, ...t2, ...t3, ...t4]);
      expect(ids(raw.messages)).toEqual([...t3, ...t4]);
    } finally {
      await relay.stop();
      await Promise.all(subs.map((s) => s.close()));
      await raw.close();
    }
  } finally {
    await open.query("rollback").catch(() => {});
    open.release();
    await engine.close();
  }
});
