/**
 * Tracing without an OpenTelemetry SDK (this process registers none): sagas run as before, nothing is
 * looked up for spans, and an explicit traceparent is still stored for a later SDK-enabled reader.
 */
import { z } from "zod";
import { describe, expect, it } from "vitest";
import { defineSaga } from "../src/index.js";
import { createStepObserver } from "../src/observability/step-observer.js";
import { formatTraceparent, parseTraceparent, tracingEnabled } from "../src/observability/tracing.js";
import { useTestDatabase } from "./helpers/database.js";
import { useEngine } from "./helpers/engine.js";

const db = useTestDatabase();
const echo = defineSaga({ name: "echo", input: z.object({ n: z.number() }) }).step("say", {
  execute: async (data) => data,
});
const handle = useEngine(db, () => [echo], { concurrency: 2, pollInterval: 50 });

async function stored(id: string): Promise<string | null> {
  const { rows } = await db.pool.query<{ trace_context: string | null }>(
    "select trace_context from saga.instances where id = $1",
    [id],
  );
  return rows[0]!.trace_context;
}

describe("tracing without an SDK", () => {
  it("is off: no step probe at all when metrics are off too", () => {
    expect(tracingEnabled()).toBe(false);
    const observe = createStepObserver(db.pool);
    const step = echo.steps[0]!;
    expect(
      observe(echo, "00000000-0000-0000-0000-000000000000", { kind: "execute", index: 0, attempt: 1, step }),
    ).toBe(undefined);
  });

  it("runs sagas, storing no trace context unless one is given, and then storing it as given", async () => {
    const { engine } = handle;
    const plain = await engine.start(echo, { n: 1 });
    const remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const linked = await engine.start(echo, { n: 2 }, { traceContext: remote });
    for (const { id } of [plain, linked])
      expect((await engine.waitFor(id, { timeoutMs: 20_000 })).state).toBe("completed");
    expect(await stored(plain.id)).toBeNull();
    expect(await stored(linked.id)).toBe(remote);
  });
});

describe("traceparent", () => {
  it("parses and formats W3C traceparents, refusing invalid ones", () => {
    const value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const parsed = parseTraceparent(value);
    expect(parsed).toEqual({
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      traceFlags: 1,
      isRemote: true,
    });
    expect(formatTraceparent(parsed!)).toBe(value);
    expect(parseTraceparent(value.toUpperCase())?.traceId).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(
      parseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later")?.traceFlags,
    ).toBe(0);
    for (const bad of [
      "",
      "garbage",
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero span id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", // version 00 has exactly 4 fields
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", // short trace id
    ]) {
      expect(parseTraceparent(bad), bad).toBeNull();
    }
    expect(formatTraceparent({ traceId: "0".repeat(32), spanId: "0".repeat(16), traceFlags: 0 })).toBeNull();
  });
});
