"""A highly available PostgreSQL on one machine, from Debian 12's own packages, for issue #15:
etcd (one member), three PostgreSQL nodes run by Patroni in synchronous mode, HAProxy with a
primary and a replica port (Patroni's REST health checks), and PgBouncer in transaction pooling in
front of HAProxy. Real processes on 127.0.0.1, random free ports, everything in the work folder,
stopped at exit.

    work = Workdir("ha")
    cluster = HACluster(work)
    cluster.start()                  # leader, both standbys streaming, a synchronous one, HAProxy routing
    cluster.primary_url              # postgres:// through HAProxy's primary port (writes, LISTEN)
    cluster.replica_url              # through HAProxy's replica port (standby reads)
    cluster.pgbouncer_url            # PgBouncer (transaction pooling) -> HAProxy primary
    cluster.kill_leader()            # a crashed machine: SIGKILL to Patroni and all of its PostgreSQL
    cluster.switchover()             # planned, through Patroni's REST API

The configurations are written from e2e/ha/{patroni.yml,haproxy.cfg,pgbouncer.ini}, which
docs/deploy.md quotes verbatim (`docs_in_sync()` checks that). Only the standard library: urllib
for Patroni's REST API, psql from the PostgreSQL bin folder for SQL."""

import glob
import json
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from harness import IS_ROOT, ROOT, apt_install, free_port, log

TEMPLATES = os.path.join(ROOT, "e2e", "ha")
DOCS = os.path.join(ROOT, "docs", "deploy.md")
NODES = ("node1", "node2", "node3")
PACKAGES = (("etcd-server", "/usr/bin/etcd"), ("patroni", "/usr/bin/patroni"),
            ("haproxy", "/usr/sbin/haproxy"), ("pgbouncer", "/usr/sbin/pgbouncer"))
# Services those packages would start on a machine with systemd (not in a container, where
# policy-rc.d forbids it). They use the default ports, not ours, but must not linger half-configured.
DEFAULT_SERVICES = ("etcd", "patroni", "haproxy", "pgbouncer")

# urllib must not send loopback requests to a proxy from the environment.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def render(template, **values):
    with open(os.path.join(TEMPLATES, template)) as f:
        return string.Template(f.read()).substitute(values)


def docs_in_sync():
    """The templates that docs/deploy.md does not quote verbatim (an empty list when in sync)."""
    try:
        with open(DOCS) as f:
            docs = f.read()
    except OSError:
        return list(os.listdir(TEMPLATES))
    missing = []
    for name in sorted(os.listdir(TEMPLATES)):
        with open(os.path.join(TEMPLATES, name)) as f:
            if f.read().strip() not in docs:
                missing.append(name)
    return missing


def pg_bin():
    """The same PostgreSQL as e2e/harness.py's Postgres (scripts/ensure-postgres installs it)."""
    subprocess.run([os.path.join(ROOT, "scripts/ensure-postgres")], check=True)
    return os.environ.get("TESSERA_PG_BIN") or sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]


