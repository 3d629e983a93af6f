-- Functions, views and triggers that sql/ no longer defines, dropped by migrate() before the other sql/ files
-- run (src/repeatable.ts). `create or replace` cannot remove an object, rename it, or change a function's
-- arguments or return type: a database that once had the old object keeps it until a line here drops it.
-- One `drop ... if exists` per object, with its full signature, and never removed again: a database
-- migrated from any earlier version must lose the object too.
drop function if exists saga._start(text, integer, jsonb, text, jsonb, bigint, text, uuid, boolean);
