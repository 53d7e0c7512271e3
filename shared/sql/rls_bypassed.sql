-- Whether the connected role ignores row-level security (superuser or BYPASSRLS).
SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user
