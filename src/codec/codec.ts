/**
 * Payload codecs: what pg-saga stores of saga inputs, step outputs, results, error details and event payloads.
 * Encoding happens in the process before a write, decoding after a read, so the database (and anyone who can
 * read it) sees only what the codec produced; handlers and subscribers see plaintext.
 */
import { SagaError } from "../errors.js";

/**
 * A codec: synchronous on purpose (a transition's statement text is built in one go). A KMS-backed codec
 * unwraps its data keys when it is created and encrypts locally with them.
 *
 * @example
 * const engine = createSagaEngine({ connectionString, sagas, codec: aes256gcm({ keys: { k1 }, current: "k1" }) });
 */
export interface PayloadCodec {
  /** The stored form of a JSON value: JSON itself, an object with a string `$encrypted` (the key id). */
  encode(value: unknown): unknown;
  /** The value back from its stored form; a value the codec did not produce (plain JSON) comes back as is. */
  decode(stored: unknown): unknown;
  /** The key new writes use: `pg-saga reencrypt` rewrites values stored under any other. */
  readonly currentKeyId: string;
}

/** A stored encrypted value: `$encrypted` is the key id, `v` the sealed bytes (base64). */
export interface EncryptedValue {
  $encrypted: string;
  v: string;
}

export function isEncrypted(value: unknown): value is EncryptedValue {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as { $encrypted?: unknown }).$encrypted === "string"
  );
}

/** No codec: values are stored as they are. */
export const plainCodec: PayloadCodec = Object.freeze({
  encode: (value: unknown) => value,
  decode: (stored: unknown) => {
    if (isEncrypted(stored))
      throw new SagaError(
        "CODEC_KEY_MISSING",
        `a value is encrypted with key "${stored.$encrypted}" and this engine has no codec; pass createSagaEngine({ codec })`,
      );
    return stored;
  },
  currentKeyId: "",
});

/** Encodes a stored error's `details` only: its code and message stay readable for operators. */
export function encodeError<E>(codec: PayloadCodec, error: E): E {
  if (codec === plainCodec || typeof error !== "object" || error === null) return error;
  const details = (error as { details?: unknown }).details;
  return details === undefined ? error : { ...error, details: codec.encode(details) };
}

export function decodeError<E>(codec: PayloadCodec, error: E): E {
  if (typeof error !== "object" || error === null) return error;
  const details = (error as { details?: unknown }).details;
  return isEncrypted(details) ? { ...error, details: codec.decode(details) } : error;
}

/** Encodes a value unless it is null/undefined (absence is not secret). */
export function encodeValue(codec: PayloadCodec, value: unknown): unknown {
  return codec === plainCodec || value === null || value === undefined ? value : codec.encode(value);
}

export function decodeValue(codec: PayloadCodec, value: unknown): unknown {
  return isEncrypted(value) ? codec.decode(value) : value;
}
