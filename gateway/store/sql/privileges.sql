-- The database role the gateway runs as (gateway/store/privileges.py; docs/operations.md).

-- name: standing
SELECT current_user AS name,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       pg_has_role(current_user, 'gateway_runtime', 'MEMBER') AS runtime,
       pg_has_role(current_user,
                   (SELECT relowner FROM pg_class WHERE oid = 'audit_log'::regclass),
                   'USAGE') AS owner;

-- name: role_exists
SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1);

-- name: create_login
-- The statement to run: a role name is an identifier, never a parameter.
SELECT format('CREATE ROLE %I LOGIN IN ROLE gateway_runtime', $1::text);
