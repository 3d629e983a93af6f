import type { Executor } from "../executor.js";

// Primary keys of steps and instances. A step that succeeded is undone from its output; one whose outcome
// is unknown from its input: the previous step's output, or the saga's input for the first step.
const SQL = `
select case when $3 then s.output
            else coalesce((select p.output from saga.steps p where p.saga_id = i.id and p.index = $2 - 1), i.input)
       end as data
from saga.instances i
left join saga.steps s on s.saga_id = i.id and s.index = $2
where i.id = $1`;

/** The data a compensation receives. */
export async function loadCompensationData(
  db: Executor,
  id: string,
  index: number,
  succeeded: boolean,
): Promise<unknown> {
  const { rows } = await db.query<{ data: unknown }>(SQL, [id, index, succeeded]);
  return rows[0]?.data ?? null;
}
