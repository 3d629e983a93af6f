import { MAX_TIMER_MS, setLongTimeout } from "../long-timer.js";
import { AbortError, type AbortCode, type Outcome } from "../model.js";

/**
 * Calls a handler outside any transaction. It is not waited for past its timeout or a shutdown abort: the
 * attempt ends then, and whatever the handler returns later is ignored (and fenced out by the record).
 * After a cancel or a deadline (`SAGA_CANCELLED`, `SAGA_TIMEOUT`) the handler gets up to `graceMs` to return,
 * since the step's compensation waits for its attempt to end: a handler that honours its signal ends at once.
 */
export async function callHandler(
  fn: (signal: AbortSignal) => unknown,
  controller: AbortController,
  timeoutMs: number | undefined,
  graceMs = 0,
): Promise<Outcome> {
  let cancelTimer: (() => void) | undefined;
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
    cancelTimer = setLongTimeout(
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
  let returned = false;
  void run.then(() => {
    returned = true;
  });
  try {
    const outcome = await Promise.race([run, aborted]);
    const reason: unknown = controller.signal.reason;
    if (graceMs > 0 && !returned && reason instanceof AbortError && interrupted(reason.code)) {
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([run, new Promise((r) => (grace = setTimeout(r, Math.min(graceMs, MAX_TIMER_MS))))]);
      clearTimeout(grace);
    }
    return outcome;
  } finally {
    cancelTimer?.();
  }
}

const interrupted = (code: AbortCode | undefined) => code === "SAGA_CANCELLED" || code === "SAGA_TIMEOUT";
