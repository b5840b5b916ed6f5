#!/usr/bin/env python3
"""Smoke test of e2e/ha_cluster.py (issue #15's infrastructure, no Tessera yet): brings up etcd,
three Patroni-managed PostgreSQL nodes in synchronous mode, HAProxy and PgBouncer on loopback, then

1. writes a row through HAProxy's primary port and reads it through the replica port;
2. pauses WAL replay on a standby: a commit still succeeds, the standby does not see it until
   replay resumes;
3. queries through PgBouncer (transaction pooling) to the primary and to the standbys;
4. crashes the leader (kill -9 of Patroni and PostgreSQL) while inserting every 50 ms through
   HAProxy and through PgBouncer: the longest gap between commits, the time to the first commit
   after the crash, and acknowledged inserts missing afterwards (must be 0: synchronous mode);
5. starts the crashed node again (it rejoins as a standby) and waits for a healthy cluster;
6. a planned switchover under the same insert loop: its gap.

Prints the results as JSON (and writes them to --out FILE if given). Bounded: the whole run is
cut after --budget seconds (default 170); everything is stopped at the end. Exit status 1 on any
failed check."""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time

from harness import Workdir, check, failures, log  # noqa: E402
from harness.ha_cluster import HACluster, docs_in_sync  # noqa: E402





class Writer(threading.Thread):
    """Inserts one row every `interval` seconds through `url` (a new psql connection each time,
    as a client reconnecting through HAProxy would), recording which ids were acknowledged when."""

    def __init__(self, cluster, url, first_id, interval=0.05):
        super().__init__(daemon=True)
        self.cluster, self.url, self.next_id, self.interval = cluster, url, first_id, interval
        self.acks, self.errors, self.unknown = [], 0, []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            began = time.time()
            row = self.next_id
            self.next_id += 1
            try:
                port = self.cluster.psql(self.url, f"INSERT INTO smoke (id) VALUES ({row}) "
                                                   "RETURNING inet_server_port()", timeout=5)
                self.acks.append((row, time.time(), int(port)))
            except RuntimeError:
                self.errors += 1
                self.unknown.append(row)  # not acknowledged: it may or may not have committed
            self.halt.wait(max(0.0, self.interval - (time.time() - began)))

    def stop(self):
        self.halt.set()
        self.join(10)

    def acked_on_other_node(self, moment, old_port):
        return any(at > moment and port != old_port for _, at, port in self.acks)

    def figures(self, event_at, old_port):
        """Longest gap between consecutive acknowledged commits, and the time from the event to
        the first commit acknowledged by another node than the old leader."""
        times = [at for _, at, _ in self.acks]
        gaps = [b - a for a, b in zip(times, times[1:])]
        moved = [at for _, at, port in self.acks if at > event_at and port != old_port]
        return {"inserts_acknowledged": len(times), "inserts_failed": self.errors,
                "longest_gap_s": round(max(gaps), 2) if gaps else None,
                "recovery_s": round(moved[0] - event_at, 2) if moved else None}


def lost(cluster, writers):
    """Acknowledged ids missing from the table, and unacknowledged ids that did commit."""
    present = set(int(x) for x in cluster.psql(cluster.primary_url, "SELECT id FROM smoke", timeout=10).split())
    acked = set(row for w in writers for row, _, _ in w.acks)
    unknown = set(row for w in writers for row in w.unknown)
    return sorted(acked - present), len(unknown & present)


