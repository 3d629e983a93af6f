/** The worker's HTTP endpoint for Prometheus: `/metrics` and `/healthz`. */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";

/** What `/healthz` reports: 200 when `healthy`, else 503, with the whole object as JSON. */
export interface HealthReport {
  healthy: boolean;
}

/** A listening metrics endpoint. @internal */
export interface MetricsServer {
  /** e.g. `http://127.0.0.1:9464`: `/metrics` and `/healthz` below it. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Listens on `port` (0 picks a free one). Rejects when the port is taken, before the worker starts.
 * @internal
 */
export async function serveMetrics(options: {
  port: number;
  host?: string | undefined;
  registry: Registry;
  health: () => Promise<HealthReport>;
}): Promise<MetricsServer> {
  const { registry, health } = options;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      const body = await registry.metrics();
      res.writeHead(200, { "content-type": registry.contentType }).end(body);
      return;
    }
    if (path === "/healthz") {
      const report = await health().catch((err: unknown): HealthReport & { error: string } => ({
        healthy: false,
        error: err instanceof Error ? err.message : String(err),
      }));
      res
        .writeHead(report.healthy ? 200 : 503, { "content-type": "application/json" })
        .end(JSON.stringify(report));
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /healthz\n");
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host =
    options.host && options.host !== "0.0.0.0" && options.host !== "::" ? options.host : "127.0.0.1";
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${address.port}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
