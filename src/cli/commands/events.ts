/**
 * `pg-saga events [--follow]`: the event log. Reads like the outbox relay (invariant 6): in (xid, id) order and
 * only below the oldest transaction still open, so following never skips an event that commits late.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CliError, type Cli } from "../context.js";
import { isUuid } from "../../model.js";
import { brief, formatTime } from "../format.js";
import { parseInteger } from "./read.js";

export interface EventsCommandOptions {
  saga?: string;
  name?: string[];
  type?: string[];
  from?: string;
  limit: string;
  follow?: boolean;
  interval: string;
}

interface EventRow {
  id: string;
  xid: string;
  sagaId: string | null;
  seq: number | null;
  type: string;
  step: string | null;
  name: string | null;
  payload: unknown;
  createdAt: Date;
}

const COLUMNS = `o.id::text as id, o.xid::text as xid, o.saga_id as "sagaId", o.seq, o.type, o.step, o.name, o.payload,
  o.created_at as "createdAt"`;

// `type` filters match exactly, or by prefix when they end in `*` (compensation.*).
const FILTERS = `($1::uuid is null or o.saga_id = $1)
  and ($2::text[] is null or o.name = any($2))
  and ($3::text[] is null or exists (select 1 from unnest($3::text[]) t
        where o.type = t or (right(t, 1) = '*' and starts_with(o.type, left(t, -1)))))
  and o.xid < pg_snapshot_xmin(pg_current_snapshot())`;

// outbox_xid_id_idx: a range scan from the cursor.
const AFTER_SQL = `select ${COLUMNS} from saga.outbox o
  where ${FILTERS} and (o.xid, o.id) > ($4::xid8, $5::bigint)
  order by o.xid, o.id limit $6`;

const TAIL_SQL = `select ${COLUMNS} from saga.outbox o where ${FILTERS} order by o.xid desc, o.id desc limit $4`;

export async function eventsCommand(cli: Cli, o: EventsCommandOptions): Promise<void> {
  if (o.saga !== undefined && !isUuid(o.saga))
    throw new CliError(
      "INVALID_OPTIONS",
      `--saga takes a saga id (a uuid, as pg-saga list prints it); got ${JSON.stringify(o.saga)}`,
      2,
    );
  const pool = cli.engine().pool;
  const limit = parseInteger(o.limit, "--limit", 1, 100_000);
  const interval = parseInteger(o.interval, "--interval", 10, 60_000);
  const filters = [o.saga ?? null, o.name?.length ? o.name : null, o.type?.length ? o.type : null];
  let cursor: { xid: string; id: string } | null = null;
  let batch: EventRow[];
  if (o.from !== undefined) {
    cursor = await positionOf(cli, o.from);
    batch = (await pool.query<EventRow>(AFTER_SQL, [...filters, cursor.xid, cursor.id, limit])).rows;
  } else {
    // The newest `limit` events; following continues after them (or from the start of an empty log: every
    // event that becomes visible later is after anything visible now).
    batch = (await pool.query<EventRow>(TAIL_SQL, [...filters, limit])).rows.reverse();
  }
  if (!cli.json && !o.follow && batch.length === 0) cli.line(cli.c.dim("no events"));
  const emit = (rows: EventRow[]) => {
    for (const e of rows) {
      const { xid: _xid, ...event } = e;
      cli.print(event, () =>
        [
          cli.c.dim(e.id.padStart(6)),
          formatTime(e.createdAt),
          e.sagaId ?? "-",
          e.name ?? "",
          e.seq === null ? "" : `#${e.seq}`,
          cli.c.cyan(e.type),
          e.step ?? "",
          brief(e.payload, 100),
        ]
          .filter((part) => part !== "")
          .join("  "),
      );
      cursor = { xid: e.xid, id: e.id };
    }
  };
  emit(batch);
  if (!o.follow) return;

  let stopped = false;
  const stop = () => {
    stopped = true;
  };
  process.once("SIGINT", stop).once("SIGTERM", stop);
  try {
    while (!stopped) {
      const position: { xid: string; id: string } = cursor ?? { xid: "0", id: "0" };
      const { rows } = await pool.query<EventRow>(AFTER_SQL, [...filters, position.xid, position.id, 1000]);
      emit(rows);
      if (rows.length < 1000) await sleep(interval);
    }
  } finally {
    process.off("SIGINT", stop).off("SIGTERM", stop);
  }
}

/** An event id as a position in (xid, id) order: the events after it are those committed after it. */
async function positionOf(cli: Cli, from: string): Promise<{ xid: string; id: string }> {
  if (from === "0" || from === "start") return { xid: "0", id: "0" };
  if (!/^\d+$/.test(from))
    throw new CliError(
      "INVALID_OPTIONS",
      `--from takes an event id (or "start"); got ${JSON.stringify(from)}`,
      2,
    );
  const { rows } = await cli
    .engine()
    .pool.query<{ xid: string }>("select xid::text as xid from saga.outbox where id = $1", [from]);
  if (!rows[0])
    throw new CliError("EVENT_NOT_FOUND", `no event ${from} in the outbox (removed by retention?)`);
  return { xid: rows[0].xid, id: from };
}
