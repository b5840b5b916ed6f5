#!/usr/bin/env python3
"""Webhooks and leak response end to end (issue #16, DESIGN §11), run by `make webhooks`.

Real parts only: a private PostgreSQL, `tessera serve` replicas, and a webhook receiver in a
process of its own (http.server, threaded) that checks every request with the `standardwebhooks`
package from PyPI (installed into .venv-webhooks when missing) and records what it got.

1. A webhook for every event: token created, deleted, a member with a personal token removed →
   every event arrives, every signature verifies (and a tampered body does not), no payload holds
   a token or the webhook's secret, the delivery log says `delivered`.
2. The receiver down for ~5 s while 20 tokens are made, then back (answering 500 to its first
   requests): every event acknowledged exactly once, the retries in the log, the time to catch up.
3. kill -9 of Tessera right after a burst of creates (receiver down, nothing delivered yet):
   after a restart every event is delivered (a claim held by the dead process lapses after 60 s).
4. Two replicas sweeping expiry every second: one `token.expiring` per (token, notice) (7, 30 and
   60 days) and one `token.expired`, however many sweeps ran.
5. `POST /credentials/revoke`: a live token, a revoked one, a well-formed unknown one, foreign
   and garbage strings → the same 202 bytes as a list of garbage; only the live one revoked
   (reason `leaked`, a `token.leaked` webhook); more than 1,000 strings refused; rate limit 429.
6. Redeliver through the API → the receiver gets the same `webhook-id` again.
7. Hostile targets: a 200 followed by a 1 GiB body is delivered, Tessera hanging up after 64 KiB
   and holding none of it; a 307 to a private address is a failed attempt and is not followed.

Writes e2e/webhooks-results.json; exit status 1 if any check fails. The receiver is this file run
as `webhooks_run.py receiver ...` with the virtualenv's Python."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STANDARDWEBHOOKS = "standardwebhooks==1.1.0"
VENV = os.path.join(ROOT, ".venv-webhooks")
TOKEN_PATTERN = re.compile(r"ts[po]_[0-9a-f]{128}")
DAY = 86400


# ---------------------------------------------------------------------------------------------
# The receiver (runs in its own process, with the virtualenv's Python)

def receiver_main(argv):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secrets", required=True, help="JSON file: {path: whsec_...}, read on every request")
    parser.add_argument("--log", required=True, help="JSONL file, one line per request")
    parser.add_argument("--fail-first", type=int, default=0, help="answer 500 to this many first requests")
    parser.add_argument("--delay-ms", type=int, default=5, help="time spent on each request (to see overlaps)")
    args = parser.parse_args(argv)
    lock = threading.Lock()
    state = {"seen": 0, "inflight": {}}
    out = open(args.log, "a", buffering=1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with lock:
                state["seen"] += 1
                n = state["seen"]
                inflight = state["inflight"][self.path] = state["inflight"].get(self.path, 0) + 1
            try:
                record = {"t": time.time(), "path": self.path, "id": headers.get("webhook-id"),
                          "timestamp": headers.get("webhook-timestamp"), "signature": headers.get("webhook-signature"),
                          "inflight": inflight, "body": body.decode(errors="replace")}
                try:
                    secret = json.load(open(args.secrets)).get(self.path)
                except (OSError, ValueError):
                    secret = None
                payload = None
                if secret is None:
                    record.update(verified=False, error="no secret for this path")
                else:
                    hook = Webhook(secret)
                    try:
                        payload = hook.verify(body, headers)
                        record.update(verified=True, error=None)
                    except WebhookVerificationError as error:
                        record.update(verified=False, error=str(error))
                    try:  # the signature covers the body: one more byte and it must fail
                        hook.verify(body + b" ", headers)
                        record["tamper_rejected"] = False
                    except WebhookVerificationError:
                        record["tamper_rejected"] = True
                if payload is None:
                    try:
                        payload = json.loads(body)
                    except ValueError:
                        payload = {}
                data = payload.get("data") or {}
                token = data.get("token") or {}
                record.update(type=payload.get("type"), token=(token.get("tokenUUID") or "").lower() or None,
                              reason=data.get("reason"), notice=data.get("notice"), member=data.get("member"))
                time.sleep(args.delay_ms / 1000)
                status = {"/hostile/flood": 200, "/hostile/redirect": 307}.get(
                    self.path, 500 if n <= args.fail_first else 204)
                record["answered"] = status
                if self.path == "/hostile/flood":
                    record["sent_bytes"] = self.flood()
                with lock:
                    out.write(json.dumps(record) + "\n")
            finally:
                with lock:
                    state["inflight"][self.path] -= 1
            if self.path == "/hostile/flood":
                return
            self.send_response(status)
            if status == 307:  # to a path of this receiver, i.e. a private address
                self.send_header("Location", f"http://127.0.0.1:{args.port}/hostile/landing")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def flood(self):
            """A 200 promising a 1 GiB body, written until the client hangs up; the bytes sent."""
            size, chunk, sent = 1 << 30, b"x" * 65536, 0
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                while sent < size:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            self.close_connection = True
            return sent

        def log_message(self, *args):
            pass

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "receiver":
    receiver_main(sys.argv[2:])
    sys.exit(0)


# ---------------------------------------------------------------------------------------------
# The driver

from harness import Client, Postgres, Tessera, Workdir, check, exit_with_failures, failures, free_port, log, migrate_and_bootstrap, random_token  # noqa: E402

results = {}




def wait_for(predicate, timeout, step=0.1):
    """Seconds until `predicate()` held, or None after `timeout`."""
    started = time.time()
    while True:
        if predicate():
            return time.time() - started
        if time.time() - started > timeout:
            return None
        time.sleep(step)


def venv_python():
    python = os.path.join(VENV, "bin", "python")
    probe = [python, "-c", "import standardwebhooks.webhooks"] if os.path.exists(python) else None
    if probe is None or subprocess.run(probe, stderr=subprocess.DEVNULL).returncode != 0:
        log(f"installing {STANDARDWEBHOOKS} into {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", STANDARDWEBHOOKS], check=True)
    return python


class Receiver:
    """The receiver process: started, killed (down) and started again on the same port."""

    def __init__(self, work, python):
        self.python = python
        self.port = free_port()
        self.secrets_path = os.path.join(work.path, "secrets.json")
        self.log_path = os.path.join(work.path, "received.jsonl")
        self.secrets = {}
        self.process = None
        self.write_secrets()
        open(self.log_path, "w").close()
        work.on_close(self.stop)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def add_secret(self, path, secret):
        self.secrets[path] = secret
        self.write_secrets()

    def write_secrets(self):
        with open(self.secrets_path + ".tmp", "w") as f:
            json.dump(self.secrets, f)
        os.replace(self.secrets_path + ".tmp", self.secrets_path)

    def start(self, fail_first=0):
        self.process = subprocess.Popen(
            [self.python, os.path.abspath(__file__), "receiver", "--port", str(self.port), "--secrets",
             self.secrets_path, "--log", self.log_path, "--fail-first", str(fail_first)],
            stdout=subprocess.PIPE, stderr=open(self.log_path + ".stderr", "ab"))
        line = self.process.stdout.readline()
        if b"ready" not in line:
            sys.exit("the webhook receiver did not start: " + open(self.log_path + ".stderr").read()[-2000:])

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def records(self, path=None):
        out = []
        with open(self.log_path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:  # a line being written
                    continue
                if path is None or record["path"] == path:
                    out.append(record)
        return out


def acked(records):
    return [r for r in records if 200 <= r.get("answered", 0) < 300]


def create_token(client, admin, username, name, system=True, expiration=None):
    body = {"name": name, "isSystemToken": system}
    if expiration is not None:
        body["tokenExpiration"] = int(expiration)
    status, _, created, text = client.request("POST", f"/api-tokens/{username}", admin, body)
    if status != 201:
        raise AssertionError(f"creating token {name} for {username}: {status} {text[:300]}")
    return created["token"], created["tokenUUID"].lower()


def deliveries(client, admin, webhook_id):
    status, _, body, text = client.get(f"/orgs/acme/webhooks/{webhook_id}/deliveries?limit=500", token=admin)
    if status != 200:
        raise AssertionError(f"delivery log: {status} {text[:300]}")
    for d in body["deliveries"]:
        d["id"] = d["id"].lower()
    return body["deliveries"]


def exactly_once_acked(records, ids):
    """Ids among `ids` not acknowledged exactly once (missing or acknowledged twice)."""
    counts = {}
    for r in acked(records):
        counts[r["id"]] = counts.get(r["id"], 0) + 1
    return {i: counts.get(i, 0) for i in ids if counts.get(i, 0) != 1}


def sent_again_after_ack(attempts):
    """True when a request came after one that was acknowledged (same webhook-id)."""
    ordered = sorted(attempts, key=lambda r: r["t"])
    return any(200 <= r["answered"] < 300 for r in ordered[:-1])


def by_token_and_type(records, tokens, kind):
    """webhook-ids of acknowledged `kind` events about each of `tokens`."""
    out = {t: set() for t in tokens}
    for r in acked(records):
        if r.get("type") == kind and r.get("token") in out:
            out[r["token"]].add(r["id"])
    return out


# ---------------------------------------------------------------------------------------------

def scenario_events(ctx):
    log("-- 1. a webhook for every event: create, delete, member removal")
    api, root, rx = ctx["api"], ctx["root"], ctx["rx"]
    status, _, hook, text = api.request("POST", "/orgs/acme/webhooks", root,
                                        {"url": rx.url("/hook/main"), "description": "e2e: every event"})
    check(status == 201 and hook and hook.get("secret", "").startswith("whsec_"),
          f"create a webhook: 201 with its id and a whsec_ secret (got {status} {text[:200] if status != 201 else ''})")
    if status != 201:
        raise SystemExit("cannot go on without a webhook")
    ctx["main_id"], ctx["main_secret"] = hook["id"].lower(), hook["secret"]
    check(sorted(hook["events"]) == sorted(["token.created", "token.revoked", "token.expiring", "token.expired",
                                            "token.leaked", "member.removed", "trust_policy.created",
                                            "trust_policy.updated", "trust_policy.deleted"]),
          f"no `events` means every event ({hook['events']})")
    rx.add_secret("/hook/main", hook["secret"])
    status, _, shown, text = api.get(f"/orgs/acme/webhooks/{hook['id']}", token=root)
    check(status == 200 and shown.get("secret") is None and hook["secret"] not in text,
          "GET of the webhook does not show its secret")
    status, _, _, text = api.get("/orgs/acme/webhooks", token=root)
    check(status == 200 and hook["secret"] not in text, "the webhook list does not show the secret")

    org_token, org_id = create_token(api, root, "e2e-bot", "hooked-org-token")
    status, _, _, _ = api.request("DELETE", f"/api-tokens/{org_id}", root)
    check(status == 200, f"delete the org token (got {status})")
    status, _, _, _ = api.request("PUT", "/orgs/acme/members/alice", root, {"role": "member"})
    check(status == 200, f"add member alice (got {status})")
    personal, personal_id = create_token(api, root, "alice", "alice-personal", system=False)
    status, _, _, _ = api.request("DELETE", "/orgs/acme/members/alice", root)
    check(status == 200, f"remove alice from the org (got {status})")
    ctx["revoked_token"], ctx["revoked_token_id"] = personal, personal_id
    ctx["plain_tokens"] = [org_token, personal]

    def arrived():
        got = {(r["type"], r["token"] or r.get("member")) for r in acked(rx.records("/hook/main"))}
        return {("token.created", org_id), ("token.created", personal_id), ("token.revoked", org_id),
                ("token.revoked", personal_id), ("member.removed", "alice")} <= got
    took = wait_for(arrived, 20)
    records = rx.records("/hook/main")
    got = [(r["type"], r["token"], r.get("reason"), r.get("member")) for r in acked(records)]
    log(f"received: {got}")
    check(took is not None, f"all five events arrived ({len(got)} acknowledged" + (f", within {took:.1f} s)" if took else ")"))
    revoked = {r["token"]: r.get("reason") for r in acked(records) if r["type"] == "token.revoked"}
    check(revoked.get(org_id) not in (None, ""), f"token.revoked for the deleted token carries a reason ({revoked.get(org_id)!r})")
    check(revoked.get(personal_id) == "owner_left_org",
          f"token.revoked for the removed member's token has reason owner_left_org ({revoked.get(personal_id)!r})")
    member = [r for r in acked(records) if r["type"] == "member.removed"]
    check(len(member) == 1 and member[0].get("member") == "alice", "member.removed names the member")
    check(all(r["verified"] for r in records) and records,
          f"every request verifies with standardwebhooks ({sum(not r['verified'] for r in records)} did not: "
          f"{[r.get('error') for r in records if not r['verified']][:3]})")
    check(all(r.get("tamper_rejected") for r in records), "a body changed by one byte does not verify")
    check(all(re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", r["signature"] or "") for r in records)
          and all(re.fullmatch(r"[0-9]+", r["timestamp"] or "") for r in records),
          "headers in the Standard Webhooks format (webhook-timestamp in seconds, v1,<base64 HMAC-SHA256>)")
    envelope = [json.loads(r["body"]) for r in records]
    check(all(set(e) >= {"type", "timestamp", "data"} and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", e["timestamp"])
              and e["data"].get("organization") == "acme" for e in envelope),
          "payloads are {type, timestamp (ISO 8601), data {organization, ...}}")
    secret_b64 = ctx["main_secret"][len("whsec_"):]
    leaks = [r["id"] for r in records if TOKEN_PATTERN.search(r["body"]) or secret_b64 in r["body"]
             or any(t in r["body"] for t in ctx["plain_tokens"])]
    check(not leaks, f"no payload holds a token or the webhook secret ({len(leaks)} do)")

    log_rows = deliveries(api, root, ctx["main_id"])
    mine = {r["id"] for r in acked(records)}
    rows = [d for d in log_rows if d["id"] in mine]
    check(len(rows) == len(mine) and all(d["status"] == "delivered" and d["attempts"] >= 1 and d["deliveredDate"]
                                         for d in rows),
          f"the delivery log shows the {len(mine)} deliveries as delivered ({[(d['event'], d['status']) for d in rows]})")
    check(not any(TOKEN_PATTERN.search(d["payload"]) or secret_b64 in d["payload"] for d in log_rows),
          "the delivery log holds no token or secret")
    ctx["first_created"] = next(r["id"] for r in acked(records) if r["type"] == "token.created" and r["token"] == org_id)
    results["events"] = {"delivered": len(mine), "types": sorted({r["type"] for r in acked(records)}),
                         "seconds_to_all": round(took, 2) if took else None,
                         "deleted_token_reason": revoked.get(org_id)}


def scenario_receiver_down(ctx):
    log("-- 2. the receiver is down for ~5 s while 20 tokens are made")
    api, root, rx = ctx["api"], ctx["root"], ctx["rx"]
    rx.stop(signal.SIGKILL)
    down_at = time.time()
    ids = [create_token(api, root, f"down-{i}", f"down-{i}")[1] for i in range(20)]
    time.sleep(max(0, 5 - (time.time() - down_at)))
    ids_sql = "ARRAY[" + ",".join(f"'{i}'" for i in ids) + "]::text[]"
    while_down = ctx["pg"].psql(f"""
        SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE locked_until > now()),
               sum(attempts), max(attempts), max(last_attempt_at - created_at), string_agg(DISTINCT last_error, '; ')
        FROM webhook_deliveries WHERE webhook_id = '{ctx['main_id']}'
          AND payload -> 'data' -> 'token' ->> 'tokenUUID' = ANY ({ids_sql})""").split("|")
    log(f"after {time.time() - down_at:.1f} s down: {while_down[0]} pending, {while_down[1]} claimed, "
        f"{while_down[2]} attempts (at most {while_down[3]} each), errors: {while_down[5]}")
    rx.start(fail_first=3)
    back_at = time.time()

    def all_in():
        seen = by_token_and_type(rx.records("/hook/main"), ids, "token.created")
        return all(seen.values())
    took = wait_for(all_in, 45)
    last = max((r["t"] for r in acked(rx.records("/hook/main")) if r["token"] in ids), default=back_at)
    records = rx.records("/hook/main")
    seen = by_token_and_type(records, ids, "token.created")
    delivery_ids = {i for s in seen.values() for i in s}
    check(took is not None, f"every event arrived after the receiver came back ({sum(bool(s) for s in seen.values())}/20)")
    check(all(len(s) == 1 for s in seen.values()), "one delivery (webhook-id) per token.created event")
    extra = exactly_once_acked(records, delivery_ids)
    check(not extra, f"each webhook-id acknowledged exactly once ({extra})")
    redone_after_ack = [i for i in delivery_ids if sent_again_after_ack([r for r in records if r["id"] == i])]
    check(not redone_after_ack, "a delivery is sent again only when its earlier attempt was not acknowledged")
    failed_500 = [r for r in records if r["answered"] == 500]
    check(len(failed_500) == 3,
          f"the receiver's first 3 answers after its return were 500 ({len(failed_500)})")
    check(all(r["verified"] for r in records), "every request verifies")
    log_rows = {d["id"]: d for d in deliveries(api, root, ctx["main_id"])}
    attempts = [log_rows[i]["attempts"] for i in delivery_ids if i in log_rows]
    retried = sum(1 for a in attempts if a > 1)
    check(all(log_rows.get(i, {}).get("status") == "delivered" for i in delivery_ids),
          "the log shows every one delivered")
    check(retried > 0 and all(log_rows[i].get("lastError") is None and log_rows[i].get("lastStatus") in (200, 204) for i in delivery_ids if i in log_rows),
          f"{retried} of 20 were retried (attempts > 1) and then acknowledged")
    results["receiver_down"] = {
        "events": 20, "delivered": len(delivery_ids), "retried": retried, "max_attempts": max(attempts, default=0),
        "attempts_total": sum(attempts), "answers_500": len(failed_500),
        "seconds_down": round(back_at - down_at, 2), "attempts_while_down": int(while_down[2] or 0),
        "claimed_at_end_of_down": int(while_down[1] or 0),
        "seconds_to_last_delivery_after_receiver_back": round(last - back_at, 2)}
    log(f"receiver back: last of 20 delivered {last - back_at:.2f} s later; {retried} retried, "
        f"at most {max(attempts, default=0)} attempts")


def scenario_kill9(ctx):
    log("-- 3. kill -9 of Tessera between commit and delivery")
    root, rx, a, pg = ctx["root"], ctx["rx"], ctx["a"], ctx["pg"]
    rx.stop(signal.SIGKILL)
    ids, lock = [], threading.Lock()

    def burst(k):
        client = Client(a.base)
        for i in range(10):
            token_id = create_token(client, root, f"crash-{k}-{i}", f"crash-{k}-{i}")[1]
            with lock:
                ids.append(token_id)
    threads = [threading.Thread(target=burst, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    a.stop(sig=signal.SIGKILL)
    killed_at = time.time()
    pending = pg.psql(f"""SELECT count(*) FILTER (WHERE status = 'pending'),
                                 count(*) FILTER (WHERE status = 'pending' AND locked_until > now()),
                                 count(*) FILTER (WHERE status = 'delivered')
                          FROM webhook_deliveries WHERE webhook_id = '{ctx['main_id']}'
                            AND payload -> 'data' -> 'token' ->> 'tokenUUID' = ANY (ARRAY{ids}::text[])""").split("|")
    log(f"{len(ids)} tokens made; at the kill: {pending[0]} pending, {pending[1]} of them claimed, {pending[2]} delivered")
    check(len(ids) == 30 and int(pending[0]) == 30,
          f"all 30 token.created events are in the outbox, none delivered, at the kill ({pending})")
    rx.start()
    a.start()
    restarted_at = time.time()
    ctx["api"] = Client(a.base)

    def all_in():
        return all(by_token_and_type(rx.records("/hook/main"), ids, "token.created").values())
    took = wait_for(all_in, 80, step=0.2)
    records = rx.records("/hook/main")
    seen = by_token_and_type(records, ids, "token.created")
    delivery_ids = {i for s in seen.values() for i in s}
    check(took is not None, f"after the restart every event was delivered ({sum(bool(s) for s in seen.values())}/30"
          + (f", {took:.1f} s after the restart)" if took is not None else ")"))
    check(not exactly_once_acked(records, delivery_ids) and all(len(s) == 1 for s in seen.values()),
          "each acknowledged exactly once")
    check(all(r["verified"] for r in records), "every request verifies")
    # Deliveries the dead process had claimed wait for their 60 s claim to lapse; the rest go at once.
    check(took is not None and (took < 15 or (int(pending[1]) > 0 and took < 75)),
          f"recovered within the claim lease ({int(pending[1])} were claimed by the killed process)")
    results["kill9"] = {"events": 30, "claimed_at_kill": int(pending[1]), "delivered": len(delivery_ids),
                        "seconds_restart": round(restarted_at - killed_at, 2),
                        "seconds_to_all_delivered_after_restart": round(took, 2) if took is not None else None}


def scenario_one_at_a_time(ctx):
    most = max((r["inflight"] for r in ctx["rx"].records()), default=0)
    check(most <= 1, f"with one replica, one request at a time per endpoint (at most {most} at once)")
    results["max_requests_at_once_per_endpoint_one_replica"] = most


def scenario_expiry(ctx, work, env):
    log("-- 4. two replicas sweeping expiry every second: each warning once")
    api, root, rx, pg = ctx["api"], ctx["root"], ctx["rx"], ctx["pg"]
    status, _, hook, text = api.request("POST", "/orgs/acme/webhooks", root,
                                        {"url": rx.url("/hook/expiry"), "events": ["token.expiring", "token.expired"],
                                         "description": "expiry only"})
    check(status == 201, f"a second webhook for expiry events only (got {status} {text[:200] if status != 201 else ''})")
    rx.add_secret("/hook/expiry", hook["secret"])
    ctx["expiry_id"] = hook["id"].lower()
    phase_started = time.time()
    b = Tessera(work, pg.url, name="replica-b", env=env)
    ctx["b"] = b
    clients = [Client(ctx["a"].base), Client(b.base)]
    now = time.time()
    expected = {}  # token id -> notices
    for i in range(5):
        for days, notice in ((5, "7d"), (20, "30d"), (40, "60d")):
            token_id = create_token(clients[i % 2], root, "expiring-bot", f"exp-{days}d-{i}", expiration=now + days * DAY)[1]
            expected[token_id] = [("token.expiring", notice)]
    short = create_token(clients[0], root, "expiring-bot", "exp-now", expiration=time.time() + 6)[1]
    expected[short] = [("token.expiring", "7d"), ("token.expired", "expired")]
    quiet = [create_token(clients[1], root, "expiring-bot", f"exp-90d-{i}", expiration=now + 90 * DAY)[1] for i in range(2)]
    wanted = sum(len(v) for v in expected.values())

    def got(path):
        out = {}
        for r in acked(rx.records(path)):
            if r["type"] in ("token.expiring", "token.expired"):
                out.setdefault((r["token"], r["type"], r.get("notice")), []).append(r["id"])
        return out
    took = wait_for(lambda: len(got("/hook/expiry")) >= wanted and len(got("/hook/main")) >= wanted, 25)
    time.sleep(3)  # several more sweeps on both replicas: nothing new may come
    metrics = {}
    for name, replica in (("a", ctx["a"]), ("b", b)):
        text = Client(replica.base).get("/metrics")[3]
        metrics[name] = sum(float(line.split()[-1]) for line in text.splitlines()
                            if line.startswith("tessera_token_expiry_notices_total"))
    for path in ("/hook/expiry", "/hook/main"):
        events = got(path)
        want = {(t, kind, notice) for t, pairs in expected.items() for kind, notice in pairs}
        check(set(events) == want, f"{path}: exactly the expected (token, notice) events "
              f"({len(set(events) & want)}/{len(want)}; unexpected {sorted(set(events) - want)[:3]})")
        dupes = {k: v for k, v in events.items() if len(v) != 1}
        check(not dupes, f"{path}: each (token, notice) delivered once ({len(dupes)} more than once: {list(dupes.items())[:2]})")
        check(not any(t in quiet for t, _, _ in events), f"{path}: nothing for tokens 90 days from expiry")
    rows = pg.psql("SELECT count(*), count(DISTINCT (token_id, notice)) FROM token_expiry_notices").split("|")
    # Each replica sends one request at a time per endpoint; two replicas may overlap (reported).
    overlap = max((r["inflight"] for r in rx.records() if r["t"] >= phase_started), default=0)
    check(metrics["a"] + metrics["b"] == wanted,
          f"the replicas queued {wanted} notices between them (A {metrics['a']:.0f}, B {metrics['b']:.0f})")
    check(all(r["verified"] for r in rx.records("/hook/expiry")), "every expiry request verifies")
    results["expiry"] = {"tokens": len(expected), "events_expected": wanted,
                         "events_received_expiry_hook": sum(len(v) for v in got("/hook/expiry").values()),
                         "events_received_main_hook": sum(len(v) for v in got("/hook/main").values()),
                         "queued_by_a": metrics["a"], "queued_by_b": metrics["b"],
                         "notice_rows": int(rows[0]), "max_requests_at_once_per_endpoint_two_replicas": overlap,
                         "seconds_to_all": round(took, 2) if took is not None else None}


def revoke_report(base, credentials):
    client = Client(base)
    client.connection.request("POST", "/credentials/revoke", body=json.dumps({"credentials": credentials}),
                              headers={"Content-Type": "application/json"})
    response = client.connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def scenario_credentials_revoke(ctx):
    log("-- 5. POST /credentials/revoke")
    api, root, rx, a = ctx["api"], ctx["root"], ctx["rx"], ctx["a"]
    live, live_id = create_token(api, root, "leaky-bot", "leaky")
    bystander, bystander_id = create_token(api, root, "leaky-bot", "bystander")
    unknown = random_token("tso")
    bad_crc = live[:-8] + ("00000000" if live[-8:] != "00000000" else "11111111")
    mix = [live, ctx["revoked_token"], unknown, bad_crc, "garbage", "", "ghp_" + "a" * 36,
           "tsp_" + "z" * 128, "x" * 5000, live.upper()]
    garbage = ["garbage", "", "not-a-token"]
    # The six reports go out back to back: the bucket refills 5 a minute, i.e. one per 12 s.
    answers = [revoke_report(a.base, mix), revoke_report(a.base, garbage),
               revoke_report(a.base, [random_token("tsp") for _ in range(1001)]),
               revoke_report(a.base, garbage), revoke_report(a.base, garbage), revoke_report(a.base, garbage)]
    (s1, h1, b1), (s2, h2, b2), (s3, h3, b3), _, _, (s6, h6, b6) = answers
    log(f"answers: {[a_[0] for a_ in answers]}; 202 body {b1[:120]!r}")
    check(s1 == 202 and s2 == 202, f"a mixed list and a list of garbage both get 202 ({s1}, {s2})")
    check(b1 == b2 and h1.get("Content-Type") == h2.get("Content-Type"),
          "the two answers are byte for byte the same")
    check(400 <= s3 < 500 and "problem+json" in h3.get("Content-Type", ""),
          f"1,001 strings: a 4xx problem ({s3} {b3[:160]!r})")
    check(s6 == 429 and h6.get("Retry-After", "").isdigit() and "problem+json" in h6.get("Content-Type", ""),
          f"the 6th report in a minute (limit 5): 429 with Retry-After ({s6}, Retry-After {h6.get('Retry-After')})")
    check(answers[3][0] == 202 and answers[4][0] == 202, "reports 4 and 5 were still accepted")

    status, _, _, _ = api.get("/auth/verify", token=live)
    check(status == 401, f"the live token no longer verifies (got {status})")
    status, _, info, _ = api.get(f"/api-tokens/{live_id}", token=root)
    check(status == 200 and info.get("status") == "revoked" and info.get("revokedReason") == "leaked",
          f"the API shows it revoked with reason leaked ({info and (info.get('status'), info.get('revokedReason'))})")
    status, _, info, _ = api.get(f"/api-tokens/{ctx['revoked_token_id']}", token=root)
    check(status == 200 and info.get("revokedReason") == "owner_left_org",
          f"the already revoked token keeps its reason ({info and info.get('revokedReason')})")
    check(api.get("/auth/verify", token=bystander)[0] == 200, "a token not in the report still verifies")

    def leaked():
        return [r for r in acked(rx.records("/hook/main")) if r["type"] == "token.leaked"]
    wait_for(lambda: leaked() and any(r["type"] == "token.revoked" and r["token"] == live_id
                                      for r in acked(rx.records("/hook/main"))), 15)
    got = leaked()
    revoked = [r for r in acked(rx.records("/hook/main")) if r["type"] == "token.revoked" and r.get("reason") == "leaked"]
    check(len(got) == 1 and got[0]["token"] == live_id and got[0].get("reason") == "leaked",
          f"one token.leaked webhook, for the live token ({[(r['token'], r.get('reason')) for r in got]})")
    check(len(revoked) == 1 and revoked[0]["token"] == live_id, "and one token.revoked with reason leaked")
    check(all(r["verified"] for r in got + revoked), "they verify")
    results["credentials_revoke"] = {"statuses": [x[0] for x in answers], "leaked_webhooks": len(got),
                                     "retry_after": h6.get("Retry-After")}


def scenario_redeliver(ctx):
    log("-- 6. redeliver through the API")
    api, root, rx = ctx["api"], ctx["root"], ctx["rx"]
    delivery = ctx["first_created"]
    before = len([r for r in rx.records("/hook/main") if r["id"] == delivery])
    started_redeliver = int(time.time())
    status, _, body, text = api.request("POST", f"/orgs/acme/webhooks/{ctx['main_id']}/deliveries/{delivery}/redeliver", root)
    check(status == 202, f"redeliver: 202 ({status} {text[:160]})")
    took = wait_for(lambda: len([r for r in acked(rx.records("/hook/main")) if r["id"] == delivery]) > before, 15)
    again = [r for r in rx.records("/hook/main") if r["id"] == delivery]
    check(took is not None and all(r["verified"] for r in again) and again[-1]["type"] == "token.created",
          f"the receiver got the same webhook-id again, signed anew ({len(again)} times)")
    check(len({r["timestamp"] for r in again}) == len(again) or took < 1,
          "the redelivery carries its own webhook-timestamp")
    row = next((d for d in deliveries(api, root, ctx["main_id"]) if d["id"] == delivery), {})
    # A redelivery starts a fresh schedule: its attempts count from the redeliver.
    check(row.get("status") == "delivered" and row.get("attempts") == 1 and (row.get("lastAttemptDate") or 0) >= started_redeliver,
          f"the log shows it delivered again, attempts counted from the redeliver ({row.get('status')}, {row.get('attempts')} attempts)")
    status, _, _, _ = api.request("POST", f"/orgs/acme/webhooks/{ctx['main_id']}/deliveries/{ctx['expiry_id']}/redeliver", root)
    check(status == 404, f"redelivering an id that is not a delivery of this webhook: 404 (got {status})")
    results["redeliver"] = {"seconds": round(took, 2) if took is not None else None}


def scenario_hostile_targets(ctx):
    log("-- 7. hostile targets: a 200 with a 1 GiB body, a redirect to a private address")
    api, root, rx, a = ctx["api"], ctx["root"], ctx["rx"], ctx["a"]
    hooks = {}
    for path in ("/hostile/flood", "/hostile/redirect"):
        status, _, hook, text = api.request("POST", "/orgs/acme/webhooks", root,
                                            {"url": rx.url(path), "events": ["token.created"]})
        if status != 201:
            raise AssertionError(f"creating the {path} webhook: {status} {text[:200]}")
        rx.add_secret(path, hook["secret"])
        hooks[path] = hook["id"].lower()
    rss_before = a.rss_kib()
    _, token_id = create_token(api, root, "e2e-bot", "hostile-targets")

    def logged():
        rows = {path: [d for d in deliveries(api, root, hook) if d["attempts"] > 0] for path, hook in hooks.items()}
        return rows if all(rows.values()) else None
    took = wait_for(logged, 30)
    rows = logged() or {}
    flood = (rows.get("/hostile/flood") or [{}])[0]
    sent = max((r.get("sent_bytes", 0) for r in rx.records("/hostile/flood")), default=0)
    rss_after = a.rss_kib()
    check(flood.get("status") == "delivered" and flood.get("lastStatus") == 200,
          f"a 200 with an endless body counts as delivered ({flood.get('status')}, {flood.get('lastStatus')})")
    check(0 < sent < 64 << 20, f"Tessera hung up early instead of reading the 1 GiB body ({sent >> 10} KiB sent)")
    check(rss_after - rss_before < 32 << 10, f"and held none of it (RSS {rss_before >> 10} -> {rss_after >> 10} MiB)")
    redirect = (rows.get("/hostile/redirect") or [{}])[0]
    check(redirect.get("status") == "pending" and redirect.get("lastStatus") == 307
          and redirect.get("lastError") == "HTTP 307",
          f"a redirect is a failed attempt, retried later ({redirect.get('status')}, {redirect.get('lastStatus')}, "
          f"{redirect.get('lastError')})")
    check(not rx.records("/hostile/landing"), "and its target was never asked")
    for hook in hooks.values():
        api.request("DELETE", f"/orgs/acme/webhooks/{hook}", root)
    results["hostile_targets"] = {"seconds": round(took, 2) if took is not None else None, "flood_sent_kib": sent >> 10,
                                  "rss_before_kib": rss_before, "rss_after_kib": rss_after, "token": token_id}


def main():
    started = time.time()
    python = venv_python()
    work = Workdir("webhooks")
    pg = Postgres(work)
    root = migrate_and_bootstrap(pg.url)["token"]
    rx = Receiver(work, python)
    rx.start()
    env = {"TESSERA_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "true", "TESSERA_WEBHOOKS_RETRY_BASE_MS": "200",
           "TESSERA_EXPIRY_SWEEP_SECONDS": "1", "TESSERA_CREDENTIALS_REVOKE_PER_MINUTE": "5"}
    a = Tessera(work, pg.url, name="replica-a", env=env)
    ctx = {"api": Client(a.base), "root": root, "rx": rx, "a": a, "pg": pg}

    for name, run in (("events", scenario_events), ("receiver_down", scenario_receiver_down),
                      ("kill9", scenario_kill9), ("one_at_a_time", scenario_one_at_a_time), ("expiry", lambda c: scenario_expiry(c, work, env)),
                      ("credentials_revoke", scenario_credentials_revoke), ("redeliver", scenario_redeliver),
                      ("hostile_targets", scenario_hostile_targets)):
        try:
            run(ctx)
        except Exception as error:  # noqa: BLE001 - a broken scenario is a failed check; the rest still run
            check(False, f"scenario {name} stopped: {type(error).__name__}: {error}")
            if name in ("events",):
                break

    records = rx.records()
    secrets = [s[len("whsec_"):] for s in rx.secrets.values()]
    servers = [s for s in (a, ctx.get("b")) if s]
    texts = [s.logs() for s in servers]
    check(not any(TOKEN_PATTERN.search(t) or root in t or any(x in t for x in secrets) for t in texts),
          "no token or webhook secret in any server log")
    check(all(r["verified"] for r in records), f"all {len(records)} requests the receiver got verified")
    check(not any(TOKEN_PATTERN.search(r["body"]) or any(x in r["body"] for x in secrets) for r in records),
          "no request body the receiver got holds a token or a webhook secret")
    results.update({"requests_received": len(records), "acknowledged": len(acked(records)),
                    "distinct_webhook_ids": len({r["id"] for r in records}),
                    "by_type": {t: sum(1 for r in acked(records) if r["type"] == t)
                                for t in sorted({r["type"] for r in records if r["type"]})},
                    "seconds": round(time.time() - started, 1), "failures": failures})
    with open(os.path.join(ROOT, "e2e/webhooks-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    log("summary: " + json.dumps({k: v for k, v in results.items() if k != "failures"}))
    if failures:
        exit_with_failures([(os.path.basename(server.log_path), server.logs()) for server in servers])
    log(f"webhooks end to end passed in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
