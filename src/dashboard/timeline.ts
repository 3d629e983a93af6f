/**
 * A saga's steps on a time axis, as SVG: one bar per attempt (claim to record, from the event log), the wait
 * before a retry as a dashed line, and each step's compensation drawn under its forward path.
 */
import type { SagaInstance } from "../instance-view.js";
import { type Html, h, ms } from "./html.js";
import type { EventRow } from "./queries.js";

interface Segment {
  from: number;
  to: number;
  outcome: "ok" | "retry" | "failed" | "running" | "compensated" | "compensating";
  label: string;
}

const LABEL_W = 150;
const TRACK_W = 600;
const ROW_H = 22;

const at = (d: Date | string) => new Date(d).getTime();

/** Attempts of each forward step, from the events (claim: saga.step.started; record: completed/retrying/failed). */
export function attemptsOf(events: EventRow[], now: number): Map<string, Segment[]> {
  const byStep = new Map<string, Segment[]>();
  const open = new Map<string, { from: number; attempt: unknown }>();
  for (const e of events) {
    if (!e.step) continue;
    const p = (e.payload ?? {}) as { attempt?: unknown; manual?: unknown; delayMs?: unknown };
    const list = byStep.get(e.step) ?? [];
    byStep.set(e.step, list);
    if (e.type === "saga.step.started") {
      open.set(e.step, { from: at(e.createdAt), attempt: p.attempt });
      continue;
    }
    const outcome =
      e.type === "saga.step.completed"
        ? "ok"
        : e.type === "saga.step.retrying"
          ? "retry"
          : e.type === "saga.step.failed"
            ? "failed"
            : null;
    const started = open.get(e.step);
    if (!outcome || !started || p.manual === true) continue;
    open.delete(e.step);
    list.push({
      from: started.from,
      to: at(e.createdAt),
      outcome,
      label: `attempt ${String(started.attempt ?? "?")}: ${outcome === "ok" ? "succeeded" : outcome === "retry" ? `failed, retry in ${ms(Number(p.delayMs))}` : "failed"}`,
    });
  }
  for (const [step, started] of open) {
    byStep.get(step)?.push({
      from: started.from,
      to: now,
      outcome: "running",
      label: `attempt ${String(started.attempt ?? "?")}: running`,
    });
  }
  return byStep;
}

export function timeline(saga: SagaInstance, events: EventRow[], now = Date.now()): Html {
  const end = saga.finishedAt ? at(saga.finishedAt) : now;
  const t0 = at(saga.createdAt);
  const t1 = Math.max(end, ...events.map((e) => at(e.createdAt)), t0 + 1);
  const x = (t: number) => LABEL_W + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * TRACK_W;
  const attempts = attemptsOf(events, now);
  const rows: Html[] = [];
  let row = 0;
  for (const step of saga.steps) {
    const y = row * ROW_H + 4;
    const segments = attempts.get(step.name) ?? [];
    if (segments.length === 0 && step.startedAt) {
      segments.push({
        from: at(step.startedAt),
        to: step.finishedAt ? at(step.finishedAt) : now,
        outcome: step.status === "running" ? "running" : step.status === "failed" ? "failed" : "ok",
        label: step.status,
      });
    }
    const bars = segments.map((s, i) => {
      const prev = segments[i - 1];
      const wait = prev
        ? h`<line class="wait" x1="${x(prev.to).toFixed(1)}" x2="${x(s.from).toFixed(1)}" y1="${y + 8}" y2="${y + 8}"></line>`
        : "";
      return h`${wait}<rect class="seg seg-${s.outcome}" x="${x(s.from).toFixed(1)}" y="${y}" width="${Math.max(2, x(s.to) - x(s.from)).toFixed(1)}" height="16"><title>${step.name} ${s.label} (${ms(s.to - s.from)})</title></rect>`;
    });
    rows.push(
      h`<g class="step-row" data-step="${step.name}"><text class="label" x="4" y="${y + 12}">${step.name}</text><text class="status" x="${LABEL_W - 6}" y="${y + 12}" text-anchor="end">${step.status}</text>${bars}</g>`,
    );
    row++;
    if (step.compensationStartedAt) {
      const cy = row * ROW_H + 4;
      const from = at(step.compensationStartedAt);
      const to = step.compensationFinishedAt ? at(step.compensationFinishedAt) : now;
      const outcome = step.status === "compensated" ? "compensated" : "compensating";
      rows.push(
        h`<g class="comp-row" data-step="${step.name}"><text class="label comp" x="14" y="${cy + 12}">↶ undo ${step.name}</text><rect class="seg seg-${outcome}" x="${x(from).toFixed(1)}" y="${cy}" width="${Math.max(2, x(to) - x(from)).toFixed(1)}" height="16"><title>compensation of ${step.name}: ${step.status}, ${step.compensationAttempt} attempt(s) (${ms(to - from)})</title></rect></g>`,
      );
      row++;
    }
  }
  const height = row * ROW_H + 24;
  return h`<svg class="timeline" viewBox="0 0 ${LABEL_W + TRACK_W + 10} ${height}" role="img" aria-label="step timeline">
${rows}
<line class="axis" x1="${LABEL_W}" x2="${LABEL_W + TRACK_W}" y1="${height - 18}" y2="${height - 18}"></line>
<text class="tick" x="${LABEL_W}" y="${height - 4}">0</text>
<text class="tick" x="${LABEL_W + TRACK_W}" y="${height - 4}" text-anchor="end">${ms(t1 - t0)}</text>
</svg>`;
}
