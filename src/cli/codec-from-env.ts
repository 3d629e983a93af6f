import { aes256gcm } from "../codec/aes256gcm.js";
import type { PayloadCodec } from "../codec/codec.js";
import { SagaError } from "../errors.js";

/**
 * The built-in codec from the environment: PG_SAGA_KEYS (JSON `{ "<key id>": "<32-byte key, base64>" }`) and
 * PG_SAGA_KEY (the current key id).
 */
export function codecFromEnv(env: NodeJS.ProcessEnv = process.env): PayloadCodec | undefined {
  if (!env.PG_SAGA_KEYS) return undefined;
  let keys: Record<string, string>;
  try {
    keys = JSON.parse(env.PG_SAGA_KEYS) as Record<string, string>;
  } catch {
    throw new SagaError("INVALID_OPTIONS", 'PG_SAGA_KEYS must be JSON: {"k1": "<base64 key>"}');
  }
  const current = env.PG_SAGA_KEY ?? Object.keys(keys).at(-1) ?? "";
  return aes256gcm({ keys, current });
}
