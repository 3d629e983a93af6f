import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { DashboardHandler } from "../../src/index.js";

/** Serves a dashboard handler on a free loopback port; `stop()` closes its streams and the server. */
export async function serveDashboard(
  handler: DashboardHandler,
): Promise<{ url: string; server: Server; stop: () => Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    stop: async () => {
      await handler.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
