/** A durable subscription's cursor arithmetic: where it stands after a page of its batch (see sql/outbox-read.ts). */
import type { Cursor, Page } from "../sql/outbox-read.js";

/** The xmax of a pg_snapshot's text form `xmin:xmax:xip,...`. */
export function xmaxOf(snapshot: string): bigint {
  return BigInt(snapshot.split(":")[1] ?? "0");
}

/** The cursor once the page's batch is finished: the batch's snapshot becomes the tick. */
export function batchDone(page: Page): Cursor {
  return { tick: page.cur, batchTick: null, xid: "0", id: 0, ahead: [] };
}

/** The cursor after a page: past its last row within the batch while there is more, else past the batch. */
export function cursorAfter(cursor: Cursor, page: Page): Cursor {
  if (!page.more) return batchDone(page);
  const end = page.rows.find((r) => r.page_end)!;
  return {
    tick: cursor.tick,
    batchTick: page.cur,
    xid: end.xid,
    id: Number(end.id),
    ahead: [...cursor.ahead, ...page.rows.filter((r) => r.pulled).map((r) => Number(r.id))],
  };
}
