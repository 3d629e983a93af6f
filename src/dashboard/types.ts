/** What the dashboard needs from an engine (structural, so this folder does not import engine.ts). */
import type pg from "pg";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { SagaInstance } from "../instance-view.js";
import type { SagaState } from "../model.js";
import type * as relay from "../relay/types.js";
import type { ResumeOptions } from "../worker/resume.js";

export interface DashboardEngine {
  readonly pool: pg.Pool;
  get(id: string): Promise<SagaInstance | null>;
  cancel(id: string, reason?: string): Promise<{ state: SagaState }>;
  retry(id: string, options?: ResumeOptions): Promise<{ state: SagaState }>;
  subscribe(
    filter: relay.EventFilter,
    handler: relay.EventHandler,
    options?: relay.SubscribeOptions,
  ): relay.Subscription;
  deadLetters(
    subscription: string,
    options?: { includeDelivered?: boolean; limit?: number },
  ): Promise<relay.DeadLetter[]>;
  redrive(target: number | { subscription: string }): Promise<{ redriven: number }>;
}

/** Options of `engine.dashboard()`. */
export interface DashboardOptions {
  /**
   * The secret every request must carry (`Authorization: Bearer <token>` or the login form's cookie).
   * Default: `PG_SAGA_DASHBOARD_TOKEN`; without either, only loopback clients are served.
   */
  token?: string;
  /** Hide and refuse cancel, retry and redrive. Default false. */
  readOnly?: boolean;
  /** The path the handler is mounted under, e.g. `/saga` (stripped from request URLs, prefixed to links). */
  basePath?: string;
  /** Who acts, recorded with cancel and retry as `dashboard:<name>`. Default: `dashboard`. */
  user?: (req: IncomingMessage) => string | undefined;
}

/** A plain Node request handler; `close()` ends its live streams (call it before `server.close()`). */
export interface DashboardHandler {
  (req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}
