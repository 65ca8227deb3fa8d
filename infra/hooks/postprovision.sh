#!/bin/sh
# azd postprovision: the database bootstrap, a deploy step (the app never runs DDL).
# As the signed-in deployer (the SQL server's Entra admin, infra/app/sql.bicep) it applies the
# schema migrations and creates the Function App's managed identity as a contained database user
# with row access to the pipeline's schemas: `pipeline_tools.cli schema bootstrap`.
# Needs: az (logged in), python3.11 with the ops requirements (scripts/bootstrap.sh makes .venv),
# unixODBC + ODBC Driver 18 for SQL Server. Without azd, export the same variables and run it.
set -eu
cd "$(dirname "$0")/../.."

: "${AZURE_RESOURCE_GROUP:?run through azd, or export the azd outputs (azd env get-values)}"
: "${AZURE_SQL_SERVER_NAME:?}" "${AZURE_SQL_SERVER_FQDN:?}" "${AZURE_SQL_DATABASE:?}" "${AZURE_FUNCTION_APP_NAME:?}"

PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || { echo "==> scripts/bootstrap.sh (the operator CLI's virtualenv)"; scripts/bootstrap.sh; }

# The server admits Azure services only; let this machine in for the bootstrap, then close it.
rule="azd-bootstrap-$(date +%s)"
my_ip=$(curl -fsS https://api.ipify.org)
settings=$(mktemp)
trap 'rm -f "$settings"; az sql server firewall-rule delete -g "$AZURE_RESOURCE_GROUP" -s "$AZURE_SQL_SERVER_NAME" -n "$rule" -o none 2>/dev/null || true' EXIT
echo "==> temporary SQL firewall rule $rule for $my_ip"
az sql server firewall-rule create -g "$AZURE_RESOURCE_GROUP" -s "$AZURE_SQL_SERVER_NAME" -n "$rule" \
  --start-ip-address "$my_ip" --end-ip-address "$my_ip" -o none

# Settings for the CLI: Azure SQL with an Entra token from the az login (DefaultAzureCredential);
# no password exists anywhere. Written to a private temp file (removed on exit, as is the rule).
cat > "$settings" <<JSON
{"Values": {
  "WAREHOUSE_ENGINE": "azure_sql",
  "AZURE_SQL_AUTH": "managed_identity",
  "AZURE_SQL_CONNECTION_STRING": "Driver={ODBC Driver 18 for SQL Server};Server=tcp:${AZURE_SQL_SERVER_FQDN},1433;Database=${AZURE_SQL_DATABASE};Encrypt=yes;TrustServerCertificate=no;",
  "AZURE_SQL_LOGIN_TIMEOUT_S": "60"
}}
JSON
echo "==> schema bootstrap (migrations + database user $AZURE_FUNCTION_APP_NAME)"
"$PYTHON" -m pipeline_tools.cli --settings "$settings" schema bootstrap --app-principal "$AZURE_FUNCTION_APP_NAME"
