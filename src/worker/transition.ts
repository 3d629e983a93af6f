import type { Executor } from "../executor.js";
import {
  type EventRow,
  type InstancePatch,
  type JobSpec,
  type StepPatch,
  type TransitionWrites,
  applyTransition,
  applyTransitionSql,
  commitTransition,
} from "../sql/apply-transition.js";
import type { LockedSaga, SagaState, StepRow } from "../model.js";
import { type PayloadCodec, decodeError, decodeValue, encodeValue, plainCodec } from "../codec/codec.js";
import { encodeWrites } from "../codec/encode-writes.js";

/** What a claim writes on a step row (planNext, claimCompensation); any other field is a record. */
const CLAIM_FIELDS = new Set<string>([
  "index",
  "name",
  "status",
  "attempt",
  "compensation_attempt",
  "lease_owner",
  "lease_ms",
  "started",
  "compensation_started",
  "fence",
] satisfies (keyof StepPatch)[]);

/**
 * The writes of one transition, collected while the instance row is locked and flushed in one round trip.
 * It also keeps the in-memory view of the saga current, so a decision taken after a record in the same
 * transaction (record step N, claim step N+1) sees what the record did.
 */
export class Transition {
  private readonly instance: InstancePatch = {};
  private readonly stepPatches = new Map<number, StepPatch>();
  private readonly events: EventRow[] = [];
  private readonly jobs: JobSpec[] = [];
  private notify: string | null = null;
  private doneJob: string | null = null;

  /**
   * `codec`: the saga as read is decoded here (data, error details), and what the transition writes is encoded
   * in {@link writes}: decisions work on plaintext, the tables get only what the codec produced. A value that
   * does not decode throws before anything is written.
   */
  constructor(
    readonly saga: LockedSaga,
    private readonly codec: PayloadCodec = plainCodec,
  ) {
    saga.data = decodeValue(codec, saga.data);
    saga.error = decodeError(codec, saga.error);
    for (const step of saga.steps) {
      step.error = decodeError(codec, step.error);
      if (step.child) {
        step.child.result = decodeValue(codec, step.child.result);
        step.child.error = decodeError(codec, step.child.error);
      }
    }
  }

  get empty(): boolean {
    return (
      Object.keys(this.instance).length === 0 &&
      this.stepPatches.size === 0 &&
      this.events.length === 0 &&
      this.jobs.length === 0
    );
  }

  step(index: number): StepRow | undefined {
    return this.saga.steps.find((s) => s.index === index);
  }

  /** Moves the saga to `state`, writing `fields` with it. */
  setState(state: SagaState, fields: Omit<InstancePatch, "state"> = {}): void {
    this.setInstance({ ...fields, state });
  }

  /** Merges `fields` into the instance row's pending write and the in-memory saga. */
  setInstance(fields: InstancePatch): void {
    if (fields.state !== undefined) this.saga.state = fields.state;
    if (fields.current_step !== undefined) this.saga.current_step = fields.current_step;
    if ("data" in fields) this.saga.data = fields.data;
    if ("compensation_cause" in fields) this.saga.compensation_cause = fields.compensation_cause ?? null;
    if ("error" in fields) this.saga.error = (fields.error ?? null) as LockedSaga["error"];
    Object.assign(this.instance, fields);
  }

  /** Merges a patch into the step's pending write and its in-memory row. */
  patchStep(patch: StepPatch): void {
    const previous = this.stepPatches.get(patch.index);
    // A fence belongs to the first patch of the row in this transition: it guards what was read under lock. A
    // later patch's fence describes this transition's own earlier write, not the row in the database: dropped
    // (a row this transition inserts has no fence at all).
    const merged: StepPatch = previous ? { ...previous, ...patch } : patch;
    const fence = previous ? previous.fence : patch.fence;
    if (fence) merged.fence = fence;
    else delete merged.fence;
    this.stepPatches.set(patch.index, merged);

    let row = this.step(patch.index);
    if (!row) {
      row = {
        index: patch.index,
        name: patch.name,
        status: patch.status,
        attempt: 0,
        attempt_base: 0,
        compensation_attempt: 0,
        compensation_attempt_base: 0,
        lease_owner: null,
        due: true,
        error: null,
      };
      this.saga.steps.push(row);
      this.saga.steps.sort((a, b) => a.index - b.index);
    }
    row.status = patch.status;
    if (patch.attempt !== undefined) row.attempt = patch.attempt;
    if (patch.attempt_base !== undefined) row.attempt_base = patch.attempt_base;
    if (patch.compensation_attempt !== undefined) row.compensation_attempt = patch.compensation_attempt;
    if (patch.compensation_attempt_base !== undefined)
      row.compensation_attempt_base = patch.compensation_attempt_base;
    if ("lease_owner" in patch) row.lease_owner = patch.lease_owner ?? null;
    if ("error" in patch) row.error = (patch.error ?? null) as StepRow["error"];
    row.due = !(patch.next_attempt_ms !== undefined && patch.next_attempt_ms > 0);
  }

