/**
 * User registration (the saga guide's scenario 4, microservice orchestration): create user → send welcome email
 * → push notification → record analytics → activate account. Push and analytics are non-critical: their failure
 * is recorded and the registration goes on. Compensation is best-effort: when activation fails for good, every
 * completed step is undone, and one undo that fails (the push cannot be retracted) does not stop the others; the saga
 * then ends `compensation_failed` for an operator, with the user already deleted.
 *
 * Run it: `npm run example:registration` (DATABASE_URL, or an embedded PostgreSQL).
 */
import { z } from "zod";
import { BusinessError, compensation, defineSaga, retry } from "../src/index.js";
import { type Log, isMain, runFromCommandLine, settle, withEngine } from "./run-example.js";

export class Services {
  readonly users = new Map<string, { email: string; active: boolean }>();
  readonly emails: string[] = [];
  readonly pushes = new Set<string>();
  readonly analytics: string[] = [];
  pushDown = false;
  /** The push service accepts sends but cannot retract them. */
  retractDown = false;
  analyticsDown = false;
}

/**
 * Runs a non-critical call: a failure is kept in the data as `skipped` instead of failing the saga. Use it for
 * work whose absence the business accepts (a notification, a metric).
 */
export async function nonCritical<T>(
  name: string,
  call: () => T | Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; skipped: string }> {
  try {
    return { ok: true, value: await call() };
  } catch (err) {
    return { ok: false, skipped: `${name}: ${err instanceof Error ? err.message : String(err)}` };
  }
}

const input = z.object({
  email: z.string().email(),
  name: z.string().min(1),
  /** The billing system refuses to activate this plan. */
  plan: z.enum(["free", "pro", "banned-region"]),
});

export function userRegistrationSaga(s: Services) {
  return defineSaga({
    name: "user-registration",
    input,
    timeout: "15m",
    retry: retry.exponential({ maxAttempts: 3, initialDelay: "50ms", maxDelay: "500ms" }),
    compensation: compensation.bestEffort({ timeout: "30s" }),
  })
    .step("create-user", {
      execute: (d, ctx) => {
        s.users.set(ctx.sagaId, { email: d.email, active: false });
        return { ...d, userId: ctx.sagaId };
      },
      compensate: (_d, ctx) => {
        s.users.delete(ctx.sagaId);
      },
    })
    .step("send-welcome-email", {
      execute: (d) => {
        s.emails.push(`welcome ${d.email}`);
        return d;
      },
      compensate: (d) => {
        s.emails.push(`sorry ${d.email}`);
      },
    })
    .step("push-notification", {
      execute: async (d) => {
        const push = await nonCritical("push", () => {
          if (s.pushDown) throw new Error("push service unavailable");
          s.pushes.add(d.userId);
        });
        return { ...d, push: push.ok ? "sent" : push.skipped };
      },
      compensateRetry: retry.fixed({ maxAttempts: 2, delay: "50ms" }),
      compensate: (d) => {
        if (s.retractDown) throw new Error("push service cannot retract the notification right now");
        s.pushes.delete(d.userId);
      },
    })
    .step("record-analytics", {
      execute: async (d) => {
        const recorded = await nonCritical("analytics", () => {
          if (s.analyticsDown) throw new Error("analytics ingest timed out");
          s.analytics.push(`signup ${d.plan}`);
        });
        return { ...d, analytics: recorded.ok ? "recorded" : recorded.skipped };
      },
    })
    .step("activate-account", {
      execute: (d) => {
        if (d.plan === "banned-region")
          throw new BusinessError("ACTIVATION_REFUSED", "plan not sold in this region");
        s.users.set(d.userId, { email: d.email, active: true });
        return { ...d, active: true };
      },
    });
}

/** A clean signup, one with push and analytics down (still completes), one refused at activation while pushes cannot be retracted. */
export async function runRegistrationExample(url: string, log: Log = () => {}) {
  const s = new Services();
  const saga = userRegistrationSaga(s);
  return withEngine(url, [saga], async (engine) => {
    const ok = await settle(
      engine,
      (await engine.start(saga, { email: "ana@example.com", name: "Ana", plan: "pro" })).id,
      "ana",
      log,
    );
    s.analyticsDown = true;
    s.pushDown = true;
    const degraded = await settle(
      engine,
      (await engine.start(saga, { email: "bo@example.com", name: "Bo", plan: "free" })).id,
      "bo (push and analytics down)",
      log,
    );
    s.analyticsDown = false;
    s.pushDown = false;
    s.retractDown = true;
    const refused = await settle(
      engine,
      (await engine.start(saga, { email: "cy@example.com", name: "Cy", plan: "banned-region" })).id,
      "cy (activation refused, push retraction down)",
      log,
    );
    log(
      `users: ${[...s.users.values()].map((u) => `${u.email}${u.active ? "" : " (inactive)"}`).join(", ")}`,
    );
    return { services: s, sagas: { ok, degraded, refused } };
  });
}

if (isMain(import.meta.url)) await runFromCommandLine(runRegistrationExample);
