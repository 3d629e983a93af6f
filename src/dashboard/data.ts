/** The data behind each page, shared by the JSON API and the HTML pages. */
import { withTransaction } from "../db.js";
import { toMs } from "../duration.js";
import type { Executor } from "../executor.js";
import { checkHealth } from "../health.js";
import { SagaError } from "../errors.js";
import { type SagaInstance, toInstance } from "../instance-view.js";
import { decodeCursor, encodeCursor } from "../list-options.js";
import { isUuid } from "../model.js";
import { type StuckSaga, readStuck } from "../sql/stuck-sagas.js";
import type { HealthReport } from "../health.js";
import type { DeadLetter } from "../relay/types.js";
import {
  type ChartBucket,
  type EventRow,
  type ListQuery,
  type StateCount,
  STATES,
  countsByName,
  deadLetterCounts,
  lastHour,
  listPage,
  sagaChildren,
  sagaEvents,
  sagaNames,
  stateCounts,
} from "./queries.js";
import type { DashboardEngine } from "./types.js";

const WATCHED = ["running", "compensating", "failed", "compensation_failed"];

export interface Overview {
  states: StateCount[];
  names: string[];
  byName: { name: string; state: string; count: number }[];
  lastHour: ChartBucket[];
  health: HealthReport;
}

/**
 * Reads on one connection with JIT off: with millions of rows the planner's estimates for these bounded reads
 * are large enough to trigger JIT compilation, which cost a second (the relay lag query) for a few ms of work.
 */
function withoutJit<T>(engine: DashboardEngine, fn: (db: Executor) => Promise<T>): Promise<T> {
  return withTransaction(engine.pool, (db) => fn(db), 2, "set local jit = off");
}

export async function overview(engine: DashboardEngine): Promise<Overview> {
  const [health, counts] = await Promise.all([
    withoutJit(engine, (db) => checkHealth(db, { timeoutMs: 2_000 })),
    withoutJit(engine, async (db) => {
      const states = await stateCounts(db);
      const names = await sagaNames(db);
      const hour = await lastHour(db);
      // Only states whose count stayed under the cap: their by-name counts read few rows.
      const countable = states.filter((s) => WATCHED.includes(s.state) && !s.capped && s.count > 0);
      const byName = await countsByName(
        db,
        countable.map((s) => s.state),
      );
      return { states, names, hour, byName };
    }),
  ]);
  return { states: counts.states, names: counts.names, byName: counts.byName, lastHour: counts.hour, health };
}

/** The list's filters as they appear in the URL (also the JSON API's query string). */
export interface ListParams {
  state?: string;
  name?: string;
  version?: string;
  since?: string;
  until?: string;
  meta?: string;
  q?: string;
  cursor?: string;
  order?: string;
  limit?: string;
}

export const LIST_PARAMS = [
  "state",
  "name",
  "version",
  "since",
  "until",
  "meta",
  "q",
  "order",
  "limit",
] as const;

function bad(message: string): never {
  throw new SagaError("INVALID_OPTIONS", message);
}

/** An ISO time or an age (15m, 2h, 7d). */
function parseTime(value: string, field: string): Date {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/.test(value.trim())) return new Date(Date.now() - toMs(value, field));
  const date = new Date(value);
  if (Number.isNaN(date.getTime()))
    bad(`${field} ${JSON.stringify(value)} is neither a time nor an age like 15m, 2h, 7d`);
  return date;
}

const list = (v: string | undefined) =>
  v === undefined || v.trim() === ""
    ? null
    : v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);

export function parseListParams(p: ListParams): ListQuery & { id: string | null } {
  const states = list(p.state);
  for (const s of states ?? [])
    if (!(STATES as readonly string[]).includes(s))
      bad(`state ${JSON.stringify(s)} is not one of ${STATES.join(", ")}`);
  const version = p.version?.trim() ? Number(p.version) : null;
  if (version !== null && (!Number.isInteger(version) || version < 1))
    bad("version must be a positive integer");
  const limit = p.limit?.trim() ? Number(p.limit) : 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) bad("limit must be an integer from 1 to 500");
  let metadata: string | null = null;
  if (p.meta?.trim()) {
    const at = p.meta.indexOf("=");
    if (at <= 0) bad('meta must be key=value, e.g. "tenant=acme"');
    metadata = JSON.stringify({ [p.meta.slice(0, at).trim()]: p.meta.slice(at + 1).trim() });
  }
  const q = p.q?.trim() || null;
  const order =
    p.order === "asc"
      ? "asc"
      : p.order === undefined || p.order === "" || p.order === "desc"
        ? "desc"
        : bad("order is asc or desc");
  return {
    states,
    names: list(p.name),
    version,
    createdAfter: p.since?.trim() ? parseTime(p.since, "since") : null,
    createdBefore: p.until?.trim() ? parseTime(p.until, "until") : null,
    metadata,
    id: q !== null && isUuid(q) ? q : null,
    idempotencyKey: q !== null && !isUuid(q) ? q : null,
    cursor: p.cursor ? decodeCursor(p.cursor) : null,
    limit,
    order,
  };
}

export type SagaSummary = Omit<SagaInstance, "steps">;

export async function listSagas(
  engine: DashboardEngine,
  p: ListParams,
): Promise<{ items: SagaSummary[]; nextCursor: string | null }> {
  const query = parseListParams(p);
  if (query.id !== null) {
    const saga = await engine.get(query.id);
    if (!saga) return { items: [], nextCursor: null };
    const { steps: _steps, ...rest } = saga;
    return { items: [rest], nextCursor: null };
  }
  const rows = await listPage(engine.pool, query);
  const items = rows.map((r) => {
    const { steps: _steps, ...rest } = toInstance(r, [], undefined);
    return rest;
  });
  const last = rows[rows.length - 1];
  return { items, nextCursor: last && rows.length === query.limit ? encodeCursor(last) : null };
}

export interface Detail {
  saga: SagaInstance;
  events: EventRow[];
  children: { id: string; name: string; state: string }[];
}

export async function sagaDetail(engine: DashboardEngine, id: string): Promise<Detail | null> {
  const saga = await engine.get(id);
  if (!saga) return null;
  const [events, children] = await Promise.all([sagaEvents(engine.pool, id), sagaChildren(engine.pool, id)]);
  return { saga, events, children };
}

export async function stuck(engine: DashboardEngine, name?: string): Promise<StuckSaga[]> {
  return readStuck(engine.pool, { ...(name ? { name } : {}), limit: 500 });
}

export async function deadLetters(
  engine: DashboardEngine,
  subscription?: string,
): Promise<{ subscriptions: { subscription: string; count: number }[]; letters: DeadLetter[] }> {
  const subscriptions = await deadLetterCounts(engine.pool);
  const names = subscription ? [subscription] : subscriptions.map((s) => s.subscription);
  const letters = (await Promise.all(names.map((n) => engine.deadLetters(n, { limit: 200 })))).flat();
  return { subscriptions, letters };
}
