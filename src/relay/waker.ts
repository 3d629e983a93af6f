/** A sleep that a notification can cut short; a wake with nobody asleep makes the next sleep return at once. */
export class Waker {
  #pending = false;
  #resolve: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;

  sleep(ms: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#resolve = resolve;
      this.#timer = setTimeout(() => this.#settle(), ms);
    });
  }

  wake(): void {
    if (this.#resolve) this.#settle();
    else this.#pending = true;
  }

  #settle(): void {
    if (this.#timer) clearTimeout(this.#timer);
    const resolve = this.#resolve;
    this.#resolve = undefined;
    this.#timer = undefined;
    this.#pending = false;
    resolve?.();
  }
}
