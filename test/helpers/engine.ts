import { afterAll, beforeAll } from "vitest";
import {
  type AnySaga,
  type SagaEngine,
  type SagaWorker,
  type WorkerOptions,
  createSagaEngine,
} from "../../src/index.js";
import type { TestDatabase } from "./database.js";

export interface TestEngine {
  engine: SagaEngine;
  worker: SagaWorker;
}

/** An engine with an in-process worker for the file's sagas; both closed after the file. */
export function useEngine(db: TestDatabase, sagas: () => AnySaga[], options: WorkerOptions = {}): TestEngine {
  const handle = {} as TestEngine;
  beforeAll(async () => {
    handle.engine = createSagaEngine({ connectionString: db.url, sagas: sagas() });
    handle.worker = await handle.engine.runWorker({ concurrency: 8, pollInterval: 100, ...options });
  });
  afterAll(async () => {
    await handle.worker?.stop();
    await handle.engine?.close();
  });
  return handle;
}

/** The saga's events as "type" or "type:step", in seq order. */
export async function eventTrail(db: TestDatabase, sagaId: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ type: string; step: string | null; seq: number }>(
    "select type, step, seq from saga.events where saga_id = $1 order by seq",
    [sagaId],
  );
  rows.forEach((r, i) => {
    if (r.seq !== i + 1)
      throw new Error(`event seq gap in saga ${sagaId}: ${rows.map((x) => x.seq).join(",")}`);
  });
  return rows.map((r) => (r.step ? `${r.type}:${r.step}` : r.type));
}

export async function eventPayloads(
  db: TestDatabase,
  sagaId: string,
  type: string,
): Promise<Record<string, unknown>[]> {
  const { rows } = await db.pool.query<{ payload: Record<string, unknown> }>(
    "select payload from saga.events where saga_id = $1 and type = $2 order by seq",
    [sagaId, type],
  );
  return rows.map((r) => r.payload);
}
