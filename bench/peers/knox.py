"""The django-rest-knox peer of `make bench` (issue #14): what a team would otherwise pick for API tokens.

A small Django project (bench/peers/knox/: Django 5.2.19, Django REST framework 3.18.3,
django-rest-knox 5.1.0, psycopg 3.3.9 binary; pinned in requirements.txt, installed into
.venv-bench-peers at the repository root when missing) with one view, GET /api/verify/, behind knox's
TokenAuthentication and IsAuthenticated; DEBUG off, no middleware, no log line per request. It runs
on the bench's own PostgreSQL, in a database `knox`, seeded with as many tokens as Tessera (one user
per token, as knox 5.1 reads all of a token's user's tokens on every request to clean up expired
ones: two queries per verification), under gunicorn 27.0.1 with one worker per core (gthread with
BENCH_KNOX_THREADS threads by default; BENCH_KNOX_WORKER=sync for the sync worker)."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from harness import ROOT, Client, free_port, log  # noqa: E402

PROJECT = os.path.join(ROOT, "bench/peers/knox")
REQUIREMENTS = os.path.join(PROJECT, "requirements.txt")
VENV = os.path.join(ROOT, ".venv-bench-peers")
# gthread with 4 threads was the faster worker here (2 cores shared with wrk and PostgreSQL, 100,000
# tokens, 32 connections, 5 s each, two interleaved passes, the second beside a Swift build, 2026-11-24):
# sync 446 / 274 req/s, gthread x4 483 / 361, gthread x8 391 / 360. The sync worker has no
# keep-alive, so wrk reconnects for every request.
WORKER = os.environ.get("BENCH_KNOX_WORKER", "gthread")
THREADS = int(os.environ.get("BENCH_KNOX_THREADS", "4"))
TOKEN_KEY_LENGTH = 15  # knox.settings.CONSTANTS.TOKEN_KEY_LENGTH in 5.1


def ensure_venv():
    """Creates .venv-bench-peers when missing; (re)installs when requirements.txt changed since."""
    stamp = os.path.join(VENV, "bench-requirements.txt")
    wanted = open(REQUIREMENTS).read()
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return
    log(f"installing the knox peer ({os.path.relpath(REQUIREMENTS, ROOT)}) into {os.path.relpath(VENV, ROOT)}")
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check", "-r", REQUIREMENTS],
                   check=True, timeout=900)
    with open(stamp, "w") as f:
        f.write(wanted)


def knox_token():
    """What knox's AuthToken.objects.create hands out with the default settings: 64 hex characters."""
    return "%064x" % random.getrandbits(256)


def knox_digest(token):
    # knox.crypto.hash_token with SECURE_HASH_ALGORITHM hashlib.sha512: make_hex_compatible(token)
    # is the token's UTF-8 bytes, the digest its hex form.
    return hashlib.sha512(token.encode("utf-8")).hexdigest()


class Knox:
    """gunicorn serving the knox project on its own port; `token_file` holds every seeded token."""

    def __init__(self, work, pg, tokens_count):
        ensure_venv()
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.token_file = os.path.join(work.path, "knox.txt")
        self.log_path = os.path.join(work.path, "knox.log")
        self.workers = os.cpu_count() or 1
        self.worker = WORKER
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "knoxbench.settings", "KNOX_DB_NAME": "knox",
                    "KNOX_DB_USER": "tessera", "KNOX_DB_HOST": "127.0.0.1", "KNOX_DB_PORT": str(pg.port)}
        self.process = None
        started = time.time()
        pg.psql("CREATE DATABASE knox")
        subprocess.run([os.path.join(VENV, "bin", "python"), "-m", "django", "migrate", "-v", "0"], env=self.env,
                       cwd=PROJECT, check=True)
        self.seed(work, pg, tokens_count)
        work.on_close(self.stop)
        self.start()
        log(f"knox peer ready in {time.time() - started:.1f} s: {tokens_count} tokens, gunicorn {self.worker}, "
            f"{self.workers} workers" + (f" x {THREADS} threads" if self.worker == "gthread" else ""))

    def seed(self, work, pg, count):
        log(f"seeding {count} knox tokens (one user each)")
        tokens = [knox_token() for _ in range(count)]
        now = datetime.now(timezone.utc)
        created, expiry = now.isoformat(), (now + timedelta(days=30)).isoformat()
        rows = os.path.join(work.path, "knox-tokens.csv")
        with open(rows, "w") as f:
            for i, token in enumerate(tokens, 1):
                f.write(f"{knox_digest(token)},{token[:TOKEN_KEY_LENGTH]},{i},{created},{expiry}\n")
        os.chmod(rows, 0o644)
        pg.psql(f"""
            INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff,
                                   is_active, date_joined)
            SELECT i, '!', false, 'bench-' || i, '', '', '', false, true, now() FROM generate_series(1, {count}) i;
            SELECT setval(pg_get_serial_sequence('auth_user', 'id'), {count});
            COPY knox_authtoken (digest, token_key, user_id, created, expiry) FROM '{rows}' WITH (FORMAT csv);
            VACUUM ANALYZE auth_user; VACUUM ANALYZE knox_authtoken;
        """, database="knox")
        with open(self.token_file, "w") as f:
            f.write("\n".join(tokens) + "\n")

    def start(self):
        command = [os.path.join(VENV, "bin", "gunicorn"), "--bind", self.base, "--workers", str(self.workers),
                   "--worker-class", self.worker, "--log-level", "warning", "knoxbench.wsgi:application"]
        if self.worker == "gthread":
            command[-1:-1] = ["--threads", str(THREADS)]
        self.process = subprocess.Popen(command, env=self.env, cwd=PROJECT, stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"gunicorn exited with {self.process.returncode}; see {self.log_path}:\n"
                         + open(self.log_path).read()[-3000:])
            try:
                if Client(self.base).get("/api/verify/")[0] == 401:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"the knox peer did not become ready; see {self.log_path}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start(work, pg, tokens_count):
    """Installs (when missing), seeds and serves the peer; stopped with the work folder."""
    return Knox(work, pg, tokens_count)
