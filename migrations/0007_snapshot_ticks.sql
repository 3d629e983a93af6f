ALTER TABLE "saga"."subscriptions" ADD COLUMN "tick" "pg_snapshot" DEFAULT '1:1:'::pg_snapshot NOT NULL;--> statement-breakpoint
ALTER TABLE "saga"."subscriptions" ADD COLUMN "batch_tick" "pg_snapshot";--> statement-breakpoint
ALTER TABLE "saga"."subscriptions" ADD COLUMN "ahead" bigint[] DEFAULT '{}'::bigint[] NOT NULL;--> statement-breakpoint
-- An (xid, id) cursor consumed every event of a transaction below cursor_xid and those of cursor_xid up to
-- cursor_id. As a tick: 'X:X:' sees exactly the transactions below X, and (cursor_xid, cursor_id) stays the
-- position inside the first batch, so the rest of transaction X and everything after it come next, once.
UPDATE "saga"."subscriptions"
SET "tick" = CASE WHEN "cursor_xid" = '0'::xid8 THEN '1:1:'::pg_snapshot
                  ELSE ("cursor_xid"::text || ':' || "cursor_xid"::text || ':')::pg_snapshot END;