def psql(bin_dir, url, sql, timeout=10):
    """Runs SQL with psql; returns its output (unaligned, tuples only) or raises RuntimeError."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="2")
    try:
        out = subprocess.run([os.path.join(bin_dir, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url],
                             input=sql, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"psql timed out after {timeout} s")
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def rest(port, path, method="GET", body=None, timeout=3):
    """(status, parsed JSON or text) from a Patroni REST API; (None, error) when it does not answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with _http.open(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    except (OSError, ValueError) as error:
        return None, str(error)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


_taken = set()


def quiet_port():
    """A free 127.0.0.1 port below the kernel's ephemeral range. harness.free_port() hands out a
    port from that range, released at once: a replica's PostgreSQL binds it only after its base
    backup, seconds later, and by then an outgoing connection (HAProxy checks every second, psql)
    or another process's bind to port 0 may hold it. Ports below the range are never picked by
    the kernel."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    if low < 4096:
        return free_port()
    for _ in range(500):
        port = random.randint(max(1024, low - 12000), low - 1)
        if port in _taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    return free_port()


def _children():
    """{pid: [child pids]} for every process on the machine."""
    tree = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pids):
    tree, found, todo = _children(), [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _memory_kib(pid):
    """(RSS, PSS) in KiB; PSS shares shared memory (shared_buffers) fairly between processes."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class Process:
    """One long-running program, its output in a log file; as `postgres` when asked and root."""

    def __init__(self, name, command, log_path, as_postgres=False, env=None, cwd=None):
        self.name, self.command, self.log_path = name, command, log_path
        extra = {"user": "postgres", "group": "postgres", "extra_groups": []} if as_postgres and IS_ROOT else {}
        self.popen = subprocess.Popen(command, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True, **extra)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, sig=signal.SIGTERM, wait=20):
        if self.alive():
            try:
                self.popen.send_signal(sig)
                self.popen.wait(wait)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
            except ProcessLookupError:
                pass

    def tail(self, lines=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


class Node:
    """One Patroni node: its folder, ports, config and (while it runs) the patroni process."""

    def __init__(self, name, base, bin_dir, etcd_hosts):
        self.name = name
        self.dir = os.path.join(base, name)
        self.data = os.path.join(self.dir, "data")
        self.pg_port, self.rest_port = quiet_port(), quiet_port()
        self.config = os.path.join(self.dir, "patroni.yml")
        self.process = None
        os.makedirs(self.dir)
        with open(self.config, "w") as f:
            f.write(render("patroni.yml", name=name, rest_port=self.rest_port, pg_port=self.pg_port,
                           etcd_hosts=etcd_hosts, data_dir=self.data, bin_dir=bin_dir, node_dir=self.dir))
        if IS_ROOT:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.config, "postgres", "postgres")
        self.url = f"postgres://tessera@127.0.0.1:{self.pg_port}/postgres?sslmode=disable"

    def start(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.dir, "LANG": "C.UTF-8",
               "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        self.process = Process(self.name, ["/usr/bin/patroni", self.config], os.path.join(self.dir, "patroni.log"),
                               as_postgres=True, env=env, cwd=self.dir)

    def postmaster_pid(self):
        """The running postmaster of this node's data folder (a stale postmaster.pid whose number
        now belongs to another process does not count)."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                pid = int(f.readline())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
            return pid if self.data.encode() in command else None
        except (OSError, ValueError):
            return None

    def pids(self):
        """Patroni, the postmaster and everything under either."""
        roots = [p for p in (self.process.pid if self.process and self.process.alive() else None,
                             self.postmaster_pid()) if p]
        return _descendants(roots)

    def rest(self, path, **kw):
        return rest(self.rest_port, path, **kw)

    def crash(self):
        """What a machine crash does to this node: every process of it gone at the same moment."""
        pids = self.pids()
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # freeze all first, so none reacts to another's death
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        if self.process:
            self.process.popen.wait(10)

    def kill_all(self):
        for pid in self.pids():  # whatever is left: Patroni, a postmaster, backends
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process:
            try:
                self.process.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass


class HACluster:
    """etcd + 3 Patroni/PostgreSQL nodes + HAProxy + PgBouncer on 127.0.0.1 (see the module doc)."""

    def __init__(self, work):
        self.work = work
        self.bin = None
        self.base = self._reachable_base(work)
        self.etcd = self.haproxy = self.pgbouncer = None
        self.nodes = {}
        self.down = set()  # nodes crashed (kill_leader) and not started again
        self.timings = {}
        self.etcd_client_port, self.etcd_peer_port = quiet_port(), quiet_port()
        self.primary_port, self.replica_port, self.stats_port = quiet_port(), quiet_port(), quiet_port()
        self.pgbouncer_port = quiet_port()
        work.on_close(self.stop)

    # ------------------------------------------------------------------ URLs

    @property
    def primary_url(self):
        return f"postgres://tessera@127.0.0.1:{self.primary_port}/postgres?sslmode=disable"

    @property
    def replica_url(self):
        return f"postgres://tessera@127.0.0.1:{self.replica_port}/postgres?sslmode=disable"

    @property
    def pgbouncer_url(self):
        return f"postgres://tessera@127.0.0.1:{self.pgbouncer_port}/postgres?sslmode=disable"

    @property
    def pgbouncer_replica_url(self):
        return f"postgres://tessera@127.0.0.1:{self.pgbouncer_port}/postgres_replica?sslmode=disable"

    @property
    def node_urls(self):
        return {name: node.url for name, node in self.nodes.items()}

    @property
    def etcd_url(self):
        return f"http://127.0.0.1:{self.etcd_client_port}"

    @property
    def stats_url(self):
        return f"http://127.0.0.1:{self.stats_port}/"

    # ------------------------------------------------------------------ lifecycle

    @staticmethod
    def _reachable_base(work):
        """A folder for the cluster that the `postgres` user can reach: the work folder, or (as root
        under a closed TMPDIR) a private folder in postgres's home, removed at close."""
        base = os.path.join(work.path, "ha")
        if IS_ROOT and subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", work.path]).returncode != 0:
            import pwd
            home = pwd.getpwnam("postgres").pw_dir
            base = tempfile.mkdtemp(prefix="tessera-ha.", dir=home)
            shutil.chown(base, "postgres", "postgres")
            work.on_close(lambda: shutil.rmtree(base, ignore_errors=True))
            return base
        os.makedirs(base)
        os.chmod(base, 0o755)
        return base

    def install(self):
        for package, probe in PACKAGES:
            apt_install(package, probe)
        self._stop_default_services()
        self.bin = pg_bin()

    @staticmethod
    def _stop_default_services():
        if not (shutil.which("systemctl") and os.path.isdir("/run/systemd/system")):
            return  # no systemd: nothing was started (policy-rc.d, or no init to start it)
        sudo = [] if IS_ROOT else ["sudo", "-n"]
        for service in DEFAULT_SERVICES:
            active = subprocess.run(["systemctl", "is-active", "--quiet", service]).returncode == 0
            if active:
                log(f"stopping and disabling the packaged {service} service")
                subprocess.run(sudo + ["systemctl", "disable", "--now", service], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    def start(self, timeout=150):
        """Starts everything; returns once the cluster is healthy (see wait_healthy). Seconds taken
        in self.timings["bootstrap_s"]."""
        began = time.time()
        self.install()
        self._start_etcd()
        etcd_hosts = f"127.0.0.1:{self.etcd_client_port}"
        for name in NODES:
            self.nodes[name] = Node(name, self.base, self.bin, etcd_hosts)
        for node in self.nodes.values():
            node.start()
        self._start_haproxy()
        self._start_pgbouncer()
        self.wait_healthy(timeout=timeout - (time.time() - began))
        self.timings["bootstrap_s"] = round(time.time() - began, 2)
        log(f"HA cluster up in {self.timings['bootstrap_s']} s: leader {self.leader()}, primary port "
            f"{self.primary_port}, replica port {self.replica_port}, pgbouncer {self.pgbouncer_port}")
        return self.timings["bootstrap_s"]

    def _start_etcd(self):
        data = os.path.join(self.base, "etcd")
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        self.etcd = Process("etcd", [
            "/usr/bin/etcd", "--name", "etcd1", "--data-dir", data,
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"etcd1={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", "tessera-ha"], os.path.join(self.base, "etcd.log"), env=env)
        self._until(lambda: rest(self.etcd_client_port, "/health")[0] == 200, 30, "etcd to answer /health",
                    [self.etcd])

    def _start_haproxy(self):
        ports = {f"{name}_{kind}": getattr(node, kind) for name, node in self.nodes.items()
                 for kind in ("pg_port", "rest_port")}
        config = os.path.join(self.base, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(render("haproxy.cfg", primary_port=self.primary_port, replica_port=self.replica_port,
                           stats_port=self.stats_port, **ports))
        check = subprocess.run(["/usr/sbin/haproxy", "-c", "-q", "-f", config], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses {config}: {check.stderr.strip()}")
        self.haproxy = Process("haproxy", ["/usr/sbin/haproxy", "-db", "-f", config],
                               os.path.join(self.base, "haproxy.log"))

    def _start_pgbouncer(self):
        folder = os.path.join(self.base, "pgbouncer")
        os.makedirs(folder)
        config = os.path.join(folder, "pgbouncer.ini")
        with open(config, "w") as f:
            f.write(render("pgbouncer.ini", primary_port=self.primary_port, replica_port=self.replica_port,
                           port=self.pgbouncer_port, dir=folder))
        with open(os.path.join(folder, "userlist.txt"), "w") as f:
            f.write('"tessera" ""\n')
        if IS_ROOT:  # PgBouncer refuses to run as root
            for path in (folder, config, os.path.join(folder, "userlist.txt")):
                shutil.chown(path, "postgres", "postgres")
        self.pgbouncer = Process("pgbouncer", ["/usr/sbin/pgbouncer", config], os.path.join(folder, "stderr.log"),
                                 as_postgres=True)

    def stop(self, grace=20):
        """Stops everything (idempotent, bounded): PgBouncer, HAProxy, then SIGTERM to every
        Patroni at once (each stops its PostgreSQL), SIGKILL to whatever is left after `grace`
        seconds, then etcd."""
        for process in (self.pgbouncer, self.haproxy):
            if process:
                process.stop(wait=5)
        running = [n for n in self.nodes.values() if n.process and n.process.alive()]
        for node in running:
            node.process.popen.send_signal(signal.SIGTERM)
        deadline = time.time() + grace
        for node in running:
            try:
                node.process.popen.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                log(f"{node.name}: Patroni did not stop within {grace} s, killing it")
        for node in self.nodes.values():
            node.kill_all()
        if self.etcd:
            self.etcd.stop(wait=10)

    # ------------------------------------------------------------------ state

    def psql(self, url, sql, timeout=10):
        return psql(self.bin, url, sql, timeout=timeout)

    def cluster_state(self):
        """Patroni's GET /cluster from the first node that answers, or None."""
        for name, node in self.nodes.items():
            if name in self.down:
                continue
            status, body = node.rest("/cluster", timeout=2)
            if status == 200 and isinstance(body, dict):
                return body
        return None

    def leader(self):
        """The leader's name as Patroni reports it (None while there is none)."""
        state = self.cluster_state() or {}
        for member in state.get("members", []):
            if member["role"] == "leader" and member["state"] == "running":
                return member["name"]
        return None

    def replicas(self):
        """Names of the running standbys (synchronous or not), sorted."""
        state = self.cluster_state() or {}
        return sorted(m["name"] for m in state.get("members", [])
                      if m["role"] in ("replica", "sync_standby") and m["state"] == "running")

    def sync_standbys(self):
        state = self.cluster_state() or {}
        return sorted(m["name"] for m in state.get("members", []) if m["role"] == "sync_standby")

    def _health(self):
        """None when healthy, else what is missing."""
        state = self.cluster_state()
        if not state:
            return "no Patroni REST API answers"
        expected = [name for name in self.nodes if name not in self.down]
        members = {m["name"]: m for m in state.get("members", [])}
        leader = next((m["name"] for m in members.values() if m["role"] == "leader" and m["state"] == "running"),
                      None)
        if not leader:
            return "no running leader"
        standbys = [n for n in expected if n != leader]
        for name in standbys:
            if members.get(name, {}).get("state") != "running":
                return f"{name} is {members.get(name, {}).get('state', 'absent')}"
        try:
            rows = self.psql(self.nodes[leader].url, "SELECT application_name, state, sync_state "
                                                     "FROM pg_stat_replication", timeout=5)
        except RuntimeError as error:
            return f"leader {leader}: {error}"
        replication = {r.split("|")[0]: r.split("|")[1:] for r in rows.splitlines() if r}
        for name in standbys:
            if replication.get(name, [None])[0] != "streaming":
                return f"{name} is not streaming from {leader}"
        sync = [n for n in standbys if replication[n][1] == "sync"]
        patroni_sync = [m["name"] for m in members.values() if m["role"] == "sync_standby"]
        if standbys and not (sync and set(patroni_sync) == set(sync)):
            return f"no synchronous standby yet (PostgreSQL: {sync}, Patroni: {patroni_sync})"
        try:
            port, recovery = self.psql(self.primary_url, "SELECT inet_server_port(), pg_is_in_recovery()",
                                       timeout=5).split("|")
        except RuntimeError as error:
            return f"HAProxy primary port: {error}"
        if int(port) != self.nodes[leader].pg_port or recovery != "f":
            return "HAProxy's primary port does not reach the leader yet"
        if standbys:
            try:
                if self.psql(self.replica_url, "SELECT pg_is_in_recovery()", timeout=5) != "t":
                    return "HAProxy's replica port does not reach a standby yet"
            except RuntimeError as error:
                return f"HAProxy replica port: {error}"
        try:
            self.psql(self.pgbouncer_url, "SELECT 1", timeout=5)
        except RuntimeError as error:
            return f"PgBouncer: {error}"
        return None

    def wait_healthy(self, timeout=90):
        """Waits until: a running leader, every node not crashed streaming from it, a synchronous
        standby (Patroni's sync_standby = PostgreSQL's sync_state 'sync'), HAProxy's primary port on
        the leader and its replica port on a standby, PgBouncer answering. Returns seconds waited."""
        began = time.time()
        last = None

        def healthy():
            nonlocal last
            last = self._health()
            return last is None

        self._until(healthy, timeout, lambda: f"a healthy cluster (last: {last})")
        return round(time.time() - began, 2)

    def _until(self, condition, timeout, what, processes=None, interval=0.25):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            for process in processes or self._processes():
                if not process.alive():
                    log(f"{process.name} exited; its log ends with:\n{process.tail()}")
                    raise RuntimeError(f"{process.name} exited ({process.popen.returncode})")
            time.sleep(interval)
        what = what() if callable(what) else what
        log(f"timed out waiting for {what}; the logs end with:\n{self.logs_tail()}")
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")

    def _processes(self):
        processes = [p for p in (self.etcd, self.haproxy, self.pgbouncer) if p]
        return processes + [n.process for name, n in self.nodes.items() if n.process and name not in self.down]

    def logs_tail(self, lines=8):
        parts = []
        for process in [p for p in (self.etcd, self.haproxy, self.pgbouncer) if p] + \
                [n.process for n in self.nodes.values() if n.process]:
            parts.append(f"--- {process.name} ({process.log_path}):\n{process.tail(lines)}")
        return "\n".join(parts)

    def save_logs(self, destination):
        """Copies every log (etcd, HAProxy, PgBouncer, each node's Patroni and PostgreSQL output)
        to `destination`, which outlives the work folder."""
        os.makedirs(destination, exist_ok=True)
        for process in [p for p in (self.etcd, self.haproxy, self.pgbouncer) if p] + \
                [n.process for n in self.nodes.values() if n.process]:
            try:
                shutil.copy(process.log_path, os.path.join(destination, f"{process.name}.log"))
            except OSError:
                pass
        return destination

    # ------------------------------------------------------------------ faults and operations

    def kill_leader(self):
        """Crashes the leader's machine: SIGKILL to its Patroni and to its postmaster and every
        backend at the same instant (killing only the postmaster would let the still-running Patroni
        restart PostgreSQL in place, holding the leader key: a process crash, not a failover). The
        leader key then expires after `ttl` and the synchronous standby takes over. Returns the
        name of the crashed node; start_node(name) brings it back (it rejoins as a standby)."""
        name = self.leader()
        if not name:
            raise RuntimeError("no leader to kill")
        self.down.add(name)
        self.nodes[name].crash()
        self.timings["killed_at"] = time.time()
        log(f"killed {name} (Patroni and PostgreSQL, SIGKILL)")
        return name

    def start_node(self, name):
        """Starts a crashed node's Patroni again; it rejoins as a standby (pg_rewind if needed)."""
        node = self.nodes[name]
        if node.process and node.process.alive():
            return
        node.start()
        self.down.discard(name)

    def switchover(self, candidate=None, timeout=60):
        """A planned switchover through the leader's REST API (POST /switchover). Returns
        {"from", "to", "seconds"} once the new leader commits writes through HAProxy's primary port."""
        began = time.time()
        old = self.leader()
        if not old:
            raise RuntimeError("no leader to switch over from")
        body = {"leader": old}
        if candidate:
            body["candidate"] = candidate
        status, answer = self.nodes[old].rest("/switchover", method="POST", body=body, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"switchover refused ({status}): {answer}")
        new = None

        def writes_on_new_leader():
            nonlocal new
            new = self.leader()
            if not new or new == old:
                return False
            try:
                port = self.psql(self.primary_url, "SELECT txid_current() IS NOT NULL, inet_server_port()",
                                 timeout=3).split("|")[1]
            except RuntimeError:
                return False
            return int(port) == self.nodes[new].pg_port

        self._until(writes_on_new_leader, timeout - (time.time() - began), "writes on the new leader")
        seconds = round(time.time() - began, 2)
        log(f"switched over from {old} to {new} in {seconds} s")
        return {"from": old, "to": new, "seconds": seconds}

    def patch_config(self, changes):
        """PATCH /config (the DCS settings, e.g. {"synchronous_node_count": 2}) through the leader."""
        status, answer = self.nodes[self.leader()].rest("/config", method="PATCH", body=changes)
        if status != 200:
            raise RuntimeError(f"PATCH /config refused ({status}): {answer}")
        return answer

    def pause_replay(self, node):
        """Pauses WAL replay on a standby (its reads go stale; streaming and sync acks go on)."""
        self.psql(self.nodes[node].url, "SELECT pg_wal_replay_pause()")

    def resume_replay(self, node):
        self.psql(self.nodes[node].url, "SELECT pg_wal_replay_resume()")

    # ------------------------------------------------------------------ measurements

    def memory(self):
        """Memory of every process of the cluster, in MiB: RSS summed (counts shared buffers once
        per process) and PSS summed (shared pages divided between the processes sharing them)."""
        groups = {"etcd": [self.etcd], "haproxy": [self.haproxy], "pgbouncer": [self.pgbouncer]}
        result, total_rss, total_pss = {}, 0, 0
        for label, processes in groups.items():
            pids = _descendants([p.pid for p in processes if p and p.alive()])
            rss, pss = map(sum, zip(*[_memory_kib(pid) for pid in pids])) if pids else (0, 0)
            result[label] = {"processes": len(pids), "rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}
            total_rss, total_pss = total_rss + rss, total_pss + pss
        for name, node in self.nodes.items():
            pids = node.pids()
            rss, pss = map(sum, zip(*[_memory_kib(pid) for pid in pids])) if pids else (0, 0)
            patroni = _memory_kib(node.process.pid) if node.process and node.process.alive() else (0, 0)
            result[name] = {"processes": len(pids), "rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1),
                            "patroni_rss_mib": round(patroni[0] / 1024, 1)}
            total_rss, total_pss = total_rss + rss, total_pss + pss
        result["total"] = {"rss_mib": round(total_rss / 1024, 1), "pss_mib": round(total_pss / 1024, 1)}
        return result


if __name__ == "__main__":
    # Brings the cluster up and keeps it until Ctrl-C, for poking at by hand.
    import sys
    from harness import Workdir
    work = Workdir("ha")
    cluster = HACluster(work)
    cluster.start()
    print(json.dumps({"primary_url": cluster.primary_url, "replica_url": cluster.replica_url,
                      "pgbouncer_url": cluster.pgbouncer_url, "pgbouncer_replica_url": cluster.pgbouncer_replica_url,
                      "node_urls": cluster.node_urls, "etcd_url": cluster.etcd_url, "haproxy_stats": cluster.stats_url,
                      "patronictl": f"patronictl -c {cluster.nodes['node1'].config} list",
                      "leader": cluster.leader(), "replicas": cluster.replicas()}, indent=2), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that the cluster is stopped at exit
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
