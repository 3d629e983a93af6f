/**
 * `pg-saga bridge nats|rabbitmq --url …`: runs one bridge from the outbox to a broker until SIGTERM/SIGINT.
 * Any number may run: one holds the lease of the bridge's name and publishes, the others stand by.
 */
import type { Command } from "commander";
import { Registry } from "prom-client";
import type { Bridge, BridgeEnvelope } from "../../bridges/bridge.js";
import { natsBridge } from "../../bridges/nats-bridge.js";
import { rabbitBridge } from "../../bridges/rabbit-bridge.js";
import { serveMetrics } from "../../observability/metrics-server.js";
import { CliError, type Cli } from "../context.js";
import { collect, parseInteger } from "./read.js";

export interface BridgeCommandOptions {
  url: string;
  types?: string[];
  names?: string[];
  name?: string;
  source?: string;
  envelope?: string;
  stream?: string;
  subjectPrefix?: string;
  exchange?: string;
  from?: string;
  lease?: string;
  metricsPort?: string;
}

function buildBridge(kind: string, o: BridgeCommandOptions): Bridge {
  const common = {
    ...(o.name === undefined ? {} : { name: o.name }),
    ...(o.source === undefined ? {} : { source: o.source }),
    ...(o.envelope === undefined ? {} : { envelope: o.envelope as BridgeEnvelope }),
    ...(o.from === undefined ? {} : { from: o.from as "oldest" | "now" }),
    ...(o.lease === undefined ? {} : { lease: parseInteger(o.lease, "--lease", 100) }),
    filter: {
      ...(o.types === undefined ? {} : { types: o.types }),
      ...(o.names === undefined ? {} : { names: o.names }),
    },
  };
  if (kind === "nats")
    return natsBridge({
      ...common,
      servers: o.url.split(","),
      ...(o.stream === undefined ? {} : { stream: o.stream }),
      ...(o.subjectPrefix === undefined ? {} : { subjectPrefix: o.subjectPrefix }),
    });
  if (kind === "rabbitmq")
    return rabbitBridge({
      ...common,
      url: o.url,
      ...(o.exchange === undefined ? {} : { exchange: o.exchange }),
    });
  throw new CliError("INVALID_OPTIONS", `unknown broker ${JSON.stringify(kind)}: nats or rabbitmq`, 2);
}

export async function bridgeCommand(cli: Cli, kind: string, o: BridgeCommandOptions): Promise<void> {
  const bridge = buildBridge(kind, o);
  const metricsPort =
    o.metricsPort === undefined ? undefined : parseInteger(o.metricsPort, "--metrics-port", 0, 65_535);
  const logger = cli.logger("info");
  const engine = cli.engine();
  const registry = metricsPort === undefined ? null : new Registry();
  const server =
    registry && metricsPort !== undefined
      ? await serveMetrics({ port: metricsPort, registry, health: () => engine.health() })
      : null;
  const running = engine.startBridges([bridge], registry);
  try {
    await running.ready;
    const metricsUrl = server?.url ?? null;
    logger.info("bridge started", { bridge: bridge.name, kind, metricsUrl });
    cli.print(
      { event: "ready", bridge: bridge.name, kind, metricsUrl },
      () => `ready: bridge ${bridge.name} to ${kind}${metricsUrl ? ` (${metricsUrl}/metrics)` : ""}`,
    );
    await new Promise<void>((resolve) => {
      const onSignal = () => {
        process.off("SIGTERM", onSignal).off("SIGINT", onSignal);
        resolve();
      };
      process.on("SIGTERM", onSignal).on("SIGINT", onSignal);
    });
    logger.info("bridge stopping", { bridge: bridge.name, stats: running.stats()[bridge.name] });
  } finally {
    await running.stop();
    await server?.close();
  }
}

/** Registers `pg-saga bridge <broker>` on the program. */
export function addBridgeCommand(
  program: Command,
  run: (
    action: (cli: Cli, kind: string, o: BridgeCommandOptions) => Promise<void>,
  ) => (...args: unknown[]) => Promise<void>,
): void {
  program
    .command("bridge <broker>")
    .description(
      "publish outbox events to nats (JetStream) or rabbitmq, each acknowledged before the cursor moves",
    )
    .requiredOption(
      "--url <url>",
      "broker URL: nats://host:4222 (comma-separated for several) or amqp://user:pass@host",
    )
    .option("--types <types>", "only these event types (repeatable, comma-separated)", collect)
    .option("--names <names>", "only these saga names (repeatable, comma-separated)", collect)
    .option("--name <subscription>", "the bridge's durable subscription name (default bridge.<broker>)")
    .option("--source <source>", "names this database in message ids (default: system identifier and name)")
    .option("--envelope <envelope>", "json, cloudevents-structured or cloudevents-binary", "json")
    .option("--stream <stream>", "nats: the JetStream stream, created if absent (default SAGA_EVENTS)")
    .option("--subject-prefix <prefix>", "nats: put before every subject (prod → prod.saga.<name>.<type>)")
    .option("--exchange <exchange>", "rabbitmq: the durable topic exchange (default saga.events)")
    .option("--from <from>", "where a new bridge starts: oldest or now", "oldest")
    .option("--lease <ms>", "how long this process's lease lasts without renewal")
    .option("--metrics-port <port>", "serve Prometheus /metrics and /healthz on this port (0: any free port)")
    .action(run(bridgeCommand));
}
