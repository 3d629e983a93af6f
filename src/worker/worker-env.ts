import type pg from "pg";
import type { PayloadCodec } from "../codec/codec.js";
import type { Executor } from "../executor.js";
import type { Logger } from "../logger.js";
import type { Claim, DecideEnv } from "../model.js";
import type { StepObserver } from "../observability/step-observer.js";
import type { Transition } from "./transition.js";

/** What the step loop needs from the worker that runs it. */
export interface WorkerEnv extends DecideEnv {
  pool: pg.Pool;
  /** `pool`, with a lost connection reported as ConnectionLostError (SQLSTATE 08006): see db.ts. */
  db: Executor;
  logger: Logger;
  readonly stopping: boolean;
  /** How long a handler aborted by a cancel or a deadline may take to return (see callHandler). */
  abortGraceMs: number;
  /** Decodes what transitions read and encodes what they write (plainCodec: none). */
  codec: PayloadCodec;
  track(sagaId: string, kind: Claim["kind"], index: number, controller: AbortController): () => void;
  /** Local wake-up timers for jobs scheduled later: the database row stays the source of truth. */
  wakeAfter(delaysMs: number[]): void;
  onDiscarded(claim: Claim): void;
  onTransition?(saga: Transition): void;
  /** Takes a slot of the worker's concurrency for a branch claimed together with others; returns its release. */
  extraSlot?: () => () => void;
  /** Tracing and step metrics; absent, or returning nothing, when both are off. */
  observeStep?: StepObserver;
}
