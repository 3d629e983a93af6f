ALTER TABLE "saga"."instances" ADD COLUMN "tenant" text;--> statement-breakpoint
ALTER TABLE "saga"."outbox" ADD COLUMN "tenant" text;