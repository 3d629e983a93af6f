/**
 * A worker's concurrency, counted over its graphile-worker jobs and the branches it claimed together beside
 * them: a job runs at most one claim at a time, a branch claimed together with others takes a slot of its own.
 * graphile-worker hands out up to `concurrency` jobs whatever the branches take, so a job handed over while
 * every slot is taken waits here for one; with no branches claimed together no job ever waits.
 */
export class Slots {
  #jobs = 0;
  #extras = 0;
  #waiting: (() => void)[] = [];

  constructor(readonly concurrency: number) {}

  /** Slots free beside the running jobs (the asking job's included) and the branches claimed together. */
  get spare(): number {
    return Math.max(0, this.concurrency - this.#jobs - this.#extras);
  }

  /** Runs a job once a slot is free (or at once when `stopping()`: it only hands its work over then). */
  async job<T>(run: () => Promise<T>, stopping: () => boolean): Promise<T> {
    while (this.#extras > 0 && this.#jobs + this.#extras >= this.concurrency && !stopping())
      await new Promise<void>((resolve) => {
        // Woken by a released slot, or after 250 ms to look at `stopping()` again; the timer never outlives it.
        const timer = setTimeout(wake, 250);
        function wake() {
          clearTimeout(timer);
          resolve();
        }
        this.#waiting.push(wake);
      });
    this.#jobs++;
    try {
      return await run();
    } finally {
      this.#jobs--;
      this.#wake();
    }
  }

  /** Takes a slot for a branch claimed together with others; returns its release. */
  extra = (): (() => void) => {
    this.#extras++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#extras--;
      this.#wake();
    };
  };

  #wake(): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const wake of waiting) wake();
  }
}
