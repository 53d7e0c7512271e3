SELECT count(*) FROM audit_log WHERE seq IS NULL
