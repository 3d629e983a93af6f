import type { TransitionWrites } from "../sql/apply-transition.js";
import { type PayloadCodec, encodeError, encodeValue } from "./codec.js";

/** A transition's writes with every payload encoded: instance data, result and error details, step outputs and
 * error details, event payloads. The instance row's other fields and the step bookkeeping stay plain. */
export function encodeWrites(codec: PayloadCodec, w: TransitionWrites): TransitionWrites {
  const instance = { ...w.instance };
  if ("data" in instance) instance.data = encodeValue(codec, instance.data);
  if ("result" in instance) instance.result = encodeValue(codec, instance.result);
  if ("error" in instance) instance.error = encodeError(codec, instance.error);
  return {
    ...w,
    instance,
    steps: w.steps.map((s) => ({
      ...s,
      ...("output" in s ? { output: encodeValue(codec, s.output) } : {}),
      ...("error" in s ? { error: encodeError(codec, s.error) } : {}),
      ...("compensation_error" in s ? { compensation_error: encodeError(codec, s.compensation_error) } : {}),
    })),
    events: w.events.map((e) =>
      e.payload === undefined ? e : { ...e, payload: encodeValue(codec, e.payload) },
    ),
  };
}
