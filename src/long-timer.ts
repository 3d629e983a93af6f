/**
 * Node fires a timer after at most 2^31 - 1 ms: a longer delay fires after 1 ms instead (with a warning).
 * Step timeouts of 30 days are legitimate, so longer delays are chained.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * `setTimeout` for any delay: chained timers of at most {@link MAX_TIMER_MS}. Returns the canceller.
 *
 * @example
 * const cancel = setLongTimeout(() => controller.abort(), 30 * 86_400_000);
 * cancel();
 */
export function setLongTimeout(fn: () => void, ms: number): () => void {
  let timer: NodeJS.Timeout | undefined;
  const arm = (left: number) => {
    const now = Math.min(Math.max(0, left), MAX_TIMER_MS);
    timer = setTimeout(() => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fn()), now);
  };
  arm(ms);
  return () => clearTimeout(timer);
}
