-- Who is this server? System identifier when this role may read it, else the
-- postmaster start time and port, which no two live servers share.
SELECT current_database() AS dbname,
       CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system())
            ELSE 'start:' || pg_postmaster_start_time()::text || ':' || current_setting('port')
       END AS server_id
