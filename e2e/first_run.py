#!/usr/bin/env python3
"""First contact (issue #11), run by `make e2e` (and so by `.ci/run`): what a newcomer does.

A fresh `git clone` of this checkout into a `mktemp -d` folder (mode 0700, as `mktemp -d` and
/root are), then `make run` there, as whoever runs CI (root in most containers), reusing the binary
already built (`make run TESSERA_BIN=…`, no second build):

1. the service becomes ready (`/readyz`), and exactly one admin token is printed, which works;
2. stopped with Ctrl-C (SIGINT to the process group) and started again: the data was kept (the
   same token still works) and no new token is printed;
3. `make clean-data` removes the cluster wherever it lives, and the next start bootstraps again.

Exit status 1 on any failed check, with the output of `make run` that failed."""

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import ROOT, check, failures, free_port, log, tessera_binary  # noqa: E402

TOKEN = re.compile(r"\btsp_[0-9a-f]{128}\b")




def get(port, path, token=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


class MakeRun:
    """`make run` in `checkout`, in a process group of its own, output in a file."""

    def __init__(self, checkout, binary, port, name):
        self.output_path = os.path.join(os.path.dirname(checkout), f"{name}.out")
        self.output = open(self.output_path, "w")
        environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MAKEFLAGS", "MAKELEVEL")}
        environment.update(TESSERA_PORT=str(port), TESSERA_LOG_LEVEL="warning")
        self.started = time.monotonic()
        self.process = subprocess.Popen(["make", "--no-print-directory", "run", f"TESSERA_BIN={binary}"], cwd=checkout,
                                        env=environment, stdout=self.output, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.port = port

    def text(self):
        with open(self.output_path) as file:
            return file.read()

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if get(self.port, "/readyz") == 200:
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                return None
            time.sleep(0.2)
        return None

    def stop(self):
        """Ctrl-C, as a person would; SIGKILL after 60 s. Returns the exit status of make."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.output.close()
        return self.process.returncode


def show(run):
    for line in run.text().splitlines()[-25:]:
        log("   | " + TOKEN.sub("tsp_<redacted>", line))


def main():
    binary = tessera_binary()
    work = tempfile.mkdtemp(prefix="tessera-first-run.")  # 0700, as mktemp -d makes it
    checkout = os.path.join(work, "tessera")
    runs = []
    try:
        log(f"fresh clone in {work} (mode {oct(os.stat(work).st_mode & 0o777)}), as uid {os.geteuid()}")
        subprocess.run(["git", "clone", "-q", ROOT, checkout], check=True)

        # 1. First start: ready, one token, and it works.
        first = MakeRun(checkout, binary, free_port(), "first")
        runs.append(first)
        ready = first.wait_ready()
        if not check(ready is not None, "make run in a fresh clone under a 0700 folder answers /readyz"):
            show(first)
            return
        log(f"     ready after {ready:.1f} s (initdb, migrations, bootstrap)")
        tokens = set(TOKEN.findall(first.text()))
        check(len(tokens) == 1, f"exactly one admin token printed (saw {len(tokens)})")
        token = next(iter(tokens), None)
        check(token is not None and get(first.port, "/api-tokens", token) == 200, "the printed token lists tokens (200)")
        located = os.path.join(checkout, ".tessera/postgres.location")
        cluster = open(located).read().strip() if os.path.exists(located) else os.path.join(checkout, ".tessera/postgres")
        log(f"     cluster in {cluster}")
        check(os.stat(work).st_mode & 0o777 == 0o700, "the clone's parent folder kept its 0700 mode")
        status = first.stop()
        check(not os.path.exists(os.path.join(cluster, "postmaster.pid")), f"Ctrl-C stopped the private PostgreSQL (make exited {status})")

        # 2. Second start: same data, no new token.
        second = MakeRun(checkout, binary, free_port(), "second")
        runs.append(second)
        ready = second.wait_ready()
        if check(ready is not None, "make run starts again"):
            log(f"     ready after {ready:.1f} s")
            check(not TOKEN.findall(second.text()), "no new token printed on the second start")
            check("already exists" in second.text(), "the banner says the demo org already exists")
            check(get(second.port, "/api-tokens", token) == 200, "the first run's token still works: the data was kept")
        else:
            show(second)
        second.stop()

        # 3. make clean-data forgets it, wherever the cluster lived; the next start bootstraps again.
        subprocess.run(["make", "--no-print-directory", "clean-data"], cwd=checkout, check=True, stdout=subprocess.DEVNULL)
        check(not os.path.exists(cluster), "make clean-data removes the cluster")
        third = MakeRun(checkout, binary, free_port(), "third")
        runs.append(third)
        if check(third.wait_ready() is not None, "make run after clean-data starts"):
            check(len(set(TOKEN.findall(third.text())) - tokens) == 1, "and prints one new admin token")
        else:
            show(third)
        third.stop()
        subprocess.run(["make", "--no-print-directory", "clean-data"], cwd=checkout, stdout=subprocess.DEVNULL)
    finally:
        for run in runs:
            if run.process.poll() is None:
                run.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    started = time.monotonic()
    main()
    log(f"first run: {len(failures)} failed checks in {time.monotonic() - started:.0f} s")
    sys.exit(1 if failures else 0)
