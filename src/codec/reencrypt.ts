/**
 * `pg-saga reencrypt`: rewrites every encrypted value stored under a key other than the codec's current one.
 * Each value is rewritten on its own, only if it is still the value that was read (a transition that wrote it
 * meanwhile wins), so this runs next to live workers. A value no key of the codec opens stops the run with
 * CODEC_KEY_MISSING or CODEC_DECRYPT_FAILED before it is touched.
 */
import type { Executor } from "../executor.js";
import type { PayloadCodec } from "./codec.js";

interface Target {
  table: string;
  keys: string[];
  column: string;
  /** Path inside the column: [] for the whole value, ["details"] for an error's details. */
  path: string[];
}

const TARGETS: Target[] = [
  { table: "saga.instances", keys: ["id"], column: "input", path: [] },
  { table: "saga.instances", keys: ["id"], column: "data", path: [] },
  { table: "saga.instances", keys: ["id"], column: "result", path: [] },
  { table: "saga.instances", keys: ["id"], column: "error", path: ["details"] },
  { table: "saga.steps", keys: ["saga_id", "index"], column: "output", path: [] },
  { table: "saga.steps", keys: ["saga_id", "index"], column: "error", path: ["details"] },
  { table: "saga.steps", keys: ["saga_id", "index"], column: "compensation_error", path: ["details"] },
  { table: "saga.outbox", keys: ["id"], column: "payload", path: [] },
  { table: "saga.dead_letters", keys: ["id"], column: "event", path: ["payload"] },
];

export interface ReencryptResult {
  /** Values rewritten to the current key, by `table.column`. */
  rewritten: Record<string, number>;
}

export async function reencrypt(
  db: Executor,
  codec: PayloadCodec,
  options: { batchSize?: number } = {},
): Promise<ReencryptResult> {
  const batchSize = options.batchSize ?? 500;
  const rewritten: Record<string, number> = {};
  for (const t of TARGETS) {
    const keyList = t.keys.join(", ");
    // Identifiers come from TARGETS above, never from input.
    const select = `select ${keyList}, ${t.column} #> $1::text[] as v from ${t.table}
      where ${t.column} #>> ($1::text[] || '{$encrypted}') <> $2
        and (${keyList}) > (${t.keys.map((_, i) => `$${i + 4}`).join(", ")})
      order by ${keyList} limit $3`;
    const update = `update ${t.table}
      set ${t.column} = case when cardinality($1::text[]) = 0 then $2::jsonb else jsonb_set(${t.column}, $1::text[], $2::jsonb) end
      where (${keyList}) = (${t.keys.map((_, i) => `$${i + 4}`).join(", ")}) and ${t.column} #> $1::text[] = $3::jsonb`;
    // Below every key: the nil uuid, -1 for a step index, 0 for a bigint id.
    let after: unknown[] = t.keys.map((k) =>
      k === "index"
        ? -1
        : k === "id" && t.table !== "saga.instances"
          ? 0
          : "00000000-0000-0000-0000-000000000000",
    );
    let count = 0;
    for (;;) {
      const { rows } = await db.query<Record<string, unknown> & { v: unknown }>(select, [
        t.path,
        codec.currentKeyId,
        batchSize,
        ...after,
      ]);
      for (const row of rows) {
        const fresh = JSON.stringify(codec.encode(codec.decode(row.v)));
        const keys = t.keys.map((k) => row[k]);
        const done = await db.query(update, [t.path, fresh, JSON.stringify(row.v), ...keys]);
        count += done.rowCount ?? 0;
      }
      if (rows.length < batchSize) break;
      const last = rows[rows.length - 1]!;
      after = t.keys.map((k) => last[k]);
    }
    rewritten[`${t.table}.${t.column}`] = count;
  }
  return { rewritten };
}
