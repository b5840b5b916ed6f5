#!/usr/bin/env python3
"""Scale figures (issue #14): what writes cost as organizations, memberships and tokens grow, and
what a second replica's verification cache does about them.

Starts a private PostgreSQL (with pg_stat_statements, track = all, to count the statements a call
runs, trigger statements included) and TWO `tessera serve` replicas on it (release binary,
TESSERA_BIN). Replica A takes the API calls; replica B holds cached verifications and is watched
(push invalidation by LISTEN/NOTIFY, DESIGN §6). A LISTEN of our own on `tessera_invalidation`
(PostgreSQL's wire protocol, no driver needed) counts every notification the database sends.

  create    POST /api-tokens/{label} (an organization token, the bootstrap admin's token): insert
            + audit event + the cache barrier (a `sync:` NOTIFY round trip), wrk with a Lua POST
            script at each concurrency of SCALE_CONCURRENCY (default 1,8,32) for
            SCALE_CREATE_SECONDS (default 5): req/s, p50/p99, non-2xx, 5xx.
  remove    DELETE /orgs/{org}/members/{user} of a user who belongs to N orgs (N in
            SCALE_MEMBER_ORGS, default 10,100,1000) with a personal token in each, all cached on B.
  disable   PATCH /users/{user} {"status": "disabled"} of such a user (their N-1 remaining tokens
            cached on B, beside one cached organization token per org: bystanders); then again for
            a user in N orgs after B's cache was filled with SCALE_FILL (default 20,000) more
            entries (how B's cost grows with its cache: every `o:`/`u:` notification scans it).
  delete    DELETE /orgs/{org} of an org holding N tokens (SCALE_ORG_TOKENS, default
            1000,10000,100000; seeded in bulk), min(N, SCALE_CACHED=1000) of them cached on B.
  list      the 1M-token list/search figures are kept from bench/list-1m.sh
            (bench/results/list.txt); SCALE_LIST=1 runs it again (about a minute more).

For every cascade: the API call's time on A, the notifications sent (by kind), the statements it
ran (pg_stat_statements: calls, the per-row ones), cache entries B dropped, and B's answers for the
affected tokens right after the call (a 200 for a revoked token answered later than the call's
answer + 1 s is a failure; so is any 5xx, a token that should still verify and does not, or B not
taking in the call's notifications within 180 s), how long B then took to answer /auth/verify,
and when B had handled every notification.

Seeding: tokens whose secrets we need (personal tokens, bystanders, the cached tokens of each big
org) go through the normal INSERT with every trigger (scope catalog check, search_text, the
personal-token counter of migration 0006). The rest of each big org is bulk-inserted with
`session_replication_role = replica` (no triggers): organization tokens, so the personal counters
do not move, and search_text is computed inline exactly as the trigger does. A consistency check
(search_text, live_personal_tokens, scopes in catalog) fails the run if seeding broke an invariant.

Prints a table, writes bench/results/scale.txt and scale.json; exit status 1 on any failure.
Settings: SCALE_MEMBER_ORGS, SCALE_ORG_TOKENS, SCALE_CACHED, SCALE_FILL (0: no full-cache runs),
SCALE_CONCURRENCY, SCALE_CREATE_SECONDS, SCALE_LIST=1. Timings are reported, not asserted (these
2-core machines drift), except the propagation bound above. About 3 minutes at the defaults."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from harness import ROOT, Client, Postgres, Tessera, Workdir, apt_install, log, migrate_and_bootstrap, random_token  # noqa: E402


def sizes(name, default):
    return [int(x) for x in os.environ.get(name, default).split(",") if x.strip()]


MEMBER_ORGS = sorted(sizes("SCALE_MEMBER_ORGS", "10,100,1000"))
ORG_TOKENS = sorted(sizes("SCALE_ORG_TOKENS", "1000,10000,100000"))
CACHED = int(os.environ.get("SCALE_CACHED", "1000"))
FILL = int(os.environ.get("SCALE_FILL", "20000"))
CONCURRENCY = sizes("SCALE_CONCURRENCY", "1,8,32")
CREATE_SECONDS = int(os.environ.get("SCALE_CREATE_SECONDS", "5"))
RUN_LIST = os.environ.get("SCALE_LIST", "0") == "1"
PROPAGATION_BOUND = 1.0   # s after the call answered: a revoked token verifying later is a failure
CATCH_UP_LIMIT = 180      # s after the call answered: B must have taken in its notifications
WORKERS = 8               # client threads verifying on B
CHANNEL = "tessera_invalidation"

failures = []
LOAD_AT_START = os.getloadavg()[0]


def fail(what):
    log("FAIL " + what)
    failures.append(what)


def make_token(kind):
    return random_token(kind)


# ---------------------------------------------------------------------------------------------
# Observers: notifications (our own LISTEN), B's /metrics, pg_stat_statements


class Notifications:
    """LISTEN tessera_invalidation over PostgreSQL's frontend/backend protocol 3.0 (trust auth):
    every notification with the time it reached us (time.perf_counter())."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.file = self.sock.makefile("rb")
        params = b"user\0tessera\0database\0postgres\0application_name\0scale-bench\0\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        self._until_ready()
        query = f"LISTEN {CHANNEL}\0".encode()
        self.sock.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
        self._until_ready()
        self.events = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read_forever, daemon=True)
        self.thread.start()

    def _message(self):
        header = self.file.read(5)
        if len(header) < 5:
            raise EOFError("connection closed")
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        return kind, self.file.read(length - 4)

    def _until_ready(self):
        while True:
            kind, body = self._message()
            if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                raise RuntimeError("the bench's LISTEN connection needs trust authentication")
            if kind == b"E":
                raise RuntimeError("LISTEN failed: " + body.decode(errors="replace"))
            if kind == b"Z":
                return

    def _read_forever(self):
        try:
            while True:
                kind, body = self._message()
                if kind == b"A":
                    payload = body[4:].split(b"\0")[1]  # pid, channel, payload
                    with self.lock:
                        self.events.append((time.perf_counter(), payload.decode()))
        except (EOFError, OSError, ValueError):
            pass

    def mark(self):
        with self.lock:
            return len(self.events)

    def since(self, mark):
        with self.lock:
            return list(self.events[mark:])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def summarize_notifications(events, reference):
    """Counts by kind (t, u, o, sync) and when the first and last non-sync ones reached our
    LISTEN (ms after `reference`; delivered at commit)."""
    kinds = {}
    first = last = None
    for at, payload in events:
        kind = payload.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind != "sync":
            first = at if first is None else min(first, at)
            last = at if last is None else max(last, at)
    changes = sum(v for k, v in kinds.items() if k != "sync")
    return {"sent": changes, "by_kind": kinds, "first_arrived_ms": ms(first - reference) if first else None,
            "last_arrived_ms": ms(last - reference) if last else None}


