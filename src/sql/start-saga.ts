import { sqlState } from "../db.js";
import { SagaError } from "../errors.js";
import type { Executor } from "../executor.js";

export interface StartRow {
  id: string;
  created: boolean;
}

/** One round trip in the caller's transaction: instance, saga.started event, first job (sql/functions.sql). */
export async function startSaga(
  db: Executor,
  args: {
    name: string;
    version: number;
    input: string;
    idempotencyKey: string | null;
    metadata: string;
    timeoutMs: number | null;
    traceContext: string | null;
    parentId: string | null;
    tenant: string | null;
  },
): Promise<StartRow> {
  const params = [
    args.name,
    args.version,
    args.input,
    args.idempotencyKey,
    args.metadata,
    args.timeoutMs,
    args.traceContext,
    args.parentId,
  ];
  // Without a tenant, the call an older schema (no p_tenant argument) answers too: the new one defaults it.
  const { rows } = await db
    .query<StartRow>(
      args.tenant === null
        ? "select id, created from saga._start($1, $2, $3::jsonb, $4, $5::jsonb, $6, $7, $8::uuid, true)"
        : "select id, created from saga._start($1, $2, $3::jsonb, $4, $5::jsonb, $6, $7, $8::uuid, true, $9)",
      args.tenant === null ? params : [...params, args.tenant],
    )
    .catch((err: unknown) => {
      // Tenant isolation (sql/functions.sql): another tenant than the session's, or a key another tenant holds.
      const message = err instanceof Error ? err.message : String(err);
      if (sqlState(err) === "SG400") throw new SagaError("INVALID_OPTIONS", message, { cause: err });
      if (sqlState(err) === "SG409") throw new SagaError("IDEMPOTENCY_CONFLICT", message, { cause: err });
      throw err;
    });
  const row = rows[0];
  if (!row) throw new Error("saga._start returned no row");
  return row;
}
