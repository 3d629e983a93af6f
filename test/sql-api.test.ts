/**
 * The SQL API from SQL: saga.start/cancel/retry, a trigger that starts a saga, SQL-started invalid input, and
 * the saga.stuck view with each of its reasons. A worker runs in this process for the file's sagas.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { BusinessError, RetryableError, compensation, defineSaga, retry } from "../src/index.js";
import { useTestDatabase } from "./helpers/database.js";
import { eventPayloads, eventTrail, useEngine } from "./helpers/engine.js";

const db = useTestDatabase();

const executed: string[] = [];
const broken = new Set<string>(); // tags whose step (or compensation) fails until healed
const released = new Set<string>();

const signup = defineSaga({
  name: "signup",
  input: z.object({ email: z.string().email(), plan: z.enum(["free", "pro"]) }),
})
  .step("create-account", {
    execute: (d, ctx) => {
      executed.push(`${ctx.sagaId}:create-account`);
      return { ...d, accountId: `acct-${d.email}` };
    },
  })
  .step("send-welcome", {
    execute: (d, ctx) => {
      executed.push(`${ctx.sagaId}:send-welcome`);
      return d;
    },
  });

const tagged = z.object({ tag: z.string() });

/** First step fails while its tag is broken: nothing to undo, so the saga ends `failed`. */
const fragile = defineSaga({ name: "fragile", input: tagged }).step("charge", {
  execute: (d) => {
    if (broken.has(d.tag)) throw new BusinessError("DECLINED", "card declined");
    return { ...d, charged: true };
  },
});

/** Second step fails for good; the first step's compensation fails while `undo:<tag>` is broken. */
const undoable = defineSaga({ name: "undoable", input: tagged })
  .step("reserve", {
    execute: (d) => d,
    compensateRetry: retry.none(),
    compensate: (d) => {
      if (broken.has(`undo:${d.tag}`)) throw new Error("inventory service down");
    },
  })
  .step("pay", {
    execute: () => {
      throw new BusinessError("DECLINED", "card declined");
    },
  });

/** Holds its step until released or aborted. */
const holdable = defineSaga({ name: "holdable", input: tagged }).step("hold", {
  execute: async (d, ctx) => {
    while (!released.has(d.tag)) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      await new Promise((r) => setTimeout(r, 20));
    }
    return d;
  },
  compensate: () => {},
});

/** A step that retries a minute later; a compensation that retries a minute later. */
const slow = defineSaga({ name: "slow", input: tagged, compensation: compensation.sequential() })
  .step("reserve", {
    execute: (d) => d,
    compensateRetry: retry.fixed({ maxAttempts: 5, delay: "60s" }),
    compensate: () => {
      throw new Error("warehouse offline");
    },
  })
  .step("charge", {
    retry: retry.fixed({ maxAttempts: 3, delay: "60s" }),
    execute: (d) => {
      if (d.tag.startsWith("fail")) throw new BusinessError("DECLINED", "declined");
      throw new RetryableError(new Error("gateway timeout"));
    },
  });

const t = useEngine(db, () => [signup, fragile, undoable, holdable, slow], { pollInterval: 50 });

async function sqlError(text: string, values: unknown[] = []): Promise<{ code: string; message: string }> {
  try {
    await db.pool.query(text, values);
  } catch (err) {
    const e = err as { code: string; message: string };
    return { code: e.code, message: e.message };
  }
  throw new Error(`expected ${text} to fail`);
}

async function start(name: string, input: unknown, options: unknown = {}): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>("select saga.start($1, $2::jsonb, $3::jsonb) as id", [
    name,
    JSON.stringify(input),
    JSON.stringify(options),
  ]);
  return rows[0]!.id;
}

async function stuck(id: string) {
  const { rows } = await db.pool.query("select * from saga.stuck where id = $1", [id]);
  return rows[0] as Record<string, unknown> | undefined;
}

