import type { AnySaga } from "../definition.js";
import { SagaError, toStoredError } from "../errors.js";
import { fromJsonbText, toJsonb } from "../jsonb.js";
import type { Transition } from "./transition.js";

/** Input started from SQL is checked against the zod schema before any step runs. */
export function validateInput(t: Transition, def: AnySaga): boolean {
  if (t.saga.state !== "running" || t.saga.steps.length > 0) return true;
  const parsed = def.inputSchema.safeParse(t.saga.data);
  // The parsed input (defaults, transforms) is stored, so it is what the first step gets wherever it runs.
  const json = parsed.success ? toJsonb(parsed.data ?? null) : null;
  if (json?.ok && json.text !== undefined) {
    t.setInstance({ data: fromJsonbText(json.text) });
    return true;
  }
  const issues = parsed.success
    ? [
        {
          path: [],
          code: "custom",
          message: `the parsed input ${json?.ok === false ? json.message : "is not JSON"}`,
        },
      ]
    : parsed.error.issues.map((i) => ({
        path: i.path.map(String),
        code: i.code,
        message: i.message,
      }));
  const error = toStoredError(
    new SagaError(
      "INVALID_INPUT",
      `input of saga "${def.name}" is invalid: ${issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`,
      { details: { issues } },
    ),
    false,
  );
  t.setState("failed", { error, finished: true });
  t.event("saga.failed", undefined, { error });
  return false;
}
