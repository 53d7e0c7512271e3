-- Only inside this transaction does an admin's identity reach PII (see refnet_break_glass()).
SELECT set_config('app.break_glass', 'on', true)