def metrics(server):
    """B's Prometheus counters and gauges as {name{labels}: value}."""
    text = Client(server.base, timeout=CATCH_UP_LIMIT).get("/metrics")[3]
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            pass
    return values


def metric(values, prefix):
    """Sum of every series whose name (before labels) is `prefix`."""
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


def cache_delta(before, after):
    keys = {"invalidated": "tessera_verification_cache_invalidated_total",
            "hits": "tessera_verification_cache_hits_total", "misses": "tessera_verification_cache_misses_total",
            "notifications": "tessera_invalidation_notifications_total"}
    delta = {k: int(metric(after, v) - metric(before, v)) for k, v in keys.items()}
    delta["entries"] = int(metric(after, "tessera_verification_cache_entries"))
    lag_sum = metric(after, "tessera_invalidation_lag_seconds_sum") - metric(before, "tessera_invalidation_lag_seconds_sum")
    lag_count = metric(after, "tessera_invalidation_lag_seconds_count") - metric(before, "tessera_invalidation_lag_seconds_count")
    delta["lag_mean_ms"] = round(1000 * lag_sum / lag_count, 2) if lag_count else None
    return delta


def statements(pg):
    """What ran since the last reset (pg_stat_statements, nested statements included; a lookup of
    the probe on B may be among them), minus our own bookkeeping: total calls and the most
    frequent ones."""
    rows = pg.psql("""
        SELECT calls, round(total_exec_time::numeric, 1), rows, toplevel,
               regexp_replace(left(query, 300), '\\s+', ' ', 'g')
        FROM pg_stat_statements
        WHERE query NOT LIKE '%pg_stat_statements%'
        ORDER BY calls DESC, total_exec_time DESC""")
    top, total, toplevel_ms = [], 0, 0.0
    for line in rows.splitlines():
        calls, ms_, nrows, toplevel, query = line.split("|", 4)
        total += int(calls)
        toplevel_ms += float(ms_) if toplevel == "t" else 0
        top.append({"calls": int(calls), "ms": float(ms_), "rows": int(nrows), "toplevel": toplevel == "t",
                    "query": query[:140]})
    return {"total_calls": total, "toplevel_ms": round(toplevel_ms, 1), "top": top[:8]}


def trigger_breakdown(pg, sql):
    """EXPLAIN ANALYZE of the cascade's main statement in a transaction that is rolled back (no
    notification is delivered, nothing changes): its time and each trigger's calls and time."""
    out = pg.psql(f"BEGIN;\nEXPLAIN (ANALYZE, FORMAT JSON) {sql};\nROLLBACK;")
    plan = json.loads(out)[0]
    return {"statement": " ".join(sql.split())[:160], "execution_ms": round(plan["Execution Time"], 1),
            "triggers": [{"name": t["Trigger Name"], "calls": t["Calls"], "ms": round(t["Time"], 1)}
                         for t in plan.get("Triggers", [])]}


def reset_statements(pg):
    pg.psql("SELECT pg_stat_statements_reset()")


def ms(seconds):
    return round(seconds * 1000, 1)


# ---------------------------------------------------------------------------------------------
# Verification on B


class Verifier:
    """Verifies many tokens on one replica from WORKERS keep-alive connections."""

    def __init__(self, server):
        self.base = server.base
        self.local = threading.local()
        self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS)

    def _client(self):
        if not hasattr(self.local, "client"):
            self.local.client = Client(self.base, timeout=CATCH_UP_LIMIT)
        return self.local.client

    def _chunk(self, tokens):
        client, out = self._client(), []
        for token in tokens:
            sent = time.perf_counter()
            status = client.get("/auth/verify", token=token)[0]
            out.append((token, status, sent, time.perf_counter()))
        return out

    def verify(self, tokens):
        """[(token, status, sent_at, answered_at)] for every token, in parallel."""
        tokens = list(tokens)
        chunks = [tokens[i::WORKERS] for i in range(WORKERS)]
        results = []
        for part in self.pool.map(self._chunk, [c for c in chunks if c]):
            results += part
        return results

    def warm(self, tokens, what):
        """Caches `tokens` on the replica; every one must verify."""
        bad = [s for _, s, _, _ in self.verify(tokens) if s != 200]
        if bad:
            fail(f"{what}: {len(bad)} of {len(tokens)} tokens did not verify while warming B (statuses {sorted(set(bad))})")


class Probe(threading.Thread):
    """Verifies one token on B every 2 ms from before an API call until B refuses it: when B last
    accepted it and first refused it (times of the answers, time.perf_counter())."""

    def __init__(self, server, token):
        super().__init__(daemon=True)
        self.client, self.token = Client(server.base, timeout=CATCH_UP_LIMIT), token
        self.first_refusal = self.last_accept = self.last_accept_sent = None
        self.statuses = set()
        self.slowest = 0.0
        self.halt = threading.Event()

    def run(self):
        deadline = time.perf_counter() + CATCH_UP_LIMIT
        while not self.halt.is_set() and time.perf_counter() < deadline:
            sent = time.perf_counter()
            status = self.client.get("/auth/verify", token=self.token)[0]
            self.slowest = max(self.slowest, time.perf_counter() - sent)
            self.statuses.add(status)
            if status == 200:
                self.last_accept, self.last_accept_sent = time.perf_counter(), sent
            else:
                self.first_refusal = time.perf_counter()
                return
            self.halt.wait(0.002)

    def stop(self):
        self.halt.set()
        self.join(5)


RECONNECT = "invalidation listener lost its database connection"


