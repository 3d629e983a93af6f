import type { InstanceRow, StepReadRow } from "../sql/read-sagas.js";
import { type PayloadCodec, decodeError, decodeValue, plainCodec } from "./codec.js";

/** engine.start()'s input (JSON text) as stored. */
export function encodeInput(codec: PayloadCodec, input: string): string {
  return codec === plainCodec ? input : JSON.stringify(codec.encode(JSON.parse(input) as unknown));
}

/** An instance row as engine.get()/list() return it: input, data, result and error details decoded. */
export function decodeRow<R extends InstanceRow>(codec: PayloadCodec, row: R): R {
  return {
    ...row,
    input: decodeValue(codec, row.input),
    data: decodeValue(codec, row.data),
    result: decodeValue(codec, row.result),
    error: decodeError(codec, row.error),
  };
}

export function decodeStep(codec: PayloadCodec, step: StepReadRow): StepReadRow {
  return {
    ...step,
    output: decodeValue(codec, step.output),
    error: decodeError(codec, step.error),
    compensation_error: decodeError(codec, step.compensation_error),
  };
}
