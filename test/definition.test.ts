import { describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { SagaError, compensation, defineSaga, retry } from "../src/index.js";
import { delayFor } from "../src/retry.js";
import { toStoredError } from "../src/errors.js";
import { BusinessError } from "../src/index.js";

const input = z.object({ customerId: z.string(), amount: z.number() });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof SagaError ? err.code : `not a SagaError: ${String(err)}`;
  }
  return undefined;
}

describe("defineSaga", () => {
  it("infers each step's data from the previous step's return", () => {
    const saga = defineSaga({ name: "typed", input })
      .step("a", {
        execute: async (data) => {
          expectTypeOf(data).toEqualTypeOf<{ customerId: string; amount: number }>();
          return { ...data, orderId: "o1" };
        },
        compensate: async (data, ctx) => {
          expectTypeOf(data.orderId).toBeString();
          expectTypeOf(ctx.outcome).toEqualTypeOf<"succeeded" | "unknown">();
        },
      })
      .step("b", {
        execute: (data) => {
          expectTypeOf(data.orderId).toBeString();
        },
      })
      .step("c", {
        transactional: true,
        execute: async (data, ctx) => {
          // A step that returns nothing passes its input on.
          expectTypeOf(data).toEqualTypeOf<{ customerId: string; amount: number; orderId: string }>();
          expectTypeOf(ctx.tx.query).toBeFunction();
          return { total: data.amount };
        },
      });
    expectTypeOf(saga.$result).toEqualTypeOf<{ total: number }>();
    expectTypeOf(saga.$input).toEqualTypeOf<{ customerId: string; amount: number }>();
    expect(saga.steps.map((s) => [s.name, s.index, s.transactional])).toEqual([
      ["a", 0, false],
      ["b", 1, false],
      ["c", 2, true],
    ]);
  });

  it("refuses bad definitions with INVALID_DEFINITION", () => {
    const base = defineSaga({ name: "bad", input }).step("a", { execute: () => {} });
    expect(codeOf(() => base.step("a", { execute: () => {} }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => defineSaga({ name: "x", input: { parse: 1 } as never }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => defineSaga({ name: "", input }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => defineSaga({ name: "x", input, timeout: "soon" as never }))).toBe(
      "INVALID_DEFINITION",
    );
    expect(codeOf(() => defineSaga({ name: "x", input, version: 0 }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => base.step("b", { execute: "no" as never }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => base.step("c", { execute: () => {}, timeout: -1 }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => retry.exponential({ maxAttempts: 0, initialDelay: "1s" }))).toBe(
      "INVALID_DEFINITION",
    );
    expect(codeOf(() => retry.fixed({ maxAttempts: 2, delay: "often" as never }))).toBe("INVALID_DEFINITION");
    expect(
      codeOf(() => retry.exponential({ maxAttempts: 2, initialDelay: 10, jitter: "some" as never })),
    ).toBe("INVALID_DEFINITION");
  });

  it("is immutable: a step returns a new definition with a new fingerprint", () => {
    const one = defineSaga({ name: "imm", input }).step("a", { execute: () => {} });
    const two = one.step("b", { execute: () => {} });
    expect(one.steps).toHaveLength(1);
    expect(two.steps).toHaveLength(2);
    expect(one.fingerprint).not.toBe(two.fingerprint);
  });
});

describe("retry policies", () => {
  it("computes exponential, linear and fixed waits with full, equal or no jitter", () => {
    const exp = retry.exponential({ maxAttempts: 5, initialDelay: "100ms", maxDelay: "1s", jitter: "none" });
    expect([1, 2, 3, 4, 5].map((a) => delayFor(exp, a))).toEqual([100, 200, 400, 800, 1000]);
    const lin = retry.linear({
      maxAttempts: 4,
      initialDelay: "1s",
      increment: "2s",
      maxDelay: "4s",
      jitter: false,
    });
    expect([1, 2, 3].map((a) => delayFor(lin, a))).toEqual([1000, 3000, 4000]);
    expect(delayFor(retry.fixed({ maxAttempts: 3, delay: "5m" }), 2)).toBe(300_000);
    const full = retry.exponential({ maxAttempts: 3, initialDelay: 1000 });
    expect(delayFor(full, 1, () => 0.25)).toBe(250);
    const equal = retry.exponential({ maxAttempts: 3, initialDelay: 1000, jitter: "equal" });
    expect(delayFor(equal, 1, () => 0)).toBe(500);
    expect(delayFor(equal, 1, () => 1)).toBe(1000);
    expect(retry.none().maxAttempts).toBe(1);
  });

  it("offers every compensation strategy", () => {
    expect(compensation.sequential().kind).toBe("sequential");
    expect(compensation.parallel({ timeout: "1s" }).timeoutMs).toBe(1000);
    expect(compensation.bestEffort().continueOnFailure).toBe(true);
    const custom = compensation.custom({ shouldCompensate: (e) => e?.code !== "X", order: (s) => s });
    expect(custom.shouldCompensate({ code: "X", message: "", type: "", retryable: false })).toBe(false);
  });
});

describe("stored errors", () => {
  it("survives non-Error throws and circular details", () => {
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    expect(toStoredError(new BusinessError("E", "m", circular), false)).toEqual({
      code: "E",
      message: "m",
      type: "BusinessError",
      retryable: false,
      details: { a: 1, self: "[Circular]" },
    });
    expect(toStoredError("plain string", true)).toMatchObject({
      code: "NON_ERROR_THROWN",
      message: "plain string",
    });
    expect(toStoredError(undefined, true)).toMatchObject({ code: "NON_ERROR_THROWN" });
    expect(toStoredError({ big: 10n }, true)).toMatchObject({ message: '{"big":"10"}' });
  });
});