  event(type: string, step?: string, payload?: unknown): void {
    this.saga.seq += 1;
    const row: EventRow = { seq: this.saga.seq, type };
    if (step !== undefined) row.step = step;
    if (payload !== undefined) row.payload = payload;
    this.events.push(row);
  }

  job(payload: Record<string, unknown>, delayMs = 0): void {
    this.jobs.push(delayMs > 0 ? { payload, delay_ms: delayMs } : { payload });
  }

  /** A write on this saga's children (start, cancel, compensate: src/worker/children.ts); an input is encoded. */
  childJob(spec: Record<string, unknown>): void {
    this.jobs.push({
      child: "input" in spec ? { ...spec, input: encodeValue(this.codec, spec.input) } : spec,
    });
  }

  /**
   * Ends the graphile-worker job running this transition in the same commit. Only with something else to write:
   * a transition is never committed just for this (graphile-worker completes the job then).
   */
  finishJob(jobId: string): void {
    this.doneJob = jobId;
  }

  /** Wakes the workers that run this saga's handlers (cancel, deadline): they abort their signals. */
  notifyControl(message: Record<string, unknown>): void {
    this.notify = JSON.stringify({ id: this.saga.id, ...message });
  }

  /**
   * Whether this transition writes nothing but claims: step rows leased to this worker to run or compensate,
   * their `saga.step.started` events and the event sequence, no result, no state, no job. Such a commit need
   * not wait for the disk (see {@link commit}): lost in a server crash, the saga is as it was before the claim,
   * and the step runs again, which at-least-once allows. Every later commit of the saga waits for the disk,
   * and so flushes the claim's WAL with its own.
   */
  get claimOnly(): boolean {
    if (this.stepPatches.size === 0 || this.jobs.length > 0 || this.notify !== null || this.doneJob !== null)
      return false;
    if (Object.keys(this.instance).some((k) => k !== "seq")) return false;
    for (const patch of this.stepPatches.values()) {
      const claim =
        patch.status === "running"
          ? "started"
          : patch.status === "compensating"
            ? "compensation_started"
            : null;
      if (!claim || patch[claim] !== true || !patch.lease_owner) return false;
      if (Object.keys(patch).some((k) => !CLAIM_FIELDS.has(k))) return false;
    }
    return this.events.every((e) => e.type === "saga.step.started");
  }

  /** The events this transition writes, in order: what metrics count once it is flushed. */
  get writtenEvents(): readonly EventRow[] {
    return this.events;
  }

  /** Scheduled job delays, for local wake-up timers. */
  get delayedJobs(): number[] {
    return this.jobs.flatMap((j) => ("delay_ms" in j && j.delay_ms ? [j.delay_ms] : []));
  }

  /** What this transition writes; `null` when nothing (a transition is never committed just to end its job). */
  private writes(): TransitionWrites | null {
    if (this.empty && this.notify === null) return null;
    if (this.events.length > 0) this.instance.seq = this.saga.seq;
    const codec = this.codec;
    if (codec !== plainCodec)
      return encodeWrites(codec, {
        instance: this.instance,
        steps: [...this.stepPatches.values()],
        events: this.events,
        jobs: this.doneJob === null ? this.jobs : [...this.jobs, { done: this.doneJob }],
        notify: this.notify,
      });
    return {
      instance: this.instance,
      steps: [...this.stepPatches.values()],
      events: this.events,
      jobs: this.doneJob === null ? this.jobs : [...this.jobs, { done: this.doneJob }],
      notify: this.notify,
    };
  }

  /** Writes the transition inside a transaction that already holds the instance row lock. */
  async flush(db: Executor): Promise<void> {
    const writes = this.writes();
    if (writes) await applyTransition(db, this.saga.id, writes);
  }

  /** {@link flush} as SQL text, for a transaction that sends it with its COMMIT; `null` when nothing to write. */
  flushSql(): string | null {
    const writes = this.writes();
    return writes ? applyTransitionSql(this.saga.id, writes) : null;
  }

  /**
   * Writes the transition as one statement that locks the instance row and applies only if the row is still
   * the version this decision was read at. Returns the saga's state after it, or the current state with
   * `applied: false` when another transition came first (nothing written: decide again). A transition with
   * nothing to write writes nothing and returns the state it was decided from. A claim-only transition
   * ({@link claimOnly}) commits without waiting for its WAL to reach the disk.
   */
  async commit(db: Executor): Promise<{ applied: boolean; saga: LockedSaga } | null> {
    const writes = this.writes();
    return writes
      ? commitTransition(db, this.saga.id, this.saga.xmin, writes, { durable: !this.claimOnly })
      : { applied: true, saga: this.saga };
  }
}
