#!/usr/bin/env python3
"""`make ha` (issue #15, DESIGN §10): Tessera on a highly available PostgreSQL, all real processes
on loopback. harness/ha_cluster.py brings up etcd, three Patroni-managed PostgreSQL 15 nodes in
synchronous mode, HAProxy (a primary and a replica port) and PgBouncer 1.18 in transaction
pooling. Two `tessera serve` replicas, A and B, run with DATABASE_URL = the primary port,
DATABASE_READ_URL = the replica port (standbys answer verification misses) and
DATABASE_LISTEN_URL = the primary port. Under steady verification and management load:

1. Standby reads and revocations: ~200 org tokens verified once on B (the share of misses served
   by standbys); then ~20 s of revocations through A every ~200 ms while threads verify live and
   revoked tokens on A and B, replay paused on both standbys for a few seconds in the middle.
   A *stale accept* is a 200 for a revoked token on the replica that acknowledged the revocation
   after it acknowledged it, or on the other replica more than 1 s after (it learns by NOTIFY).
   Must be 0; fenced misses (a standby behind the fence, asked again on the primary) must occur
   while replay is paused.
2. kill -9 of the leader (Patroni and PostgreSQL): cached live tokens keep verifying on both
   replicas, management answers 503 with Retry-After (never 500) and recovers by itself, both
   listeners reconnect, every acknowledged revocation still holds; the write gap and the time
   until everything is healthy. The killed node then rejoins as a standby.
3. A planned switchover under the same load: its write gap, no 500s, the same invariants.
4. PgBouncer 1.18 in transaction pooling: replica C (unnamed statements, no cache) takes ~2,000
   verifications from 16 clients plus creates and deletes with zero errors; replica D (named
   prepared statements, the negative control) is expected to fail (reported, not a check).

Stale accepts and 500s are counted in every scenario; in 2 and 3 every management request must
be answered (503 within the authentication's 5 s, not a hang: no answer in 30 s fails), every
/auth/verify within 5 s, and both replicas must still answer an uncached verification afterwards
(a stuck or crashed replica fails the scenario and is restarted so that the run goes on; evidence
such as sockets, sessions and timelines of the listener and cache goes into the results).
HA_LOG_LEVEL=trace runs A and B with PostgresNIO's trace logs. Results in e2e/ha-results.json and a
summary on stdout; every wait is bounded, the whole run is cut after --budget seconds (default
300); everything is stopped at the end. Exit status 1 on any failed check (an `[e2e] FAIL` line
each); then the cluster's and the replicas' logs are kept in /tmp/tessera-ha-logs.*."""

import argparse
import collections
import glob
import http.client
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from harness import ROOT, Tessera, Workdir, check, failures, log, migrate_and_bootstrap, percentile, random_token  # noqa: E402
from harness.ha_cluster import HACluster  # noqa: E402

RESULTS = os.path.join(ROOT, "e2e", "ha-results.json")
TOKEN_PATTERN = re.compile(r"ts[po]_[0-9a-f]{128}")
# How long after a revocation was acknowledged by one replica the other may still accept it.
PROPAGATION_ALLOWANCE_S = 1.0

running = []  # load generators to stop, whatever happens




def rounded(value, digits=2):
    return None if value is None else round(value, digits)


def sleep_until(moment, halt=None):
    delay = moment - time.time()
    if delay > 0:
        (halt.wait(delay) if halt else time.sleep(delay))


# ---------------------------------------------------------------------------------------------
# HTTP: answers never raise; transport errors become a status "error:<kind>".

Answer = collections.namedtuple("Answer", "status headers body text sent done")


class Http:
    """A keep-alive HTTP/1.1 client for one replica. Unlike harness.Client it never sends a
    request twice (a create must not be repeated behind the test's back) and never raises."""

    def __init__(self, replica, timeout=10):
        self.replica, self.timeout = replica, timeout
        host, port = replica.base.split(":")
        self.address = (host, int(port))
        self.connection = None

    def call(self, method, path, token=None, body=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        sent = time.time()
        # A GET on a kept-alive connection the server has closed meanwhile is sent again once on a
        # new one; anything else is reported as it failed.
        for attempt in range(2):
            reused = self.connection is not None
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(*self.address, timeout=self.timeout)
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                text = response.read().decode(errors="replace")
                status, answer_headers = response.status, dict(response.getheaders())
                break
            except (OSError, http.client.HTTPException) as error:
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                stale = isinstance(error, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if attempt == 0 and reused and stale and method == "GET":
                    continue
                return Answer(f"error:{type(error).__name__}", {}, None, str(error), sent, time.time())
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return Answer(status, answer_headers, parsed, text, sent, time.time())

    def verify(self, token):
        return self.call("GET", "/auth/verify", token)


def metrics(replica):
    """{(name, frozenset(labels)): value} from /metrics, or {} when it does not answer."""
    answer = Http(replica, timeout=5).call("GET", "/metrics")
    parsed = {}
    if answer.status != 200:
        return parsed
    for line in answer.text.splitlines():
        found = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not found:
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found.group(2) or ""))
        try:
            parsed[(found.group(1), labels)] = float(found.group(3))
        except ValueError:
            pass
    return parsed


def metric(parsed, name, **labels):
    """The sum of `name` over the series whose labels include `labels` (None when absent)."""
    wanted = set(labels.items())
    values = [v for (n, l), v in parsed.items() if n == name and wanted <= l]
    return sum(values) if values else None


def standby_counters(replica):
    parsed = metrics(replica)
    return {
        "served_by_standby": metric(parsed, "tessera_verify_keys_total", served_by="standby") or 0,
        "served_by_primary": metric(parsed, "tessera_verify_keys_total", served_by="primary") or 0,
        "fenced": metric(parsed, "tessera_verify_standby_redirects_total", reason="fenced") or 0,
        "unknown": metric(parsed, "tessera_verify_standby_redirects_total", reason="unknown") or 0,
        "unavailable": metric(parsed, "tessera_verify_standby_redirects_total", reason="unavailable") or 0,
        "unknown_unchecked": metric(parsed, "tessera_verify_standby_unknown_unchecked_total") or 0,
        "listener_connected": metric(parsed, "tessera_invalidation_listener_connected"),
        "replay_lag_bytes": metric(parsed, "tessera_standby_replay_lag_bytes"),
    }


def delta(after, before):
    return {k: after[k] - before[k] for k in ("served_by_standby", "served_by_primary", "fenced", "unknown",
                                                "unavailable", "unknown_unchecked")}


def summed(*deltas):
    return {k: int(sum(d[k] for d in deltas)) for k in deltas[0]}


def listener_losses(replica):
    """How often the replica logged that its invalidation listener lost its connection."""
    return replica.logs().count("invalidation listener lost its database connection")


def log_lines(replica, since_line, pattern):
    lines = replica.logs().splitlines()[since_line:]
    return [line[:400] for line in lines if re.search(pattern, line)]


# ---------------------------------------------------------------------------------------------
# Who revoked what when, and every 200 for a revoked token judged against it.

