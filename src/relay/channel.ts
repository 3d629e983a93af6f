import type pg from "pg";
import { type Subscriber, createListener } from "../listen.js";
import type { Logger } from "../logger.js";

/** A LISTEN connection on some channels that survives anything: pg-listen reconnects, and gives up, we start over. */
export interface Channel {
  /** Resolves once the first LISTEN is in place (or the first attempt failed: polling covers until then). */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

const RESTART_MS = 1_000;

/**
 * Listens on `channels`; `onMessage(channel, payload)` gets the payload parsed as JSON (undefined when empty). `onConnected` runs after
 * every (re)connection: notifications sent meanwhile are lost, so callers catch up from the table then.
 *
 * @example
 * const channel = openChannel(connection, ["saga_outbox"], "pg-saga relay listener", logger, { onMessage: wake, onConnected: wake });
 * await channel.close();
 */
export function openChannel(
  connection: pg.ClientConfig,
  channels: readonly string[],
  applicationName: string,
  logger: Logger,
  handlers: { onMessage(channel: string, payload: unknown): void; onConnected(): void },
): Channel {
  let subscriber: Subscriber | undefined;
  let closed = false;
  let restart: NodeJS.Timeout | undefined;
  let starting: Promise<void> = Promise.resolve();
  const scheduleRestart = () => {
    restart ??= setTimeout(() => {
      restart = undefined;
      starting = start();
    }, RESTART_MS);
  };

  const start = async (): Promise<void> => {
    if (closed) return;
    const current = createListener({ ...connection, application_name: applicationName }, (err) => {
      // A payload that is not JSON (someone else's NOTIFY on our channel) is not a lost connection.
      if (err instanceof SyntaxError) return;
      logger.warn("listener lost its connection; starting over", { error: String(err), channels });
      if (subscriber !== current || closed) return;
      subscriber = undefined;
      void current.close().catch(() => {});
      scheduleRestart();
    });
    subscriber = current;
    current.events.on("notification", (n) => handlers.onMessage(n.channel, n.payload));
    current.events.on("connected", () => handlers.onConnected());
    try {
      await current.connect();
      for (const channel of channels) await current.listenTo(channel);
      if (closed) await current.close().catch(() => {});
    } catch (err) {
      logger.warn("listener could not connect; polling meanwhile", { error: String(err), channels });
      if (subscriber === current) {
        subscriber = undefined;
        await current.close().catch(() => {});
        if (!closed) scheduleRestart();
      }
    }
  };

  starting = start();
  return {
    ready: starting,
    async close() {
      closed = true;
      if (restart) clearTimeout(restart);
      restart = undefined;
      await starting;
      const s = subscriber;
      subscriber = undefined;
      await s?.close().catch(() => {});
    },
  };
}
