import pg from "pg";
import { inject } from "vitest";

/**
 * A LOGIN role of the shared test server (roles are cluster-wide, so concurrent test files may create the same
 * one: a clash is not an error), member of `groups`, with a password in its URL. Returns that URL for `url`'s
 * database.
 */
export async function loginRole(url: string, name: string, groups: string[] = []): Promise<string> {
  const admin = new pg.Client({ connectionString: inject("adminUrl") });
  await admin.connect();
  try {
    await admin.query(`do $$ begin
      create role ${name} login password 'Sekr3t-${name}';
    exception when duplicate_object or unique_violation then null;
    end $$`);
    for (const group of groups)
      await admin.query(`do $$ begin grant ${group} to ${name};
        exception when unique_violation or duplicate_object then null; end $$`);
  } finally {
    await admin.end();
  }
  const u = new URL(url);
  u.username = name;
  u.password = `Sekr3t-${name}`;
  return u.toString();
}

/** The password `loginRole` gave `name`. */
export const passwordOf = (name: string) => `Sekr3t-${name}`;
