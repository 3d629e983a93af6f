/** The sagas the bench runs, and probes their handlers report to (first call, last step done). */
import { z } from "zod";
import { defineSaga } from "../src/index.js";

/** Timestamps and counters the handlers feed; reset by each run. */
export const probe = {
  firstCall: Number.NaN,
  lastStepCalls: 0,
  /** Per saga id: when its first handler started (performance.now()). */
  firstHandlerAt: new Map<string, number>(),
  trackFirst: false,
  /** Called when a saga's last handler returns (the record commit still follows). */
  onLastStep: undefined as ((id: string) => void) | undefined,
  reset() {
    this.firstCall = Number.NaN;
    this.lastStepCalls = 0;
    this.firstHandlerAt.clear();
    this.trackFirst = false;
    this.onLastStep = undefined;
  },
};

function enter(sagaId: string, index: number) {
  const now = performance.now();
  if (Number.isNaN(probe.firstCall)) probe.firstCall = now;
  if (index === 0 && probe.trackFirst) probe.firstHandlerAt.set(sagaId, now);
}

function leave(sagaId: string, index: number) {
  if (index === 2) {
    probe.lastStepCalls++;
    probe.onLastStep?.(sagaId);
  }
}

const input = z.object({ k: z.number().int() });

/** Three no-op steps: measures the engine alone. */
export const noopSaga = defineSaga({ name: "bench-noop", input })
  .step("one", {
    execute: (_d, ctx) => {
      enter(ctx.sagaId, 0);
    },
  })
  .step("two", {
    execute: () => {},
  })
  .step("three", {
    execute: (_d, ctx) => {
      leave(ctx.sagaId, 2);
    },
  });

const update = "update bench_rows set n = n + 1 where id = $1";

/** Three transactional steps, one small UPDATE each on ctx.tx. */
export const txSaga = defineSaga({ name: "bench-tx", input })
  .step("one", {
    transactional: true,
    execute: async (d, ctx) => {
      enter(ctx.sagaId, 0);
      await ctx.tx.query(update, [d.k]);
    },
  })
  .step("two", {
    transactional: true,
    execute: async (d, ctx) => {
      await ctx.tx.query(update, [d.k]);
    },
  })
  .step("three", {
    transactional: true,
    execute: async (d, ctx) => {
      await ctx.tx.query(update, [d.k]);
      leave(ctx.sagaId, 2);
    },
  });

export const benchSagas = [noopSaga, txSaga];
