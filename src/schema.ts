/**
 * The tables of schema `saga`. drizzle-kit generates `migrations/` from this file; functions, triggers and
 * views live in `sql/` and ship as custom migrations. The stable, documented columns are those of DESIGN.md.
 */
import { sql } from "drizzle-orm";
import {
  bigint,
  customType,
  index,
  integer,
  jsonb,
  pgSchema,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

const xid8 = customType<{ data: string }>({ dataType: () => "xid8" });
const pgSnapshot = customType<{ data: string }>({ dataType: () => "pg_snapshot" });
const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const sagaSchema = pgSchema("saga");

export const instances = sagaSchema.table(
  "instances",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    name: text("name").notNull(),
    version: integer("version").notNull(),
    state: text("state").notNull(),
    input: jsonb("input").notNull(),
    data: jsonb("data"),
    result: jsonb("result"),
    error: jsonb("error"),
    /** The step being executed, or the last one compensated. */
    currentStep: integer("current_step").notNull().default(0),
    /** Why the saga is compensating: failure, cancel or timeout. */
    compensationCause: text("compensation_cause"),
    idempotencyKey: text("idempotency_key"),
    parentId: uuid("parent_id"),
    /** A child saga started by a `.child()` step: that step's index in the parent (null for other sagas). */
    parentStep: integer("parent_step"),
    deadline: tstz("deadline"),
    /** Bumped by every transition; also the per-saga event sequence. */
    seq: integer("seq").notNull().default(0),
    metadata: jsonb("metadata")
      .notNull()
      .default(sql`'{}'::jsonb`),
    traceContext: text("trace_context"),
    /** Opt-in tenant isolation: row-level security (sql/security.sql) shows a session with saga.tenant set only its own. */
    tenant: text("tenant"),
    /** When a step waiting to retry runs again (database clock). */
    nextAttemptAt: tstz("next_attempt_at"),
    createdAt: tstz("created_at").notNull().defaultNow(),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
    finishedAt: tstz("finished_at"),
  },
  (t) => [
    uniqueIndex("instances_name_idempotency_key_key").on(t.name, t.idempotencyKey),
    // list(): keyset pagination by (created_at, id), optionally per state.
    index("instances_created_at_id_idx").on(t.createdAt, t.id),
    index("instances_state_created_at_idx").on(t.state, t.createdAt, t.id),
    index("instances_parent_id_idx")
      .on(t.parentId)
      .where(sql`${t.parentId} is not null`),
    // One child per parent step: a retried transition finds the child its first try started.
    uniqueIndex("instances_parent_id_parent_step_key")
      .on(t.parentId, t.parentStep)
      .where(sql`${t.parentStep} is not null`),
  ],
);

export const steps = sagaSchema.table(
  "steps",
  {
    sagaId: uuid("saga_id")
      .notNull()
      .references(() => instances.id, { onDelete: "cascade" }),
    index: integer("index").notNull(),
    /** The step's group (a plain step is a group of one; `.parallel()` branches share one). Null on rows written before groups existed: read `coalesce("group", index)`. */
    group: integer("group"),
    name: text("name").notNull(),
    status: text("status").notNull(),
    /** Execution attempts so far; the fence of invariant 3. */
    attempt: integer("attempt").notNull().default(0),
    /** Attempts that a manual retry wrote off: the budget is `attempt - attempt_base`. */
    attemptBase: integer("attempt_base").notNull().default(0),
    compensationAttempt: integer("compensation_attempt").notNull().default(0),
    compensationAttemptBase: integer("compensation_attempt_base").notNull().default(0),
    leaseOwner: text("lease_owner"),
    leaseExpiresAt: tstz("lease_expires_at"),
    output: jsonb("output"),
    error: jsonb("error"),
    compensationError: jsonb("compensation_error"),
    nextAttemptAt: tstz("next_attempt_at"),
    startedAt: tstz("started_at"),
    finishedAt: tstz("finished_at"),
    compensationStartedAt: tstz("compensation_started_at"),
    compensationFinishedAt: tstz("compensation_finished_at"),
  },
  (t) => [
    primaryKey({ columns: [t.sagaId, t.index] }),
    // The reaper looks only at leased steps: a small partial index.
    index("steps_lease_owner_idx")
      .on(t.leaseOwner)
      .where(sql`${t.leaseOwner} is not null`),
  ],
);

export const outbox = sagaSchema.table(
  "outbox",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    /** The writing transaction: readers take the events visible in a new snapshot and not in their last one. */
    xid: xid8("xid")
      .notNull()
      .default(sql`pg_current_xact_id()`),
    sagaId: uuid("saga_id"),
    seq: integer("seq"),
    type: text("type").notNull(),
    step: text("step"),
    /** The saga's name, or null for an application event. */
    name: text("name"),
    key: text("key"),
    payload: jsonb("payload")
      .notNull()
      .default(sql`'{}'::jsonb`),
    /** The saga's tenant (or the publishing session's saga.tenant), for row-level security. */
    tenant: text("tenant"),
    createdAt: tstz("created_at").notNull().defaultNow(),
  },
  (t) => [index("outbox_xid_id_idx").on(t.xid, t.id), index("outbox_saga_id_seq_idx").on(t.sagaId, t.seq)],
);

