#!/usr/bin/env python3
"""End-to-end checks with real parts (issue #5), run by `make e2e` (and so by `.ci/run`):

1. nginx `auth_request` in front of a tiny upstream, Tessera as the auth service: an org token
   passes and the upstream sees the identity headers; a missing scope is 403; after the token is
   revoked, the next call is 401.
2. Two `tessera serve` replicas on one database: a token cached on B and revoked through A fails
   on B; the time from the revocation to B refusing it, over N revocations, p50/p99.
3. The database goes away: B answers cached tokens, fails closed (401) on a miss, management
   calls answer a problem, nothing crashes; PostgreSQL comes back and everything recovers.

Prints a summary and writes it to e2e/results.json. Exit status 1 on any failed check."""

import json
import re
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (ROOT, Client, Postgres, Tessera, Workdir, apt_install, check, exit_with_failures, failures, free_port,  # noqa: E402
                     log, migrate_and_bootstrap, percentile, random_token)


# ---------------------------------------------------------------------------------------------
# The upstream: answers 200 with the request headers it received, as JSON.

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, *args):
        pass


def start_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_nginx(work, tessera_port, upstream_port):
    apt_install("nginx", "/usr/sbin/nginx")
    port = free_port()
    prefix = os.path.join(work.path, "nginx")
    os.makedirs(prefix + "/logs")
    template = open(os.path.join(ROOT, "docs/gateways/nginx.conf")).read()
    server_block = (template.replace("127.0.0.1:8080", f"127.0.0.1:{tessera_port}")
                            .replace("127.0.0.1:9000", f"127.0.0.1:{upstream_port}")
                            .replace("listen 80;", f"listen 127.0.0.1:{port};"))
    conf = f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
{server_block}
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
            Client(f"127.0.0.1:{port}", timeout=2).get("/healthz")
            return port
        except OSError:
            if process.poll() is not None:
                sys.exit("nginx did not start: " + process.stderr.read().decode())
            time.sleep(0.1)
    sys.exit("nginx did not start in 10 s")


# ---------------------------------------------------------------------------------------------

def gateway(work, replica, root):
    log("-- nginx auth_request in front of an upstream")
    upstream = start_upstream()
    nginx_port = start_nginx(work, replica.port, upstream.server_address[1])
    api = Client(replica.base)
    gw = Client(f"127.0.0.1:{nginx_port}")

    status, _, created, _ = api.request("POST", "/api-tokens/ci-bot", root,
                                        {"name": "pipeline", "isSystemToken": True, "scopes": ["api:read"]})
    check(status == 201, f"create an organization token for CI (got {status})")
    token, token_id = created["token"], created["tokenUUID"]

    status, _, seen, _ = gw.get("/api/builds", token=token)
    check(status == 200, f"CI call with the org token passes the gateway (got {status})")
    seen = seen or {}
    check(seen.get("x-tessera-org") == "acme" and seen.get("x-tessera-token-id") == token_id
          and seen.get("x-tessera-kind") == "organization" and seen.get("x-tessera-username") == "ci-bot"
          and seen.get("x-tessera-scopes") == "api:read",
          f"upstream sees the identity headers {dict((k, v) for k, v in seen.items() if k.startswith('x-tessera'))}")
    check("authorization" in seen, "upstream still gets the Authorization header (the location's choice)")

    status, headers, _, _ = gw.get("/admin/settings", token=token)
    check(status == 403, f"a location that needs org:admin refuses the api:read token with 403 (got {status})")

    status, _, _, _ = gw.get("/api/builds")
    check(status == 401, f"no token: 401 (got {status})")
    status, _, _, _ = gw.get("/api/builds", token=random_token())
    check(status == 401, f"unknown token: 401 (got {status})")

    status, _, _, _ = api.request("DELETE", f"/api-tokens/{token_id}", root)
    check(status == 200, f"revoke (delete) the token through the API (got {status})")
    status, _, _, _ = gw.get("/api/builds", token=token)
    check(status == 401, f"the next gateway call after the revocation is 401 (got {status})")
    upstream.shutdown()


