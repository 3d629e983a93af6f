/**
 * Server-sent events: one LISTEN-only subscription (the relay's NOTIFY) per dashboard, opened while a page
 * listens, fanned out to every open stream. At most once by design: a page that reconnects reloads its data.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { SagaEvent, Subscription } from "../relay/types.js";
import { SECURITY_HEADERS } from "./http.js";
import type { DashboardEngine } from "./types.js";

interface Stream {
  res: ServerResponse;
  saga: string | null;
}

const HEARTBEAT_MS = 15_000;
// Moving from page to page closes one stream and opens the next: the subscription outlives the gap.
const LINGER_MS = 10_000;

export class LiveEvents {
  private readonly streams = new Set<Stream>();
  private subscription: Subscription | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private linger: NodeJS.Timeout | null = null;

  constructor(private readonly engine: DashboardEngine) {}

  /** Opens a stream; `saga` narrows it to one saga's events. */
  open(req: IncomingMessage, res: ServerResponse, saga: string | null): void {
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      "Content-Type": "text/event-stream; charset=utf-8",
      Connection: "keep-alive",
      "X-Accel-Buffering": "no",
    });
    // The browser reconnects a second after a drop.
    res.write("retry: 1000\n: connected\n\n");
    const stream: Stream = { res, saga };
    this.streams.add(stream);
    req.on("close", () => this.drop(stream));
    this.start();
    // "ready" once LISTEN is on: the page reloads its data then, so nothing between render and listen is lost.
    this.ready().then(
      () => {
        if (this.streams.has(stream)) res.write("event: ready\ndata: {}\n\n");
      },
      () => {},
    );
  }

  private start(): void {
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
    if (this.subscription) return;
    this.subscription = this.engine.subscribe({}, (event) => this.fanOut(event));
    this.heartbeat = setInterval(() => {
      for (const s of this.streams) s.res.write(": ping\n\n");
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** Resolves once the shared subscription listens (tests and benches wait for it). */
  async ready(): Promise<void> {
    await this.subscription?.ready;
  }

  private fanOut(event: SagaEvent): void {
    const data = JSON.stringify({
      id: event.id,
      sagaId: event.sagaId,
      seq: event.seq,
      type: event.type,
      step: event.step,
      name: event.name,
      key: event.key,
      createdAt: event.createdAt,
    });
    for (const s of this.streams) {
      if (s.saga !== null && s.saga !== event.sagaId) continue;
      s.res.write(`id: ${event.id}\nevent: saga\ndata: ${data}\n\n`);
    }
  }

  private drop(stream: Stream): void {
    this.streams.delete(stream);
    if (this.streams.size > 0 || this.linger) return;
    this.linger = setTimeout(() => {
      this.linger = null;
      if (this.streams.size === 0) void this.stop();
    }, LINGER_MS);
    this.linger.unref();
  }

  private async stop(): Promise<void> {
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    const sub = this.subscription;
    this.subscription = null;
    await sub?.close();
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.res.end();
    this.streams.clear();
    await this.stop();
  }
}
