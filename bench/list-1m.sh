#!/usr/bin/env bash
# Token list latency over one organization holding N tokens (issue #4): a private PostgreSQL
# cluster, the real migrations, N organization tokens seeded in bulk, then EXPLAIN ANALYZE of
# the queries `GET /api-tokens` runs: first page, a page deep in the keyset, and `search`
# (a common and a rare term), each with the old 4-column ILIKE for comparison.
# Usage: bench/list-1m.sh [N]   (default 1000000; prints a table, writes bench/results/list.txt)
set -euo pipefail
N="${1:-1000000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/ensure-postgres"
PGBIN="${TESSERA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
DIR="$(mktemp -d /tmp/tessera-listbench.XXXXXX)"
PORT=$(( 20000 + RANDOM % 20000 ))
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR"; as_pg=(runuser -u postgres --); fi
cleanup() { "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
"${as_pg[@]}" "$PGBIN/initdb" -D "$DIR/data" -U tessera --auth=trust >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
    -o "-p $PORT -k '' -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c fsync=off" start >/dev/null
psql=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U tessera -d postgres)
for f in "$ROOT"/sql/*.sql; do "${psql[@]}" -f "$f"; done

start=$(date +%s)
"${psql[@]}" <<SQL
INSERT INTO organizations (slug, display_name) VALUES ('big', 'Big'), ('small', 'Small');
INSERT INTO scopes (org_id, name) SELECT id, 'api:read' FROM organizations;
-- Bulk seed without the per-row triggers (the search text is computed inline instead).
SET session_replication_role = replica;
INSERT INTO tokens (org_id, kind, username, name, scopes, groups, secret_hash, token_prefix,
                    created_at, created_by, search_text)
SELECT o.id, 'organization', 'svc-' || (i % 5000), 'token ' || i || CASE WHEN i % 100000 = 7 THEN ' needle' ELSE '' END,
       '{api:read}', ARRAY['team-' || (i % 50)], sha256(int8send(i)), 'tso_' || substr(md5(i::text), 1, 8),
       now() - (i || ' seconds')::interval, 'admin-' || (i % 20),
       lower('token ' || i || CASE WHEN i % 100000 = 7 THEN ' needle' ELSE '' END || ' svc-' || (i % 5000)
             || ' admin-' || (i % 20) || ' team-' || (i % 50))
FROM generate_series(1, $N) AS i, organizations o WHERE o.slug = 'big';
SET session_replication_role = origin;
VACUUM ANALYZE tokens;
SQL
echo "seeded $N tokens in $(( $(date +%s) - start )) s"

org=$("${psql[@]}" -At -c "SELECT id FROM organizations WHERE slug = 'big'")
mid=$("${psql[@]}" -At -c "SELECT (extract(epoch FROM created_at) * 1000000)::bigint || ' ' || id FROM tokens ORDER BY created_at DESC, id DESC OFFSET $(( N / 2 )) LIMIT 1")
micros=${mid%% *}; id=${mid##* }
select="SELECT t.id, t.name, t.username, t.scopes, t.status, t.created_at FROM tokens t JOIN organizations o ON o.id = t.org_id WHERE t.org_id = '$org'"
order="ORDER BY t.created_at DESC, t.id DESC LIMIT 101"
declare -A queries=(
  [1-first-page]="$select $order"
  [2-page-at-half]="$select AND (t.created_at, t.id) < (timestamptz 'epoch' + $micros * interval '1 microsecond', '$id') $order"
  [3-search-common-trgm]="$select AND t.search_text LIKE lower('%team-7%') $order"
  [3b-search-medium-trgm]="$select AND t.search_text LIKE lower('%svc-123%') $order"
  [4-search-rare-trgm]="$select AND t.search_text LIKE lower('%needle%') $order"
  [5-search-common-ilike]="$select AND (t.name ILIKE '%team-7%' OR t.username ILIKE '%team-7%' OR t.created_by ILIKE '%team-7%' OR array_to_string(t.groups, ' ') ILIKE '%team-7%') $order"
  [6-search-rare-ilike]="$select AND (t.name ILIKE '%needle%' OR t.username ILIKE '%needle%' OR t.created_by ILIKE '%needle%' OR array_to_string(t.groups, ' ') ILIKE '%needle%') $order"
)
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/list.txt"
{
  echo "# token list over $N tokens in one org, $(date -u +%FT%TZ), $(nproc) cores"
  printf '%-24s %12s %12s  %s\n' query execution_ms planning_ms plan
  for name in $(printf '%s\n' "${!queries[@]}" | sort); do
    "${psql[@]}" -At -c "${queries[$name]}" >/dev/null   # warm the cache once
    plan=$("${psql[@]}" -At -c "EXPLAIN (ANALYZE, FORMAT JSON) ${queries[$name]}")
    python3 - "$name" "$plan" <<'PY'
import json, sys
name, doc = sys.argv[1], json.loads(sys.argv[2])[0]
def scans(node):
    out = [f"{node['Node Type']}" + (f" on {node['Index Name']}" if 'Index Name' in node else "")] if 'Scan' in node['Node Type'] else []
    for child in node.get('Plans', []): out += scans(child)
    return out
print(f"{name:<24} {doc['Execution Time']:>12.2f} {doc['Planning Time']:>12.2f}  {', '.join(scans(doc['Plan']))}")
PY
  done
} | tee "$out"
