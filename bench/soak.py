#!/usr/bin/env python3
"""`make soak` (issue #14): memory of a release `tessera serve` (TESSERA_BIN) on a private PostgreSQL.

1. Cache size: a server with room for SOAK_CACHE_ENTRIES (default 1,000,000) verifies that many
   distinct seeded tokens once each (wrk walking the token file, no repeats); RSS before and after
   gives bytes per cached entry.
2. Soak, SOAK_SECONDS (default 1200) with the defaults but a 2 s cache TTL (so misses never stop):
   wrk on random tokens from 3,000 (verification), and beside it a client doing the management
   churn: create an organization token, verify it, list a page, delete it, in a loop. RSS sampled
   every SOAK_SAMPLE (30) seconds. Passes when nothing failed and RSS grew by less than 2 % over
   the second half (a plateau).

Prints the series and writes bench/results/soak.txt and soak.json. Not part of CI (20 minutes);
`SOAK_SECONDS=240 SOAK_CACHE_ENTRIES=0 make soak` is a short check."""

import json
import os
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
from harness import ROOT, Client, Postgres, Tessera, Workdir, apt_install, log, migrate_and_bootstrap  # noqa: E402
from bench import verify  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "1200"))
SAMPLE = int(os.environ.get("SOAK_SAMPLE", "30"))
CACHE_ENTRIES = int(os.environ.get("SOAK_CACHE_ENTRIES", "1000000"))
VERIFY_TOKENS = 3000
PLATEAU = 0.02

# One connection walks its token file once, in order: every token exactly once.
WALK_SCRIPT = r"""
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKEN_FILE")) do tokens[#tokens + 1] = line end
local sent, answered = 0, 0
request = function()
  sent = sent + 1
  local token = tokens[sent] or tokens[#tokens]
  return wrk.format("GET", "/auth/verify", { ["Authorization"] = "Bearer " .. token })
end
response = function()
  answered = answered + 1
  if answered >= #tokens then os.exit(0) end  -- wrk itself would run out its -d
end
"""

def metric(server, name):
    status, _, _, text = Client(server.base).get("/metrics")
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))