class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.revoked = {}  # token -> {"id", "at", "by", "scenario"}
        self.order = []
        self.stale = []
        self.scenario = "setup"

    def revoke(self, token, token_id, at, by):
        with self.lock:
            self.revoked[token] = {"id": token_id, "at": at, "by": by, "scenario": self.scenario}
            self.order.append(token)

    def sample(self):
        """A revoked token, most often one of the latest (the race is right after the NOTIFY)."""
        with self.lock:
            if not self.order:
                return None
            if random.random() < 0.7:
                return random.choice(self.order[-8:])
            return random.choice(self.order)

    def observe(self, replica_name, token, answer):
        """Records a stale accept when `answer` (a verification of `token`) is one."""
        if answer.status != 200:
            return False
        with self.lock:
            entry = self.revoked.get(token)
            if not entry:
                return False
            allowance = 0.0 if entry["by"] == replica_name else PROPAGATION_ALLOWANCE_S
            if answer.sent <= entry["at"] + allowance:
                return False
            self.stale.append({"scenario": self.scenario, "replica": replica_name, "token_id": entry["id"],
                               "revoked_by": entry["by"], "revoked_in": entry["scenario"],
                               "acknowledged_at": round(entry["at"], 3), "request_sent_at": round(answer.sent, 3),
                               "late_s": round(answer.sent - entry["at"], 3)})
        log(f"STALE ACCEPT on {replica_name}: token {entry['id']} revoked through {entry['by']} "
            f"{answer.sent - entry['at']:.3f} s before the request")
        return True

    def stale_in(self, scenario):
        with self.lock:
            return [s for s in self.stale if s["scenario"] == scenario]


# ---------------------------------------------------------------------------------------------
# Load

class Traffic:
    """Verification threads on each replica: live tokens (all cached on every replica beforehand)
    and revoked ones (the ledger's), counting statuses; live non-200s and stale accepts noted."""

    TIMEOUT_S = 10
    SLOW_S = 5  # a verification slower than this is a finding (a gateway in front would time out)

    def __init__(self, replicas, live, ledger, threads=3, revoked_share=0.4, pause=0.01):
        self.replicas, self.live, self.ledger = replicas, live, ledger
        self.revoked_share, self.pause = revoked_share, pause
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.counts = {r.name: {"live": collections.Counter(), "revoked": collections.Counter()} for r in replicas}
        self.live_failures = []
        self.latencies = []
        self.slow = []  # (replica, kind, status, sent, seconds) of answers slower than SLOW_S
        self.threads = [threading.Thread(target=self.run, args=(r,), daemon=True)
                        for r in replicas for _ in range(threads)]

    def run(self, replica):
        client = Http(replica, timeout=self.TIMEOUT_S)
        while not self.halt.is_set():
            token = self.ledger.sample() if random.random() < self.revoked_share else None
            kind = "revoked" if token else "live"
            token = token or random.choice(self.live)
            answer = client.verify(token)
            with self.lock:
                self.counts[replica.name][kind][answer.status] += 1
                if len(self.latencies) < 200_000:
                    self.latencies.append(answer.done - answer.sent)
                if kind == "live" and answer.status != 200:
                    self.live_failures.append((replica.name, answer.status, answer.sent))
                if answer.done - answer.sent > self.SLOW_S:
                    self.slow.append((replica.name, kind, answer.status, answer.sent, answer.done - answer.sent))
            if kind == "revoked":
                self.ledger.observe(replica.name, token, answer)
            self.halt.wait(self.pause)

    def start(self):
        running.append(self)
        for thread in self.threads:
            thread.start()
        return self

    def stop(self):
        self.halt.set()
        for thread in self.threads:
            thread.join(15)

    def slow_samples(self, at):
        with self.lock:
            return [(n, k, s, round(t - at, 2), round(d, 2)) for n, k, s, t, d in self.slow[:20]]

    def figures(self):
        with self.lock:
            counts = {name: {kind: {str(k): v for k, v in sorted(c.items(), key=str)} for kind, c in kinds.items()}
                      for name, kinds in self.counts.items()}
            total = sum(sum(c.values()) for kinds in self.counts.values() for c in kinds.values())
            latencies = list(self.latencies)
        return {"verifications": total, "by_replica": counts,
                "live_non_200": len(self.live_failures), "slower_than_5s": len(self.slow),
                "p50_ms": rounded(percentile(latencies, 50) * 1000, 1) if latencies else None,
                "p99_ms": rounded(percentile(latencies, 99) * 1000, 1) if latencies else None,
                "max_ms": rounded(max(latencies) * 1000, 1) if latencies else None}


class Worker(threading.Thread):
    """A daemon thread of the suite: registered in `running` when started (so a failed run stops
    it), stopped by setting `halt` and joining for up to `join_timeout` seconds."""
    join_timeout = 10

    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()

    def start(self):
        running.append(self)
        super().start()
        return self

    def stop(self):
        self.halt.set()
        self.join(self.join_timeout)


class Management(Worker):
    """Management load on one replica: create an org token, verify it on every replica (so the
    revocation has cached entries to drop), delete it (an acknowledged delete goes to the ledger),
    list now and then. Deletes without an answer are retried until the token is known gone."""

    MANAGEMENT_TIMEOUT_S = 30  # a 503 comes within the authentication's 5 s; no answer in 30 s is a hang
    VERIFY_TIMEOUT_S = 3  # short: a stuck replica must not stall the writes being measured

    join_timeout = 30

    def __init__(self, replica, replicas, root, ledger, interval=0.3, tag="x"):
        super().__init__()
        self.replica, self.replicas, self.root, self.ledger, self.interval = replica, replicas, root, ledger, interval
        self.tag = tag
        self.statuses = collections.defaultdict(collections.Counter)
        self.events = []  # (kind, status, sent, done, retry_after)
        self.server_errors = []  # every 5xx other than 503, with its body
        self.pending = []
        self.n = 0
        self.inflight = None  # (kind, label, sent) of the request being made
        self.unacknowledged_creates = []  # (label, status, sent) of creates without a 201

    def note(self, kind, answer):
        self.statuses[kind][answer.status] += 1
        retry_after = answer.headers.get("Retry-After") if isinstance(answer.headers, dict) else None
        self.events.append((kind, answer.status, answer.sent, answer.done, retry_after))
        if isinstance(answer.status, int) and answer.status >= 500 and answer.status != 503:
            self.server_errors.append({"replica": self.replica.name, "kind": kind, "status": answer.status,
                                       "at": round(answer.sent, 3), "body": answer.text[:500]})
            log(f"{answer.status} from {self.replica.name} on {kind}: {answer.text[:300]}")

    def delete(self, client, token, token_id, retry=False):
        self.inflight = ("delete", token_id, time.time())
        answer = client.call("DELETE", f"/api-tokens/{token_id}", self.root)
        self.inflight = None
        self.note("delete", answer)
        if answer.status == 200 or (retry and answer.status == 404):
            self.ledger.revoke(token, token_id, answer.done, self.replica.name)
            return True
        return False

    def run(self):
        client = Http(self.replica, timeout=self.MANAGEMENT_TIMEOUT_S)
        others = {r.name: Http(r, timeout=self.VERIFY_TIMEOUT_S) for r in self.replicas}
        while not self.halt.is_set():
            began = time.time()
            self.n += 1
            self.pending = [p for p in self.pending if not self.delete(client, *p, retry=True)]
            label = f"mgmt-{self.replica.name.lower()}{self.tag}-{self.n}-{random.randrange(16 ** 6):06x}"
            self.inflight = ("create", label, time.time())
            created = client.call("POST", f"/api-tokens/{label}", self.root,
                                  {"name": label, "isSystemToken": True, "scopes": ["api:read"]})
            self.inflight = None
            self.note("create", created)
            if created.status != 201:
                self.unacknowledged_creates.append((label, created.status, created.sent))
            if created.status == 201 and isinstance(created.body, dict):
                token, token_id = created.body["token"], created.body["tokenUUID"]
                for name, other in others.items():
                    self.note(f"verify-new-{name}", other.verify(token))
                if not self.delete(client, token, token_id):
                    self.pending.append((token, token_id))
            if self.n % 3 == 0:
                self.inflight = ("list", None, time.time())
                self.note("list", client.call("GET", "/api-tokens?limit=5", self.root))
                self.inflight = None
            self.halt.wait(max(0.0, self.interval - (time.time() - began)))

    def first_success_after(self, kind, moment):
        """The first `kind` answered with a success for a request sent after `moment`: (done, latency)."""
        ok = {"create": 201, "delete": 200, "list": 200}.get(kind, 200)
        for k, status, sent, done, _ in list(self.events):
            if k == kind and status == ok and sent > moment:
                return done
        return None


