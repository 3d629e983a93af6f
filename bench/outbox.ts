/** Item 6 placeholder until engine.subscribe lands. */
import { type BenchOptions, type Results, log } from "./harness.js";

export async function outboxScenario(_o: BenchOptions, _r: Results): Promise<void> {
  log("  skipped: engine.subscribe is not available yet");
}
