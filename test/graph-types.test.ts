import { createHash } from "node:crypto";
import { describe, expect, expectTypeOf, it } from "vitest";
import { z } from "zod";
import { SagaError, defineSaga } from "../src/index.js";

const input = z.object({ nights: z.number() });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof SagaError ? err.code : `not a SagaError: ${String(err)}`;
  }
  return undefined;
}

describe("parallel groups: types", () => {
  it("the step after a group receives one key per branch, typed by inference", () => {
    const saga = defineSaga({ name: "trip", input })
      .step("quote", { execute: (d) => ({ ...d, price: 10 }) })
      .parallel({
        flight: { execute: async (d) => ({ flightId: `f${d.price}` }) },
        hotel: { execute: (d) => ({ hotelId: d.nights }), when: (d) => d.nights > 0 },
        note: { execute: async () => {} },
      })
      .step("confirm", {
        execute: (d) => {
          expectTypeOf(d.flight).toEqualTypeOf<{ flightId: string }>();
          expectTypeOf(d.hotel).toEqualTypeOf<{ hotelId: number } | undefined>();
          // A branch that returns nothing passes its input on.
          expectTypeOf(d.note).toEqualTypeOf<{ nights: number; price: number }>();
          return { ok: true };
        },
      });
    expectTypeOf(saga.$result).toEqualTypeOf<{ ok: boolean }>();
    expect(saga.groups.map((g) => g.map((s) => s.name))).toEqual([
      ["quote"],
      ["flight", "hotel", "note"],
      ["confirm"],
    ]);
    expect(saga.steps.map((s) => [s.index, s.group])).toEqual([
      [0, 0],
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 2],
    ]);
  });

  it("a step with `when` may pass its input on: its data is either", () => {
    const saga = defineSaga({ name: "w", input })
      .step("maybe", { execute: () => ({ extra: 1 }), when: (d) => d.nights > 2 })
      .step("after", { execute: (d) => d });
    expectTypeOf(saga.$result).toEqualTypeOf<{ extra: number } | { nights: number }>();
    const plain = defineSaga({ name: "p", input }).step("a", { execute: () => ({ extra: 1 }) });
    expectTypeOf(plain.$result).toEqualTypeOf<{ extra: number }>();
  });

  it("groups follow each other and mix with plain steps", () => {
    const saga = defineSaga({ name: "mix", input })
      .parallel({ a: { execute: () => 1 }, b: { execute: () => "x" } })
      .parallel({ c: { execute: (d) => d.a + d.b.length } });
    expectTypeOf(saga.$result).toEqualTypeOf<{ c: number }>();
    expect(saga.steps.map((s) => s.group)).toEqual([0, 0, 1]);
  });
});

describe("parallel groups: validation", () => {
  const base = defineSaga({ name: "v", input }).step("a", { execute: () => {} });

  it("refuses an empty group, a duplicate name across groups, a transactional branch, a non-function when", () => {
    expect(codeOf(() => base.parallel({}))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => base.parallel({ a: { execute: () => {} } }))).toBe("INVALID_DEFINITION");
    const grouped = base.parallel({ b: { execute: () => 1 }, c: { execute: () => 2 } });
    expect(codeOf(() => grouped.step("c", { execute: () => {} }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => grouped.parallel({ b: { execute: () => 1 } }))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => base.parallel({ t: { transactional: true, execute: () => {} } as never }))).toBe(
      "INVALID_DEFINITION",
    );
    expect(codeOf(() => base.parallel({ w: { execute: () => {}, when: true as never } }))).toBe(
      "INVALID_DEFINITION",
    );
    expect(codeOf(() => base.step("w", { execute: () => {}, when: "yes" as never }))).toBe(
      "INVALID_DEFINITION",
    );
    expect(codeOf(() => base.parallel(null as never))).toBe("INVALID_DEFINITION");
    expect(codeOf(() => base.parallel({ "bad name": { execute: () => {} } }))).toBe("INVALID_DEFINITION");
  });

  it("a saga of plain steps keeps its fingerprint; a group changes it", () => {
    const a = defineSaga({ name: "f", input })
      .step("x", { execute: () => {} })
      .step("y", { execute: () => {} });
    const b = defineSaga({ name: "f", input }).parallel({
      x: { execute: () => {} },
      y: { execute: () => {} },
    });
    expect(a.fingerprint).not.toBe(b.fingerprint);
    // The shape of a plain step is what it was before groups existed.
    const before = createHash("sha256")
      .update(
        JSON.stringify([
          "f",
          1,
          [
            ["x", false, false],
            ["y", false, false],
          ],
        ]),
      )
      .digest("hex")
      .slice(0, 16);
    expect(a.fingerprint).toBe(before);
  });
});