class Sampler(Worker):
    """Polls each replica's /metrics every `interval` s: listener state, cache entries and
    invalidations, verification outcomes; the timeline shows when a cache was dropped."""

    def __init__(self, replicas, interval=0.2):
        super().__init__()
        self.replicas, self.interval = replicas, interval
        self.samples = {r.name: [] for r in replicas}  # (time, {..})
        self.lock = threading.Lock()

    def run(self):
        while not self.halt.is_set():
            for r in self.replicas:
                parsed = metrics(r)
                point = {"listener": metric(parsed, "tessera_invalidation_listener_connected"),
                         "cache_entries": metric(parsed, "tessera_verification_cache_entries"),
                         "cache_invalidated": metric(parsed, "tessera_verification_cache_invalidated_total"),
                         "ok": metric(parsed, "tessera_verifications_total", outcome="ok"),
                         "unavailable": metric(parsed, "tessera_verifications_total", outcome="unavailable")}
                with self.lock:
                    self.samples[r.name].append((time.time(), point))
            self.halt.wait(self.interval)

    def latest(self, name, key):
        with self.lock:
            return self.samples[name][-1][1][key] if self.samples[name] else None

    def reconnected(self, name, since):
        """When the listener was first seen connected again after being seen disconnected, both
        after `since` (None if not yet)."""
        with self.lock:
            points = [(t, point["listener"]) for t, point in self.samples[name] if t > since]
        down = next((t for t, value in points if value == 0), None)
        if down is None:
            return None
        return next((t for t, value in points if t > down and value == 1), None)

    def at(self, name, moment, key):
        """The value of `key` on replica `name` in the last sample taken before `moment`."""
        with self.lock:
            before = [point[key] for t, point in self.samples[name] if t <= moment]
        return before[-1] if before else None

    def timeline(self, at):
        """Per replica, the points where the listener or the cache size changes, relative to `at`
        (cache sizes are shown when they drop by more than half or recover)."""
        out = {}
        with self.lock:
            for name, points in self.samples.items():
                kept, last = [], None
                for moment, point in points:
                    if last is None or point["listener"] != last["listener"] or (
                            (point["cache_entries"] or 0) < (last["cache_entries"] or 0) / 2) or (
                            (point["cache_entries"] or 0) > 2 * max(1, last["cache_entries"] or 0)):
                        kept.append({"t": round(moment - at, 2), **{k: v for k, v in point.items() if v is not None}})
                        last = point
                out[name] = kept[:60]
        return out


# ---------------------------------------------------------------------------------------------
# Helpers around the replicas

def create_tokens(replica, root, count, prefix, threads=4):
    """`count` org tokens through `replica`: [(token, id)] in creation order."""
    made = [None] * count
    errors = []

    def work(offset):
        client = Http(replica)
        for i in range(offset, count, threads):
            answer = client.call("POST", f"/api-tokens/{prefix}-{i}", root,
                                 {"name": f"{prefix}-{i}", "isSystemToken": True, "scopes": ["api:read"]})
            if answer.status == 201:
                made[i] = (answer.body["token"], answer.body["tokenUUID"])
            else:
                errors.append((i, answer.status, answer.text[:200]))

    pool = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    if errors or None in made:
        raise RuntimeError(f"creating {count} tokens through {replica.name} failed: {errors[:3]}")
    return made


def verify_all(replica, tokens, expect, threads=4):
    """Verifies every token on `replica`; returns the answers whose status is not `expect`."""
    wrong = []
    lock = threading.Lock()

    def work(offset):
        client = Http(replica, timeout=5)
        timeouts = 0
        for token in tokens[offset::threads]:
            if timeouts >= 2:  # the replica does not answer: the rest counts as not verified
                with lock:
                    wrong.append((token, "not tried: replica hung"))
                continue
            answer = client.verify(token)
            timeouts += answer.status == "error:TimeoutError"
            if answer.status != expect:
                with lock:
                    wrong.append((token, answer.status))

    pool = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    return wrong


def wait_replayed(cluster, timeout=20):
    """Until every running standby has replayed the primary's current WAL position."""
    target = cluster.psql(cluster.primary_url, "SELECT pg_current_wal_lsn()")
    deadline = time.time() + timeout
    for name in cluster.replicas():
        while True:
            behind = cluster.psql(cluster.node_urls[name],
                                  f"SELECT pg_last_wal_replay_lsn() < '{target}'::pg_lsn", timeout=5)
            if behind == "f":
                break
            if time.time() > deadline:
                raise RuntimeError(f"{name} did not replay {target} within {timeout} s")
            time.sleep(0.05)


def stuck(replicas):
    """Replicas that no longer answer an uncached verification (a never-issued token) within 5 s."""
    found = []
    for replica in replicas:
        answers = [Http(replica, timeout=5).verify(random_token()) for _ in range(2)]
        if any(a.status != 401 for a in answers):
            found.append((replica.name, [a.status for a in answers]))
    return found


def restart(replica):
    """kill -9 and start again (a stuck replica may not finish a graceful shutdown)."""
    log(f"restarting replica {replica.name} (kill -9) so that the rest of the run can go on")
    replica.stop(sig=signal.SIGKILL)
    replica.start()


def exited(replicas):
    return [r.name for r in replicas if r.process.poll() is not None]


# ---------------------------------------------------------------------------------------------
# 1. Standby reads and revocations, replay paused in the middle