def through_event(cluster, event, results_key, results, settle=1.5, limit=60):
    """Runs two writers (HAProxy's primary port, PgBouncer) around `event()`; waits until both
    have committed on the new leader, then `settle` seconds more."""
    old_port = cluster.nodes[cluster.leader()].pg_port
    base = int(cluster.psql(cluster.primary_url, "SELECT coalesce(max(id), 0) FROM smoke")) + 1
    writers = [Writer(cluster, cluster.primary_url, base), Writer(cluster, cluster.pgbouncer_url, base + 1_000_000)]
    for w in writers:
        w.start()
    try:
        time.sleep(2)
        event_at = time.time()
        outcome = event()
        deadline = event_at + limit
        while time.time() < deadline and not all(w.acked_on_other_node(event_at, old_port) for w in writers):
            time.sleep(0.1)
        time.sleep(settle)
    finally:
        for w in writers:
            w.stop()
    results[results_key] = {"event": outcome, "haproxy_primary": writers[0].figures(event_at, old_port),
                            "pgbouncer": writers[1].figures(event_at, old_port)}
    return writers


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="also write the JSON results to this file")
    parser.add_argument("--budget", type=int, default=170, help="seconds before the run is cut")
    args = parser.parse_args()

    def out_of_time(*_):
        raise TimeoutError(f"the smoke test ran out of its {args.budget} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.budget)
    began = time.time()
    results = {}
    work = Workdir("ha")
    cluster = HACluster(work)
    try:
        results["bootstrap_s"] = cluster.start()
        results["leader"], results["replicas"] = cluster.leader(), cluster.replicas()
        results["sync_standbys"] = cluster.sync_standbys()
        results["memory_mib"] = cluster.memory()
        check(not docs_in_sync(), f"docs/deploy.md quotes the config templates verbatim (missing: {docs_in_sync()})")

        # 1. Primary write, replica read.
        cluster.psql(cluster.primary_url, "CREATE TABLE smoke (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        cluster.psql(cluster.primary_url, "INSERT INTO smoke (id) VALUES (0)")
        written = time.time()
        seen = False
        while time.time() < written + 5 and not seen:
            seen = cluster.psql(cluster.replica_url, "SELECT count(*) FROM smoke WHERE id = 0") == "1"
            if not seen:
                time.sleep(0.02)
        results["replica_visible_ms"] = round((time.time() - written) * 1000) if seen else None
        check(seen, "a row written through the primary port is read through the replica port")
        check(cluster.psql(cluster.replica_url, "SELECT pg_is_in_recovery()") == "t",
              "the replica port reaches a standby")

        # 2. Replay paused on a standby (the synchronous one: commits wait for its flush, not its replay).
        standby = cluster.sync_standbys()[0]
        cluster.pause_replay(standby)
        t0 = time.time()
        cluster.psql(cluster.primary_url, "INSERT INTO smoke (id) VALUES (-1)", timeout=5)
        results["commit_with_paused_sync_standby_ms"] = round((time.time() - t0) * 1000)
        time.sleep(0.3)
        stale = cluster.psql(cluster.node_urls[standby], "SELECT count(*) FROM smoke WHERE id = -1") == "0"
        check(stale, f"with replay paused, {standby} does not see a new commit")
        cluster.resume_replay(standby)
        deadline = time.time() + 5
        caught_up = False
        while time.time() < deadline and not caught_up:
            caught_up = cluster.psql(cluster.node_urls[standby], "SELECT count(*) FROM smoke WHERE id = -1") == "1"
            time.sleep(0.05)
        check(caught_up, f"after resume, {standby} sees it")

        # 3. PgBouncer 1.18, transaction pooling.
        config = dict(line.split("|")[:2] for line in cluster.psql(
            cluster.pgbouncer_url.replace("/postgres?", "/pgbouncer?"), "SHOW CONFIG").splitlines())
        results["pgbouncer"] = {"pool_mode": config.get("pool_mode")}
        check(config.get("pool_mode") == "transaction", "PgBouncer runs in transaction pooling")
        check(cluster.psql(cluster.pgbouncer_url, "SELECT pg_is_in_recovery()") == "f",
              "PgBouncer's postgres database reaches the primary")
        check(cluster.psql(cluster.pgbouncer_replica_url, "SELECT pg_is_in_recovery()") == "t",
              "PgBouncer's postgres_replica database reaches a standby")
        check(cluster.psql(cluster.pgbouncer_url, "BEGIN; INSERT INTO smoke (id) VALUES (-2); "
                                                  "SELECT count(*) FROM smoke WHERE id = -2; COMMIT;") == "1",
              "a transaction through PgBouncer")

        # 4. Crash the leader under writes.
        killed = {}

        def crash():
            killed["name"] = cluster.kill_leader()
            return {"killed": killed["name"]}

        writers = through_event(cluster, crash, "kill_leader", results)
        results["kill_leader"]["new_leader"] = cluster.leader()
        missing, unacked_committed = lost(cluster, writers)
        results["kill_leader"]["lost_acknowledged"] = len(missing)
        results["kill_leader"]["unacknowledged_but_committed"] = unacked_committed
        check(not missing, f"no acknowledged insert lost by the failover (missing: {missing[:10]})")
        for via in ("haproxy_primary", "pgbouncer"):
            check(results["kill_leader"][via]["recovery_s"] is not None, f"writes through {via} recover after kill -9")

        # 5. The crashed node comes back as a standby.
        t0 = time.time()
        cluster.start_node(killed["name"])
        cluster.wait_healthy(timeout=60)
        results["rejoin_s"] = round(time.time() - t0, 2)
        check(killed["name"] in cluster.replicas(), f"{killed['name']} rejoined as a standby")

        # 6. Planned switchover under writes.
        switch_writers = through_event(cluster, cluster.switchover, "switchover", results)
        missing, _ = lost(cluster, writers + switch_writers)
        results["switchover"]["lost_acknowledged"] = len(missing)
        check(not missing, "no acknowledged insert lost by the switchover")
        cluster.wait_healthy(timeout=30)
        results["memory_mib_end"] = cluster.memory()["total"]
    except Exception as error:  # reported with the results, then the cluster is stopped
        failures.append(f"{type(error).__name__}: {error}")
        log("FAIL", error)
    finally:
        signal.alarm(0)
        if failures:
            results["logs"] = cluster.save_logs(tempfile.mkdtemp(prefix="tessera-ha-logs."))
            log(f"logs kept in {results['logs']}")
        t0 = time.time()
        work.close()
        results["stop_s"] = round(time.time() - t0, 2)
    results["total_s"] = round(time.time() - began, 2)
    results["failures"] = failures
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
