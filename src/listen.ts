import type pg from "pg";
import pgListen from "pg-listen";

export type { Subscriber } from "pg-listen";

// pg-listen is CommonJS: its function is the module itself and also its `default` property.
const create = (pgListen as unknown as { default: typeof pgListen.default }).default;

/** A LISTEN connection that reconnects by itself (every LISTEN in pg-saga goes through here). */
export function createListener(connection: pg.ClientConfig, onError: (err: Error) => void) {
  const subscriber = create(connection, {
    retryLimit: Infinity,
    retryInterval: 500,
    paranoidChecking: 10_000,
  });
  subscriber.events.on("error", onError);
  return subscriber;
}