describe("saga.start from SQL", () => {
  it("starts the latest registered version, with an idempotency key and metadata, and the worker runs it", async () => {
    const id = await start(
      "signup",
      { email: "ann@example.com", plan: "pro" },
      { idempotencyKey: "u-1", metadata: { userId: 1 } },
    );
    expect(await start("signup", { email: "ann@example.com", plan: "pro" }, { idempotencyKey: "u-1" })).toBe(
      id,
    );
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done).toMatchObject({
      state: "completed",
      version: 1,
      idempotencyKey: "u-1",
      metadata: { userId: 1 },
    });
    expect(done.result).toMatchObject({ accountId: "acct-ann@example.com" });
    expect(await eventTrail(db, id)).toEqual([
      "saga.started",
      "saga.step.started:create-account",
      "saga.step.completed:create-account",
      "saga.step.started:send-welcome",
      "saga.step.completed:send-welcome",
      "saga.completed",
    ]);
  });

  it("refuses unknown names, versions, options and missing input with their own SQLSTATEs", async () => {
    const unknown = await sqlError("select saga.start('no-such-saga', '{}')");
    expect(unknown.code).toBe("SG406");
    expect(unknown.message).toMatch(/unknown saga "no-such-saga".*registered: .*signup/);
    expect((await sqlError(`select saga.start('signup', '{}', '{"version": 9}')`)).code).toBe("SG406");
    const option = await sqlError(`select saga.start('signup', '{}', '{"idempotency_key": "x"}')`);
    expect(option).toMatchObject({
      code: "SG400",
      message: expect.stringMatching(/unknown option\(s\) idempotency_key/),
    });
    expect((await sqlError(`select saga.start('signup', '{}', '{"metadata": [1]}')`)).code).toBe("SG400");
    expect((await sqlError(`select saga.start('signup', '{}', '{"parentId": "nope"}')`)).code).toBe("SG400");
    expect((await sqlError("select saga.start('signup', null)")).code).toBe("SG400");
    const huge = JSON.stringify({ email: "a@b.co", plan: "free", blob: "x".repeat(1_100_000) });
    expect((await sqlError("select saga.start('signup', $1::jsonb)", [huge])).code).toBe("SG413");
    const { rows } = await db.pool.query(
      "select count(*)::int as n from saga.instances where name = 'no-such-saga'",
    );
    expect(rows[0].n).toBe(0);
  });

  it("validates SQL-started input in the worker: invalid → failed with INVALID_INPUT and the paths, no step run", async () => {
    const id = await start("signup", { email: "not-an-email", plan: "gold" });
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("failed");
    expect(done.error).toMatchObject({ code: "INVALID_INPUT" });
    const issues = (done.error as unknown as { details: { issues: { path: string[] }[] } }).details.issues;
    expect(issues.map((i) => i.path.join("."))).toEqual(expect.arrayContaining(["email", "plan"]));
    expect(executed.filter((e) => e.startsWith(id))).toEqual([]);
    const steps = await db.pool.query("select count(*)::int as n from saga.steps where saga_id = $1", [id]);
    expect(steps.rows[0].n).toBe(0);
    expect(await eventTrail(db, id)).toEqual(["saga.started", "saga.failed"]);
  });

  it("starts a saga from a trigger on an application table, in the inserting transaction", async () => {
    await db.pool.query(`
      create table app_users (id serial primary key, email text not null, plan text not null default 'free');
      create function app_users_signup() returns trigger language plpgsql as $$
      begin
        perform saga.start('signup', jsonb_build_object('email', new.email, 'plan', new.plan),
          jsonb_build_object('idempotencyKey', 'user-' || new.id, 'metadata', jsonb_build_object('userId', new.id)));
        return new;
      end $$;
      create trigger app_users_signup after insert on app_users for each row execute function app_users_signup();`);
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      await client.query("insert into app_users (email) values ('rolled@example.com')");
      await client.query("rollback");
    } finally {
      client.release();
    }
    const { rows } = await db.pool.query<{ id: number }>(
      "insert into app_users (email, plan) values ('bo@example.com', 'pro') returning id",
    );
    const saga = await db.pool.query<{ id: string }>(
      "select id from saga.instances where idempotency_key = $1",
      [`user-${rows[0]!.id}`],
    );
    const done = await t.engine.waitFor(saga.rows[0]!.id, { timeoutMs: 20_000 });
    expect(done).toMatchObject({ state: "completed", metadata: { userId: rows[0]!.id } });
    const rolled = await db.pool.query(
      "select count(*)::int as n from saga.instances where input->>'email' = 'rolled@example.com'",
    );
    expect(rolled.rows[0].n).toBe(0);
  });
});

