import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/schema.ts",
  out: "./migrations",
  schemaFilter: ["saga"],
  // pg-saga's journal lives in its own schema, so an application's drizzle migrations never clash with it.
  migrations: { schema: "saga", table: "__drizzle_migrations" },
});
