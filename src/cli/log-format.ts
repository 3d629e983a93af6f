/**
 * What the CLI's pino writes to: JSON lines (for log collectors), or on a terminal one readable line per record;
 * either way the same message repeated within a few seconds (a database outage) is written once, then counted.
 */
import type { Colours } from "./format.js";

const LEVELS: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const QUIET_MS = 5_000;

export interface LineSink {
  write(text: string): void;
}

/**
 * A pino destination: `pretty` renders `12:00:01 WARN message key=value`; repeats of a message within 5 s are
 * dropped, and the next one written says how many were (`repeated: 12`).
 *
 * @example
 * pino({}, logDestination(process.stderr, { pretty: process.stderr.isTTY === true, c: colours(true) }))
 */
export function logDestination(sink: LineSink, o: { pretty: boolean; c: Colours; now?: () => number }) {
  const now = o.now ?? Date.now;
  const last = new Map<string, { at: number; dropped: number }>();
  return {
    write(line: string): void {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        sink.write(line);
        return;
      }
      const key = `${String(record.level)} ${String(record.msg)}`;
      const seen = last.get(key);
      const t = now();
      if (seen && t - seen.at < QUIET_MS) {
        seen.dropped++;
        return;
      }
      if (seen?.dropped) record.repeated = seen.dropped;
      last.set(key, { at: t, dropped: 0 });
      if (last.size > 1000) last.clear();
      sink.write(o.pretty ? `${pretty(record, o.c)}\n` : `${JSON.stringify(record)}\n`);
    },
  };
}

function pretty(record: Record<string, unknown>, c: Colours): string {
  const { level, time, msg, pid: _pid, hostname: _hostname, ...fields } = record;
  const name = LEVELS[Number(level)] ?? String(level);
  const paint = Number(level) >= 50 ? c.red : Number(level) >= 40 ? c.yellow : c.cyan;
  const clock = typeof time === "number" ? new Date(time).toISOString().slice(11, 19) : "";
  const rest = Object.entries(fields)
    .map(([k, v]) => `${c.dim(`${k}=`)}${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return [c.dim(clock), paint(name.padEnd(5)), String(msg ?? ""), rest].filter(Boolean).join(" ");
}