/**
 * Durable consumers and the relay: one cursor each, with a lease so one process consumes at a time. A cursor
 * is a snapshot tick: every event visible in `tick` is consumed. A batch in progress is the events visible in
 * `batch_tick` and not in `tick`, consumed up to (cursor_xid, cursor_id) in (xid, id) order, plus `ahead`
 * (ids delivered early to keep one saga's events in seq order).
 */
export const subscriptions = sagaSchema.table("subscriptions", {
  name: text("name").primaryKey(),
  cursorXid: xid8("cursor_xid")
    .notNull()
    .default(sql`'0'::xid8`),
  cursorId: bigint("cursor_id", { mode: "number" }).notNull().default(0),
  /** Nothing consumed yet: no transaction id is below 1. */
  tick: pgSnapshot("tick")
    .notNull()
    .default(sql`'1:1:'::pg_snapshot`),
  batchTick: pgSnapshot("batch_tick"),
  ahead: bigint("ahead", { mode: "number" })
    .array()
    .notNull()
    .default(sql`'{}'::bigint[]`),
  epoch: bigint("epoch", { mode: "number" }).notNull().default(0),
  owner: text("owner"),
  leaseExpiresAt: tstz("lease_expires_at"),
  filter: jsonb("filter")
    .notNull()
    .default(sql`'{}'::jsonb`),
  createdAt: tstz("created_at").notNull().defaultNow(),
  updatedAt: tstz("updated_at").notNull().defaultNow(),
});

export const deadLetters = sagaSchema.table(
  "dead_letters",
  {
    id: bigint("id", { mode: "number" }).primaryKey().generatedAlwaysAsIdentity(),
    subscription: text("subscription").notNull(),
    eventId: bigint("event_id", { mode: "number" }).notNull(),
    event: jsonb("event").notNull(),
    error: jsonb("error").notNull(),
    attempts: integer("attempts").notNull(),
    createdAt: tstz("created_at").notNull().defaultNow(),
    /** When `redrive()` asked for it again; cleared if that delivery fails too. */
    redrivenAt: tstz("redriven_at"),
    /** When a redrive delivered it: the row stays as history. */
    deliveredAt: tstz("delivered_at"),
  },
  (t) => [index("dead_letters_subscription_idx").on(t.subscription, t.id)],
);

/** Live workers: a heartbeat each; the reaper recovers the steps of those that went silent. */
export const workers = sagaSchema.table("workers", {
  id: text("id").primaryKey(),
  hostname: text("hostname").notNull(),
  pid: integer("pid").notNull(),
  /** `name@version` of every definition the worker runs. */
  sagas: jsonb("sagas")
    .notNull()
    .default(sql`'[]'::jsonb`),
  /** graphile-worker's own worker ids, for force_unlock_workers when this one dies. */
  jobWorkerIds: text("job_worker_ids")
    .array()
    .notNull()
    .default(sql`'{}'::text[]`),
  startedAt: tstz("started_at").notNull().defaultNow(),
  heartbeatAt: tstz("heartbeat_at").notNull().defaultNow(),
});

/** Definitions that workers registered: saga.start() from SQL checks names against them. */
export const definitions = sagaSchema.table(
  "definitions",
  {
    name: text("name").notNull(),
    version: integer("version").notNull(),
    fingerprint: text("fingerprint").notNull(),
    steps: jsonb("steps").notNull(),
    timeoutMs: bigint("timeout_ms", { mode: "number" }),
    registeredAt: tstz("registered_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.name, t.version] })],
);

/**
 * Cancels asked for while the saga's row was locked (a transactional step holds that lock while its handler
 * runs): written without touching the instance row, read by the worker running the step, which aborts it, and
 * by the cancel job, which performs the cancel and deletes the request. No foreign key on purpose: its check
 * would take a key-share lock on the instance row and wait for that same lock.
 */
export const cancelRequests = sagaSchema.table("cancel_requests", {
  sagaId: uuid("saga_id").primaryKey(),
  reason: text("reason").notNull(),
  /** Who asked (the audit `by` of saga.cancelled): the session's role, or `parent saga <id>`. */
  requestedBy: text("requested_by"),
  requestedAt: tstz("requested_at").notNull().defaultNow(),
});

/**
 * Retries asked for from SQL (saga.retry in sql/operator.sql): the worker that has the saga's definition
 * performs them with the same code as engine.retry() (src/worker/resume.ts) and deletes the request. `seq` is
 * the saga's event sequence when it was asked: a request for a saga that has moved on since is dropped. No
 * foreign key, as for cancel_requests: its check would take a key-share lock on the instance row.
 */
export const retryRequests = sagaSchema.table("retry_requests", {
  sagaId: uuid("saga_id").primaryKey(),
  seq: integer("seq").notNull(),
  reason: text("reason"),
  requestedBy: text("requested_by").notNull(),
  requestedAt: tstz("requested_at").notNull().defaultNow(),
});