def standby_reads(cluster, a, b, root, ledger, results, duration=20.0, interval=0.2, pause_at=7.0, pause_for=5.0,
                  count=200):
    log(f"-- 1. standby reads on B, then revocations through A every {interval * 1000:.0f} ms for "
        f"{duration:.0f} s (replay paused on the standbys from {pause_at:.0f} s for {pause_for:.0f} s)")
    ledger.scenario = "standby_reads"
    tokens = create_tokens(a, root, count, "ha")
    wait_replayed(cluster)
    before = standby_counters(b)
    wrong = verify_all(b, [t for t, _ in tokens], 200)
    after = standby_counters(b)
    served = delta(after, before)
    misses = served["served_by_standby"] + served["served_by_primary"]
    share = served["served_by_standby"] / misses if misses else 0.0
    first = {"tokens": count, "verified_on_b": count, "not_200": len(wrong), **{k: int(v) for k, v in served.items()},
             "share_served_by_standbys": round(share, 3)}
    results["standby_reads"] = first
    log(f"B verified {count} new tokens: {int(served['served_by_standby'])} keys served by standbys, "
        f"{int(served['served_by_primary'])} by the primary (share {share:.1%})")
    check(not wrong, f"every new token verifies on B ({len(wrong)} did not: {[s for _, s in wrong[:5]]})")
    check(share >= 0.9, f"at least 90 % of B's misses are served by standbys ({share:.1%})")

    # Half of the tokens are revoked one by one; the other half stays live.
    half = count // 2
    to_revoke, live = tokens[:half], [t for t, _ in tokens[half:]]
    bad = verify_all(a, live, 200) + verify_all(b, live, 200)
    check(not bad, f"the {len(live)} live tokens verify (and are cached) on A and B ({len(bad)} did not)")

    counters = {r.name: standby_counters(r) for r in (a, b)}
    traffic = Traffic([a, b], live, ledger).start()
    chase = queue.Queue()
    errors = collections.Counter()
    propagation = []  # ack on A -> first 401 on B, in ms
    phases = {"paused": [], "lag": []}
    halt = threading.Event()

    def chaser():
        """Follows each revocation on B until B refuses it (the first miss after the NOTIFY is the
        race the fence exists for)."""
        client = Http(b)
        while not halt.is_set() or not chase.empty():
            try:
                token, at = chase.get(timeout=0.2)
            except queue.Empty:
                continue
            deadline = at + 3
            while time.time() < deadline:
                answer = client.verify(token)
                ledger.observe(b.name, token, answer)
                if answer.status == 401:
                    propagation.append((answer.done - at) * 1000)
                    break
                if answer.status != 200:
                    errors[f"chase:{answer.status}"] += 1
                time.sleep(0.01)
            else:
                errors["chase:still_accepted_after_3s"] += 1

    chaser_thread = threading.Thread(target=chaser, daemon=True)
    chaser_thread.start()
    client_a, client_b = Http(a), Http(b)
    revoked = revoked_in_pause = 0
    paused_ids = []
    start = time.time()
    pause_state = "before"
    fenced_before_pause = None
    try:
        for token, token_id in to_revoke:
            now = time.time()
            if now - start >= duration:
                break
            if pause_state == "before" and now - start >= pause_at:
                # Patroni 3.0.2 resumes a paused replay on its next loop (handle_parameter_change)
                # unless the cluster is in maintenance mode.
                maintenance(cluster, True)
                fenced_before_pause = sum(standby_counters(r)["fenced"] for r in (a, b))
                for name in cluster.replicas():
                    cluster.pause_replay(name)
                phases["paused"] = {name: cluster.psql(cluster.node_urls[name], "SELECT pg_is_wal_replay_paused()")
                                    for name in cluster.replicas()}
                pause_state, paused_at = "paused", time.time()
                log(f"replay paused on {', '.join(cluster.replicas())}")
            elif pause_state == "paused" and now - paused_at >= pause_for:
                phases["revoked_rows_on_standbys_at_resume"] = revoked_rows_on_standbys(cluster, paused_ids)
                phases["paused_at_resume"] = {
                    name: cluster.psql(cluster.node_urls[name], "SELECT pg_get_wal_replay_pause_state()")
                    for name in cluster.replicas()}
                for name in cluster.replicas():
                    cluster.resume_replay(name)
                maintenance(cluster, False)
                pause_state, resumed_at = "resumed", time.time()
                fenced_in_pause = sum(standby_counters(r)["fenced"] for r in (a, b)) - fenced_before_pause
                log(f"replay resumed after {resumed_at - paused_at:.1f} s; {fenced_in_pause:.0f} fenced misses "
                    f"went to the primary meanwhile")
            # The token is cached on both replicas right before its revocation.
            for replica, client in ((a, client_a), (b, client_b)):
                answer = client.verify(token)
                if answer.status != 200:
                    errors[f"precache-{replica.name}:{answer.status}"] += 1
            answer = client_a.call("DELETE", f"/api-tokens/{token_id}", root)
            if answer.status != 200:
                errors[f"delete:{answer.status}"] += 1
                continue
            ledger.revoke(token, token_id, answer.done, a.name)
            revoked += 1
            if pause_state == "paused":
                revoked_in_pause += 1
                paused_ids.append(token_id)
                lag = standby_counters(b)["replay_lag_bytes"]
                if lag is not None:
                    phases["lag"].append(lag)
            chase.put((token, answer.done))
            # A acknowledged: its very next verification must refuse (a miss; during the pause
            # the standby still has the row, so only the fence keeps it out).
            check_a = client_a.verify(token)
            ledger.observe(a.name, token, check_a)
            if check_a.status != 401:
                errors[f"a-after-ack:{check_a.status}"] += 1
            sleep_until(now + interval)
    finally:
        if pause_state == "paused":
            for name in cluster.replicas():
                cluster.resume_replay(name)
            maintenance(cluster, False)
            pause_state, resumed_at = "resumed", time.time()
            fenced_in_pause = sum(standby_counters(r)["fenced"] for r in (a, b)) - fenced_before_pause
        time.sleep(PROPAGATION_ALLOWANCE_S + 0.5)
        halt.set()
        chaser_thread.join(10)
        traffic.stop()
    after = {r.name: standby_counters(r) for r in (a, b)}
    redirects = summed(delta(after[a.name], counters[a.name]), delta(after[b.name], counters[b.name]))
    stale = ledger.stale_in("standby_reads")
    figures = traffic.figures()
    result = {"seconds": round(time.time() - start, 1), "revocations": revoked,
              "revocations_while_paused": revoked_in_pause,
              "pause_s": round(resumed_at - paused_at, 1) if pause_state == "resumed" else None,
              "replay_paused": phases["paused"], "replay_pause_state_at_resume": phases.get("paused_at_resume"),
              "revoked_rows_still_on_standbys_at_resume": phases.get("revoked_rows_on_standbys_at_resume"),
              "max_replay_lag_bytes_seen_by_b": max(phases["lag"]) if phases["lag"] else None,
              "stale_accepts": len(stale), "stale": stale[:20],
              "redirects": {"fenced": redirects["fenced"], "unknown": redirects["unknown"],
                            "unavailable": redirects["unavailable"]},
              "fenced_while_paused": int(fenced_in_pause) if pause_state == "resumed" else None,
              "keys_served": {"standby": redirects["served_by_standby"], "primary": redirects["served_by_primary"]},
              "unknown_unchecked": redirects["unknown_unchecked"],
              "propagation_to_b_ms": {"p50": rounded(percentile(propagation, 50), 1),
                                      "p99": rounded(percentile(propagation, 99), 1),
                                      "max": rounded(max(propagation), 1)} if propagation else None,
              "verification": figures,
              "errors": dict(errors), "live_non_200": figures["live_non_200"]}
    results["revocations"] = result
    log(f"{revoked} revocations ({revoked_in_pause} while paused), {figures['verifications']} verifications; "
        f"redirects {result['redirects']}; revocation reached B in p50 "
        f"{result['propagation_to_b_ms'] and result['propagation_to_b_ms']['p50']} ms")
    check(revoked >= 60, f"revocations kept coming every ~{interval * 1000:.0f} ms ({revoked} in "
                         f"{result['seconds']} s)")
    check(result["pause_s"] is not None and revoked_in_pause >= 5,
          f"replay was paused on both standbys for a while ({result['pause_s']} s, {revoked_in_pause} revocations)")
    at_resume = phases.get("paused_at_resume") or {}
    check(len(at_resume) == 2 and all(v == "paused" for v in at_resume.values()),
          f"replay stayed paused on both standbys until resumed ({at_resume})")
    check((result["fenced_while_paused"] or 0) > 0,
          f"fenced misses went to the primary while replay was paused ({result['fenced_while_paused']})")
    check(not stale, f"no stale accept during revocations with standby reads ({len(stale)})")
    check(not errors and not figures["live_non_200"],
          f"no errors: live tokens always 200, every delete acknowledged ({dict(errors)}, "
          f"{figures['live_non_200']} live non-200)")
    return live


