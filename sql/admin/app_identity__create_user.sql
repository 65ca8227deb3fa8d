-- Purpose: the Function App's managed identity as a contained database user (Azure SQL only).
--   A deploy step (`schema bootstrap`, run by the azd post-provision hook) as the server's
--   Entra admin; the app itself never runs it. Idempotent: an existing user is kept.
-- Grain: one database principal.
-- Parameters: @app_principal - the identity's name in Entra ID (a system-assigned identity is
--   named after its Function App); at most 128 characters, checked by the caller.
-- A principal cannot be a bound parameter of CREATE USER, so the name goes into dynamic SQL,
-- quoted by QUOTENAME inside the server (never formatted into SQL text on the client). The
-- outer statement binds only @app_principal; sp_executesql takes it positionally as @principal.
EXEC sp_executesql
    N'IF DATABASE_PRINCIPAL_ID(@principal) IS NULL
      BEGIN
          DECLARE @create_user NVARCHAR(400) = N''CREATE USER '' + QUOTENAME(@principal) + N'' FROM EXTERNAL PROVIDER'';
          EXEC (@create_user);
      END',
    N'@principal SYSNAME',
    @app_principal;
