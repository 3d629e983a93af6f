import type pg from "pg";
import { SagaError, maskConnectionString } from "./errors.js";

/**
 * How an engine reaches the database. `query` is where statements go (a transaction pooler such as PgBouncer
 * is fine: every statement of pg-saga runs in a transaction or alone, and sets nothing for the session);
 * `listen` is where LISTEN goes, which needs a connection of its own to the server (a pooler in transaction
 * mode hands the server connection to other clients between transactions, and notifications with it).
 */
export interface Connections {
  readonly query: pg.ClientConfig;
  readonly listen: pg.ClientConfig;
  /** Whether `listen` is another server than `query` (a direct connection next to a pooled one). */
  readonly separateListen: boolean;
  /** graphile-worker's named prepared statements, which a transaction pooler before PgBouncer 1.21 breaks. */
  readonly preparedStatements: boolean;
}

export function resolveConnections(
  query: pg.ClientConfig,
  options: { listenConnectionString?: string | undefined; preparedStatements?: boolean | undefined },
): Connections {
  const separateListen = options.listenConnectionString !== undefined;
  return {
    query,
    listen: separateListen ? { ...query, connectionString: options.listenConnectionString } : query,
    separateListen,
    // A separate LISTEN connection means the other one goes through a pooler: no named statements there.
    preparedStatements: options.preparedStatements ?? !separateListen,
  };
}

/**
 * graphile-worker 0.17 takes its LISTEN client from the pool it is given, with the callback form of
 * `pool.connect(cb)`, and every other client with the promise form. This pool sends the callback form to
 * `listenPool` (a direct connection), everything else to `pool` (through the pooler).
 */
export function routeListen(pool: pg.Pool, listenPool: pg.Pool): pg.Pool {
  return new Proxy(pool, {
    get(target, property) {
      if (property === "connect") {
        return (callback?: (err: Error | undefined, client?: pg.PoolClient, done?: () => void) => void) =>
          callback ? listenPool.connect(callback) : target.connect();
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Node's codes for a server certificate it does not trust. */
const TLS_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * A connection refused because the server's certificate is not trusted becomes one typed line that says what
 * to do; any other error is returned as it is.
 */
export function explainConnectError(err: unknown): unknown {
  // The TLS error may arrive wrapped (migrate() reports MIGRATION_FAILED with it as the cause).
  let tls: unknown;
  for (
    let e = err, depth = 0;
    e && typeof e === "object" && depth < 5;
    e = (e as { cause?: unknown }).cause, depth++
  ) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === "string" && TLS_CODES.has(c)) tls = e;
  }
  if (tls === undefined) return err;
  const code = (tls as { code: string }).code;
  return new SagaError(
    "DATABASE_TLS",
    `the database server's TLS certificate is not trusted (${code}): give its CA with sslrootcert=/path/ca.crt ` +
      `in the connection string or createSagaEngine({ ssl: { ca } }), and connect by the name the certificate is for. ${maskConnectionString((tls as Error).message)}`,
    { cause: err, details: { code } },
  );
}