def maintenance(cluster, on, timeout=15):
    """Patroni's maintenance mode (`patronictl pause`) on or off, and waits until every running
    node has seen it."""
    cluster.patch_config({"pause": on})
    deadline = time.time() + timeout
    names = [n for n in cluster.nodes if n not in cluster.down]
    while time.time() < deadline:
        answers = [cluster.nodes[n].rest("/patroni")[1] for n in names]
        seen = [bool(a.get("pause")) if isinstance(a, dict) else None for a in answers]
        if all(v == on for v in seen):
            return
        time.sleep(0.1)
    raise RuntimeError(f"Patroni maintenance mode {'on' if on else 'off'} not seen by every node in {timeout} s")


def revoked_rows_on_standbys(cluster, token_ids):
    """How many of these (deleted) tokens each standby still has: evidence that the pause is real."""
    if not token_ids:
        return {}
    ids = ",".join(f"'{i}'" for i in token_ids)
    return {name: int(cluster.psql(cluster.node_urls[name], f"SELECT count(*) FROM tokens WHERE id IN ({ids})"))
            for name in cluster.replicas()}


# ---------------------------------------------------------------------------------------------
# 2 and 3. A fault or an operation under load

def through_event(name, event, cluster, replicas, root, ledger, results, limit=75.0, settle=2.0, fresh=60):
    """Runs verification and management load on `replicas` around `event()`; waits until writes,
    listeners and the cluster are back. The live tokens of the verification load are created and
    cached on every replica right before the event (a cache entry lives TESSERA_CACHE_TTL = 30 s
    from when it was stored, not from its last hit). Returns the revoked tokens acknowledged before
    the event."""
    ledger.scenario = name
    live = [t for t, _ in create_tokens(replicas[0], root, fresh, f"{name}-live")]
    wait_replayed(cluster)  # so that B's misses find them on the standbys (no "unknown" re-checks)
    bad = []
    for replica in replicas:
        bad += verify_all(replica, live, 200)
    check(not bad, f"{name}: {len(live)} new live tokens verified (so cached) on every replica "
                   f"({len(bad)} were not)")
    losses_before = {r.name: listener_losses(r) for r in replicas}
    log_start = {r.name: len(r.logs().splitlines()) for r in replicas}
    revoked_before = len(ledger.order)
    sampler = Sampler(replicas).start()
    traffic = Traffic(replicas, live, ledger).start()
    # Two management threads per replica: one request that never gets an answer must not stop
    # the measurement of when writes came back.
    mgmt = [Management(r, replicas, root, ledger, tag=t).start() for r in replicas for t in "xy"]
    health = []
    hung, captured = [], []
    marks, listener_evidence, outcome = {}, None, None
    at = time.time()
    try:
        time.sleep(2)
        before_event = time.time()
        revoked_pre_event = list(ledger.order)
        outcome = event()
        at = cluster.timings.get("killed_at", before_event) if name == "kill_leader" else before_event
        log(f"{name}: {outcome}; waiting for writes, listeners and the cluster to recover")
        deadline = at + limit
        while time.time() < deadline:
            now = time.time()
            for via in replicas:
                threads = [m for m in mgmt if m.replica is via]
                for key, kind in [(f"write_{via.name}", "create")] + [
                        (f"verify_new_{r.name}_via_{via.name}", f"verify-new-{r.name}") for r in replicas]:
                    if key not in marks:
                        done = [d for d in (m.first_success_after(kind, at) for m in threads) if d]
                        if done:
                            marks[key] = min(done) - at
            for r in replicas:
                key = f"listener_{r.name}"
                back = sampler.reconnected(r.name, at)
                if key not in marks and back is not None:
                    marks[key] = back - at
            for m in mgmt:
                inflight = m.inflight
                for stage in (8, 25):
                    if inflight and time.time() - inflight[2] > stage and (inflight, stage) not in captured:
                        captured.append((inflight, stage))
                        hung.append(hung_request_evidence(cluster, m.replica, inflight, at))
            if "cluster" not in marks:
                problem = cluster._health()
                health.append((round(now - at, 2), problem))
                if problem is None:
                    marks["cluster"] = time.time() - at
            writes = all(f"write_{r.name}" in marks for r in replicas)
            verifies = all(f"verify_new_{r.name}_via_{via.name}" in marks for r in replicas for via in replicas)
            listeners = all(f"listener_{r.name}" in marks for r in replicas)
            if writes and verifies and listeners and "cluster" in marks:
                break
            time.sleep(0.25)
        time.sleep(settle)
        if not all(f"listener_{r.name}" in marks for r in replicas):
            listener_evidence = listener_sessions(cluster, replicas)
            log(f"{name}: a listener did not come back: {listener_evidence}")
    finally:
        for m in mgmt:
            m.stop()
        traffic.stop()
        sampler.stop()

    writes = [marks.get(f"write_{r.name}") for r in replicas]
    first_write = min([w for w in writes if w is not None], default=None)
    # The longest time without an acknowledged write (create or delete, either replica).
    done = sorted(d for m in mgmt for kind, status, _, d, _ in m.events
                  if (kind, status) in (("create", 201), ("delete", 200)) and d > at - 2)
    longest = max((b - a for a, b in zip(done, done[1:])), default=None) if first_write is not None else None
    # The write gap: after a crash, from the kill to the first successful create sent after it;
    # for a switchover (writes go on until the old leader stops), the longest time without one.
    write_gap = first_write if name == "kill_leader" else longest
    slow_management = [(m.replica.name, kind, status, round(sent - at, 2), round(d - sent, 2))
                       for m in mgmt for kind, status, sent, d, _ in m.events
                       if kind in ("create", "delete", "list") and d - sent > 3]
    required = ([f"write_{r.name}" for r in replicas] + [f"listener_{r.name}" for r in replicas] + ["cluster"]
                + [f"verify_new_{r.name}_via_{via.name}" for r in replicas for via in replicas])
    healthy = max(marks.values()) if all(k in marks for k in required) else None
    statuses = collections.defaultdict(collections.Counter)
    for m in mgmt:
        for kind, counter in m.statuses.items():
            statuses[f"{m.replica.name}:{kind}"].update(counter)
    management_kinds = ("create", "delete", "list")
    unavailable = [e for m in mgmt for e in m.events if e[0] in management_kinds and e[1] == 503]
    without_retry_after = [e for e in unavailable if not e[4]]
    other = collections.Counter(e[1] for m in mgmt for e in m.events
                                if e[0] in management_kinds and e[1] not in (200, 201, 503)
                                and not (e[0] == "delete" and e[1] == 404))
    server_errors = [e for m in mgmt for e in m.server_errors]
    verify_500 = sum(v for kinds in traffic.figures()["by_replica"].values() for c in kinds.values()
                     for k, v in c.items() if k.startswith("5"))
    figures = traffic.figures()
    stale = ledger.stale_in(name)
    for entry in stale:
        entry["listener_connected_on_replica"] = sampler.at(entry["replica"], entry["request_sent_at"], "listener")
        entry["acknowledged_s_after_event"] = round(entry["acknowledged_at"] - at, 2)
        entry["accepted_s_after_event"] = round(entry["request_sent_at"] - at, 2)
    first_live_failure = min((f[2] for f in traffic.live_failures), default=None)
    losses = {r.name: listener_losses(r) - losses_before[r.name] for r in replicas}
    reconnect_delays = {r.name: [line for line in log_lines(r, log_start[r.name], "listener lost")][-1:]
                        for r in replicas}
    result = {"event": outcome, "write_gap_s": rounded(write_gap),
              "first_write_after_event_start_s": rounded(first_write),
              "longest_time_without_acknowledged_write_s": rounded(longest),
              "slow_management_requests": slow_management[:20], "hung_management_requests": hung,
              "unacknowledged_creates": unacknowledged_creates(cluster, mgmt, at),
              "first_write_after_event_s": {r.name: rounded(w) for r, w in zip(replicas, writes)},
              "recovered_s": rounded(healthy),
              "marks_s": {k: rounded(v) for k, v in sorted(marks.items())},
              "listener_losses_logged": losses, "last_listener_loss_line": reconnect_delays,
              "replica_timeline": sampler.timeline(at), "listener_evidence": listener_evidence,
              "management_timeline": sorted(
                  [(m.replica.name, kind, status, round(sent - at, 2), round(d - at, 2))
                   for m in mgmt for kind, status, sent, d, _ in m.events
                   if -2 < sent - at < 25 and (kind in ("create", "delete", "list") or status != 200)],
                  key=lambda e: e[3])[:150],
              "slow_verifications": traffic.slow_samples(at),
              "cluster_health_timeline": compress(health),
              "management": {k: {str(s): n for s, n in c.items()} for k, c in sorted(statuses.items())},
              "management_503": len(unavailable), "management_503_without_retry_after": len(without_retry_after),
              "management_other_failures": {str(k): v for k, v in other.items()},
              "server_errors": server_errors[:20], "verify_5xx": verify_500,
              "verification": figures, "cached_live_non_200": figures["live_non_200"],
              "first_live_non_200_after_event_s": rounded(first_live_failure - at) if first_live_failure else None,
              "live_non_200_samples": [(n, s, round(t - at, 2))
                                       for n, s, t in sorted(traffic.live_failures, key=lambda f: f[2])[:10]],
              "revocations_during": len(ledger.order) - revoked_before,
              "stale_accepts": len(stale), "stale": stale[:20]}
    results[name] = result
    log(f"{name}: write gap {result['write_gap_s']} s, everything healthy after {result['recovered_s']} s; "
        f"management {dict((k, dict(v)) for k, v in statuses.items())}")

    check(not server_errors and not verify_500,
          f"{name}: no 500 (nor other 5xx but 503) from management or verification "
          f"({len(server_errors)} management, {verify_500} verification)")
    check(not other, f"{name}: management failures are 503 only, every request answered within "
                     f"{Management.MANAGEMENT_TIMEOUT_S} s ({dict(other)}; hung: "
                     f"{[(h['replica'], h['kind'], h['sent_s']) for h in hung][:4]})")
    slow_verify = traffic.slow_samples(at) + [
        (m.replica.name, kind, status, round(sent - at, 2), round(d - sent, 2))
        for m in mgmt for kind, status, sent, d, _ in m.events
        if kind.startswith("verify-new") and (d - sent > Traffic.SLOW_S or status == "error:TimeoutError")]
    result["slow_verifications"] = slow_verify[:20]
    check(not slow_verify, f"{name}: every /auth/verify answered within {Traffic.SLOW_S} s "
                           f"({Management.VERIFY_TIMEOUT_S} s for the management threads' checks of new tokens; "
                           f"{len(slow_verify)} did not: {slow_verify[:4]})")
    check(not without_retry_after, f"{name}: every 503 carries Retry-After ({len(without_retry_after)} without)")
    if name == "kill_leader":
        check(unavailable, f"{name}: management answered 503 during the gap ({len(unavailable)})")
    check(all(w is not None for w in writes),
          f"{name}: management writes recover by themselves on both replicas (first create after "
          f"{result['first_write_after_event_s']} s; write gap {result['write_gap_s']} s)")
    listeners = {r.name: rounded(marks.get(f"listener_{r.name}")) for r in replicas}
    check(all(v is not None for v in listeners.values()),
          f"{name}: both invalidation listeners reconnected (tessera_invalidation_listener_connected 0 -> 1: "
          f"{listeners} s; evidence: {listener_evidence})")
    check(healthy is not None, f"{name}: everything healthy again within {limit:.0f} s: writes and new-token "
                               f"verifications on both replicas, listeners, cluster ({result['recovered_s']} s; "
                               f"marks {result['marks_s']})")
    # Reported, not failed: a replica drops its whole cache when its listener reconnects (it may
    # have missed notifications) and when a write succeeds while its listener is down (the
    # write's barrier cannot be confirmed); the misses that follow fail closed until the pool has
    # reconnected. Known gap of issue #15: revalidating instead of dropping would keep them.
    result["cached_refused_after_cache_drop"] = figures["live_non_200"]
    log(f"note {name}: cached live tokens refused after a cache drop (fail-closed misses): "
        f"{figures['live_non_200']}, first samples {result['live_non_200_samples'][:5]}")
    check(not stale, f"{name}: no stale accept ({len(stale)})")
    check(not exited(replicas), f"{name}: every replica still runs ({exited(replicas)} exited)")
    return revoked_pre_event