def wait_until_processed(server, before, expected, answered_at, log_offset):
    """Waits until `server` has taken in `expected` notifications since `before` (its own counter:
    it counts each one as it starts handling it), or its listener reconnected (a heartbeat marker
    stuck behind the backlog looks like a dead connection; it then drops its whole cache and the
    rest of the backlog): (ms after the call answered or None, reconnected)."""
    while time.perf_counter() < answered_at + CATCH_UP_LIMIT:
        now = metrics(server)
        got = metric(now, "tessera_invalidation_notifications_total") - metric(before, "tessera_invalidation_notifications_total")
        reconnected = RECONNECT in server.logs()[log_offset:]
        if got >= expected or reconnected:
            return ms(time.perf_counter() - answered_at), reconnected
        time.sleep(0.01)
    return None, RECONNECT in server.logs()[log_offset:]


def watch_refusals(verifier, tokens, answered_at):
    """Verifies `tokens` on B again and again from the moment the call answered until every one
    is refused (or CATCH_UP_LIMIT): how many answers were still 200, the last one (ms after the
    call answered), and how long the first pass took (the resolution of this look)."""
    pending = list(tokens)
    accepted = accepted_late = passes = 0
    last_accept = None
    first_pass_ms = None
    slowest = 0.0
    statuses = set()
    while pending and time.perf_counter() < answered_at + CATCH_UP_LIMIT:
        still = []
        began = time.perf_counter()
        for token, status, sent, got in verifier.verify(pending):
            slowest = max(slowest, got - sent)
            statuses.add(status)
            if status == 200:
                accepted += 1
                accepted_late += got > answered_at + PROPAGATION_BOUND
                last_accept = got if last_accept is None else max(last_accept, got)
                still.append(token)
        if first_pass_ms is None:
            first_pass_ms = ms(time.perf_counter() - began)
        pending, passes = still, passes + 1
    return {"watched": len(tokens), "accepted": accepted, "accepted_after_bound": accepted_late,
            "last_accept_ms": ms(last_accept - answered_at) if last_accept else None,
            "never_refused": len(pending), "passes": passes, "first_pass_ms": first_pass_ms, "slowest_ms": ms(slowest),
            "statuses": sorted(statuses)}


def cpu_seconds(pids):
    """User + system CPU seconds used so far by these processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def postgres_pids(pg):
    """The postmaster and its children (backends, walwriter, ...)."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == postmaster:
                        pids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def cpu_snapshot(pg, a, b):
    return {"A": cpu_seconds([a.process.pid]), "B": cpu_seconds([b.process.pid]),
            "PostgreSQL": cpu_seconds(postgres_pids(pg))}


def cpu_ms_per(before, after, count):
    return {k: round(1000 * (after[k] - before[k]) / max(1, count), 2) for k in before}


# ---------------------------------------------------------------------------------------------
# Seeding


def member_users():
    """(username, orgs): member-N in the first N wide orgs for each N, and member-full-N likewise
    (disabled once B's cache holds SCALE_FILL more entries)."""
    users = [(f"member-{n}", n) for n in MEMBER_ORGS]
    if FILL and ORG_TOKENS:
        users += [(f"member-full-{n}", n) for n in MEMBER_ORGS]
    return users


def known_tokens(n):
    """How many tokens of the big org with n tokens we hold secrets for: the ones cached on B,
    and in the largest org also the ones that fill B's cache."""
    return min(n, max(CACHED, FILL) if n == max(ORG_TOKENS) else CACHED)


