/** Bridge configuration mistakes are typed errors before anything connects. */
import { expect, it } from "vitest";
import { SagaError, natsBridge, rabbitBridge } from "../src/index.js";
import { loadDependency } from "../src/bridges/load-dependency.js";

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof SagaError ? err.code : String(err);
  }
  return null;
};

it("refuses bad options with INVALID_OPTIONS", () => {
  expect(code(() => natsBridge({ servers: "" }))).toBe("INVALID_OPTIONS");
  expect(code(() => natsBridge({ servers: "nats://x", envelope: "xml" as never }))).toBe("INVALID_OPTIONS");
  expect(code(() => natsBridge({ servers: "nats://x", stream: "a.b" }))).toBe("INVALID_OPTIONS");
  expect(code(() => natsBridge({ servers: "nats://x", duplicateWindow: "soon" as never }))).toBe(
    "INVALID_OPTIONS",
  );
  expect(code(() => rabbitBridge({ url: "http://x" }))).toBe("INVALID_OPTIONS");
  expect(code(() => rabbitBridge({ url: "amqp://x", maxInFlight: 0 }))).toBe("INVALID_OPTIONS");
  expect(natsBridge({ servers: "nats://x" }).name).toBe("bridge.nats");
  expect(rabbitBridge({ url: "amqp://x" }).name).toBe("bridge.rabbitmq");
});

it("a missing broker client is BRIDGE_DEPENDENCY_MISSING naming the install command", async () => {
  const err = await loadDependency(
    "pg-saga-no-such-client",
    "npm install pg-saga-no-such-client",
    "a test",
  ).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SagaError);
  expect((err as SagaError).code).toBe("BRIDGE_DEPENDENCY_MISSING");
  expect((err as SagaError).message).toContain("npm install pg-saga-no-such-client");
});
