"""Real parts for end-to-end runs and benchmarks: a private PostgreSQL cluster, `tessera serve`
processes, nginx, and a small HTTP client. Everything lives in one temp folder and is stopped at
exit. The one harness package of e2e/, bench/ and reliability/, which run as modules from the
repository's root (`python3 -m e2e.run`, as the Makefile does)."""

import atexit
import glob
import http.client
import json
import urllib.parse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = os.geteuid() == 0


def log(*parts):
    print("[e2e]", *parts, flush=True)


# Every suite's verdicts: `check` logs one, and the suite exits 1 when `failures` is not empty.
checks = []    # {"ok", "check"} in order, for results files
failures = []  # the failed ones' texts


def check(condition, what):
    """Logs an `ok` or `FAIL` line (with any token string redacted: CI logs are public) and
    returns `condition`."""
    what = re.sub(r"ts[po]_[0-9a-f]{128}", "ts?_<redacted>", what)
    log(("ok   " if condition else "FAIL ") + what)
    checks.append({"ok": bool(condition), "check": what})
    if not condition:
        failures.append(what)
    return condition


def exit_with_failures(logs):
    """Ends a suite whose checks failed: the last lines of each `(name, text)` in `logs` (token
    strings redacted), then the failed checks, last, because CI shows only the tail of the
    output. Exit status 1."""
    for name, text in logs:
        log(f"--- last lines of {name}")
        print(re.sub(r"ts[po]_[0-9a-f]{128}", "[token]", text[-3000:]))
    log(f"{len(failures)} check(s) failed:")
    for what in failures:
        log("  FAIL " + what)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apt_install(package, probe):
    """Installs a Debian package when `probe` (a path or command) is missing."""
    if shutil.which(probe) or os.path.exists(probe):
        return
    log(f"installing {package} with apt")
    sudo = [] if IS_ROOT else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", package], env=env,
                      stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", package], env=env, check=True,
                       stdout=subprocess.DEVNULL)


class Workdir:
    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix=f"tessera-{name}.")
        os.chmod(self.path, 0o755)
        self._stops = []
        atexit.register(self.close)

    def on_close(self, fn):
        self._stops.append(fn)

    def close(self):
        while self._stops:
            try:
                self._stops.pop()()
            except Exception as error:  # keep stopping the rest
                log("cleanup:", error)
        shutil.rmtree(self.path, ignore_errors=True)


class Postgres:
    """initdb into the work folder, 127.0.0.1 on a random port, no socket, trust auth."""

    def __init__(self, work, **settings):
        subprocess.run([os.path.join(ROOT, "scripts/ensure-postgres")], check=True)
        self.bin = os.environ.get("TESSERA_PG_BIN") or sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
        self.data = os.path.join(work.path, "pg")
        self.port = free_port()
        self.settings = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "''",
                         "max_connections": "200", "fsync": "off", "synchronous_commit": "off", **settings}
        os.makedirs(self.data)
        if IS_ROOT:
            shutil.chown(self.data, "postgres")
        self.run("initdb", "-D", self.data, "-U", "tessera", "--auth=trust")
        self.start()
        work.on_close(lambda: self.stop(mode="immediate"))
        self.url = f"postgres://tessera@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def run(self, tool, *args, check=True):
        command = [os.path.join(self.bin, tool), *args]
        if IS_ROOT:
            command = ["runuser", "-u", "postgres", "--"] + command
        return subprocess.run(command, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        options = f"-p {self.port} " + " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self.run("pg_ctl", "-D", self.data, "-l", os.path.join(self.data, "log"), "-w", "-o", options, "start")

    def stop(self, mode="fast"):
        self.run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def psql(self, sql, database="postgres"):
        out = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                              "127.0.0.1", "-p", str(self.port), "-U", "tessera", "-d", database],
                             input=sql, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed: {out.stderr.strip()}")
        return out.stdout.strip()


def tessera_binary():
    binary = os.environ.get("TESSERA_BIN") or os.path.join(ROOT, ".build/debug/tessera")
    if not os.access(binary, os.X_OK):
        sys.exit(f"no tessera binary at {binary}: run `make test` (or `swift build`) first, or set TESSERA_BIN")
    return binary


class Tessera:
    """One `tessera serve` process on its own port, logs captured to a file."""

    def __init__(self, work, database_url, name="tessera", binary=None, env=None):
        self.binary = binary or tessera_binary()
        self.port = free_port()
        self.base = f"127.0.0.1:{self.port}"
        self.log_path = os.path.join(work.path, f"{name}.log")
        self.env = {**os.environ, "TESSERA_LOG_LEVEL": "info", **(env or {}), "DATABASE_URL": database_url,
                    "TESSERA_PORT": str(self.port), "TESSERA_HOST": "127.0.0.1"}
        self.process = None
        work.on_close(self.stop)
        self.start()

    def start(self):
        self.process = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"tessera serve exited with {self.process.returncode}; see {self.log_path}:\n"
                         + open(self.log_path).read()[-3000:])
            try:
                if Client(self.base).get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        sys.exit(f"tessera serve did not become ready; see {self.log_path}")

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def logs(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()


def migrate_and_bootstrap(database_url, org="acme", admin="root"):
    binary = tessera_binary()
    env = dict(os.environ, DATABASE_URL=database_url)
    subprocess.run([binary, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    out = subprocess.run([binary, "bootstrap", "--org", org, "--admin", admin, "--json"], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout)


class Client:
    """A keep-alive HTTP/1.1 client for one host:port."""

    def __init__(self, base, timeout=10):
        host, port = base.split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method, path, token=None, body=None, headers=None, form=None):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if form is not None:
            data = form if isinstance(form, str) else urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt:
                    raise
        text = payload.decode(errors="replace")
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        return response.status, dict(response.getheaders()), parsed, text

    def get(self, path, **kw):
        return self.request("GET", path, **kw)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def token_string(kind, body):
    """The token format (DESIGN §3) in one place: `<kind>_` + 120 hex + CRC-32 of those 120 hex."""
    import zlib
    return f"{kind}_{body}{zlib.crc32(body.encode()):08x}"


def random_token(kind="tso"):
    """A well-formed token that no one was ever issued (right CRC-32, random body)."""
    return token_string(kind, "%0120x" % random.getrandbits(480))
