import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { SagaError } from "../errors.js";
import { type EncryptedValue, type PayloadCodec, isEncrypted } from "./codec.js";

export interface Aes256GcmOptions {
  /** Key id → 32-byte key (a Buffer, or a base64 string). Old keys stay here to decrypt what they wrote. */
  keys: Record<string, Buffer | Uint8Array | string>;
  /** The key id new values are written with. */
  current: string;
}

const NONCE = 12;
const TAG = 16;

function toKey(id: string, raw: Buffer | Uint8Array | string): Buffer {
  const key = typeof raw === "string" ? Buffer.from(raw, "base64") : Buffer.from(raw);
  if (key.length !== 32)
    throw new SagaError(
      "INVALID_OPTIONS",
      `aes256gcm: key "${id}" is ${key.length} bytes; AES-256 needs 32 (e.g. randomBytes(32).toString("base64"))`,
    );
  return key;
}

/**
 * The built-in codec: AES-256-GCM (Node's crypto), a random 96-bit nonce per value, the key id stored with
 * each value (`{"$encrypted": "<key id>", "v": "<nonce|ciphertext|tag, base64>"}`). Rotation: add a key, make
 * it `current`, keep the old ones until `pg-saga reencrypt` has rewritten their values.
 *
 * @example
 * import { aes256gcm, createSagaEngine } from "pg-saga";
 * const codec = aes256gcm({ keys: { k1: process.env.SAGA_KEY_1!, k2: process.env.SAGA_KEY_2! }, current: "k2" });
 * const engine = createSagaEngine({ connectionString, sagas, codec });
 */
export function aes256gcm(options: Aes256GcmOptions): PayloadCodec {
  if (typeof options !== "object" || options === null || typeof options.keys !== "object")
    throw new SagaError("INVALID_OPTIONS", "aes256gcm: pass { keys: { id: key }, current: id }");
  const keys = new Map(Object.entries(options.keys).map(([id, raw]) => [id, toKey(id, raw)]));
  const current = keys.get(options.current);
  if (!current)
    throw new SagaError(
      "INVALID_OPTIONS",
      `aes256gcm: current key "${String(options.current)}" is not one of keys (${[...keys.keys()].join(", ")})`,
    );
  return Object.freeze({
    currentKeyId: options.current,
    encode(value: unknown): EncryptedValue {
      const nonce = randomBytes(NONCE);
      const cipher = createCipheriv("aes-256-gcm", current, nonce);
      const sealed = Buffer.concat([cipher.update(JSON.stringify(value), "utf8"), cipher.final()]);
      return {
        $encrypted: options.current,
        v: Buffer.concat([nonce, sealed, cipher.getAuthTag()]).toString("base64"),
      };
    },
    decode(stored: unknown): unknown {
      if (!isEncrypted(stored)) return stored;
      const key = keys.get(stored.$encrypted);
      if (!key)
        throw new SagaError(
          "CODEC_KEY_MISSING",
          `a value is encrypted with key "${stored.$encrypted}", which this codec does not have (it has ${[...keys.keys()].join(", ")})`,
          { details: { keyId: stored.$encrypted } },
        );
      const bytes = Buffer.from(typeof stored.v === "string" ? stored.v : "", "base64");
      try {
        const decipher = createDecipheriv("aes-256-gcm", key, bytes.subarray(0, NONCE));
        decipher.setAuthTag(bytes.subarray(bytes.length - TAG));
        const plain = Buffer.concat([
          decipher.update(bytes.subarray(NONCE, bytes.length - TAG)),
          decipher.final(),
        ]);
        return JSON.parse(plain.toString("utf8")) as unknown;
      } catch (err) {
        throw new SagaError(
          "CODEC_DECRYPT_FAILED",
          `a value encrypted with key "${stored.$encrypted}" does not decrypt with this codec's key of that id: wrong key, or the value was altered`,
          { cause: err, details: { keyId: stored.$encrypted } },
        );
      }
    },
  });
}
