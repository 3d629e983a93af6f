CREATE TABLE "saga"."retry_requests" (
	"saga_id" uuid PRIMARY KEY NOT NULL,
	"seq" integer NOT NULL,
	"reason" text,
	"requested_by" text NOT NULL,
	"requested_at" timestamp with time zone DEFAULT now() NOT NULL
);
