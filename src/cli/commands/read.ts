/** `pg-saga list` and `pg-saga show <id>`: sagas as tables, and one saga's timeline. */
import type { SagaInstance, SagaState, SagaStepView } from "../../engine.js";
import { sagaKey } from "../../definition.js";
import { toMs } from "../../duration.js";
import { SAGA_STATES } from "../../model.js";
import { CliError, type Cli } from "../context.js";
import { between, brief, formatDuration, formatError, formatTime, paintState, table } from "../format.js";

const STATES: readonly SagaState[] = SAGA_STATES;

export interface ListCommandOptions {
  state?: string[];
  name?: string[];
  since?: string;
  until?: string;
  metadata?: string;
  limit: string;
  cursor?: string;
  order: string;
}

/** Commander collector for repeatable, comma-separated values. */
export const collect = (value: string, previous: string[] = []) => [
  ...previous,
  ...value
    .split(",")
    .map((v) => v.trim())
    .filter(Boolean),
];

/**
 * A time as an ISO date or as an age (`15m`, `2h`, `7d` ago).
 *
 * @example
 * parseTime("1h", "--since") // one hour ago
 */
export function parseTime(value: string, flag: string): Date {
  if (/^\d+(\.\d+)?\s*(ms|s|m|h|d)$/.test(value.trim())) return new Date(Date.now() - toMs(value, flag));
  const date = new Date(value);
  if (Number.isNaN(date.getTime()))
    throw new CliError(
      "INVALID_OPTIONS",
      `${flag} ${JSON.stringify(value)} is neither a date nor an age like 15m, 2h, 7d`,
      2,
    );
  return date;
}

export function parseInteger(value: string, flag: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new CliError(
      "INVALID_OPTIONS",
      `${flag} must be an integer from ${min} to ${max}; got ${JSON.stringify(value)}`,
      2,
    );
  return n;
}

export async function listCommand(cli: Cli, o: ListCommandOptions): Promise<void> {
  const states = o.state ?? [];
  const unknown = states.filter((s) => !STATES.includes(s as SagaState));
  if (unknown.length > 0)
    throw new CliError(
      "INVALID_OPTIONS",
      `unknown state ${unknown.join(", ")}; states are ${STATES.join(", ")}`,
      2,
    );
  if (o.order !== "asc" && o.order !== "desc")
    throw new CliError("INVALID_OPTIONS", `--order must be asc or desc; got ${JSON.stringify(o.order)}`, 2);
  let metadata: Record<string, unknown> | undefined;
  if (o.metadata !== undefined) {
    try {
      metadata = JSON.parse(o.metadata) as Record<string, unknown>;
    } catch {
      throw new CliError("INVALID_OPTIONS", `--metadata must be a JSON object, such as '{"tenant":"t1"}'`, 2);
    }
  }
  const page = await cli.engine().list({
    ...(states.length > 0 ? { states: states as SagaState[] } : {}),
    ...(o.name && o.name.length > 0 ? { names: o.name } : {}),
    ...(o.since ? { createdAfter: parseTime(o.since, "--since") } : {}),
    ...(o.until ? { createdBefore: parseTime(o.until, "--until") } : {}),
    ...(metadata ? { metadata } : {}),
    limit: parseInteger(o.limit, "--limit", 1, 1000),
    cursor: o.cursor ?? null,
    order: o.order,
  });
  cli.print({ items: [...page], nextCursor: page.nextCursor }, () => {
    if (page.length === 0) return cli.c.dim("no sagas match");
    const rows = page.map((s) => [
      s.id,
      sagaKey(s.name, s.version),
      paintState(cli.c, s.state),
      formatTime(s.createdAt),
      formatDuration(between(s.createdAt, s.finishedAt ?? new Date())),
      formatError(s.error),
    ]);
    const text = table(["id", "saga", "state", "created", "age/took", "error"], rows, cli.c);
    return page.nextCursor ? `${text}\n${cli.c.dim(`more: pg-saga list --cursor ${page.nextCursor}`)}` : text;
  });
}

interface EventRow {
  id: string;
  seq: number;
  type: string;
  step: string | null;
  payload: unknown;
  created_at: Date;
}