def db_sockets(cluster, replica):
    """{"primary:ESTAB": n, "primary:CLOSE-WAIT": n, ...}: the replica's TCP connections to
    HAProxy's and PgBouncer's ports by state (`ss`)."""
    try:
        out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, timeout=5).stdout
        ports = {cluster.primary_port: "primary", cluster.replica_port: "replica", cluster.pgbouncer_port: "pgbouncer"}
        states = collections.Counter()
        for line in out.splitlines():
            if f"pid={replica.process.pid}," not in line:
                continue
            fields = line.split()
            peer_port = int(fields[4].rsplit(":", 1)[1]) if len(fields) > 4 else None
            if peer_port in ports:
                states[f"{ports[peer_port]}:{fields[0]}"] += 1
        return dict(states)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as error:
        return str(error)


def hung_request_evidence(cluster, replica, inflight, at):
    """What a replica's database connections and the primary's sessions look like while a
    management request of it has been unanswered for a while."""
    kind, label, sent = inflight
    evidence = {"replica": replica.name, "kind": kind, "label": label, "sent_s": round(sent - at, 2),
                "outstanding_s": round(time.time() - sent, 2)}
    evidence["replica_db_sockets"] = db_sockets(cluster, replica)
    try:
        evidence["primary_sessions"] = cluster.psql(
            cluster.primary_url,
            "SELECT s || ': ' || n FROM (SELECT state || coalesce(' ' || wait_event, '') AS s, count(*) AS n "
            "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "
            "GROUP BY 1) x ORDER BY 1",
            timeout=5).splitlines()
    except RuntimeError as error:
        evidence["primary_sessions"] = str(error)[:200]
    if kind == "create" and label:
        try:
            evidence["token_committed"] = cluster.psql(
                cluster.primary_url, f"SELECT count(*) FROM tokens WHERE username = '{label}'", timeout=5) == "1"
        except RuntimeError as error:
            evidence["token_committed"] = str(error)[:200]
    log(f"{replica.name}: a {kind} unanswered for {evidence['outstanding_s']} s: {evidence}")
    return evidence


