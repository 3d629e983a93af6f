/** `pg-saga reencrypt`: rewrites values encrypted under an old key with the current one. */
import { reencrypt } from "../../codec/reencrypt.js";
import { codecFromEnv } from "../codec-from-env.js";
import { type Cli, CliError } from "../context.js";

export async function reencryptCommand(cli: Cli, o: { batchSize: string }): Promise<void> {
  const codec = codecFromEnv();
  if (!codec) throw new CliError("NO_KEYS", "set PG_SAGA_KEYS (and PG_SAGA_KEY, the current key id)", 2);
  const result = await reencrypt(cli.engine().pool, codec, { batchSize: Number(o.batchSize) });
  const total = Object.values(result.rewritten).reduce((a, b) => a + b, 0);
  cli.print(result, () => `rewrote ${total} value(s) with key ${codec.currentKeyId}`);
}
