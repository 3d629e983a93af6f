-- Operator SQL API: saga.start/cancel/retry callable from SQL, and the saga.stuck view.
select 1;