def listener_sessions(cluster, replicas):
    """Where the LISTEN sessions are (per node, from pg_stat_activity) and the state of each
    replica's TCP connections to HAProxy's ports (a replica's pool holds 16 per URL; a 17th to
    the primary port is its listener; CLOSE-WAIT: the peer closed, the replica did not notice)."""
    evidence = {"leader": cluster.leader(), "listen_sessions": {}}
    for node, url in cluster.node_urls.items():
        if node in cluster.down:
            continue
        try:
            # Listener sessions name themselves (application_name).
            evidence["listen_sessions"][node] = int(cluster.psql(
                url, "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                     "application_name = 'tessera-invalidation-listener'", timeout=5))
        except (RuntimeError, ValueError) as error:
            evidence["listen_sessions"][node] = str(error)[:120]
    for replica in replicas:
        evidence[replica.name] = {"listener_connected_gauge": standby_counters(replica)["listener_connected"],
                                  "sockets": db_sockets(cluster, replica)}
    return evidence


def unacknowledged_creates(cluster, mgmt, at):
    """Creates answered with something else than 201 (or not at all) whose token exists anyway."""
    labels = [(m.replica.name, label, status, sent) for m in mgmt for label, status, sent in m.unacknowledged_creates]
    if not labels:
        return []
    names = ",".join(f"'{label}'" for _, label, _, _ in labels)
    try:
        found = set(cluster.psql(cluster.primary_url, f"SELECT username FROM tokens WHERE username IN ({names})",
                                 timeout=10).split())
    except RuntimeError as error:
        return [f"query failed: {error}"]
    return [{"replica": name, "label": label, "status": status, "sent_s": round(sent - at, 2),
             "committed": label in found} for name, label, status, sent in labels]


def compress(timeline):
    """Keeps only the points where the value changes."""
    out, last = [], object()
    for moment, value in timeline:
        if value != last:
            out.append((moment, value))
            last = value
    return out


def revocations_hold(replicas, ledger, tokens, what):
    wrong = {}
    for replica in replicas:
        for token, status in verify_all(replica, tokens, 401):
            wrong.setdefault(replica.name, []).append((ledger.revoked[token]["id"], status))
    check(not wrong, f"{what}: all {len(tokens)} hold (401) on {', '.join(r.name for r in replicas)} "
                     f"({ {k: v[:5] for k, v in wrong.items()} })")
    return {k: len(v) for k, v in wrong.items()}


# ---------------------------------------------------------------------------------------------
# 4. PgBouncer 1.18, transaction pooling

def through_pgbouncer(work, cluster, root, live, statements, total=2000, clients=16, cycles=6):
    name = f"replica-{'c' if statements == 'unnamed' else 'd'}-pgbouncer-{statements}"
    env = {"DATABASE_READ_URL": cluster.pgbouncer_replica_url, "DATABASE_LISTEN_URL": cluster.primary_url,
           "TESSERA_DB_STATEMENTS": statements, "TESSERA_CACHE_TTL": "0",
           # Misses share one statement at a time by default (LookupBatcher): statements would
           # reach PgBouncer one after another on whichever pooled connection is free, and named
           # statements then fail only by chance. Eight in flight is what a server with cores to
           # spare runs, and what makes the negative control fail reliably.
           "TESSERA_VERIFY_LOOKUPS_IN_FLIGHT": "8"}
    try:
        replica = Tessera(work, cluster.pgbouncer_url, name=name, env=env)
    except SystemExit as error:  # harness: did not start
        return {"started": False, "error": str(error)[:1000]}, None
    replica.name = "C" if statements == "unnamed" else "D"
    before = standby_counters(replica)
    statuses = collections.Counter()
    latencies = []
    lock = threading.Lock()
    per_client = total // clients

    def verifier(index):
        client = Http(replica)
        for i in range(per_client):
            answer = client.verify(live[(index * per_client + i) % len(live)])
            with lock:
                statuses[answer.status] += 1
                latencies.append(answer.done - answer.sent)

    mgmt = collections.Counter()

    def management():
        client = Http(replica)
        for i in range(cycles):
            label = f"pgb-{statements}-{i}"
            created = client.call("POST", f"/api-tokens/{label}", root,
                                  {"name": label, "isSystemToken": True, "scopes": ["api:read"]})
            mgmt[f"create:{created.status}"] += 1
            if created.status != 201:
                continue
            token, token_id = created.body["token"], created.body["tokenUUID"]
            mgmt[f"verify-new:{client.verify(token).status}"] += 1
            mgmt[f"delete:{client.call('DELETE', f'/api-tokens/{token_id}', root).status}"] += 1
            mgmt[f"verify-deleted:{client.verify(token).status}"] += 1
            mgmt[f"list:{client.call('GET', '/api-tokens?limit=5', root).status}"] += 1

    began = time.time()
    pool = [threading.Thread(target=verifier, args=(i,), daemon=True) for i in range(clients)]
    pool.append(threading.Thread(target=management, daemon=True))
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    seconds = time.time() - began
    served = delta(standby_counters(replica), before)
    expected = {"create:201", "verify-new:200", "delete:200", "verify-deleted:401", "list:200"}
    mgmt_errors = sum(v for k, v in mgmt.items() if k not in expected)
    errors = sum(v for k, v in statuses.items() if k != 200) + mgmt_errors
    result = {"started": True, "statements": statements, "verifications": sum(statuses.values()),
              "clients": clients, "seconds": round(seconds, 1),
              "per_second": round(sum(statuses.values()) / seconds) if seconds else None,
              "statuses": {str(k): v for k, v in statuses.items()},
              "p50_ms": rounded(percentile(latencies, 50) * 1000, 1) if latencies else None,
              "p99_ms": rounded(percentile(latencies, 99) * 1000, 1) if latencies else None,
              "management": dict(mgmt), "errors": errors,
              "keys_served": {"standby": int(served["served_by_standby"]), "primary": int(served["served_by_primary"])},
              "redirects": {k: int(served[k]) for k in ("fenced", "unknown", "unavailable")},
              "prepared_statement_errors_logged": len(
                  log_lines(replica, 0, "prepared statement .* (already|does not) exist"))}
    result["unhandled_errors_logged"] = replica.logs().count("unhandled error")  # the 500s
    result["log_sample"] = log_lines(replica, 0, "already exists|does not exist")[:2] or \
        log_lines(replica, 0, "warning|error")[:2]
    return result, replica


# ---------------------------------------------------------------------------------------------

def after_event(replicas, result, name):
    """A replica that no longer answers uncached verifications fails the scenario; it is then
    restarted so that the later scenarios still say something."""
    hung = stuck(replicas)
    result["replicas_stuck_after"] = hung
    check(not hung, f"{name}: afterwards both replicas answer an uncached verification within 5 s (stuck: {hung})")
    for replica in replicas:
        if any(stuck_name == replica.name for stuck_name, _ in hung):
            restart(replica)
    result["restarted"] = [n for n, _ in hung]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=300, help="seconds before the run is cut")
    parser.add_argument("--out", default=RESULTS, help="where the JSON results go")
    args = parser.parse_args()

    def out_of_time(*_):
        raise TimeoutError(f"the HA suite ran out of its {args.budget} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.budget)
    began = time.time()
    results = {}
    ledger = Ledger()
    work = Workdir("ha")
    cluster = HACluster(work)
    replicas = []
    try:
        results["cluster"] = {"bootstrap_s": cluster.start()}
        results["cluster"].update(leader=cluster.leader(), replicas=cluster.replicas(),
                                  sync_standbys=cluster.sync_standbys())
        boot = migrate_and_bootstrap(cluster.primary_url)
        root = boot["token"]
        env = {"DATABASE_READ_URL": cluster.replica_url, "DATABASE_LISTEN_URL": cluster.primary_url,
               # HA_LOG_LEVEL=trace shows PostgresNIO's connection state machines (large logs).
               "TESSERA_LOG_LEVEL": os.environ.get("HA_LOG_LEVEL", "info")}
        a = Tessera(work, cluster.primary_url, name="replica-a", env=env)
        b = Tessera(work, cluster.primary_url, name="replica-b", env=env)
        a.name, b.name = "A", "B"
        replicas = [a, b]
        deadline = time.time() + 15
        while time.time() < deadline and not all(standby_counters(r)["listener_connected"] == 1 for r in replicas):
            time.sleep(0.1)
        check(all(standby_counters(r)["listener_connected"] == 1 for r in replicas),
              "both replicas' invalidation listeners are connected")

        live = standby_reads(cluster, a, b, root, ledger, results)

        # 2. kill -9 of the leader.
        log("-- 2. kill -9 of the leader under verification and management load")
        killed = {}

        def crash():
            killed["name"] = cluster.kill_leader()
            return {"killed": killed["name"]}

        pre_crash = through_event("kill_leader", crash, cluster, replicas, root, ledger, results)
        after_event(replicas, results["kill_leader"], "kill_leader")
        results["kill_leader"]["new_leader"] = cluster.leader()
        results["kill_leader"]["revocations_acknowledged_before_crash"] = len(pre_crash)
        results["kill_leader"]["revocations_not_holding"] = revocations_hold(
            replicas, ledger, pre_crash, f"revocations acknowledged before the crash ({len(pre_crash)})")
        t0 = time.time()
        cluster.start_node(killed["name"])
        cluster.wait_healthy(timeout=90)
        results["kill_leader"]["rejoin_s"] = round(time.time() - t0, 2)
        check(killed["name"] in cluster.replicas(), f"{killed['name']} rejoined as a standby "
                                                   f"in {results['kill_leader']['rejoin_s']} s")

        # 3. Planned switchover.
        log("-- 3. planned switchover under the same load")
        through_event("switchover", cluster.switchover, cluster, replicas, root, ledger, results, limit=60)
        after_event(replicas, results["switchover"], "switchover")
        cluster.wait_healthy(timeout=60)
        everything = list(ledger.order)
        results["switchover"]["revocations_not_holding"] = revocations_hold(
            replicas, ledger, everything, f"every acknowledged revocation of the run ({len(everything)})")

        # 4. PgBouncer.
        log("-- 4. PgBouncer 1.18 in transaction pooling: unnamed statements (C), named ones (D)")
        ledger.scenario = "pgbouncer"
        c_result, c = through_pgbouncer(work, cluster, root, live, "unnamed")
        if c:
            c.stop()
        d_result, d = through_pgbouncer(work, cluster, root, live, "prepared")
        if d:
            d.stop()
        results["pgbouncer"] = {"unnamed_C": c_result, "prepared_D_negative_control": d_result}
        log(f"PgBouncer, unnamed statements (C): {c_result.get('verifications')} verifications from "
            f"{c_result.get('clients')} clients in {c_result.get('seconds')} s, statuses {c_result.get('statuses')}, "
            f"management {c_result.get('management')}, errors {c_result.get('errors')}")
        log(f"PgBouncer, named prepared statements (D): statuses {d_result.get('statuses')}, "
            f"management {d_result.get('management')}, errors {d_result.get('errors')}")
        check(c_result["started"] and c_result["errors"] == 0 and c_result["verifications"] >= 2000,
              f"C through PgBouncer with unnamed statements: {c_result.get('verifications')} verifications, "
              f"0 errors ({c_result.get('errors')})")
        check(c_result.get("keys_served", {}).get("standby", 0) > 0,
              f"C's misses reach the standbys through PgBouncer ({c_result.get('keys_served')})")
        # D's statement failures do not always reach its clients: a failed standby lookup is asked
        # again on the primary, which may happen to succeed. Both count.
        d_failed = (not d_result["started"] or d_result["errors"] > 0
                    or d_result["prepared_statement_errors_logged"] > 0)
        results["pgbouncer"]["negative_control_failed_as_expected"] = d_failed
        check(c_result.get("prepared_statement_errors_logged") == 0,
              f"C logged no prepared-statement error ({c_result.get('prepared_statement_errors_logged')})")
        if d_failed:
            log(f"ok   D with named prepared statements fails through PgBouncer 1.18 as expected "
                f"({d_result.get('errors')} client-visible errors, "
                f"{d_result.get('prepared_statement_errors_logged')} prepared-statement errors logged)")
        else:
            log("NOTE D with named prepared statements did NOT fail through PgBouncer 1.18 (negative control; "
                "not a failure of the suite)")

        results["stale_accepts_total"] = len(ledger.stale)
        check(not ledger.stale, f"no stale accept in the whole run ({len(ledger.stale)})")
        for replica in replicas + [x for x in (c, d) if x]:
            text = replica.logs()
            check(root not in text and not TOKEN_PATTERN.search(text),
                  f"{os.path.basename(replica.log_path)} holds no token")
        check(not exited(replicas), f"replicas A and B ran to the end ({exited(replicas)} exited)")
        results["memory_mib"] = cluster.memory()["total"]
        results["replica_rss_mib"] = {r.name: round(r.rss_kib() / 1024, 1) for r in replicas
                                      if r.process.poll() is None}
    except (Exception, SystemExit) as error:  # reported with the results; then everything is stopped
        failures.append(f"{type(error).__name__}: {error}")
        log(f"FAIL {type(error).__name__}: {error}")
    finally:
        signal.alarm(0)
        for load in running:
            try:
                load.stop()
            except Exception:
                pass
        if failures:
            where = tempfile.mkdtemp(prefix="tessera-ha-logs.")
            cluster.save_logs(where)
            for path in glob.glob(os.path.join(work.path, "*.log")):
                shutil.copy(path, where)
            results["logs"] = where
            log(f"logs kept in {where}")
        t0 = time.time()
        work.close()
        results["stop_s"] = round(time.time() - t0, 2)
    results["stale_accepts_total"] = len(ledger.stale)
    results["total_s"] = round(time.time() - began, 1)
    results["failures"] = failures
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    summary(results)
    if failures:
        log(f"{len(failures)} check(s) failed:")
        for failure in failures:
            log(f"FAIL {failure}")
        sys.exit(1)
    log(f"all HA checks passed in {results['total_s']} s")


def summary(results):
    def get(*path):
        value = results
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    log("== summary (e2e/ha-results.json)")
    log(f"cluster up in {get('cluster', 'bootstrap_s')} s; share of B's misses served by standbys: "
        f"{get('standby_reads', 'share_served_by_standbys')}")
    log(f"revocations: {get('revocations', 'revocations')} ({get('revocations', 'revocations_while_paused')} "
        f"while replay was paused {get('revocations', 'pause_s')} s), "
        f"{get('revocations', 'verification', 'verifications')} verifications, redirects "
        f"{get('revocations', 'redirects')}, fenced while paused {get('revocations', 'fenced_while_paused')}, "
        f"errors {get('revocations', 'errors')}")
    for name, gap in (("kill_leader", "kill -> first create"), ("switchover", "longest time without a write")):
        log(f"{name}: write gap ({gap}) {get(name, 'write_gap_s')} s, healthy after {get(name, 'recovered_s')} s, "
            f"management 503s {get(name, 'management_503')}, 500s {len(get(name, 'server_errors') or [])}, "
            f"cached live non-200 {get(name, 'cached_live_non_200')}, "
            f"{get(name, 'verification', 'verifications')} verifications")
    log(f"PgBouncer: C (unnamed) errors {get('pgbouncer', 'unnamed_C', 'errors')} of "
        f"{get('pgbouncer', 'unnamed_C', 'verifications')}; D (prepared) errors "
        f"{get('pgbouncer', 'prepared_D_negative_control', 'errors')}, prepared-statement errors logged "
        f"{get('pgbouncer', 'prepared_D_negative_control', 'prepared_statement_errors_logged')}")
    log(f"stale accepts: {results.get('stale_accepts_total')}; total {results.get('total_s')} s; "
        f"failures: {len(results.get('failures', []))}")


if __name__ == "__main__":
    main()
