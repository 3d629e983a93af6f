/**
 * What a group's decisions need from the step rows, read before the transition (LockedSaga leaves outputs
 * out: they can be large): the outputs that join a group, and the input of a step whose outcome is unknown.
 */
import type { AnySaga, StepDefinition } from "../definition.js";
import type { Executor } from "../executor.js";
import { type PayloadCodec, decodeValue } from "../codec/codec.js";
import type { Claim, Outcome, StepRow } from "../model.js";
import { done, groupOf, isBranch } from "./groups.js";
import type { Transition } from "./transition.js";

// Primary key of steps (saga_id, index).
const OUTPUTS_SQL = `select index, output from saga.steps
where saga_id = $1 and index = any($2::int[]) and status = 'succeeded'`;

/** The decoded outputs of the succeeded steps among `indices`. */
export async function loadOutputs(
  db: Executor,
  codec: PayloadCodec,
  id: string,
  indices: readonly number[],
): Promise<Map<number, unknown>> {
  const { rows } = await db.query<{ index: number; output: unknown }>(OUTPUTS_SQL, [id, indices]);
  return new Map(rows.map((r) => [r.index, decodeValue(codec, r.output)]));
}

/**
 * Read under the row lock by the records of branches that finished their group (every branch now succeeded or
 * skipped): the other branches' outputs, and their own, to join the group in the same transition. `undefined`
 * for any other records: nothing is read.
 */
export async function outputsToFinish(
  db: Executor,
  codec: PayloadCodec,
  def: AnySaga,
  t: Transition,
  records: readonly { claim: Claim; outcome: Outcome }[],
): Promise<Map<number, unknown> | undefined> {
  const join = joining(def, t, records);
  if (!join) return undefined;
  const outputs =
    join.others.length === 0
      ? new Map<number, unknown>()
      : await loadOutputs(db, codec, t.saga.id, join.others);
  for (const [index, output] of join.own) outputs.set(index, output);
  return outputs;
}

/**
 * The group `records` finish, if they do: their own outputs, and the branches whose outputs are to be read.
 * Records of the group's every branch need no read (see RecordBatch).
 */
export function joining(def: AnySaga, t: Transition, records: readonly { claim: Claim; outcome: Outcome }[]) {
  const ok = records.filter((r) => r.outcome.ok && r.claim.kind === "execute" && isBranch(def, r.claim.step));
  const first = ok[0]?.claim.step;
  if (!first) return undefined;
  const group = groupOf(def, first);
  if (t.saga.state !== "running" || !group.every((s) => done(t.step(s.index)))) return undefined;
  const own = new Map<number, unknown>();
  for (const { claim, outcome } of ok)
    if (outcome.ok && claim.step.group === first.group)
      own.set(claim.index, (outcome.value === undefined ? claim.data : outcome.value) ?? null);
  return { own, others: group.filter((s) => !own.has(s.index)).map((s) => s.index) };
}

/** The outputs a job may need to join the saga's current group: only when all its branches are done. */
export async function outputsToJoin(
  db: Executor,
  codec: PayloadCodec,
  def: AnySaga,
  saga: { id: string; state: string; current_step: number; steps: StepRow[] },
): Promise<Map<number, unknown> | undefined> {
  const first = def.steps[saga.current_step];
  if (saga.state !== "running" || !first) return undefined;
  const group = groupOf(def, first);
  const rows = new Map(saga.steps.map((r) => [r.index, r]));
  if (group.length < 2 || !group.every((s) => done(rows.get(s.index)))) return undefined;
  return loadOutputs(
    db,
    codec,
    saga.id,
    group.map((s) => s.index),
  );
}

// Primary keys of instances and steps.
const INPUT_SQL = `select i.input, s.index, s.status, s.output from saga.instances i
left join saga.steps s on s.saga_id = i.id and s.index = any($2::int[]) where i.id = $1`;

/**
 * The data a step was given, for the compensation of an attempt whose outcome is unknown: the saga's input for
 * the first group, the previous plain step's output, or `{ [branch]: output }` of the previous group.
 */
export async function loadStepInput(
  db: Executor,
  codec: PayloadCodec,
  def: AnySaga,
  id: string,
  step: StepDefinition,
): Promise<unknown> {
  const previous = def.groups[step.group - 1] ?? [];
  const { rows } = await db.query<{
    input: unknown;
    index: number | null;
    status: string | null;
    output: unknown;
  }>(INPUT_SQL, [id, previous.map((s) => s.index)]);
  if (previous.length === 0) return decodeValue(codec, rows[0]?.input ?? null);
  if (previous.length === 1) return decodeValue(codec, rows.find((r) => r.index !== null)?.output ?? null);
  const data: Record<string, unknown> = {};
  for (const s of previous) {
    const row = rows.find((r) => r.index === s.index);
    if (row?.status === "succeeded" || row?.status === "compensating" || row?.status === "compensated")
      data[s.name] = decodeValue(codec, row.output);
  }
  return data;
}