export async function showCommand(cli: Cli, id: string): Promise<void> {
  const engine = cli.engine();
  const saga = await engine.get(id);
  if (!saga) throw new CliError("SAGA_NOT_FOUND", `no saga with id ${id}`);
  // engine.get() without the definition lists only the steps that ran; the registered definition names the rest.
  const [definition, events] = await Promise.all([
    engine.pool.query<{ steps: { name: string }[] }>(
      "select steps from saga.definitions where name = $1 and version = $2",
      [saga.name, saga.version],
    ),
    engine.pool.query<EventRow>(
      "select id::text, seq, type, step, payload, created_at from saga.events where saga_id = $1 order by seq",
      [id],
    ),
  ]);
  const steps = withUnreachedSteps(saga, definition.rows[0]?.steps ?? []);
  cli.print({ saga: { ...saga, steps }, events: events.rows }, () =>
    renderTimeline(cli, saga, steps, events.rows),
  );
}

function withUnreachedSteps(saga: SagaInstance, defined: { name: string }[]): SagaStepView[] {
  const steps = [...saga.steps];
  const ended = saga.finishedAt !== null;
  defined.forEach((d, index) => {
    if (steps.some((s) => s.index === index)) return;
    steps.push({
      name: d.name,
      index,
      status: ended ? "skipped" : "pending",
      attempt: 0,
      compensationAttempt: 0,
      output: null,
      error: null,
      compensationError: null,
      nextAttemptAt: null,
      startedAt: null,
      finishedAt: null,
      compensationStartedAt: null,
      compensationFinishedAt: null,
    });
  });
  return steps.sort((a, b) => a.index - b.index);
}

function renderTimeline(cli: Cli, saga: SagaInstance, steps: SagaStepView[], events: EventRow[]): string {
  const { c } = cli;
  const lines = [
    `${c.bold(`saga ${saga.id}`)}  ${sagaKey(saga.name, saga.version)}  ${paintState(c, saga.state)}`,
    `  created ${formatTime(saga.createdAt)}   updated ${formatTime(saga.updatedAt)}   ${
      saga.finishedAt
        ? `finished ${formatTime(saga.finishedAt)} (took ${formatDuration(between(saga.createdAt, saga.finishedAt))})`
        : `running for ${formatDuration(between(saga.createdAt, new Date()))}`
    }`,
  ];
  if (saga.error)
    lines.push(
      `  error: ${c.red(formatError(saga.error))}${saga.error.step ? ` (step ${saga.error.step})` : ""}`,
    );
  if (saga.idempotencyKey) lines.push(`  idempotency key: ${saga.idempotencyKey}`);
  if (saga.deadline) lines.push(`  deadline: ${formatTime(saga.deadline)}`);
  if (saga.parentId) lines.push(`  parent: ${saga.parentId}`);
  if (Object.keys(saga.metadata ?? {}).length > 0) lines.push(`  metadata: ${brief(saga.metadata, 120)}`);
  lines.push("", c.bold("steps"));
  lines.push(
    table(
      ["#", "step", "status", "attempts", "took", "error", "compensation", "took", "compensation error"],
      steps.map((s) => [
        String(s.index),
        s.name,
        paintState(c, s.status),
        String(s.attempt),
        formatDuration(between(s.startedAt, s.finishedAt)),
        formatError(s.error) + (s.nextAttemptAt ? ` (retry at ${formatTime(s.nextAttemptAt)})` : ""),
        s.compensationAttempt > 0 ? `${s.compensationAttempt} attempt(s)` : "",
        s.compensationAttempt > 0
          ? formatDuration(between(s.compensationStartedAt, s.compensationFinishedAt))
          : "",
        formatError(s.compensationError),
      ]),
      c,
      48,
    ),
  );
  lines.push("", c.bold("events"));
  const first = events[0]?.created_at;
  lines.push(
    table(
      ["seq", "at", "+", "type", "step", "payload"],
      events.map((e) => [
        String(e.seq),
        formatTime(e.created_at),
        formatDuration(between(first, e.created_at)),
        e.type,
        e.step ?? "",
        brief(e.payload, 70),
      ]),
      c,
      72,
    ),
  );
  return lines.join("\n");
}