def replicas(work, a, b, root, rounds):
    log(f"-- two replicas, {rounds} revocations through A watched on B")
    api_a, api_b = Client(a.base), Client(b.base)
    delays = []
    answered = []  # how long A took to answer the PATCH (its transaction, audit, barrier)
    stale_after_2s = 0
    for i in range(rounds):
        status, _, created, _ = api_a.request("POST", f"/api-tokens/svc-{i}", root,
                                              {"name": f"svc-{i}", "isSystemToken": True, "scopes": ["api:read"]})
        if status != 201:
            check(False, f"create token {i} on A (got {status})")
            return
        token, token_id = created["token"], created["tokenUUID"]
        for _ in range(2):  # the second one is a cache hit on B
            if api_b.get("/auth/verify", token=token)[0] != 200:
                check(False, f"token {i} verifies on B before the revocation")
                return
        started = time.perf_counter()
        # Revocation as an admin does it: status inactive is enough to stop verification, and it
        # is the same trigger path as delete, revoke and every cascade.
        status, _, _, _ = api_a.request("PATCH", f"/api-tokens/{token_id}", root, {"status": "inactive"})
        answered.append((time.perf_counter() - started) * 1000)
        while True:
            code = api_b.get("/auth/verify", token=token)[0]
            elapsed = time.perf_counter() - started
            if code == 401:
                delays.append(elapsed * 1000)
                break
            if elapsed > 2:
                stale_after_2s += 1
                break
    check(stale_after_2s == 0, f"every revocation reached B within 2 s ({stale_after_2s} did not)")
    # B's own view: from the trigger's clock_timestamp() to B dropping the entry.
    metrics = Client(b.base).get("/metrics")[3]
    lag = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
           if line.startswith("tessera_invalidation_lag_seconds_sum") or line.startswith("tessera_invalidation_lag_seconds_count")}
    lag_sum = next((v for k, v in lag.items() if k.startswith("tessera_invalidation_lag_seconds_sum")), 0)
    lag_count = next((v for k, v in lag.items() if k.startswith("tessera_invalidation_lag_seconds_count")), 0)
    result = {"rounds": rounds,
              "p50_ms": round(percentile(delays, 50), 2), "p99_ms": round(percentile(delays, 99), 2),
              "max_ms": round(max(delays), 2),
              "patch_answered_p50_ms": round(percentile(answered, 50), 2),
              "patch_answered_p99_ms": round(percentile(answered, 99), 2),
              "notify_lag_mean_ms_on_b": round(1000 * lag_sum / lag_count, 3) if lag_count else None}
    log(f"revocation through A to refusal on B (from sending the PATCH): p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms over {rounds}; A answered the PATCH in "
        f"p50 {result['patch_answered_p50_ms']} ms; trigger-to-B notification lag mean "
        f"{result['notify_lag_mean_ms_on_b']} ms")
    return result


def database_outage(pg, b, root):
    log("-- PostgreSQL stops under a replica, then comes back")
    api = Client(b.base)
    status, _, created, _ = api.request("POST", "/api-tokens/outage-bot", root,
                                        {"name": "outage", "isSystemToken": True, "scopes": ["api:read"]})
    cached = created["token"]
    check(api.get("/auth/verify", token=cached)[0] == 200, "token cached on B before the outage")
    pg.stop(mode="fast")
    status, _, _, _ = api.get("/auth/verify", token=cached)
    check(status == 200, f"database down: a cached token still verifies (got {status})")
    started = time.perf_counter()
    status, headers, _, _ = api.get("/auth/verify", token=random_token())
    took = time.perf_counter() - started
    check(status == 401 and "temporarily unavailable" in headers.get("WWW-Authenticate", ""),
          f"database down: a cache miss fails closed with 401 'temporarily unavailable' in {took:.2f} s (got {status})")
    status, _, _, _ = api.get("/api-tokens", token=root)
    check(status in (401, 503), f"database down: a management call is a problem, not a crash (got {status})")
    check(b.process.poll() is None, "the replica is still running")
    pg.start()
    deadline = time.time() + 30
    recovered = None
    while time.time() < deadline:
        if api.get("/api-tokens", token=root)[0] == 200 and api.get("/auth/verify", token=root)[0] == 200:
            recovered = time.time() - (deadline - 30)
            break
        time.sleep(0.2)
    check(recovered is not None, f"database back: management and verification recover without a restart"
          + (f" ({recovered:.1f} s)" if recovered else ""))
    # The listener reconnected: a revocation is pushed again.
    status, _, _, _ = api.request("DELETE", f"/api-tokens/{created['tokenUUID']}", root)
    time.sleep(0.05)
    check(api.get("/auth/verify", token=cached)[0] == 401, "after recovery, revocations take effect again")


def main():
    rounds = int(os.environ.get("E2E_ROUNDS", "200"))
    work = Workdir("e2e")
    pg = Postgres(work)
    boot = migrate_and_bootstrap(pg.url)
    root = boot["token"]
    a = Tessera(work, pg.url, name="replica-a")
    b = Tessera(work, pg.url, name="replica-b")

    gateway(work, a, root)
    propagation = replicas(work, a, b, root, rounds)
    database_outage(pg, b, root)

    for replica in (a, b):
        text = replica.logs()
        check(root not in text and not re.search(r"ts[po]_[0-9a-f]{128}", text),
              f"{os.path.basename(replica.log_path)} holds no token")
    results = {"revocation_propagation": propagation, "failures": failures}
    with open(os.path.join(ROOT, "e2e/results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if failures:
        exit_with_failures([(f"{name}.log", open(os.path.join(work.path, f"{name}.log"), errors="replace").read())
                            for name in ("replica-a", "replica-b")])
    log("all end-to-end checks passed")


if __name__ == "__main__":
    main()
