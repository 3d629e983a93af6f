import type pg from "pg";

const SOCKET_CLOSE_MS = 5_000;

/**
 * Tracks a pool's connected clients so it can be ended for good: pg-pool resolves `end()` once it has asked its
 * clients to end, while their sockets are still open and each still forwards its errors to the pool. A server
 * that terminates such a client then emits `error` on the pool; without a listener that crashes the process.
 * So the pool keeps its error listener for life (it is never reused), and `end()` resolves only when every
 * client's socket has closed: nothing of the pool remains.
 *
 * @example
 * const closing = trackClients(pool);
 * await closing.end(); // no socket of the pool is open any more
 */
export function trackClients(pool: pg.Pool): { end(): Promise<void> } {
  const open = new Set<pg.PoolClient>();
  pool.on("connect", (client) => {
    open.add(client);
    client.once("end", () => open.delete(client));
  });
  return {
    async end() {
      await pool.end();
      if (open.size === 0) return;
      let timer: NodeJS.Timeout | undefined;
      const closed = Promise.all([...open].map((c) => new Promise((r) => c.once("end", r))));
      const late = new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), SOCKET_CLOSE_MS);
      });
      const timedOut = await Promise.race([closed.then(() => false), late]);
      clearTimeout(timer);
      // A server that never answers the goodbye: the socket is dropped rather than left open.
      if (timedOut)
        for (const c of open)
          (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    },
  };
}
