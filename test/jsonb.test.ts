/** The one jsonb check, stored errors and long timers, without a database. */
import { afterEach, describe, expect, it, vi } from "vitest";
import { BusinessError, retry } from "../src/index.js";
import { toStoredError } from "../src/errors.js";
import { fromJsonbText, jsonbTextProblem, sanitizeJsonText, toJsonb } from "../src/jsonb.js";
import { setLongTimeout } from "../src/long-timer.js";
import { delayFor } from "../src/retry.js";

describe("the jsonb check", () => {
  it("tells a NUL character or a lone surrogate from text that spells their escapes", () => {
    expect(toJsonb({ a: "x\u0000" })).toMatchObject({ ok: false, problem: "nul" });
    expect(toJsonb({ "k\ud800": 1 })).toMatchObject({ ok: false, problem: "lone-surrogate" });
    expect(toJsonb(["\\\u0000"])).toMatchObject({ ok: false, problem: "nul" });
    expect(toJsonb({ a: "\\u0000", b: "\\\\u0000", c: "\\ud800", d: "😀" })).toMatchObject({ ok: true });
    expect(toJsonb(10n)).toMatchObject({ ok: false, problem: "not-json" });
    expect(toJsonb(() => 1)).toEqual({ ok: true, text: undefined });
  });

  it("refuses nesting deeper than 1000 levels", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 1_000; i++) deep = [deep];
    expect(toJsonb(deep)).toMatchObject({ ok: true });
    expect(toJsonb([deep])).toMatchObject({ ok: false, problem: "too-deep" });
    // Brackets inside strings do not count.
    expect(jsonbTextProblem(JSON.stringify("[".repeat(5_000)))).toBeNull();
  });

  it("sanitises keys and strings alike and counts what it replaced", () => {
    const { text, replaced } = sanitizeJsonText(JSON.stringify({ "\u0000": ["\udc00", "\\u0000"] }));
    expect(JSON.parse(text)).toEqual({ "\ufffd": ["\ufffd", "\\u0000"] });
    expect(replaced).toEqual({ nul: 1, loneSurrogates: 1 });
  });

  it("gives back keys in jsonb's order, __proto__ kept as a key", () => {
    const value = fromJsonbText('{"bb":1,"a":2,"__proto__":{"x":1},"10":3,"2":4}') as Record<string, unknown>;
    expect(Object.keys(value)).toEqual(["2", "10", "a", "bb", "__proto__"]);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });
});

describe("stored errors", () => {
  it("never cut a surrogate pair, never throw, and leave out details too large to copy around", () => {
    const clipped = toStoredError(new Error(`${"a".repeat(1_999)}😀`), true);
    expect(clipped.message).toBe("a".repeat(1_999));
    expect(clipped.sanitized).toBeUndefined();
    const hostile = Object.defineProperty(new Error("x"), "message", {
      get() {
        throw new Error("no");
      },
    });
    expect(toStoredError(hostile, false)).toMatchObject({ code: "STEP_ERROR", retryable: false });
    const big = toStoredError(new BusinessError("BIG", "big", { blob: "x".repeat(70_000) }), false);
    expect(big.details).toBeUndefined();
    expect(big.sanitized).toEqual({ details: "left out: larger than 65536 bytes" });
  });
});

describe("long timers and delays", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a 30-day timer fires after 30 days, not after 1 ms", () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    setLongTimeout(fired, 30 * 86_400_000);
    vi.advanceTimersByTime(30 * 86_400_000 - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledOnce();
  });

  it("an exponential retry without maxDelay stays within a timestamp's range", () => {
    const policy = retry.exponential({ maxAttempts: 200, initialDelay: "1s", jitter: "none" });
    expect(delayFor(policy, 150)).toBe(3_155_760_000_000);
  });
});