describe("saga.cancel and saga.retry from SQL", () => {
  it("cancel queues the cancel for the worker that has the definition; errors for unknown and ended sagas", async () => {
    const id = await start("holdable", { tag: "c1" });
    await t.engine.waitFor(id, { timeoutMs: 10_000, states: ["running"] });
    await expect
      .poll(async () => (await t.engine.get(id))?.steps[0]?.status, { timeout: 10_000 })
      .toBe("running");
    const { rows } = await db.pool.query("select saga.cancel($1, 'customer asked') as state", [id]);
    expect(rows[0].state).toBe("running");
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("cancelled");
    expect(done.error).toMatchObject({ code: "CANCELLED", message: "customer asked" });
    expect(await eventTrail(db, id)).toContain("saga.cancelled");
    expect((await sqlError("select saga.cancel($1, 'again')", [id])).code).toBe("SG410");
    expect((await sqlError("select saga.cancel(gen_random_uuid(), 'x')")).code).toBe("SG404");
  });

  it("retry resumes a failed saga from its failed step, the same transition as engine.retry()", async () => {
    broken.add("r1");
    broken.add("r2");
    const a = await start("fragile", { tag: "r1" });
    const b = await start("fragile", { tag: "r2" });
    for (const id of [a, b]) expect((await t.engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("failed");
    // Still broken: both fail again, one retried from SQL, one from TypeScript; the rows and events match.
    const { rows } = await db.pool.query("select saga.retry($1, 'card updated') as state", [a]);
    expect(rows[0].state).toBe("running");
    await t.engine.retry(b, { by: "root", reason: "card updated" });
    for (const id of [a, b]) expect((await t.engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("failed");
    const shape = async (id: string) => {
      const steps = await db.pool.query(
        "select index, name, status, attempt, attempt_base from saga.steps where saga_id = $1 order by index",
        [id],
      );
      const events = await db.pool.query<{ type: string; payload: Record<string, unknown> }>(
        "select seq, type, step, payload from saga.events where saga_id = $1 order by seq",
        [id],
      );
      // Durations differ between the two runs; the retry event is the transition under test.
      return {
        steps: steps.rows,
        events: events.rows.map((e) => (e.type === "saga.step.retrying" ? e : { ...e, payload: null })),
      };
    };
    expect(await shape(a)).toEqual(await shape(b));
    expect((await shape(a)).events.find((e) => e.type === "saga.step.retrying")?.payload).toMatchObject({
      manual: true,
      by: "root",
      reason: "card updated",
      attempt: 1,
    });
    broken.delete("r1");
    await db.pool.query("select saga.retry($1)", [a]);
    expect((await t.engine.waitFor(a, { timeoutMs: 20_000 })).state).toBe("completed");
    expect((await sqlError("select saga.retry($1)", [a])).code).toBe("SG412");
    expect((await sqlError("select saga.retry(gen_random_uuid())")).code).toBe("SG404");
  });

  it("retry resumes the compensations of a compensation_failed saga", async () => {
    broken.add("undo:u1");
    const id = await start("undoable", { tag: "u1" });
    const failed = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(failed.state).toBe("compensation_failed");
    broken.delete("undo:u1");
    const { rows } = await db.pool.query("select saga.retry($1) as state", [id]);
    expect(rows[0].state).toBe("compensating");
    const done = await t.engine.waitFor(id, { timeoutMs: 20_000 });
    expect(done.state).toBe("compensated");
    expect(done.error).toMatchObject({ code: "DECLINED" });
    expect(done.steps.map((s) => s.status)).toEqual(["compensated", "failed"]);
  });
});

describe("saga.retry is queued for the worker", () => {
  it("records who asked and why; with no worker it stays queued, a second retry is refused", async () => {
    await db.pool.query(
      `insert into saga.definitions (name, version, fingerprint, steps) values ('unserved', 1, 'f', '[{"name": "only"}]')`,
    );
    const id = await start("unserved", { tag: "q1" });
    // No worker runs unserved@1: the saga is made failed by hand, as a failed step would leave it.
    await db.pool.query("update saga.instances set state = 'failed' where id = $1", [id]);
    const { rows } = await db.pool.query("select saga.retry($1, 'after the fix') as state", [id]);
    expect(rows[0].state).toBe("running");
    expect((await t.engine.get(id))?.state).toBe("failed");
    const request = await db.pool.query(
      "select reason, requested_by, seq = (select seq from saga.instances where id = $1) as current from saga.retry_requests where saga_id = $1",
      [id],
    );
    const role = await db.pool.query<{ u: string }>("select session_user as u");
    expect(request.rows).toEqual([{ reason: "after the fix", requested_by: role.rows[0]!.u, current: true }]);
    const again = await sqlError("select saga.retry($1)", [id]);
    expect(again).toMatchObject({ code: "SG412", message: expect.stringContaining("already queued") });
    await expect(t.engine.waitFor(id, { timeoutMs: 300 })).rejects.toMatchObject({
      code: "WAIT_TIMEOUT",
      message: expect.stringContaining("retry queued for a worker of unserved@1"),
    });
  });

  it("a request for a saga retried another way since is dropped by the worker: one retry, not two", async () => {
    broken.add("q2");
    const id = await start("fragile", { tag: "q2" });
    expect((await t.engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("failed");
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      await client.query("select saga.retry($1, 'from sql')", [id]);
      // Retried from TypeScript, and failed again, before the SQL request commits: the request is for a saga
      // that moved on (the same state, a later seq).
      await t.engine.retry(id, { by: "root", reason: "from ts" });
      expect((await t.engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("failed");
      await client.query("commit");
    } finally {
      client.release();
    }
    await expect
      .poll(async () => (await db.pool.query("select 1 from saga.retry_requests where saga_id = $1", [id])).rowCount, {
        timeout: 10_000,
      })
      .toBe(0);
    expect((await t.engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("failed");
    expect(await eventPayloads(db, id, "saga.step.retrying")).toEqual([
      expect.objectContaining({ manual: true, by: "root", reason: "from ts" }),
    ]);
  });
});

describe("saga.stuck", () => {
  it("explains each saga that is not moving, and leaves moving ones out", async () => {
    // A version no live worker runs.
    await db.pool.query(
      `insert into saga.definitions (name, version, fingerprint, steps) values ('ghost', 1, 'f', '[{"name": "haunt"}]')`,
    );
    const ghost = await start("ghost", { tag: "g" });
    expect(await stuck(ghost)).toMatchObject({
      reason: "no_worker_for_version",
      step: "haunt",
      state: "running",
    });

    // A step retrying in a minute; a compensation retrying in a minute.
    const retrying = await start("slow", { tag: "retry" });
    const compensating = await start("slow", { tag: "fail" });
    await expect
      .poll(async () => (await stuck(retrying))?.reason, { timeout: 15_000 })
      .toBe("retry_scheduled");
    const r = (await stuck(retrying))!;
    expect(r.step).toBe("charge");
    expect((r.retry_at as Date).getTime()).toBeGreaterThan(Date.now() + 30_000);
    await expect
      .poll(async () => (await stuck(compensating))?.reason, { timeout: 15_000 })
      .toBe("waiting_compensation");
    expect(await stuck(compensating)).toMatchObject({ state: "compensating", step: "reserve" });

    // A saga whose step holds a live lease is moving.
    const held = await start("holdable", { tag: "s1" });
    await expect
      .poll(async () => (await t.engine.get(held))?.steps[0]?.status, { timeout: 10_000 })
      .toBe("running");
    expect(await stuck(held)).toBeUndefined();

    // Hand-made wrecks of a served version: a lease held by a worker that is gone, and a saga with no job.
    const { rows } = await db.pool.query<{ lost: string; orphan: string }>(`
      with lost as (insert into saga.instances (name, version, state, input, seq) values ('holdable', 1, 'running', '{"tag":"x"}', 1) returning id),
           orphan as (insert into saga.instances (name, version, state, input, seq) values ('holdable', 1, 'running', '{"tag":"y"}', 1) returning id),
           step as (insert into saga.steps (saga_id, index, name, status, attempt, lease_owner, lease_expires_at)
                    select id, 0, 'hold', 'running', 1, 'gone-host:1:dead', now() + interval '1 hour' from lost)
      select (select id from lost) as lost, (select id from orphan) as orphan`);
    expect(await stuck(rows[0]!.lost)).toMatchObject({ reason: "lease_expired", step: "hold" });
    expect(await stuck(rows[0]!.orphan)).toMatchObject({ reason: "no_job", step: "hold" });

    released.add("s1");
    for (const id of [retrying, held, ghost]) await t.engine.cancel(id, "test over").catch(() => {});
    await db.pool.query("delete from saga.instances where id = any($1)", [
      [rows[0]!.lost, rows[0]!.orphan, ghost],
    ]);
  });
});
