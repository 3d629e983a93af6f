/**
 * Child process of the memory scenario: a worker at the given concurrency, sampling its own RSS every
 * 100 ms. On "stop" it stops the worker and sends back the peak RSS in bytes.
 */
import { createSagaEngine } from "../src/index.js";
import { benchSagas } from "./sagas.js";

const url = process.env.BENCH_URL!;
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 50);
const engine = createSagaEngine({ connectionString: url, sagas: benchSagas, poolSize: 2 });
const worker = await engine.runWorker({ concurrency });
let peak = process.memoryUsage().rss;
const timer = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 100);
process.send?.({ ready: true });
process.on("message", (message: { stop?: boolean }) => {
  if (!message.stop) return;
  void (async () => {
    clearInterval(timer);
    peak = Math.max(peak, process.memoryUsage().rss);
    await worker.stop();
    await engine.close();
    process.send?.({ peak, idle: process.memoryUsage().rss }, () => process.exit(0));
  })();
});
