-- What the connected role can do beyond row-level security: bypass it, or reach the server's files
-- and programs (COPY ... TO PROGRAM runs OS commands as the database server's account).
SELECT rolsuper OR rolbypassrls AS bypasses_rls,
       array_remove(ARRAY[
           CASE WHEN pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') THEN 'pg_read_server_files' END,
           CASE WHEN pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') THEN 'pg_write_server_files' END,
           CASE WHEN pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER')
                THEN 'pg_execute_server_program' END
       ], NULL) AS server_access
FROM pg_roles WHERE rolname = current_user
