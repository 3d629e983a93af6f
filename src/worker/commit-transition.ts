/**
 * How a saga job commits its transitions: as one optimistic statement (the hot path), or inside an explicit
 * transaction that holds the instance row lock (transactional steps). Both register a claim as this
 * process's before it commits, and end the running job in the commit that leaves it nothing to do.
 */
import { isTransientDbError, sqlState, withTransaction } from "../db.js";
import type { Executor } from "../executor.js";
import type { Claim, LockedSaga } from "../model.js";
import { lockInstanceSql, readSaga } from "../sql/lock-instance.js";
import type { WorkerEnv } from "./worker-env.js";
import { Transition } from "./transition.js";

/** A claim this process holds: registered as active before its claim commits (see recoverOwnLostLeases). */
export interface TrackedClaim extends Claim {
  controller: AbortController;
  untrack: () => void;
  /** The saga as the claim's commit left it: the next transition decides from it without reading. */
  next?: LockedSaga;
  together?: TrackedClaim[];
  /** A branch claimed together: its slot, taken as it is claimed (before any other decision reads the spare ones). */
  release?: () => void;
}

function trackClaim(env: WorkerEnv, id: string, claim: Claim | null): TrackedClaim | null {
  if (!claim) return null;
  const controller = new AbortController();
  const { together: batch, ...one } = claim;
  // Each branch claimed together takes its slot now, before any other decision reads the spare ones.
  const together = batch?.map((c) => {
    const tracked = trackClaim(env, id, c) as TrackedClaim;
    const release = env.extraSlot?.();
    return release ? { ...tracked, release } : tracked;
  });
  return {
    ...one,
    controller,
    untrack: env.track(id, claim.kind, claim.index, controller),
    ...(together ? { together } : {}),
  };
}

/** Releases a claim and the branches claimed with it: their commit failed, they are not ours to run. */
function untrackAll(claim: TrackedClaim | null): void {
  claim?.untrack();
  for (const c of claim?.together ?? []) {
    c.untrack();
    c.release?.();
  }
}

/**
 * The hot path: one statement per transition. The decision is made from the saga as last seen (or read
 * without a lock); saga._transition locks the instance row, applies only if the row is still that version,
 * and returns the new state. When another transition came first nothing is written and the decision is taken
 * again from the state it returns. A claim is tracked as active before its commit, so no other transition
 * of this process can mistake it for a lost lease.
 */
export async function transition(
  env: WorkerEnv,
  id: string,
  decide: (t: Transition) => Claim | null | void,
  known?: LockedSaga,
  jobId?: string,
): Promise<TrackedClaim | null> {
  let saga = known ?? (await readSaga(env.db, id));
  for (let failures = 0; saga;) {
    const t = new Transition(saga, env.codec);
    const tracked = trackClaim(env, id, decide(t) ?? null);
    // Nothing more for this job to do: it ends in this commit (see Transition.finishJob).
    if (!tracked && jobId !== undefined) t.finishJob(jobId);
    let result: Awaited<ReturnType<Transition["commit"]>>;
    try {
      result = await t.commit(env.db);
    } catch (err) {
      untrackAll(tracked);
      // Committed or not, the saga's version tells: decide again from what is there now. So too when a fenced
      // step row moved on under a version that did not (SG409: a claim lost in a server crash).
      const moved = sqlState(err) === "SG409";
      if ((!moved && !isTransientDbError(err)) || ++failures > 8) throw err;
      if (!moved) await new Promise((r) => setTimeout(r, Math.min(2_000, 25 * 2 ** failures)));
      saga = await readSaga(env.db, id);
      continue;
    }
    if (!result) {
      untrackAll(tracked);
      return null;
    }
    if (!result.applied) {
      untrackAll(tracked);
      saga = result.saga;
      continue;
    }
    env.onTransition?.(t);
    const delays = t.delayedJobs;
    if (delays.length > 0) env.wakeAfter(delays);
    if (tracked) tracked.next = result.saga;
    return tracked;
  }
  return null;
}

/**
 * A transition inside an explicit transaction that holds the instance row lock: for transactional steps,
 * whose handler writes on the same transaction. `null` when the saga does not exist. Round trips: BEGIN, the
 * lock and `prelude` in one message; whatever `decide` sends (the handler's queries); then the statements
 * `decide` pushes into `close`, the transition's writes and COMMIT in one message.
 */
export async function lockedTransition(
  env: WorkerEnv,
  id: string,
  decide: (t: Transition, db: Executor, close: string[]) => Promise<Claim | null | void>,
  jobId?: string,
  prelude?: string,
): Promise<TrackedClaim | null> {
  let delays: number[] = [];
  // A claim tracked by an attempt whose commit failed is no longer ours to run: a retry of the transaction
  // (or a later one) finds the lease untracked and writes the attempt off as lost.
  let pending: TrackedClaim | null = null;
  const result = await withTransaction(
    env.pool,
    async (db, opened, close) => {
      untrackAll(pending);
      pending = null;
      const saga = (opened[0]?.rows[0] as { saga: LockedSaga | null } | undefined)?.saga ?? null;
      if (!saga) return null;
      const t = new Transition(saga, env.codec);
      const tracked = trackClaim(env, id, (await decide(t, db, close)) ?? null);
      pending = tracked;
      if (!tracked && jobId !== undefined) t.finishJob(jobId);
      const writes = t.flushSql();
      if (writes !== null) close.push(writes);
      delays = t.delayedJobs;
      env.onTransition?.(t);
      return tracked;
    },
    10,
    `${lockInstanceSql(id)}${prelude === undefined ? "" : `;\n${prelude}`}`,
  ).catch((err: unknown) => {
    untrackAll(pending as TrackedClaim | null);
    throw err;
  });
  if (delays.length > 0) env.wakeAfter(delays);
  return result;
}
