/**
 * Finds a PostgreSQL server for the suites: DATABASE_URL, else 127.0.0.1:5432 when it answers, else a
 * testcontainers PostgreSQL where Docker runs, else a message saying what to set. Migrates a template
 * database once; each test file then gets its own copy of it (CREATE DATABASE … TEMPLATE).
 */
import pg from "pg";
import type { TestProject } from "vitest/node";
import { createSagaEngine } from "../../src/index.js";

declare module "vitest" {
  export interface ProvidedContext {
    adminUrl: string;
    templateDatabase: string;
    runId: string;
  }
}

async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export function databaseUrl(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
}

export default async function setup(project: TestProject) {
  let adminUrl = process.env.DATABASE_URL;
  let stopContainer: (() => Promise<unknown>) | undefined;
  if (!adminUrl) {
    const local = "postgres://root@127.0.0.1:5432/postgres";
    if (await answers(local)) adminUrl = local;
  }
  if (!adminUrl) {
    try {
      const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
      const container = await new PostgreSqlContainer("postgres:16").start();
      adminUrl = container.getConnectionUri();
      stopContainer = () => container.stop();
    } catch (err) {
      throw new Error(
        `No PostgreSQL for the tests: set DATABASE_URL, or run one on 127.0.0.1:5432, or start Docker for testcontainers (${String(err)})`,
      );
    }
  }
  // Names carry this run's id: runs of the suites side by side never touch each other's databases.
  const runId = `${process.pid}`;
  const template = `pgsaga_template_${runId}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${template}`);
  await admin.query(`create database ${template}`);
  const engine = createSagaEngine({ connectionString: databaseUrl(adminUrl, template), sagas: [] });
  await engine.migrate();
  await engine.close();
  project.provide("adminUrl", adminUrl);
  project.provide("templateDatabase", template);
  project.provide("runId", runId);

  return async () => {
    await admin.query(`drop database if exists ${template} with (force)`);
    // Databases of files that failed before their own cleanup.
    const { rows } = await admin.query<{ datname: string }>(
      "select datname from pg_database where datname like $1",
      [`pgsaga_t${runId}_%`],
    );
    for (const row of rows) await admin.query(`drop database if exists ${row.datname} with (force)`);
    await admin.end();
    await stopContainer?.();
  };
}
