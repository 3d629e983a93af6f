/**
 * The records of branches claimed together: outcomes that finish while a record of theirs is committing are
 * recorded together in the next transition, each fenced on its own row as a single record is; the one that
 * finishes the group joins it and claims what follows in that same commit, as a line of steps does.
 */
import type { AnySaga } from "../definition.js";
import type { Claim, LockedSaga, Outcome } from "../model.js";
import { planNext } from "./decide.js";
import { type TrackedClaim, lockedTransition, transition } from "./commit-transition.js";
import { joining, outputsToFinish } from "./group-data.js";
import { groupOf, isBranch, onlyFor } from "./groups.js";
import { handOver } from "./step-attempt.js";
import type { Transition } from "./transition.js";
import type { WorkerEnv } from "./worker-env.js";

export interface BatchRecord {
  claim: Claim;
  outcome: Outcome;
  /** Writes this record into `t`; whether its group may be joined (applied, not interrupted). */
  write: (t: Transition) => boolean;
}

interface Queued {
  record: BatchRecord;
  settle: (next: TrackedClaim | null, err?: unknown) => void;
}

/** Whether `records` are of every branch of one group. */
function carriesGroup(def: AnySaga, records: readonly BatchRecord[]): boolean {
  const step = records[0]?.claim.step;
  if (!step) return false;
  const indices = new Set(records.map((r) => r.claim.index));
  return groupOf(def, step).every((s) => indices.has(s.index));
}

/** Whether a claim's record may go through a batch: an execution of a branch. */
export const batchable = (def: AnySaga, claim: Claim): boolean =>
  claim.kind === "execute" && isBranch(def, claim.step);

export class RecordBatch {
  #queue: Queued[] = [];
  #flushing = false;

  /** `known`: the saga as the branches' claim left it (a record from it commits in one statement if current). */
  constructor(
    private readonly env: WorkerEnv,
    private readonly def: AnySaga,
    private readonly id: string,
    private known?: LockedSaga,
  ) {}

  /** Records `record` (with whatever else finished meanwhile); the claim this process runs next, if any. */
  record(record: BatchRecord): Promise<TrackedClaim | null> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ record, settle: (next, err) => (err === undefined ? resolve(next) : reject(err)) });
      // Flushed on the next turn of the event loop: outcomes that arrive in this one go in the same commit.
      if (!this.#flushing) {
        this.#flushing = true;
        setImmediate(() => void this.#flush());
      }
    });
  }

  async #flush(): Promise<void> {
    const { env, def, id } = this;
    this.#flushing = true;
    try {
      while (this.#queue.length > 0) {
        // Successes first: a sibling whose result is already here is not written off by another's failure.
        const queued = this.#queue
          .splice(0)
          .sort((a, b) => Number(b.record.outcome.ok) - Number(a.record.outcome.ok));
        const records = queued.map((q) => q.record);
        try {
          // The first record's branch decides what is claimed next (its retry now, or the join), as alone.
          const only = onlyFor(def, records[0]!.claim);
          const next =
            this.known && carriesGroup(def, records)
              ? // Every branch's outcome is here: nothing to read, one optimistic statement as a line's.
                await transition(
                  env,
                  id,
                  (t) => {
                    const join = joining(
                      def,
                      t,
                      records.filter((r) => r.write(t)),
                    );
                    return env.stopping ? handOver(t) : planNext(t, def, env, only, join?.own);
                  },
                  this.known,
                )
              : await lockedTransition(env, id, async (t, db) => {
                  const join = records.filter((r) => r.write(t));
                  if (env.stopping) return handOver(t);
                  const outputs =
                    join.length > 0 ? await outputsToFinish(db, env.codec, def, t, join) : undefined;
                  return planNext(t, def, env, only, outputs);
                });
          this.known = undefined;
          queued.forEach((q, i) => q.settle(i === 0 ? next : null));
        } catch (err) {
          for (const q of queued) q.settle(null, err ?? new Error("record failed"));
        }
      }
    } finally {
      this.#flushing = false;
    }
  }
}
