#!/usr/bin/env python3
"""`make bench`: the verification hot path against baselines measured in the same run (issue #5).

Starts a private PostgreSQL and two `tessera serve` processes (release build; one with the
verification cache, one with it off), seeds N organization tokens (default 100,000), then runs wrk
on loopback, one after the other, at the same concurrency:

  rules        GET /auth/verify, cached, one token with 20 access rules, the request matching the
               last one (X-Original-Method/-URI, as nginx sends them) (issue #23)
  nousage      GET /auth/verify, cached, on a third server with TESSERA_USAGE=off (issue #23)
  baseline     GET /healthz (a trivial route through the same router and middleware, same headers)
  malformed    GET /auth/verify with a token whose checksum is wrong (rejected offline)
  cached       GET /auth/verify, random tokens from a warm set of 1,000
  uncached     GET /auth/verify, random tokens from all N, cache off (one lookup per request)
  pgbench      pgbench -M prepared: the statement the server runs on a miss (TokenStateStatement.sql,
               read from Sources/TesseraVerification/TokenVerifier.swift), on random hashes from all N
  plain        pgbench -M prepared on the fixed reference of DESIGN §15, the plain lookup
               `SELECT * FROM tokens WHERE secret_hash = $1`, on the same random hashes (it does not
               move when the server's statement grows)
  nginx        Debian's nginx answering `return 200` on every path (2 workers, as the server's 2
               event loops): the box's HTTP limit, the same wrk and headers
  create       POST /api-tokens/svc-bench: organization-token creation through the API (issue #24)
  exchange     POST /oauth/token: RFC 8693 exchanges of pre-minted RS256 JWTs from an issuer process,
               one JWT per request, the keys fetched once (issue #22; bench/writes.py)
  knox         a peer (issue #14): Django REST framework + django-rest-knox under gunicorn on the same
               PostgreSQL, N knox tokens, GET /api/verify/ on random tokens from all N (bench/peers/knox.py)

in BENCH_ROUNDS interleaved rounds (default 3 of 6 s), reporting the median round and the
median of the per-round ratios,
and prints req/s, p50/p99 and the ratios the issue asks for; writes bench/results/verify.json
and bench/results/verify.txt. Settings: BENCH_TOKENS, BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS,
BENCH_PEERS=0 (no knox peer), BENCH_EXCHANGE_TOKENS (JWTs minted per round, default 12000)."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import statistics

from harness import ROOT, Client, Postgres, Tessera, Workdir, apt_install, free_port, log, migrate_and_bootstrap, random_token  # noqa: E402
from bench.peers import knox as knox_peer  # noqa: E402
from bench import writes  # noqa: E402

TOKENS = int(os.environ.get("BENCH_TOKENS", "100000"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "6"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
PEERS = os.environ.get("BENCH_PEERS", "1") != "0"
EXCHANGE_TOKENS = int(os.environ.get("BENCH_EXCHANGE_TOKENS", "12000"))
THREADS = 2

WRK_SCRIPT = r"""
local tokens = {}
local path = os.getenv("BENCH_TOKEN_FILE")
if path then for line in io.lines(path) do tokens[#tokens + 1] = line end end
local target = os.getenv("BENCH_PATH")
local scheme = os.getenv("BENCH_SCHEME") or "Bearer"
local original = os.getenv("BENCH_ORIGINAL_URI")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
request = function()
  if #tokens == 0 then return wrk.format("GET", target) end
  local headers = { ["Authorization"] = scheme .. " " .. tokens[math.random(#tokens)] }
  if original then
    headers["X-Original-Method"] = "GET"
    headers["X-Original-URI"] = original
  end
  return wrk.format("GET", target, headers)
end
done = function(summary, latency, requests)
  io.write(string.format("BENCH_JSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"errors\": %d, \"non2xx\": %d}\n", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.errors.status))
end
"""


def make_token():
    return random_token("tso")


def seed(pg, work):
    log(f"seeding {TOKENS} organization tokens")
    tokens = [make_token() for _ in range(TOKENS)]
    rows = os.path.join(work.path, "tokens.csv")
    with open(rows, "w") as f:
        for i, token in enumerate(tokens, 1):
            f.write(f"{i},\\x{hashlib.sha256(token.encode()).hexdigest()},{token[:12]}\n")
    os.chmod(rows, 0o644)
    org = pg.psql("SELECT id FROM organizations WHERE slug = 'acme'")
    pg.psql(f"""
        CREATE TABLE bench_keys (i int PRIMARY KEY, h bytea NOT NULL, prefix text NOT NULL);
        COPY bench_keys FROM '{rows}' WITH (FORMAT csv);
        SET session_replication_role = replica;
        INSERT INTO tokens (org_id, kind, username, name, scopes, secret_hash, token_prefix, expires_at,
                            created_by, search_text)
        SELECT '{org}', 'organization', 'bench-' || i, 'bench ' || i, '{{api:read}}', h, prefix,
               now() + interval '30 days', 'bench', 'bench ' || i
        FROM bench_keys;
        SET session_replication_role = origin;
        VACUUM ANALYZE tokens; VACUUM ANALYZE bench_keys;
    """)
    with open(os.path.join(work.path, "all.txt"), "w") as f:
        f.write("\n".join(tokens) + "\n")
    with open(os.path.join(work.path, "warm.txt"), "w") as f:
        f.write("\n".join(tokens[:1000]) + "\n")
    bad = tokens[0][:-1] + ("0" if tokens[0][-1] != "0" else "1")
    with open(os.path.join(work.path, "malformed.txt"), "w") as f:
        f.write(bad + "\n")
    return tokens


def wrk(work, server, path, token_file=None, seconds=SECONDS, scheme="Bearer", original=None):
    script = os.path.join(work.path, "bench.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    env = dict(os.environ, BENCH_PATH=path, BENCH_SCHEME=scheme)
    if original:
        env["BENCH_ORIGINAL_URI"] = original
    if token_file:
        env["BENCH_TOKEN_FILE"] = os.path.join(work.path, token_file)
    out = subprocess.run(["wrk", "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency",
                          "-s", script, f"http://{server.base}"], env=env, capture_output=True, text=True, check=True)
    line = next(l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON "))
    result = json.loads(line[len("BENCH_JSON "):])
    return {"rps": result["requests"] / (result["duration_us"] / 1e6), "p50_ms": result["p50_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000, "errors": result["errors"], "non2xx": result["non2xx"]}


def miss_statement():
    """The server's statement on a verification miss (TokenStateStatement.sql), read from the Swift
    source so pgbench runs exactly what the server runs, with pgbench's random token's hash for $1:
    one hash, or an array of one when the statement takes a batch (`secret_hash = ANY($1)`)."""
    path = os.path.join(ROOT, "Sources/TesseraVerification/TokenVerifier.swift")
    found = re.search(r'struct TokenStateStatement\b.*?static let sql = """(.*?)"""', open(path).read(), re.S)
    if not found or found.group(1).count("$1") != 1:
        sys.exit(f"pgbench: no TokenStateStatement.sql with one $1 parameter in {path}")
    sql = " ".join(found.group(1).split())
    hash_ = "(SELECT h FROM bench_keys WHERE i = :i)"
    return sql.replace("ANY($1)", f"ANY(ARRAY[{hash_}])").replace("$1", hash_)


def pgbench(work, pg):
    script = os.path.join(work.path, "select.sql")
    with open(script, "w") as f:
        f.write(f"\\set i random(1, {TOKENS})\n{miss_statement()};\n")
    os.chmod(script, 0o644)
    out = subprocess.run([os.path.join(pg.bin, "pgbench"), "-n", "-M", "prepared", "-c", str(CONNECTIONS),
                          "-j", str(THREADS), "-T", str(SECONDS),
                          "-h", "127.0.0.1", "-p", str(pg.port), "-U", "tessera", "-f", script, "-r",
                          "--log", "--log-prefix", os.path.join(work.path, "pgbench"), "postgres"],
                         capture_output=True, text=True, cwd=work.path)
    if out.returncode != 0:
        sys.exit("pgbench failed: " + out.stderr[-2000:])
    tps = next(float(l.split("=")[1].split()[0]) for l in out.stdout.splitlines() if l.startswith("tps ="))
    latencies = []
    for name in os.listdir(work.path):
        if name.startswith("pgbench."):
            with open(os.path.join(work.path, name)) as f:
                latencies += [int(l.split()[2]) for l in f if l.strip()]
    latencies.sort()
    pick = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * (len(latencies) - 1)))] / 1000
    return {"rps": tps, "p50_ms": pick(50), "p99_ms": pick(99), "errors": 0, "non2xx": 0}


def plain_lookup(work, pg):
    """pgbench on the plain lookup by hash (the fixed reference), same hashes as `pgbench`."""
    script = os.path.join(work.path, "plain.sql")
    with open(script, "w") as f:
        f.write(f"\\set i random(1, {TOKENS})\nSELECT * FROM tokens WHERE secret_hash = "
                "(SELECT h FROM bench_keys WHERE i = :i);\n")
    os.chmod(script, 0o644)
    out = subprocess.run([os.path.join(pg.bin, "pgbench"), "-n", "-M", "prepared", "-c", str(CONNECTIONS),
                          "-j", str(THREADS), "-T", str(SECONDS), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                          "tessera", "-f", script, "postgres"], capture_output=True, text=True, cwd=work.path)
    if out.returncode != 0:
        sys.exit("pgbench (plain lookup) failed: " + out.stderr[-2000:])
    tps = next(float(l.split("=")[1].split()[0]) for l in out.stdout.splitlines() if l.startswith("tps ="))
    return {"rps": tps, "p50_ms": 0.0, "p99_ms": 0.0, "errors": 0, "non2xx": 0}


class NginxReference:
    """nginx answering 200 on every path: what HTTP on this box costs without any application."""

    def __init__(self, work):
        apt_install("nginx", "/usr/sbin/nginx")
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        prefix = os.path.join(work.path, "nginx")
        os.makedirs(prefix + "/logs", exist_ok=True)
        conf = f"""
daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
    server {{ listen 127.0.0.1:{self.port}; location / {{ return 200; }} }}
}}
"""
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        process = subprocess.Popen(["/usr/sbin/nginx", "-p", prefix, "-c", path], stderr=subprocess.PIPE)
        work.on_close(lambda: (process.terminate(), process.wait(10)))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if Client(self.base, timeout=2).get("/")[0] == 200:
                    return
            except OSError:
                if process.poll() is not None:
                    sys.exit("nginx did not start: " + process.stderr.read().decode())
                time.sleep(0.1)
        sys.exit("nginx did not start in 10 s")


def main():
    apt_install("wrk", "wrk")
    binary = os.environ.get("TESSERA_BIN") or os.path.join(ROOT, ".build-release/release/tessera")
    work = Workdir("bench")
    pg = Postgres(work, shared_buffers="256MB", max_connections="300")
    boot = migrate_and_bootstrap(pg.url)
    seed(pg, work)
    env = {"TESSERA_LOG_LEVEL": "warning"}
    cached = Tessera(work, pg.url, name="cached", binary=binary,
                     env=dict(env, TESSERA_FEDERATION_ALLOW_HTTP_ISSUERS="true"))
    uncached = Tessera(work, pg.url, name="uncached", binary=binary, env=dict(env, TESSERA_CACHE_TTL="0"))
    quiet = Tessera(work, pg.url, name="nousage", binary=binary, env=dict(env, TESSERA_USAGE="off"))
    knox = knox_peer.start(work, pg, TOKENS) if PEERS else None
    nginx = NginxReference(work)

    client = Client(cached.base)
    token = open(os.path.join(work.path, "warm.txt")).readline().strip()
    assert client.get("/auth/verify", token=token)[0] == 200, "a seeded token does not verify"
    assert Client(uncached.base).get("/auth/verify", token=token)[0] == 200
    if knox:
        knox_token = open(knox.token_file).readline().strip()
        assert Client(knox.base).get("/api/verify/", headers={"Authorization": f"Token {knox_token}"})[0] == 200, \
            "a seeded knox token does not verify"
        assert Client(knox.base).get("/api/verify/", headers={"Authorization": f"Token {knox_token[::-1]}"})[0] == 401

    admin = boot["token"]
    issuer = writes.Issuer(work)
    issuer.trust(cached, admin)
    log(f"minting {ROUNDS} x {EXCHANGE_TOKENS} RS256 JWTs for the exchange runs (and 3000 to warm up)")
    jwt_files = []
    for i in range(ROUNDS + 1):
        path = os.path.join(work.path, f"jwts-{i}.txt")
        issuer.mint(path, EXCHANGE_TOKENS if i else 3000)
        jwt_files.append(path)
    rules = [{"method": "GET", "path": f"/bench/{i}/**"} for i in range(20)]
    status, _, ruled, _ = client.request("POST", "/api-tokens/svc-rules", admin, {
        "name": "20 rules", "isSystemToken": True, "scopes": ["api:read"], "accessRules": rules})
    assert status == 201, f"the 20-rule token was refused: {status}"
    with open(os.path.join(work.path, "rules.txt"), "w") as f:
        f.write(ruled["token"] + "\n")
    matching = "/bench/19/models/iris/predict?x=1"
    assert Client(cached.base).get("/auth/verify", token=ruled["token"],
                                   headers={"X-Original-Method": "GET", "X-Original-URI": matching})[0] == 200
    writes.run(work, cached, "create", CONNECTIONS, 2, admin=admin)
    writes.run(work, cached, "exchange", CONNECTIONS, 2, tokens=jwt_files[0])

    log(f"warming: {SECONDS // 2} s of cached verify and of uncached verify" + (", 2 s of knox" if knox else ""))
    wrk(work, cached, "/auth/verify", "warm.txt", seconds=max(2, SECONDS // 2))
    wrk(work, quiet, "/auth/verify", "warm.txt", seconds=max(2, SECONDS // 2))
    wrk(work, uncached, "/auth/verify", "all.txt", seconds=max(2, SECONDS // 2))
    if knox:
        wrk(work, knox, "/api/verify/", knox.token_file, seconds=2, scheme="Token")
    rss_before = cached.rss_kib()

    # Interleaved rounds, medians: these machines drift by up to 1.6x within an hour, so every
    # scenario is measured in every round, next to the others, and the median round is reported.
    scenarios = [
        # The baseline sends the same Authorization header (healthz ignores it), so wrk does
        # the same work per request in every run and only the server's work differs.
        ("baseline", lambda: wrk(work, cached, "/healthz", "malformed.txt")),
        ("malformed", lambda: wrk(work, cached, "/auth/verify", "malformed.txt")),
        ("cached", lambda: wrk(work, cached, "/auth/verify", "warm.txt")),
        ("rules", lambda: wrk(work, cached, "/auth/verify", "rules.txt", original=matching)),
        ("nousage", lambda: wrk(work, quiet, "/auth/verify", "warm.txt")),
        ("uncached", lambda: wrk(work, uncached, "/auth/verify", "all.txt")),
        ("pgbench", lambda: pgbench(work, pg)),
        ("plain", lambda: plain_lookup(work, pg)),
        ("nginx", lambda: wrk(work, nginx, "/", "malformed.txt")),
    ]
    if knox:
        scenarios.append(("knox", lambda: wrk(work, knox, "/api/verify/", knox.token_file, scheme="Token")))
    scenarios.append(("create", lambda: writes.run(work, cached, "create", CONNECTIONS, SECONDS, admin=admin)))
    scenarios.append(("exchange", lambda: writes.run(work, cached, "exchange", CONNECTIONS, SECONDS,
                                                     tokens=jwt_files[current_round[0] + 1])))
    current_round = [0]
    runs = {}
    for round_ in range(ROUNDS):
        current_round[0] = round_
        for name, run in scenarios:
            log(f"round {round_ + 1}/{ROUNDS}: {name} ({SECONDS} s, {CONNECTIONS} connections)")
            runs.setdefault(name, []).append(run())
            time.sleep(0.5)
    results = {}
    for name, measured in runs.items():
        ordered = sorted(measured, key=lambda r: r["rps"])
        median = dict(ordered[len(ordered) // 2])
        median["errors"] = sum(r["errors"] for r in measured)
        median["non2xx"] = sum(r["non2xx"] for r in measured)
        median["rps_all_rounds"] = [round(r["rps"]) for r in measured]
        results[name] = median

    # Ratios per round (each pair measured seconds apart), then their median.
    def ratio(a, b):
        return statistics.median(x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b]))
    ratios = {
        "cached/baseline": ratio("cached", "baseline"),
        "rules/cached": ratio("rules", "cached"),
        "cached/nousage": ratio("cached", "nousage"),
        "malformed/baseline": ratio("malformed", "baseline"),
        "uncached/pgbench": ratio("uncached", "pgbench"),
        "uncached/plain": ratio("uncached", "plain"),
        "cached/nginx": ratio("cached", "nginx"),
        "baseline/nginx": ratio("baseline", "nginx"),
    }
    # DESIGN §15: cached >= 0.9 of nginx and >= 0.95 of /healthz; uncached >= 0.5 of the plain
    # lookup (the server's own statement is reported beside it, never instead of it).
    targets = {"cached/baseline": 0.95, "rules/cached": 0.95, "cached/nousage": 0.95, "malformed/baseline": 0.95, "uncached/pgbench": 0.5, "uncached/plain": 0.5,
               "cached/nginx": 0.9, "baseline/nginx": 0.0}
    if knox:
        ratios.update({"uncached/knox": ratio("uncached", "knox"), "cached/knox": ratio("cached", "knox")})
        targets.update({"uncached/knox": 10, "cached/knox": 30})
    ratios["exchange/create"] = ratio("exchange", "create")
    targets["exchange/create"] = 0.0
    lines = [f"# make bench, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} cores, "
             f"{TOKENS} tokens, {CONNECTIONS} connections, {ROUNDS} interleaved rounds of {SECONDS} s, median round",
             f"{'run':<10} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'non-2xx':>8}"]
    for name, r in results.items():
        lines.append(f"{name:<10} {r['rps']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7} {r['non2xx']:>8}"
                     f"   rounds: {', '.join(map(str, r['rps_all_rounds']))}")
    lines.append("")
    for name, value in ratios.items():
        lines.append(f"{name:<20} {value:5.2f}   (target >= {targets[name]:.2f}: {'met' if value >= targets[name] else 'NOT met'})")
    for name, floor, p99 in (("create", 1000, 50), ("exchange", 500, None)):
        r = results[name]
        lines.append(f"{name + ' rate':<20} {r['rps']:5.0f}/s, p99 {r['p99_ms']:.1f} ms   (target >= {floor}/s"
                     + (f", p99 <= {p99} ms" if p99 else "") + f": {'met' if r['rps'] >= floor and (p99 is None or r['p99_ms'] <= p99) else 'NOT met'})")
    fetches = issuer.jwks_fetches()
    lines.append(f"issuer JWKS fetches over {sum(r['requests'] for r in runs['exchange'])} exchanges: {fetches}")
    lines.append(f"server RSS after warm-up {rss_before // 1024} MiB, after the runs {cached.rss_kib() // 1024} MiB")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/verify.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(ROOT, "bench/results/verify.json"), "w") as f:
        json.dump({"results": results, "ratios": ratios, "targets": targets, "tokens": TOKENS,
                   "connections": CONNECTIONS, "seconds": SECONDS}, f, indent=2)
    # The malformed run expects 401s; every other run must be all 2xx.
    bad = [n for n, r in results.items() if r["errors"] or (r["non2xx"] and n != "malformed") or r.get("fivexx")]
    if bad:
        sys.exit(f"errors during {', '.join(bad)}")


if __name__ == "__main__":
    main()
