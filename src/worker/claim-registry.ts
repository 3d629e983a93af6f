/**
 * The claims this process runs, by their AbortController: what the reaper must not recover (it is ours and
 * running), what a cancel or a deadline aborts (control.ts), and what stop() aborts past its grace.
 */
import type { ActiveClaims } from "./control.js";
import type { Claim } from "../model.js";

const claimKey = (sagaId: string, kind: Claim["kind"], index: number) => `${sagaId}/${kind}/${index}`;

export class ClaimRegistry {
  // Two decisions racing for the same step may both be registered for a moment: keyed by controller, so the
  // loser's release does not unregister the winner.
  readonly #claims = new Map<AbortController, string>();

  /** controller → `sagaId/kind/index`, as control.ts reads it. */
  get claims(): ActiveClaims {
    return this.#claims;
  }

  get size(): number {
    return this.#claims.size;
  }

  /** Whether this process runs the claim right now. */
  isActive = (sagaId: string, kind: Claim["kind"], index: number): boolean => {
    const key = claimKey(sagaId, kind, index);
    for (const held of this.#claims.values()) if (held === key) return true;
    return false;
  };

  /** Registers a claim under its controller; returns its release. */
  track = (sagaId: string, kind: Claim["kind"], index: number, controller: AbortController): (() => void) => {
    this.#claims.set(controller, claimKey(sagaId, kind, index));
    return () => {
      this.#claims.delete(controller);
    };
  };

  /** Aborts every running claim's handler with `reason`. */
  abortAll(reason: Error): void {
    for (const controller of this.#claims.keys()) controller.abort(reason);
  }
}
