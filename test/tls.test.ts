/**
 * TLS: a throwaway server with `ssl = on` and a certificate for 127.0.0.1 signed by a CA generated here.
 * With the CA (sslmode=verify-full&sslrootcert, or the `ssl` option) the engine, its worker, the relay,
 * graphile-worker and the listeners all connect over TLS; without it the engine refuses with DATABASE_TLS.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SagaError, type SagaEngine, type SagaEvent, createSagaEngine } from "../src/index.js";
import { CALLS_TABLE, orderSaga } from "./fixtures/order-saga.js";
import { type ThrowawayPostgres, startThrowawayPostgres } from "./helpers/throwaway-postgres.js";

vi.setConfig({ testTimeout: 90_000, hookTimeout: 120_000 });

const certs = mkdtempSync(join(tmpdir(), "pgsaga-tls-"));
const caPath = join(certs, "ca.crt");

/** A CA and a server certificate for 127.0.0.1 and localhost, signed by it. */
function makeCertificates(): { cert: string; key: string } {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: certs, stdio: "pipe" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=pg-saga test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
  );
  writeFileSync(join(certs, "san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "san.ext",
    "-out",
    "server.crt",
  );
  return {
    cert: readFileSync(join(certs, "server.crt"), "utf8"),
    key: readFileSync(join(certs, "server.key"), "utf8"),
  };
}

let server: ThrowawayPostgres;
let admin: pg.Pool;
const engines: SagaEngine[] = [];
const engineFor = (options: Parameters<typeof createSagaEngine>[0]) => {
  const engine = createSagaEngine(options);
  engines.push(engine);
  return engine;
};

beforeAll(async () => {
  const { cert, key } = makeCertificates();
  server = await startThrowawayPostgres({
    settings: { ssl: "on", ssl_cert_file: "server.crt", ssl_key_file: "server.key" },
    files: { "server.crt": cert, "server.key": key },
  });
  admin = new pg.Pool({ connectionString: server.url, max: 2, application_name: "admin" });
  await admin.query(CALLS_TABLE);
});

afterAll(async () => {
  await Promise.all(engines.map((e) => e.close()));
  await admin?.end();
  await server?.destroy();
  rmSync(certs, { recursive: true, force: true });
});

/** Backends of database saga other than the test's own admin pool, and whether each is over TLS. */
const backends = async () =>
  (
    await admin.query<{ app: string; ssl: boolean }>(
      `select coalesce(a.application_name, '') as app, s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)
       where a.datname = 'saga' and a.backend_type = 'client backend' and a.application_name <> 'admin'`,
    )
  ).rows;

async function runsOverTls(engine: SagaEngine) {
  await engine.migrate();
  const worker = await engine.runWorker({ concurrency: 2 });
  const events: SagaEvent[] = [];
  const sub = engine.subscribe({ types: ["saga.completed"] }, (e) => void events.push(e));
  try {
    await sub.ready;
    const { id } = await engine.start(orderSaga(admin), { customerId: "tls", amount: 1 });
    expect((await engine.waitFor(id, { timeoutMs: 30_000 })).state).toBe("completed");
    for (let i = 0; i < 200 && !events.some((e) => e.sagaId === id); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(events.some((e) => e.sagaId === id)).toBe(true);
    const seen = await backends();
    // The pools, the control listener, the relay and its listener, graphile-worker's job listener, the bus.
    expect(seen.map((b) => b.app)).toEqual(
      expect.arrayContaining(["pg-saga relay", "pg-saga relay listener", "pg-saga subscriptions"]),
    );
    expect(seen.filter((b) => !b.ssl)).toEqual([]);
  } finally {
    await sub.close();
    await worker.stop();
  }
}

describe("TLS", () => {
  it("sslmode=verify-full with sslrootcert: every connection of engine, worker and relay is over TLS", async () => {
    const url = `${server.url}?sslmode=verify-full&sslrootcert=${encodeURIComponent(caPath)}`;
    await runsOverTls(engineFor({ connectionString: url, sagas: [orderSaga(admin)] }));
  });

  it("the ssl option ({ ca }) reaches every connection too", async () => {
    const engine = engineFor({
      connectionString: server.url,
      ssl: { ca: readFileSync(caPath, "utf8") },
      sagas: [orderSaga(admin)],
    });
    await runsOverTls(engine);
  });

  it("without the CA: migrate() and runWorker() refuse with DATABASE_TLS, in one line that says what to do", async () => {
    const engine = engineFor({
      connectionString: `${server.url}?sslmode=verify-full`,
      sagas: [orderSaga(admin)],
    });
    const refused = await engine.migrate().then(
      () => null,
      (err: unknown) => err,
    );
    expect(refused).toBeInstanceOf(SagaError);
    expect((refused as SagaError).code).toBe("DATABASE_TLS");
    expect((refused as SagaError).message).toContain("sslrootcert");
    expect((refused as SagaError).message).not.toContain("\n");
    await expect(engine.runWorker()).rejects.toMatchObject({ code: "DATABASE_TLS" });
  });
});
