"""The write hot paths for `make bench` (issues #22 and #24): organization-token creation through
the API and the RFC 8693 exchange at `/oauth/token`, each under wrk at the bench's concurrency.

Creation POSTs `/api-tokens/svc-bench` (an organization token) with the bootstrap admin's token.
The exchange POSTs a different, pre-minted RS256 JWT each time (a `jti` is accepted once), from
an issuer process (harness/issuer.py) whose keys the server fetched once, before the runs."""

import json
import os
import subprocess
import sys
import time

from harness import Client, free_port, log

GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
ID_TOKEN = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token"

WRK_SCRIPT = r"""
local mode = os.getenv("WRITE_MODE")
local tokens = {}
local threads = {}
local count = 0
setup = function(thread)
  thread:set("id", count)
  count = count + 1
  table.insert(threads, thread)
end
init = function(args)
  step = tonumber(os.getenv("WRITE_THREADS"))
  index = id + 1
  if mode == "exchange" then
    for line in io.lines(os.getenv("WRITE_TOKENS")) do tokens[#tokens + 1] = line end
  end
  server_errors = 0
end
request = function()
  if mode == "exchange" then
    local token = tokens[index]
    index = index + step
    if token == nil then token = "exhausted" end
    return wrk.format("POST", "/oauth/token", { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=" .. os.getenv("WRITE_GRANT") .. "&subject_token=" .. token ..
      "&subject_token_type=" .. os.getenv("WRITE_TYPE") .. "&audience=acme")
  end
  return wrk.format("POST", "/api-tokens/svc-bench", {
    ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. os.getenv("WRITE_ADMIN") },
    '{"name": "bench", "isSystemToken": true, "scopes": ["api:read"]}')
end
response = function(status, headers, body) if status >= 500 then server_errors = server_errors + 1 end end
done = function(summary, latency, requests)
  local fivexx = 0
  for _, t in ipairs(threads) do fivexx = fivexx + t:get("server_errors") end
  io.write(string.format("WRITE_JSON {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"errors\": %d, \"non2xx\": %d, \"fivexx\": %d}\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, summary.errors.status, fivexx))
end
"""


class Issuer:
    """harness/issuer.py in its own process, and an RS256 trust policy of `acme` naming it."""

    def __init__(self, work, python=sys.executable):
        from e2e.federation_run import issuer_python  # installs cryptography into a venv if missing
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([issuer_python(), "-m", "harness.issuer", "--port", str(self.port)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        work.on_close(self.process.kill)
        if "ready" not in self.process.stdout.readline():
            sys.exit("the bench issuer did not start")
        self.client = Client(f"127.0.0.1:{self.port}", timeout=600)

    def trust(self, server, admin):
        status, _, _, text = Client(server.base).request(
            "POST", "/orgs/acme/trust-policies", admin,
            {"name": "bench", "issuer": self.base, "audience": "tessera-bench", "scopes": ["api:read"],
             "conditions": {"repository": "acme/app"}, "maxLifetimeSeconds": 900, "label": "ci-bench"})
        if status != 201:
            sys.exit(f"the bench trust policy was refused: {status} {text}")

    def mint(self, path, count):
        """`count` JWTs (each its own jti), one per line in `path`."""
        status, _, reply, text = self.client.request(
            "POST", "/mint-batch", body={"count": count, "claims": {
                "aud": "tessera-bench", "repository": "acme/app", "exp": int(time.time()) + 3300}})
        if status != 200:
            sys.exit(f"minting failed: {status} {text[:200]}")
        with open(path, "w") as f:
            f.write("\n".join(reply["tokens"]) + "\n")

    def jwks_fetches(self):
        return self.client.get("/stats")[2]["jwks"]


def run(work, server, mode, connections, seconds, threads=2, admin=None, tokens=None):
    script = os.path.join(work.path, "writes.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    env = dict(os.environ, WRITE_MODE=mode, WRITE_THREADS=str(threads), WRITE_ADMIN=admin or "",
               WRITE_TOKENS=tokens or "", WRITE_GRANT=GRANT, WRITE_TYPE=ID_TOKEN)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "--timeout", "10s", "-s", script, f"http://{server.base}"],
                         env=env, capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("WRITE_JSON ")), None)
    if out.returncode != 0 or line is None:
        sys.exit(f"wrk ({mode}) failed: {out.stderr[-500:]}")
    r = json.loads(line[len("WRITE_JSON "):])
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "errors": r["errors"], "non2xx": r["non2xx"], "fivexx": r["fivexx"],
            "requests": r["requests"]}
