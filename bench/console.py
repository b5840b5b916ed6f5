#!/usr/bin/env python3
"""Console page timings over 10,000 tokens (issue #12): a private PostgreSQL, one `tessera serve`
(the binary in TESSERA_BIN, debug by default), 10,000 organization tokens seeded in bulk, a
console session signed in with the bootstrap token, then N sequential requests per page:

- the Organization tokens list (first page, 25 rows), a page deep in the list (keyset cursor),
  a search matching 1 % of the tokens, and My token;
- `GET /api-tokens?limit=25` with the same token, the API's own answer to the same query, as the
  baseline of this run (ratios, not absolute numbers: these machines drift).

Prints p50/p95 per page and writes bench/results/console.txt."""

import os
import re
import statistics
import sys
import time

sys.dont_write_bytecode = True
from harness import ROOT, Client, Postgres, Tessera, Workdir, log, migrate_and_bootstrap  # noqa: E402

TOKENS = int(os.environ.get("TOKENS", "10000"))
ROUNDS = int(os.environ.get("ROUNDS", "200"))


def seed(pg):
    pg.psql(f"""
SET session_replication_role = replica;
INSERT INTO tokens (org_id, kind, username, name, scopes, groups, secret_hash, token_prefix, created_at, created_by, search_text)
SELECT o.id, 'organization', 'svc-' || (i % 500), 'token ' || i || CASE WHEN i % 100 = 7 THEN ' needle' ELSE '' END,
       '{{api:read}}', '{{}}', sha256(int8send(i)), 'tso_' || substr(md5(i::text), 1, 8), now() - (i || ' seconds')::interval,
       'root', lower('token ' || i || CASE WHEN i % 100 = 7 THEN ' needle' ELSE '' END || ' svc-' || (i % 500) || ' root')
FROM generate_series(1, {TOKENS}) AS i, organizations o WHERE o.slug = 'acme';
SET session_replication_role = origin;
VACUUM ANALYZE tokens;
""")


def main():
    work = Workdir("bench-console")
    pg = Postgres(work)
    root = migrate_and_bootstrap(pg.url)["token"]
    seed(pg)
    server = Tessera(work, pg.url, env={"TESSERA_LOG_LEVEL": "warning"})
    client = Client(server.base)

    # Sign in through the form, as a browser does.
    status, headers, _, body = client.request("GET", "/console/sign-in")
    cookies = dict(re.findall(r"(tessera_\w+)=([^;]*)", headers.get("Set-Cookie", "")))
    csrf = re.search(r'name="csrf" value="([^"]*)"', body).group(1)
    status, headers, _, _ = client.request(
        "POST", "/console/sign-in", form={"csrf": csrf, "token": root},
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    cookies.update(re.findall(r"(tessera_\w+)=([^;]*)", headers.get("Set-Cookie", "")))
    cookie = {"Cookie": f"tessera_session={cookies['tessera_session']}"}
    assert status == 303, status

    first = client.request("GET", "/console/org-tokens", headers=cookie)[3]
    deep = "/console/org-tokens"
    for _ in range(200):  # follow "Next page" 200 times: 5,000 rows deep
        match = re.search(r'href="(/console/org-tokens\?[^"]*cursor=[^"]*)" rel="next"', first if deep == "/console/org-tokens" else page)
        if not match:
            break
        deep = match.group(1).replace("&amp;", "&")
        page = client.request("GET", deep, headers=cookie)[3]
    pages = {
        "api GET /api-tokens?limit=25 (baseline)": ("/api-tokens?limit=25&kind=organization", {"Authorization": f"Bearer {root}"}),
        "console Organization tokens, first page": ("/console/org-tokens", cookie),
        "console Organization tokens, 5,000 rows deep": (deep, cookie),
        "console search (1 % match)": ("/console/org-tokens?search=needle", cookie),
        "console My token": ("/console/my-token", cookie),
    }
    timings = {name: [] for name in pages}
    for _ in range(ROUNDS):  # interleaved, so drift hits every page alike
        for name, (path, headers) in pages.items():
            started = time.perf_counter()
            status = client.request("GET", path, headers=headers)[0]
            timings[name].append((time.perf_counter() - started) * 1000)
            assert status == 200, (name, status)
    baseline = statistics.median(timings["api GET /api-tokens?limit=25 (baseline)"])
    lines = [f"console pages over {TOKENS:,} organization tokens, {ROUNDS} interleaved rounds, binary {os.path.relpath(server.binary, ROOT)}"]
    for name, values in timings.items():
        values.sort()
        p50, p95 = statistics.median(values), values[int(len(values) * 0.95) - 1]
        lines.append(f"  {name:48} p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  ({p50 / baseline:4.2f}× the API)")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/console.txt"), "w") as out:
        out.write(text + "\n")


if __name__ == "__main__":
    main()
