-- Is the connection still alive?
SELECT 1
