/** Prometheus counters of the bridges in one registry (a worker's, or the `pg-saga bridge` command's). */
import { Counter, Gauge, type Registry } from "prom-client";
import type { Executor } from "../executor.js";
import { cursorLag } from "../sql/outbox-read.js";

/** What one bridge counts in this process. */
export interface BridgeStats {
  /** Messages handed to the broker (each attempt counts). */
  published: number;
  /** Messages the broker acknowledged (PubAck, publisher confirm). */
  acked: number;
  /** Messages published again after a failed batch or a restart (the broker or the consumer drops them). */
  republished: number;
  /** Messages the broker refused for good: dead letters. */
  refused: number;
  /** Batches that failed (broker down, timeout) and will be published again. */
  failures: number;
  connected: boolean;
}

export interface BridgeMeters {
  count(
    bridge: string,
    what: "published" | "acked" | "republished" | "refused" | "failures",
    n?: number,
  ): void;
  /** Adds a bridge to the gauges; returns its removal. */
  track(bridge: { name: string; stats: BridgeStats }): () => void;
}

// One set of meters per registry: several workers of one process may share a registry.
const byRegistry = new WeakMap<Registry, BridgeMeters>();

const LABELS = ["bridge"] as const;

/**
 * Registers (once per registry) the bridge metrics; the lag gauge reads each bridge's cursor at scrape time.
 * @internal
 */
export function bridgeMeters(registry: Registry, db: Executor): BridgeMeters {
  const known = byRegistry.get(registry);
  if (known) return known;
  const bridges = new Set<{ name: string; stats: BridgeStats }>();
  const counter = (name: string, help: string) =>
    new Counter({ name, help, labelNames: LABELS, registers: [registry] });
  const counters = {
    published: counter(
      "pg_saga_bridge_published_total",
      "Messages a bridge handed to its broker, retries included",
    ),
    acked: counter(
      "pg_saga_bridge_acked_total",
      "Messages the broker acknowledged (JetStream PubAck, publisher confirm)",
    ),
    republished: counter(
      "pg_saga_bridge_republished_total",
      "Messages published again after a failed batch or a restart; the broker or the consumer drops them",
    ),
    refused: counter("pg_saga_bridge_refused_total", "Messages the broker refused for good (dead letters)"),
    failures: counter(
      "pg_saga_bridge_failures_total",
      "Batches that failed (broker down, timeout) and are retried",
    ),
  };
  {
    new Gauge({
      name: "pg_saga_bridge_connected",
      help: "1 while the bridge in this process has a broker connection",
      labelNames: LABELS,
      registers: [registry],
      collect() {
        this.reset();
        for (const b of bridges) this.set({ bridge: b.name }, b.stats.connected ? 1 : 0);
      },
    });
    new Gauge({
      name: "pg_saga_bridge_lag_seconds",
      help: "Age of the oldest event a bridge has not had acknowledged yet; 0 when caught up",
      labelNames: LABELS,
      registers: [registry],
      async collect() {
        this.reset();
        for (const b of bridges) {
          const ms = await cursorLag(db, b.name).catch(() => null);
          if (ms !== null) this.set({ bridge: b.name }, ms / 1_000);
        }
      },
    });
  }
  const meters: BridgeMeters = {
    count(bridge, what, n = 1) {
      if (n > 0) counters[what].inc({ bridge }, n);
    },
    track(bridge) {
      bridges.add(bridge);
      return () => bridges.delete(bridge);
    },
  };
  byRegistry.set(registry, meters);
  return meters;
}
