/**
 * saga.definitions and saga.workers: what a worker registers when it starts, its heartbeat, and the rows of
 * workers gone silent. Every query here is by primary key, except the dead-worker delete (a scan of the few
 * worker rows).
 */
import type { Executor } from "../executor.js";

/** A worker's row as it registers it. */
export interface WorkerRow {
  id: string;
  hostname: string;
  pid: number;
  /** `name@version` of every definition it runs. */
  sagas: readonly string[];
}

/** A definition's steps as saga.definitions records them. */
export interface DefinitionRow {
  name: string;
  version: number;
  fingerprint: string;
  steps: { name: string; transactional: boolean; compensates: boolean }[];
  timeoutMs: number | null;
}

/**
 * Records a definition, or refreshes its registration time when the same steps are registered again. False
 * when `name@version` is registered with another fingerprint (other steps under the same version).
 */
export async function registerDefinition(db: Executor, def: DefinitionRow): Promise<boolean> {
  const { rows } = await db.query<{ fingerprint: string }>(
    `insert into saga.definitions as d (name, version, fingerprint, steps, timeout_ms) values ($1, $2, $3, $4, $5)
     on conflict (name, version) do update set registered_at = now() where d.fingerprint = excluded.fingerprint
     returning d.fingerprint`,
    [def.name, def.version, def.fingerprint, JSON.stringify(def.steps), def.timeoutMs],
  );
  return rows.length > 0;
}

export async function insertWorker(db: Executor, w: WorkerRow): Promise<void> {
  await db.query("insert into saga.workers (id, hostname, pid, sagas) values ($1, $2, $3, $4)", [
    w.id,
    w.hostname,
    w.pid,
    JSON.stringify(w.sagas),
  ]);
}

/**
 * A heartbeat, with the graphile-worker ids its jobs are locked under. A worker presumed dead (paused past the
 * threshold, its row reaped) comes back with a new row: its old leases are gone.
 */
export async function heartbeat(db: Executor, w: WorkerRow, jobLockIds: readonly string[]): Promise<void> {
  await db.query(
    `insert into saga.workers (id, hostname, pid, sagas, job_worker_ids) values ($1, $2, $3, $4, $5)
     on conflict (id) do update set heartbeat_at = now(), job_worker_ids = excluded.job_worker_ids`,
    [w.id, w.hostname, w.pid, JSON.stringify(w.sagas), jobLockIds],
  );
}

export async function deleteWorker(db: Executor, id: string): Promise<void> {
  await db.query("delete from saga.workers where id = $1", [id]);
}

/** Deletes the workers silent for `deadAfterMs`; returns the graphile-worker ids their jobs are locked under. */
export async function deleteDeadWorkers(
  db: Executor,
  deadAfterMs: number,
): Promise<{ workers: number; jobLockIds: string[] }> {
  const { rows } = await db.query<{ job_worker_ids: string[] }>(
    `delete from saga.workers where heartbeat_at < now() - $1 * interval '1 millisecond'
     returning job_worker_ids`,
    [deadAfterMs],
  );
  return { workers: rows.length, jobLockIds: rows.flatMap((r) => r.job_worker_ids) };
}
