/** What a worker registers before it takes work: its definitions (checked against the recorded ones). */
import type { AnySaga } from "../definition.js";
import { SagaError } from "../errors.js";
import type { Executor } from "../executor.js";
import { registerDefinition } from "../sql/workers.js";

/** The graphile-worker task that runs a definition's version (saga._task in SQL). */
export const sagaTask = (def: AnySaga) => `saga:${def.key}`;

/** Records each definition; refuses one whose steps changed under the same version number. */
export async function registerDefinitions(db: Executor, sagas: readonly AnySaga[]): Promise<void> {
  for (const def of sagas) {
    const steps = def.steps.map((s) => ({
      name: s.name,
      transactional: s.transactional,
      compensates: s.compensate !== undefined,
    }));
    const { name, version, fingerprint } = def;
    if (
      !(await registerDefinition(db, { name, version, fingerprint, steps, timeoutMs: def.timeoutMs ?? null }))
    )
      throw new SagaError(
        "DEFINITION_MISMATCH",
        `saga "${def.name}" version ${def.version} is registered with other steps; bump its version (running instances keep the old one)`,
      );
  }
}
