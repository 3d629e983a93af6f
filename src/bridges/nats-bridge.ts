/**
 * The NATS JetStream bridge: every event is a JetStream message with `Nats-Msg-Id` = `<source>:<event id>`,
 * so the stream's duplicate window drops what a crash makes the bridge publish again; the cursor moves only
 * after each message's PubAck.
 */
import type * as Nats from "nats";
import { toMs } from "../duration.js";
import type { Duration } from "../duration.js";
import { SagaError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { SagaEvent } from "../relay/types.js";
import {
  type Bridge,
  type BridgeMessage,
  type BridgeOptions,
  BridgeRefusal,
  type BridgeTransport,
} from "./bridge.js";
import { loadDependency } from "./load-dependency.js";
import { checkBridgeOptions } from "./outbound.js";

/** Options of {@link natsBridge}. */
export interface NatsBridgeOptions extends BridgeOptions {
  /** e.g. `"nats://127.0.0.1:4222"` or several. */
  servers: string | string[];
  /** Credentials and TLS, passed to the `nats` client's `connect()` as they are. */
  connectOptions?: Record<string, unknown>;
  /** The stream, created if absent (else verified). Default `SAGA_EVENTS`. */
  stream?: string;
  /** Put before every default subject, e.g. `"prod"` → `prod.saga.<saga name>.<event type>`. Default none. */
  subjectPrefix?: string;
  /** Subjects of a stream the bridge creates. Default `["saga.>", "app.>"]` (with the prefix). */
  subjects?: string[];
  /** Duplicate window of a stream the bridge creates: it must outlast the longest outage. Default 10 minutes. */
  duplicateWindow?: Duration;
  /** How long to wait for a PubAck before the batch is retried. Default 5 s. */
  ackTimeout?: Duration;
}

// JetStream API error codes (nats-server errors.json).
const STREAM_NOT_FOUND = 10059;
const STREAM_NAME_IN_USE = 10058;
const MESSAGE_TOO_LARGE = 10054;

/** A subject token from free text: `.`, `*`, `>` and spaces would change the subject's shape. */
const token = (s: string) => s.replace(/[.*>\s]/g, "_");

/** `saga.<saga name>.<event type>`; application events `app.<type>`. */
export function defaultNatsSubject(e: SagaEvent, prefix = ""): string {
  const type = e.type.replace(/[*>\s]/g, "_");
  return `${prefix}${e.name === null ? `app.${type}` : `saga.${token(e.name)}.${type}`}`;
}

const apiCode = (err: unknown): number | undefined =>
  (err as { api_error?: { err_code?: number } } | null)?.api_error?.err_code;

function natsTransport(o: NatsBridgeOptions): BridgeTransport {
  const stream = o.stream ?? "SAGA_EVENTS";
  const prefix = o.subjectPrefix ? `${o.subjectPrefix}.` : "";
  const subjects = o.subjects ?? [`${prefix}saga.>`, `${prefix}app.>`];
  const windowMs = toMs(o.duplicateWindow ?? "10m", "duplicateWindow");
  const timeout = toMs(o.ackTimeout ?? "5s", "ackTimeout");
  let nats: typeof Nats | null = null;
  let nc: Nats.NatsConnection | null = null;
  let js: Nats.JetStreamClient | null = null;
  let up = false;

  async function ensureStream(jsm: Nats.JetStreamManager, logger: Logger): Promise<void> {
    try {
      const info = await jsm.streams.info(stream);
      const window = info.config.duplicate_window / 1e6;
      if (window < windowMs)
        logger.warn("the stream's duplicate window is shorter than the bridge expects", {
          stream,
          duplicateWindowMs: window,
          expectedMs: windowMs,
        });
      return;
    } catch (err) {
      if (apiCode(err) !== STREAM_NOT_FOUND) throw err;
    }
    try {
      await jsm.streams.add({ name: stream, subjects, duplicate_window: windowMs * 1e6 });
      logger.info("bridge created its stream", { stream, subjects });
    } catch (err) {
      if (apiCode(err) !== STREAM_NAME_IN_USE) throw err;
    }
  }

  return {
    kind: "nats",
    get connected() {
      return up && nc !== null && !nc.isClosed();
    },
    async connect(logger) {
      nats ??= await loadDependency<typeof Nats>("nats", "npm install nats@^2.29", "the NATS bridge");
      // The client reconnects on its own: fail this batch fast, and try again after the backoff.
      if (nc !== null && !nc.isClosed() && js !== null && !up)
        throw new Error("NATS is unreachable; the client is reconnecting");
      if (nc === null || nc.isClosed()) {
        nc = await nats.connect({
          ...o.connectOptions,
          servers: o.servers,
          name: "pg-saga bridge",
          // The client reconnects for ever; publishes made meanwhile fail on their PubAck timeout.
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
        });
        const conn = nc;
        void (async () => {
          for await (const s of conn.status()) {
            if (s.type === "disconnect") up = false;
            if (s.type === "reconnect") up = true;
          }
        })().catch(() => {});
        void conn.closed().then(() => {
          up = false;
        });
      }
      await ensureStream(await nc.jetstreamManager(), logger);
      js = nc.jetstream({ timeout });
      up = true;
    },
    async publish(m: BridgeMessage) {
      if (!js || !nats) throw new Error("the NATS bridge is not connected");
      const h = nats.headers();
      for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
      try {
        const ack = await js.publish(m.topic, m.body, { msgID: m.id, headers: h, timeout });
        return { duplicate: ack.duplicate };
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code === "MAX_PAYLOAD_EXCEEDED" || apiCode(err) === MESSAGE_TOO_LARGE)
          throw new BridgeRefusal("MESSAGE_TOO_LARGE", `NATS refused event ${m.event.id}: ${String(err)}`);
        throw err;
      }
    },
    async close() {
      const c = nc;
      nc = null;
      js = null;
      up = false;
      await c?.drain().catch(() => c.close());
    },
  };
}

