#!/usr/bin/env python3
"""Memory under the uncached verify path (issue #14): one private PostgreSQL, 3,000 seeded tokens,
then for each pool setting a fresh `tessera serve` (TESSERA_BIN, release) with a 2 s cache TTL
under wrk on random tokens for SOAK_SECONDS, RSS sampled every SOAK_SAMPLE seconds from /proc.

Settings compared in one run: PostgresNIO's default pool, and TESSERA_DB_POOL_SIZE=8 (a fixed
pool: no idle or keep-alive timers). Prints the RSS series and req/s; writes bench/results/soak.txt."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
sys.dont_write_bytecode = True
from harness import ROOT, Postgres, Tessera, Workdir, apt_install, log, migrate_and_bootstrap  # noqa: E402
import verify  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "150"))
SAMPLE = int(os.environ.get("SOAK_SAMPLE", "15"))


def main():
    apt_install("wrk", "wrk")
    verify.TOKENS = 3000
    work = Workdir("soak")
    pg = Postgres(work, max_connections="300")
    migrate_and_bootstrap(pg.url)
    verify.seed(pg, work)
    script = os.path.join(work.path, "bench.lua")
    with open(script, "w") as f:
        f.write(verify.WRK_SCRIPT)
    lines = [f"uncached verify soak: 3,000 tokens, cache TTL 2 s, {SECONDS} s per setting, RSS every {SAMPLE} s (MiB)"]
    for name, env in [("default pool", {}), ("TESSERA_DB_POOL_SIZE=8", {"TESSERA_DB_POOL_SIZE": "8"})]:
        server = Tessera(work, pg.url, name=name.replace(" ", "-").replace("=", "-"),
                         env={"TESSERA_LOG_LEVEL": "warning", "TESSERA_CACHE_TTL": "2", **env})
        samples = [server.rss_kib() / 1024]
        wrk = subprocess.Popen(
            ["wrk", "-t2", "-c32", f"-d{SECONDS}s", "-s", script, f"http://{server.base}"],
            env={**os.environ, "BENCH_TOKEN_FILE": os.path.join(work.path, "all.txt"), "BENCH_PATH": "/auth/verify"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started = time.monotonic()
        while wrk.poll() is None:
            time.sleep(SAMPLE)
            if time.monotonic() - started <= SECONDS + 1:
                samples.append(server.rss_kib() / 1024)
        output = wrk.stdout.read()
        rate = next((line.split()[1] for line in output.splitlines() if line.startswith("Requests/sec")), "?")
        series = " → ".join(f"{value:.0f}" for value in samples)
        lines.append(f"  {name:24} {rate:>10} req/s   RSS {series}")
        log(lines[-1])
        server.stop()
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/soak.txt"), "w") as out:
        out.write(text + "\n")


if __name__ == "__main__":
    main()
