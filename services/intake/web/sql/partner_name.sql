-- The signed-in partner's name for the page header (row-level security: a partner reads its own row).
SELECT name FROM partners WHERE id = $1
