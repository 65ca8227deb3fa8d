-- Purpose: the least the app needs on the warehouse: read and write rows in its five schemas.
--   No DDL (migrations are a deploy step), no EXECUTE, nothing outside stg/dim/analytics/ops/agg.
--   Run after the migrations (the schemas must exist) by `schema bootstrap`; idempotent.
-- Grain: one database principal; one grant per schema.
-- Parameters: @app_principal - the database user created by app_identity__create_user.sql.
-- A new schema in a later migration must be added here too.
EXEC sp_executesql
    N'DECLARE @grantee NVARCHAR(300) = QUOTENAME(@principal);
      EXEC (N''GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::stg TO '' + @grantee);
      EXEC (N''GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::dim TO '' + @grantee);
      EXEC (N''GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::analytics TO '' + @grantee);
      EXEC (N''GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::ops TO '' + @grantee);
      EXEC (N''GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::agg TO '' + @grantee);',
    N'@principal SYSNAME',
    @app_principal;