def cache_size(work, pg):
    """RSS per cached entry, with CACHE_ENTRIES distinct tokens verified once each."""
    server = Tessera(work, pg.url, name="cache-1m", env={
        "TESSERA_LOG_LEVEL": "warning", "TESSERA_CACHE_TTL": "3600", "TESSERA_CACHE_MAX_ENTRIES": str(CACHE_ENTRIES)})
    before = server.rss_kib()
    script = os.path.join(work.path, "walk.lua")
    with open(script, "w") as f:
        f.write(WALK_SCRIPT)
    started = time.monotonic()
    # 16 one-connection wrk processes, each walking its own 16th of the tokens.
    walkers = [subprocess.Popen(["wrk", "-t1", "-c1", "-d3600s", "-s", script, f"http://{server.base}"],
                                env=dict(os.environ, BENCH_TOKEN_FILE=os.path.join(work.path, f"walk-{i}.txt")),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(16)]
    for walker in walkers:
        walker.wait()
    seconds = time.monotonic() - started
    entries = int(metric(server, "tessera_verification_cache_entries"))
    after = server.rss_kib()
    server.stop()
    result = {"entries": entries, "rss_before_mib": before / 1024, "rss_after_mib": after / 1024,
              "bytes_per_entry": (after - before) * 1024 / max(1, entries), "seconds": seconds}
    log(f"cache: {entries} entries in {seconds:.0f} s, RSS {before / 1024:.0f} → {after / 1024:.0f} MiB, "
        f"{result['bytes_per_entry']:.0f} bytes per entry")
    return result


def churn(server, admin, stop, counts):
    """Management traffic beside the verification load: create, verify, list, delete."""
    client = Client(server.base, timeout=30)
    while not stop.is_set():
        status, _, created, _ = client.request("POST", "/api-tokens/soak-bot", admin,
                                               {"name": "soak", "isSystemToken": True, "scopes": ["api:read"]})
        ok = status == 201
        if ok:
            ok = client.get("/auth/verify", token=created["token"])[0] == 200
            ok = client.get("/api-tokens?limit=50", token=admin)[0] == 200 and ok
            ok = client.request("DELETE", f"/api-tokens/{created['tokenUUID']}", admin)[0] in (200, 204) and ok
        counts["pairs" if ok else "errors"] += 1


def soak(work, pg, admin):
    server = Tessera(work, pg.url, name="soak", env={"TESSERA_LOG_LEVEL": "warning", "TESSERA_CACHE_TTL": "2"})
    script = os.path.join(work.path, "bench.lua")
    with open(script, "w") as f:
        f.write(verify.WRK_SCRIPT)
    samples = [server.rss_kib() / 1024]
    wrk = subprocess.Popen(["wrk", "-t2", "-c32", f"-d{SECONDS}s", "-s", script, f"http://{server.base}"],
                           env=dict(os.environ, BENCH_TOKEN_FILE=os.path.join(work.path, "soak.txt"),
                                    BENCH_PATH="/auth/verify"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop, counts = threading.Event(), {"pairs": 0, "errors": 0}
    worker = threading.Thread(target=churn, args=(server, admin, stop, counts), daemon=True)
    worker.start()
    started = time.monotonic()
    while wrk.poll() is None:
        time.sleep(min(SAMPLE, max(0.1, SECONDS - (time.monotonic() - started))))
        if time.monotonic() - started <= SECONDS + 1 and len(samples) <= SECONDS // SAMPLE:
            samples.append(server.rss_kib() / 1024)
            log(f"soak {time.monotonic() - started:.0f} s: RSS {samples[-1]:.1f} MiB, churn pairs {counts['pairs']}")
    stop.set()
    worker.join(timeout=30)
    output = wrk.stdout.read()
    summary = next((json.loads(line[len("BENCH_JSON "):]) for line in output.splitlines()
                    if line.startswith("BENCH_JSON ")), None)
    server.stop()
    half = samples[len(samples) // 2]
    growth = (samples[-1] - half) / half
    return {"seconds": SECONDS, "sample_seconds": SAMPLE, "rss_mib": [round(s, 1) for s in samples],
            "second_half_growth": growth, "verifications": summary["requests"] if summary else None,
            "verify_rps": summary["requests"] / (summary["duration_us"] / 1e6) if summary else None,
            "verify_errors": (summary["errors"] + summary["non2xx"]) if summary else None,
            "churn_pairs": counts["pairs"], "churn_errors": counts["errors"]}


def main():
    apt_install("wrk", "wrk")
    work = Workdir("soak")
    pg = Postgres(work, shared_buffers="256MB", max_connections="300")
    boot = migrate_and_bootstrap(pg.url)
    admin = boot["token"]
    verify.TOKENS = max(CACHE_ENTRIES, VERIFY_TOKENS)
    tokens = verify.seed(pg, work)
    with open(os.path.join(work.path, "soak.txt"), "w") as f:
        f.write("\n".join(tokens[:VERIFY_TOKENS]) + "\n")
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count()}
    if CACHE_ENTRIES:
        for i in range(16):
            # The first token twice: wrk may call request() once before it connects.
            share = tokens[i:CACHE_ENTRIES:16]
            with open(os.path.join(work.path, f"walk-{i}.txt"), "w") as f:
                f.write("\n".join(share[:1] + share) + "\n")
        results["cache"] = cache_size(work, pg)
    results["soak"] = soak(work, pg, admin)
    s = results["soak"]
    lines = [f"# make soak, {results['date']}, {results['cores']} cores, release build"]
    if "cache" in results:
        c = results["cache"]
        lines.append(f"cache: {c['entries']:,} entries cached, RSS {c['rss_before_mib']:.0f} → {c['rss_after_mib']:.0f} MiB "
                     f"= {c['bytes_per_entry']:.0f} bytes per entry ({c['seconds']:.0f} s to fill)")
    lines.append(f"soak: {s['seconds']} s, 2 s cache TTL, {VERIFY_TOKENS:,} tokens: {s['verifications'] or 0:,} verifications "
                 f"({s['verify_rps'] or 0:,.0f} req/s, {s['verify_errors']} errors), {s['churn_pairs']:,} create/verify/list/delete "
                 f"rounds ({s['churn_errors']} errors)")
    lines.append(f"RSS every {SAMPLE} s (MiB): " + " → ".join(f"{v:.0f}" for v in s["rss_mib"]))
    met = s["second_half_growth"] < PLATEAU and not s["verify_errors"] and not s["churn_errors"]
    lines.append(f"second half growth {s['second_half_growth'] * 100:+.1f} % (target < {PLATEAU * 100:.0f} %): "
                 f"{'met' if met else 'NOT met'}")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/soak.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(ROOT, "bench/results/soak.json"), "w") as f:
        json.dump(results, f, indent=2)
    if not met:
        sys.exit("soak: " + lines[-1])


if __name__ == "__main__":
    main()