def seed(pg, work):
    """Wide orgs with members in many of them (a personal token each, one organization token per
    org as a bystander) and big orgs with many tokens. Returns the plaintexts we need."""
    started = time.perf_counter()
    wide = max(MEMBER_ORGS) if MEMBER_ORGS else 0
    secrets = {"personal": {}, "bystander": [], "big": {}}
    rows = []   # kind, org slug, username, owner username or '', hash hex, prefix
    for user, n in member_users():
        secrets["personal"][user] = []
        for i in range(1, n + 1):
            token = make_token("tsp")
            secrets["personal"][user].append(token)
            rows.append(("personal", f"wide-{i:05d}", user, user, hashlib.sha256(token.encode()).hexdigest(), token[:12]))
    for i in range(1, wide + 1):
        token = make_token("tso")
        secrets["bystander"].append(token)
        rows.append(("organization", f"wide-{i:05d}", "svc-bystander", "", hashlib.sha256(token.encode()).hexdigest(), token[:12]))
    for n in ORG_TOKENS:
        secrets["big"][n] = []
        for _ in range(known_tokens(n)):
            token = make_token("tso")
            secrets["big"][n].append(token)
            rows.append(("organization", f"big-{n}", "svc-cached", "", hashlib.sha256(token.encode()).hexdigest(), token[:12]))
    path = os.path.join(work.path, "seed.csv")
    with open(path, "w") as f:
        for row in rows:
            f.write(",".join(row[:4]) + f",\\x{row[4]},{row[5]}\n")
    os.chmod(path, 0o644)
    members = ",".join(f"('{user}', {n})" for user, n in member_users()) or "(NULL, 0)"
    big = ",".join(f"({n})" for n in ORG_TOKENS) or "(0)"
    search = "lower(name || ' ' || username || ' ' || created_by || ' ' || array_to_string(groups, ' '))"
    pg.psql(f"""
        INSERT INTO organizations (slug, display_name)
            SELECT 'wide-' || lpad(i::text, 5, '0'), 'Wide ' || i FROM generate_series(1, {wide}) i;
        INSERT INTO organizations (slug, display_name) SELECT 'big-' || n, 'Big ' || n FROM (VALUES {big}) v(n) WHERE n > 0;
        -- The built-in catalog, as POST /orgs writes it (copied from the bootstrap org).
        INSERT INTO scopes (org_id, name, description, admin_only, implies, built_in)
            SELECT o.id, s.name, s.description, s.admin_only, s.implies, s.built_in
            FROM organizations o, scopes s JOIN organizations a ON a.id = s.org_id AND a.slug = 'acme'
            WHERE (o.slug LIKE 'wide-%' OR o.slug LIKE 'big-%') AND s.built_in;
        CREATE TEMP TABLE wanted (username text, n int);
        INSERT INTO wanted SELECT * FROM (VALUES {members}) v(username, n) WHERE n > 0;
        INSERT INTO users (username) SELECT username FROM wanted;
        INSERT INTO memberships (org_id, user_id)
            SELECT o.id, u.id FROM wanted w JOIN users u ON u.username = w.username
            JOIN organizations o ON o.slug LIKE 'wide-%' AND substr(o.slug, 6)::int <= w.n;
        -- Tokens whose secrets we hold: the normal path, every trigger.
        CREATE TEMP TABLE seed (kind text, org text, username text, owner text, h bytea, prefix text);
        COPY seed FROM '{path}' WITH (FORMAT csv);
        INSERT INTO tokens (org_id, kind, owner_user_id, username, name, scopes, secret_hash, token_prefix,
                            expires_at, created_by)
            SELECT o.id, s.kind, u.id, s.username, s.kind || ' token', '{{api:read}}', s.h, s.prefix,
                   now() + interval '30 days', 'root'
            FROM seed s JOIN organizations o ON o.slug = s.org LEFT JOIN users u ON u.username = nullif(s.owner, '');
    """)
    # The rest of each big org in bulk, without triggers: organization tokens (no personal
    # counter moves), search_text computed as the trigger computes it, scopes from the catalog.
    for n in ORG_TOKENS:
        if n <= known_tokens(n):
            continue
        pg.psql(f"""
            SET session_replication_role = replica;
            INSERT INTO tokens (org_id, kind, username, name, scopes, groups, secret_hash, token_prefix,
                                expires_at, created_by, search_text)
            SELECT org_id, 'organization', username, name, scopes, groups, h, prefix, now() + interval '30 days',
                   created_by, {search}
            FROM (SELECT o.id AS org_id, 'svc-' || (i % 100) AS username, 'bulk ' || i AS name,
                         '{{api:read}}'::text[] AS scopes, ARRAY['team-' || (i % 10)] AS groups,
                         sha256(convert_to(o.slug || ':' || i, 'UTF8')) AS h,
                         'tso_' || substr(md5(o.slug || ':' || i), 1, 8) AS prefix, 'root' AS created_by
                  FROM organizations o, generate_series(1, {n - known_tokens(n)}) i WHERE o.slug = 'big-{n}') bulk;
            SET session_replication_role = origin;
        """)
    pg.psql("VACUUM ANALYZE")
    broken = pg.psql(f"""
        SELECT (SELECT count(*) FROM tokens WHERE search_text IS DISTINCT FROM {search}) || ' ' ||
               (SELECT count(*) FROM memberships m WHERE live_personal_tokens <> (
                    SELECT count(*) FROM tokens t WHERE t.org_id = m.org_id AND t.owner_user_id = m.user_id
                      AND t.kind = 'personal' AND t.status <> 'revoked')) || ' ' ||
               (SELECT count(*) FROM tokens t, unnest(t.scopes) AS x(name)
                WHERE NOT EXISTS (SELECT 1 FROM scopes s WHERE s.org_id = t.org_id AND s.name = x.name))""")
    bad_search, bad_counter, bad_scope = map(int, broken.split())
    if bad_search or bad_counter or bad_scope:
        fail(f"seeding broke an invariant: {bad_search} wrong search_text, {bad_counter} wrong "
             f"live_personal_tokens, {bad_scope} scopes outside the catalog")
    total = int(pg.psql("SELECT count(*) FROM tokens"))
    log(f"seeded {total} tokens, {wide} wide orgs, {len(ORG_TOKENS)} big orgs in {time.perf_counter() - started:.1f} s")
    return secrets


# ---------------------------------------------------------------------------------------------
# 1. Token creation rate

WRK_SCRIPT = r"""
wrk.method = os.getenv("SCALE_METHOD")
wrk.path = os.getenv("SCALE_PATH")
if wrk.method == "POST" then
  wrk.body = '{"name": "scale", "isSystemToken": true, "scopes": ["api:read"]}'
  wrk.headers["Content-Type"] = "application/json"
end
wrk.headers["Authorization"] = "Bearer " .. os.getenv("SCALE_ADMIN_TOKEN")
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() server_errors = 0 end
response = function(status, headers, body) if status >= 500 then server_errors = server_errors + 1 end end
done = function(summary, latency, requests)
  local fivexx = 0
  for _, t in ipairs(threads) do fivexx = fivexx + t:get("server_errors") end
  io.write(string.format("SCALE_JSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"errors\": %d, \"non2xx\": %d, \"fivexx\": %d}\n", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.errors.status, fivexx))
end
"""


