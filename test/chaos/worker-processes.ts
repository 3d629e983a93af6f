/**
 * Starts and kills real worker processes (test/fixtures/chaos-worker.ts) and reads their JSON log lines.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface LogLine {
  level: string;
  message: string;
  [field: string]: unknown;
}

export interface ChaosWorker {
  child: ChildProcess;
  pid: number;
  workerId: string;
  logs: LogLine[];
  stderr: () => string;
  /** Exit code, or the signal name that ended it. */
  exited: Promise<number | string>;
  readonly alive: boolean;
}

const FIXTURE = fileURLToPath(new URL("../fixtures/chaos-worker.ts", import.meta.url));

/** Adds `application_name` to a URL, so a test can find this process's backends in pg_stat_activity. */
export function withAppName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set("application_name", name);
  return u.toString();
}

/**
 * Starts a worker process and waits for its "ready" line.
 *
 * @example
 * const w = await spawnChaosWorker({ DATABASE_URL: url, DEAD_AFTER_MS: "1500" });
 * w.child.kill("SIGKILL");
 */
export async function spawnChaosWorker(
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ChaosWorker> {
  const child = spawn(process.execPath, ["--import", "tsx", FIXTURE], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let done = false;
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true;
      resolve(code ?? signal ?? -1);
    }),
  );
  let err = "";
  child.stderr?.on("data", (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const logs: LogLine[] = [];
  let buffer = "";
  let onReady: ((id: string) => void) | undefined;
  child.stdout?.on("data", (d: Buffer) => {
    buffer += d.toString();
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const text = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      const ready = /^ready (\S+)/.exec(text);
      if (ready) onReady?.(ready[1] ?? "");
      else if (text.startsWith("{")) {
        try {
          logs.push(JSON.parse(text) as LogLine);
        } catch {
          // a line torn by a kill
        }
      }
    }
  });
  const workerId = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`worker not ready after ${timeoutMs} ms: ${err}`)),
      timeoutMs,
    );
    onReady = (id) => {
      clearTimeout(timer);
      resolve(id);
    };
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited (${code}) before ready: ${err}`));
    });
  });
  return {
    child,
    pid: child.pid ?? -1,
    workerId,
    logs,
    stderr: () => err,
    exited,
    get alive() {
      return !done;
    },
  };
}

/** Sends `signal` (default SIGTERM), then SIGKILL after `graceMs`; resolves with how it ended. */
export async function stopChaosWorker(
  w: ChaosWorker,
  signal: NodeJS.Signals = "SIGTERM",
  graceMs = 15_000,
): Promise<number | string> {
  if (!w.alive) return w.exited;
  w.child.kill("SIGCONT");
  w.child.kill(signal);
  const timer = setTimeout(() => w.child.kill("SIGKILL"), graceMs);
  const how = await w.exited;
  clearTimeout(timer);
  return how;
}

/** Counts log lines whose message starts with `prefix`. */
export const countLogs = (w: ChaosWorker, prefix: string) =>
  w.logs.filter((l) => l.message.startsWith(prefix)).length;

/** Polls `check` every 50 ms until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
