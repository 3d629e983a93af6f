-- Outbox relay and subscriptions (issue: outbox relay). Functions, if any, go here.
select 1;