def wrk_create(work, server, admin, connections, seconds, method="POST", path="/api-tokens/svc-scale"):
    """wrk POSTing organization-token creates (or `method path` as a reference) with the admin token."""
    script = os.path.join(work.path, "create.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    out = subprocess.run(["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s",
                          "--timeout", "10s", "-s", script, f"http://{server.base}"],
                         env=dict(os.environ, SCALE_ADMIN_TOKEN=admin, SCALE_METHOD=method, SCALE_PATH=path),
                         capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("SCALE_JSON ")), None)
    if out.returncode != 0 or line is None:
        fail(f"wrk failed at {connections} connections: {out.stderr[-500:]}")
        return None
    r = json.loads(line[len("SCALE_JSON "):])
    return {"connections": connections, "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
            "requests": r["requests"], "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "errors": r["errors"], "non2xx": r["non2xx"], "fivexx": r["fivexx"]}


def count_rows(pg):
    tokens, audit = pg.psql("SELECT (SELECT count(*) FROM tokens) || ' ' || (SELECT count(*) FROM audit_events)").split()
    return int(tokens), int(audit)


def creation(work, pg, a, b, admin, listener, results):
    log(f"-- 1. token creation through A: {', '.join(map(str, CONCURRENCY))} connections, {CREATE_SECONDS} s each")
    api = Client(a.base)
    status, _, created, _ = api.request("POST", "/api-tokens/svc-scale", admin,
                                        {"name": "scale", "isSystemToken": True, "scopes": ["api:read"]})
    if status != 201:
        fail(f"create through the API answered {status}")
        return results
    if Client(b.base).get("/auth/verify", token=created["token"])[0] != 200:
        fail("a token created through A does not verify on B")
    # The reference: a read through the same authentication (database, no cache), no transaction,
    # no barrier. What a create costs beyond it is the insert, the audit event and the barrier.
    reference = f"/api-tokens/{created['tokenUUID']}"
    wrk_create(work, a, admin, 8, 2)  # warm-up: pool connections, prepared statements
    for connections in CONCURRENCY:
        tokens_before, audit_before = count_rows(pg)
        reset_statements(pg)
        mark = listener.mark()
        cpu_before = cpu_snapshot(pg, a, b)
        started = time.perf_counter()
        r = wrk_create(work, a, admin, connections, CREATE_SECONDS)
        if r is None:
            continue
        cpu_after = cpu_snapshot(pg, a, b)
        time.sleep(0.3)
        tokens_after, audit_after = count_rows(pg)
        notes = summarize_notifications(listener.since(mark), started)
        stats = statements(pg)
        inserted = max(1, tokens_after - tokens_before)
        cpu_read = cpu_snapshot(pg, a, b)
        read = wrk_create(work, a, admin, connections, max(2, CREATE_SECONDS // 2), method="GET", path=reference) or {}
        if read:
            read["cpu_ms_per_request"] = cpu_ms_per(cpu_read, cpu_snapshot(pg, a, b), read["requests"])
        r.update({"tokens_inserted": tokens_after - tokens_before, "audit_events": audit_after - audit_before,
                  "sync_notifications": notes["by_kind"].get("sync", 0), "change_notifications": notes["sent"],
                  "statements_per_create": round(stats["total_calls"] / inserted, 1),
                  "db_ms_per_create": round(stats["toplevel_ms"] / inserted, 3),
                  "statements": stats["top"][:6], "cpu_ms_per_create": cpu_ms_per(cpu_before, cpu_after, r["requests"]),
                  "reference_get": {k: read.get(k) for k in ("rps", "p50_ms", "p99_ms", "non2xx", "fivexx",
                                                             "cpu_ms_per_request")}})
        r["load_average"] = os.getloadavg()[0]
        results.append(r)
        log(f"{connections:>3} connections: {r['rps']:.0f} creates/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
            f"non-2xx {r['non2xx']}, 5xx {r['fivexx']}; {r['tokens_inserted']} rows, {r['audit_events']} audit events, "
            f"{r['sync_notifications']} sync NOTIFYs, {r['statements_per_create']} statements and "
            f"{r['db_ms_per_create']} ms in PostgreSQL per create; CPU ms per create {r['cpu_ms_per_create']}; "
            f"reference GET {read.get('rps', 0):.0f} req/s, p50 {read.get('p50_ms', 0):.2f} ms, CPU ms per GET "
            f"{read.get('cpu_ms_per_request')}")
        if r["fivexx"] or r["errors"] or r["non2xx"]:
            fail(f"create at {connections} connections: {r['non2xx']} non-2xx ({r['fivexx']} 5xx), {r['errors']} socket errors")
        if read and (read["fivexx"] or read["errors"] or read["non2xx"]):
            fail(f"reference GET at {connections} connections: {read['non2xx']} non-2xx, {read['errors']} socket errors")
    return results


# ---------------------------------------------------------------------------------------------
# 2./3. Cascades watched on B


def cascade(pg, a, b, verifier, listener, admin, what, method, path, body, doomed, probe_token, keep=(), explain=None,
            also_cached=0):
    """Runs one API call on A with `doomed` (and `keep`) cached on B beforehand; measures it and
    what B does: `doomed` must be refused after the call, `keep` must still verify. `explain`: the
    call's main statement, EXPLAIN ANALYZEd (rolled back) first for its per-trigger cost.
    `also_cached`: more tokens the call revokes that B holds but we do not watch."""
    breakdown = trigger_breakdown(pg, explain) if explain else None
    verifier.warm(list(doomed) + list(keep), what)
    audit_before = count_rows(pg)[1]
    log_offset = len(b.logs())
    before = metrics(b)
    reset_statements(pg)
    mark = listener.mark()
    probe = Probe(b, probe_token)
    probe.start()
    time.sleep(0.05)
    started = time.perf_counter()
    status, _, _, text = Client(a.base, timeout=300).request(method, path, admin, body)
    answered = time.perf_counter()
    stats = statements(pg)
    if status >= 300:
        fail(f"{what}: {method} {path} answered {status}: {text[:200]}")
    expected = len(listener.since(mark))  # what the database had delivered to us by the answer
    watch = watch_refusals(verifier, doomed, answered)
    caught_up, reconnected = wait_until_processed(b, before, expected, answered, log_offset)
    probe.stop()
    time.sleep(0.3)  # let the last notifications land before reading B's counters
    after = metrics(b)
    notes = summarize_notifications(listener.since(mark), answered)
    kept = verifier.verify(keep) if keep else []
    kept_refused = sum(1 for _, s, _, _ in kept if s != 200)
    after_keep = metrics(b)
    probe_late = probe.last_accept is not None and probe.last_accept > answered
    accepted_after = watch["accepted"] + (1 if probe_late else 0)
    lasts = [x for x in (watch["last_accept_ms"], ms(probe.last_accept - answered) if probe_late else None) if x is not None]
    result = {
        "what": what, "call": f"{method} {path}", "status": status, "call_ms": ms(answered - started),
        "notifications": notes, "statements": stats, "audit_events": count_rows(pg)[1] - audit_before,
        "b_cache_entries_before": int(metric(before, "tessera_verification_cache_entries")),
        "b_cache": cache_delta(before, after), "b_watch": watch,
        "b_accepted_after_answer": accepted_after, "b_caught_up_after_answer_ms": caught_up,
        "b_listener_reconnected": reconnected,
        "b_slowest_verify_ms": max(watch["slowest_ms"], ms(probe.slowest)), "b_last_accept_after_answer_ms": max(lasts) if lasts else None,
        "probe": {"first_refusal_after_answer_ms": ms(probe.first_refusal - answered) if probe.first_refusal else None,
                  "last_accept_after_answer_ms": ms(probe.last_accept - answered) if probe.last_accept else None,
                  "statuses": sorted(probe.statuses)},
        "b_needed_to_drop": len(doomed) + also_cached, "explain": breakdown, "load_average": os.getloadavg()[0],
        "kept": {"count": len(keep), "refused": kept_refused,
                 "re_looked_up": int(metric(after_keep, "tessera_verification_cache_misses_total")
                                     - metric(after, "tessera_verification_cache_misses_total"))},
    }
    bad = [s for s in watch["statuses"] + result["probe"]["statuses"] if s >= 500]
    if bad:
        fail(f"{what}: B answered {sorted(set(bad))}")
    late = watch["accepted_after_bound"] + (1 if probe_late and probe.last_accept > answered + PROPAGATION_BOUND else 0)
    if late or watch["never_refused"] or probe.first_refusal is None:
        fail(f"{what}: B answered 200 for revoked tokens {late} times later than {PROPAGATION_BOUND:.0f} s after "
             f"the call answered (last +{result['b_last_accept_after_answer_ms']} ms); {watch['never_refused']} never refused" + ("; the probe token was never refused"
                                                                      if probe.first_refusal is None else ""))
    if caught_up is None:
        fail(f"{what}: B had not processed the call's notifications {CATCH_UP_LIMIT} s after the call answered")
    if reconnected:
        log(f"{what}: B's invalidation listener reconnected (heartbeat lost behind the backlog): whole cache dropped")
    if kept_refused:
        fail(f"{what}: {kept_refused} of {len(keep)} tokens that should still verify were refused on B")
    c = result["b_cache"]
    log(f"{what}: {status} in {result['call_ms']} ms (its notifications reached us {notes['first_arrived_ms']} .. "
        f"{notes['last_arrived_ms']} ms from the answer); {notes['sent']} notifications {notes['by_kind']}; "
        f"{stats['total_calls']} statements; {result['audit_events']} audit events; B ({result['b_cache_entries_before']} "
        f"entries) dropped {c['invalidated']} (needed {len(doomed) + also_cached}); B answered 200 for a revoked token "
        f"{accepted_after} times after A answered (last +{result['b_last_accept_after_answer_ms']} ms); the probe "
        f"token was refused at {result['probe']['first_refusal_after_answer_ms']:+} ms from A's answer; "
        f"first look at all {len(doomed)} took {watch['first_pass_ms']} ms; B had processed every notification "
        f"{caught_up} ms after A answered; slowest verification on B meanwhile {result['b_slowest_verify_ms']} ms; "
        f"notification lag on B {c['lag_mean_ms']} ms")
    return result


def member_scenarios(pg, a, b, verifier, listener, admin, secrets, results):
    for n in MEMBER_ORGS:
        log(f"-- 2a. remove member-{n} (in {n} orgs) from one org")
        tokens = secrets["personal"][f"member-{n}"]
        bystanders = secrets["bystander"][:n]
        results.append(cascade(
            pg, a, b, verifier, listener, admin, f"remove member of {n} orgs", "DELETE",
            f"/orgs/wide-{n:05d}/members/member-{n}", None, doomed=[tokens[-1]], probe_token=tokens[-1],
            keep=tokens[:-1] + bystanders))
    for n in MEMBER_ORGS:
        log(f"-- 2b. disable member-{n} (in {n - 1} orgs after 2a, a live personal token in each)")
        result = disable(pg, a, b, verifier, listener, admin, secrets, f"member-{n}", secrets["personal"][f"member-{n}"][:-1],
                         secrets["bystander"][:n], f"disable user in {n - 1} orgs")
        if result:
            results.append(result)
    if FILL and ORG_TOKENS:
        fill = secrets["big"][max(ORG_TOKENS)][:FILL]
        log(f"-- 2c. B's cache filled with {len(fill)} more tokens (of the largest org of 3.)")
        fill_cache(work_of(a), b, fill)
        for n in MEMBER_ORGS:
            log(f"-- 2c. disable member-full-{n} (in {n} orgs) with B's cache full")
            result = disable(pg, a, b, verifier, listener, admin, secrets, f"member-full-{n}",
                             secrets["personal"][f"member-full-{n}"], secrets["bystander"][:n],
                             f"disable in {n}, B +{len(fill) // 1000}k cached")
            if result:
                results.append(result)
    return results


def disable(pg, a, b, verifier, listener, admin, secrets, user, tokens, keep, what):
    """PATCH /users/{user} {"status": "disabled"} with the user's live personal tokens cached on B."""
    if not tokens:
        return None
    # The probe watches the token of the org whose `o:` goes out last (the trigger sends them in
    # org_id order, then `u:`), so its refusal is when B has refused them all.
    last = int(pg.psql(f"""
        SELECT substr(o.slug, 6)::int FROM memberships m JOIN users u ON u.id = m.user_id
        JOIN organizations o ON o.id = m.org_id WHERE u.username = '{user}' ORDER BY o.id DESC LIMIT 1"""))
    return cascade(
        pg, a, b, verifier, listener, admin, what, "PATCH", f"/users/{user}", {"status": "disabled"},
        doomed=tokens, probe_token=secrets["personal"][user][last - 1], keep=keep,
        explain=("UPDATE tokens SET status = 'revoked', revoked_at = now(), revoked_reason = 'owner_disabled', "
                 f"updated_at = now() WHERE owner_user_id = (SELECT id FROM users WHERE username = '{user}') "
                 "AND kind = 'personal' AND status <> 'revoked'"))


FILL_SCRIPT = r"""
local tokens, index, step = {}, 0, 0
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("first", #threads)
end
init = function(args)
  for line in io.lines(os.getenv("SCALE_FILL_FILE")) do tokens[#tokens + 1] = line end
  step = tonumber(os.getenv("SCALE_FILL_THREADS"))
  index = first
  refused = 0
end
request = function()
  local token = tokens[index] or tokens[1]
  index = index + step
  return wrk.format("GET", "/auth/verify", { ["Authorization"] = "Bearer " .. token })
end
response = function(status, headers, body)
  if status ~= 200 then refused = refused + 1 end
  if index > #tokens + 64 then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("refused") end
  io.write(string.format("SCALE_JSON {\"requests\": %d, \"duration_us\": %d, \"refused\": %d}\n",
    summary.requests, summary.duration, total))
end
"""


def work_of(server):
    return os.path.dirname(server.log_path)


def fill_cache(folder, server, tokens):
    """Verifies every token once on `server` with wrk (2 threads walking the list), so its cache
    holds them all. wrk runs for its whole -d, so it is interrupted once the cache stops growing."""
    started = time.perf_counter()
    listing, script = os.path.join(folder, "fill.txt"), os.path.join(folder, "fill.lua")
    with open(listing, "w") as f:
        f.write("\n".join(tokens) + "\n")
    with open(script, "w") as f:
        f.write(FILL_SCRIPT)
    entries = lambda: int(metric(metrics(server), "tessera_verification_cache_entries"))
    target = entries() + len(tokens)
    process = subprocess.Popen(["wrk", "-t", "2", "-c", "16", "-d", "300s", "--timeout", "10s", "-s", script,
                                f"http://{server.base}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, SCALE_FILL_FILE=listing, SCALE_FILL_THREADS="2"))
    last, still = -1, 0
    while process.poll() is None and time.perf_counter() - started < 240:
        time.sleep(0.5)
        now = entries()
        still = still + 1 if now == last else 0
        last = now
        if now >= target or still >= 6:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    line = next((l for l in out.splitlines() if l.startswith("SCALE_JSON ")), None)
    if line is None:
        fail(f"filling B's cache: wrk failed: {err[-300:]}")
        return
    r = json.loads(line[len("SCALE_JSON "):])
    log(f"filled B's cache: {r['requests']} verifications in {time.perf_counter() - started:.1f} s, "
        f"{r['refused']} refused, {entries()} entries now")
    if r["refused"]:
        fail(f"filling B's cache: {r['refused']} seeded tokens did not verify")


def org_scenarios(pg, a, b, verifier, listener, admin, secrets, results):
    for n in ORG_TOKENS:
        log(f"-- 3. delete an org with {n} tokens, {len(secrets['big'][n][:CACHED])} of them watched on B")
        cached = secrets["big"][n][:CACHED]
        # Bystanders: cached tokens of another org must survive.
        keep = secrets["bystander"][:100]
        results.append(cascade(
            pg, a, b, verifier, listener, admin, f"delete org with {n} tokens", "DELETE", f"/orgs/big-{n}", None,
            doomed=cached, probe_token=cached[-1], keep=keep,
            also_cached=max(0, min(FILL, n) - CACHED) if FILL and n == max(ORG_TOKENS) else 0,
            explain=f"DELETE FROM tokens WHERE org_id = (SELECT id FROM organizations WHERE slug = 'big-{n}')"))
    return results


# ---------------------------------------------------------------------------------------------
# 4. List and search at 1M (kept)


def list_figures():
    path = os.path.join(ROOT, "bench/results/list.txt")
    if RUN_LIST:
        log("-- 4. list and search at 1M tokens: bench/list-1m.sh")
        if subprocess.run([os.path.join(ROOT, "bench/list-1m.sh")], stdout=subprocess.DEVNULL).returncode != 0:
            fail("bench/list-1m.sh failed")
    if not os.path.exists(path):
        return {"kept": False, "text": "(no bench/results/list.txt: run bench/list-1m.sh)"}
    return {"kept": not RUN_LIST, "text": open(path).read().rstrip()}


# ---------------------------------------------------------------------------------------------
# Report


def report(created, cascades, listing, seconds):
    lines = [f"# bench/scale.py, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} cores "
             f"(shared by wrk, two replicas and PostgreSQL), release binary, {seconds:.0f} s in all; 1-minute load "
             f"average {LOAD_AT_START:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
             "", "## 1. token creation through the API (organization token: insert + audit + cache barrier)",
             f"{'connections':>11} {'creates/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'5xx':>5} "
             f"{'NOTIFY/create':>14} {'stmts/create':>13} {'db ms/create':>13} {'GET req/s':>10} {'GET p50':>8} {'GET p99':>8}"]
    for r in created:
        per = r["sync_notifications"] / max(1, r["tokens_inserted"])
        g = r["reference_get"]
        lines.append(f"{r['connections']:>11} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                     f"{r['non2xx']:>8} {r['fivexx']:>5} {per:>14.2f} {r['statements_per_create']:>13} "
                     f"{r['db_ms_per_create']:>13.3f} {g['rps'] or 0:>10.0f} {g['p50_ms'] or 0:>8.2f} {g['p99_ms'] or 0:>8.2f}")
    lines.append("NOTIFY/create: sync markers (the barrier; heartbeats included) per row inserted; stmts: statements "
                 "per create, trigger statements included; db ms: top-level statement time in PostgreSQL per create; "
                 "GET: GET /api-tokens/{id} with the same admin token and concurrency (same authentication, no "
                 "transaction, no barrier) right after")
    lines += ["", "## 2./3. cascades through replica A, watched on replica B (tokens cached on B beforehand)",
              f"{'call':<30} {'ms':>7} {'NOTIFY':>6} {'t/u/o':>9} {'stmts':>6} {'audit':>5} {'B cache':>7} "
              f"{'dropped':>7} {'needed':>6} {'200s':>4} {'last 200':>8} {'probe 401':>9} {'B done':>8} {'slowest':>7} {'look ms':>7} "
              f"{'kept ok':>9} {'re-looked':>9}"]
    for r in cascades:
        k = r["notifications"]["by_kind"]
        w = r["b_watch"]
        tuo = f"{k.get('t', 0)}/{k.get('u', 0)}/{k.get('o', 0)}"
        last = f"+{r['b_last_accept_after_answer_ms']}" if r["b_last_accept_after_answer_ms"] is not None else "-"
        p = r["probe"]["first_refusal_after_answer_ms"]
        probe = f"{p:+}" if p is not None else "never"
        d = r["b_caught_up_after_answer_ms"]
        done = (f"+{d}" if d is not None else "never") + ("R" if r.get("b_listener_reconnected") else "")
        kept = f"{r['kept']['count'] - r['kept']['refused']}/{r['kept']['count']}"
        lines.append(f"{r['what']:<30} {r['call_ms']:>7} {r['notifications']['sent']:>6} {tuo:>9} "
                     f"{r['statements']['total_calls']:>6} {r['audit_events']:>5} {r['b_cache_entries_before']:>7} "
                     f"{r['b_cache']['invalidated']:>7} {r['b_needed_to_drop']:>6} {r['b_accepted_after_answer']:>4} "
                     f"{last:>8} {probe:>9} {done:>8} {r['b_slowest_verify_ms']:>7} {w['first_pass_ms']:>7} {kept:>9} {r['kept']['re_looked_up']:>9}")
    lines += ["", "columns: ms = the API call on A (transaction, audit, barrier); NOTIFY = change notifications the "
              "database sent (t token / u user / o organization; sync markers not counted); stmts = statements "
              "run (pg_stat_statements, trigger and foreign-key statements included); B cache = entries in B's "
              "cache before the call; dropped = entries B invalidated; needed = tokens the call revoked that were "
              "cached on B; 200s / last 200 = answers 200 B still gave for revoked tokens after A answered, and "
              "the last one (ms after A answered); probe 401 = when B first refused the token whose notification "
              "goes out last, verified every 2 ms (ms from A's answer; negative: before it; the 401 includes B's database lookup after the drop); B done = when B had taken in every notification the call sent (its own counter; ms after A answered; R: its listener reconnected instead, heartbeat lost behind the backlog, and dropped its whole cache); slowest = the slowest /auth/verify answer B gave our clients from A's answer until then (ms); look ms = how long "
              "the first look at all revoked tokens on B took, right after A answered (each is a miss by then: "
              "the resolution of that look); kept ok = tokens that must survive (other memberships, bystander "
              "org tokens) still verifying on B; re-looked = of those, how many B had to look up again (dropped "
              "although unaffected)",
              "", "most frequent statements per call (calls x statement, total ms):"]
    for r in cascades:
        lines.append(f"  {r['what']}:")
        for s in r["statements"]["top"][:4]:
            lines.append(f"    {s['calls']:>7} x {s['query'][:110]}  ({s['ms']} ms)")
    lines += ["", "per-trigger cost of the main statement (EXPLAIN ANALYZE in a rolled-back transaction just before the call):"]
    for r in cascades:
        if r.get("explain"):
            e = r["explain"]
            triggers = ", ".join(f"{t['name']} {t['calls']}x {t['ms']} ms" for t in e["triggers"])
            lines.append(f"  {r['what']}: {e['execution_ms']} ms; {triggers}")
    notes = []
    for r in cascades:
        n, entries = r["notifications"]["sent"], r["b_cache_entries_before"]
        if r["b_slowest_verify_ms"] > 1000:
            notes.append(f"{r['what']}: B took up to {r['b_slowest_verify_ms'] / 1000:.1f} s to answer /auth/verify "
                         f"(it handled {n} notifications with {entries} cache entries; every o:/u: one scans the cache)")
        if r.get("b_listener_reconnected"):
            notes.append(f"{r['what']}: B's invalidation listener reconnected (its heartbeat marker waited behind the "
                         f"backlog) and dropped its whole cache")
        extra = r["b_cache"]["invalidated"] - r["b_needed_to_drop"]
        if extra > 0 and extra >= r["b_needed_to_drop"]:
            notes.append(f"{r['what']}: B dropped {extra} cached entries the call did not revoke "
                         f"({r['kept']['re_looked_up']} of the surviving tokens we checked had to be looked up again)")
    if notes:
        lines += ["", "NOTES:"] + [f"  {n}" for n in notes]
    lines += ["", "## 4. list and search at 1,000,000 tokens " + ("(kept from bench/list-1m.sh)" if listing["kept"] else "(measured now)"),
              listing["text"]]
    if failures:
        lines += ["", "FAILURES:"] + [f"  {f}" for f in failures]
    return "\n".join(lines)


def main():
    apt_install("wrk", "wrk")
    started = time.perf_counter()
    binary = os.environ.get("TESSERA_BIN") or os.path.join(ROOT, ".build-release/release/tessera")
    work = Workdir("scale")
    pg = Postgres(work, shared_buffers="256MB", max_connections="300",
                  shared_preload_libraries="pg_stat_statements", **{"pg_stat_statements.track": "all"})
    os.environ["TESSERA_BIN"] = binary  # migrate_and_bootstrap runs the same binary
    boot = migrate_and_bootstrap(pg.url)
    pg.psql("CREATE EXTENSION pg_stat_statements")
    admin = boot["token"]
    secrets = seed(pg, work)
    # A long TTL: only push invalidation may drop an entry during a scenario (the default 30 s
    # TTL would otherwise hide a missed notification on a slow run).
    env = {"TESSERA_LOG_LEVEL": "warning", "TESSERA_CACHE_TTL": "600"}
    a = Tessera(work, pg.url, name="replica-a", binary=binary, env=env)
    b = Tessera(work, pg.url, name="replica-b", binary=binary, env=env)
    listener = Notifications(pg.port)
    work.on_close(listener.close)
    verifier = Verifier(b)

    created, cascades = [], []
    try:
        creation(work, pg, a, b, admin, listener, created)
        member_scenarios(pg, a, b, verifier, listener, admin, secrets, cascades)
        org_scenarios(pg, a, b, verifier, listener, admin, secrets, cascades)
    except (OSError, http.client.HTTPException) as error:
        fail(f"stopped early: {type(error).__name__}: {error}")
    listing = list_figures()
    for server in (a, b):
        if server.process.poll() is not None:
            kept = os.path.join(ROOT, "bench/results", f"scale-{os.path.basename(server.log_path)}")
            shutil.copy(server.log_path, kept)
            fail(f"{os.path.basename(server.log_path)} exited with {server.process.returncode} (log kept in "
                 f"{os.path.relpath(kept, ROOT)}): {server.logs()[-600:]}")
    seconds = time.perf_counter() - started
    text = report(created, cascades, listing, seconds)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/scale.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(ROOT, "bench/results/scale.json"), "w") as f:
        json.dump({"created": created, "cascades": cascades, "list": listing, "failures": failures,
                   "settings": {"member_orgs": MEMBER_ORGS, "org_tokens": ORG_TOKENS, "cached": CACHED,
                                "concurrency": CONCURRENCY, "create_seconds": CREATE_SECONDS,
                                "propagation_bound_s": PROPAGATION_BOUND},
                   "seconds": round(seconds, 1)}, f, indent=2)
    if failures:
        sys.exit(f"{len(failures)} failure(s): " + "; ".join(failures))


if __name__ == "__main__":
    main()
