CREATE SCHEMA IF NOT EXISTS "saga";
--> statement-breakpoint
CREATE TABLE "saga"."dead_letters" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "saga"."dead_letters_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"subscription" text NOT NULL,
	"event_id" bigint NOT NULL,
	"event" jsonb NOT NULL,
	"error" jsonb NOT NULL,
	"attempts" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"redriven_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "saga"."definitions" (
	"name" text NOT NULL,
	"version" integer NOT NULL,
	"fingerprint" text NOT NULL,
	"steps" jsonb NOT NULL,
	"timeout_ms" bigint,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "definitions_name_version_pk" PRIMARY KEY("name","version")
);
--> statement-breakpoint
CREATE TABLE "saga"."instances" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"version" integer NOT NULL,
	"state" text NOT NULL,
	"input" jsonb NOT NULL,
	"data" jsonb,
	"result" jsonb,
	"error" jsonb,
	"current_step" integer DEFAULT 0 NOT NULL,
	"compensation_cause" text,
	"idempotency_key" text,
	"parent_id" uuid,
	"deadline" timestamp with time zone,
	"seq" integer DEFAULT 0 NOT NULL,
	"metadata" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"trace_context" text,
	"next_attempt_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "saga"."outbox" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "saga"."outbox_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"xid" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"saga_id" uuid,
	"seq" integer,
	"type" text NOT NULL,
	"step" text,
	"name" text,
	"key" text,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "saga"."steps" (
	"saga_id" uuid NOT NULL,
	"index" integer NOT NULL,
	"name" text NOT NULL,
	"status" text NOT NULL,
	"attempt" integer DEFAULT 0 NOT NULL,
	"attempt_base" integer DEFAULT 0 NOT NULL,
	"compensation_attempt" integer DEFAULT 0 NOT NULL,
	"compensation_attempt_base" integer DEFAULT 0 NOT NULL,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"output" jsonb,
	"error" jsonb,
	"compensation_error" jsonb,
	"next_attempt_at" timestamp with time zone,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"compensation_started_at" timestamp with time zone,
	"compensation_finished_at" timestamp with time zone,
	CONSTRAINT "steps_saga_id_index_pk" PRIMARY KEY("saga_id","index")
);
--> statement-breakpoint
CREATE TABLE "saga"."subscriptions" (
	"name" text PRIMARY KEY NOT NULL,
	"cursor_xid" "xid8" DEFAULT '0'::xid8 NOT NULL,
	"cursor_id" bigint DEFAULT 0 NOT NULL,
	"epoch" bigint DEFAULT 0 NOT NULL,
	"owner" text,
	"lease_expires_at" timestamp with time zone,
	"filter" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "saga"."workers" (
	"id" text PRIMARY KEY NOT NULL,
	"hostname" text NOT NULL,
	"pid" integer NOT NULL,
	"sagas" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"job_worker_ids" text[] DEFAULT '{}'::text[] NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "saga"."steps" ADD CONSTRAINT "steps_saga_id_instances_id_fk" FOREIGN KEY ("saga_id") REFERENCES "saga"."instances"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "dead_letters_subscription_idx" ON "saga"."dead_letters" USING btree ("subscription","id");--> statement-breakpoint
CREATE UNIQUE INDEX "instances_name_idempotency_key_key" ON "saga"."instances" USING btree ("name","idempotency_key");--> statement-breakpoint
CREATE INDEX "instances_created_at_id_idx" ON "saga"."instances" USING btree ("created_at","id");--> statement-breakpoint
CREATE INDEX "instances_state_created_at_idx" ON "saga"."instances" USING btree ("state","created_at","id");--> statement-breakpoint
CREATE INDEX "instances_parent_id_idx" ON "saga"."instances" USING btree ("parent_id") WHERE "saga"."instances"."parent_id" is not null;--> statement-breakpoint
CREATE INDEX "outbox_xid_id_idx" ON "saga"."outbox" USING btree ("xid","id");--> statement-breakpoint
CREATE INDEX "outbox_saga_id_seq_idx" ON "saga"."outbox" USING btree ("saga_id","seq");--> statement-breakpoint
CREATE INDEX "steps_lease_owner_idx" ON "saga"."steps" USING btree ("lease_owner") WHERE "saga"."steps"."lease_owner" is not null;