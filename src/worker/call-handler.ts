import type { FailureKind } from "./decide.js";

export type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown; kind: FailureKind };

/** Why a running handler's signal was aborted; `signal.reason` is an {@link AbortError} with this code. */
export type AbortCode = "STEP_TIMEOUT" | "WORKER_SHUTDOWN" | "SAGA_CANCELLED" | "SAGA_TIMEOUT";

export class AbortError extends Error {
  override readonly name = "AbortError";
  constructor(
    readonly code: AbortCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Calls a handler outside any transaction. It is not waited for past its timeout or an abort: the attempt
 * ends then, and whatever the handler returns later is ignored (and fenced out by the record).
 */
export async function callHandler(
  fn: (signal: AbortSignal) => unknown,
  controller: AbortController,
  timeoutMs: number | undefined,
): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const aborted = new Promise<Outcome>((resolve) => {
    const onAbort = () => {
      const reason: unknown = controller.signal.reason;
      const error = reason instanceof AbortError ? reason : new AbortError("WORKER_SHUTDOWN", "aborted");
      // A step timed out or interrupted may have had its effect: its outcome is unknown.
      resolve({ ok: false, error, kind: error.code === "WORKER_SHUTDOWN" ? "released" : "timeout" });
    };
    if (controller.signal.aborted) onAbort();
    else controller.signal.addEventListener("abort", onAbort, { once: true });
  });
  if (timeoutMs !== undefined)
    timer = setTimeout(
      () =>
        controller.abort(
          new AbortError("STEP_TIMEOUT", `the attempt did not finish within its ${timeoutMs} ms timeout`),
        ),
      timeoutMs,
    );
  const run = (async (): Promise<Outcome> => {
    try {
      return { ok: true, value: await fn(controller.signal) };
    } catch (error) {
      return { ok: false, error, kind: "error" };
    }
  })();
  try {
    return await Promise.race([run, aborted]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