/**
 * A bridge from the outbox to NATS JetStream. Run it with `runWorker({ bridges: [...] })` or
 * `pg-saga bridge nats --url nats://…`.
 *
 * @example
 * const worker = await engine.runWorker({ bridges: [natsBridge({ servers: "nats://127.0.0.1:4222" })] });
 * // consumers: subjects saga.<saga name>.<event type> and app.<type> in stream SAGA_EVENTS
 */
export function natsBridge(options: NatsBridgeOptions): Bridge {
  const servers = options?.servers;
  if (
    !(typeof servers === "string" && servers.length > 0) &&
    !(Array.isArray(servers) && servers.length > 0 && servers.every((s) => typeof s === "string"))
  )
    throw new SagaError(
      "INVALID_OPTIONS",
      'natsBridge: servers must be a URL such as "nats://127.0.0.1:4222"',
    );
  checkBridgeOptions(options);
  for (const field of ["duplicateWindow", "ackTimeout"] as const) {
    try {
      if (options[field] !== undefined) toMs(options[field], field);
    } catch (err) {
      throw new SagaError("INVALID_OPTIONS", `natsBridge: ${(err as Error).message}`);
    }
  }
  if (
    options.subjectPrefix !== undefined &&
    !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(options.subjectPrefix)
  )
    throw new SagaError("INVALID_OPTIONS", 'natsBridge: subjectPrefix must be subject tokens such as "prod"');
  if (options.stream !== undefined && !/^[A-Za-z0-9_-]{1,200}$/.test(options.stream))
    throw new SagaError("INVALID_OPTIONS", "natsBridge: stream must be letters, digits, _ and - only");
  return {
    name: options.name ?? "bridge.nats",
    transport: natsTransport(options),
    options: {
      ...options,
      topic:
        options.topic ??
        ((e: SagaEvent) => defaultNatsSubject(e, options.subjectPrefix ? `${options.subjectPrefix}.` : "")),
    },
  };
}
