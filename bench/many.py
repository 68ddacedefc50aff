"""Scenarios n and p of bench/run: a large host, many workers and many
pools, netclusterd beside Node's cluster and PM2's cluster mode.

  n  many workers: 16, 64 and 256 workers of one service, for
     netclusterd's built-in echo (netcluster-worker), netclusterd running
     examples/cluster-echo (a C program linked with libnetcluster,
     "sockets": "cluster"), Node's cluster (bench/node-echo-cluster.js)
     and PM2's cluster mode (the same script, `-i N`), one after the
     other. For each: the startup (the start command to every worker
     ready), each worker's PSS, the master's CPU while idle with its
     supervision on and a scrape every 15 s, then (netclusterd)
     `netclusterctl connections` timed 20 times, then reloads under the
     connection load of (c) (PM2: `pm2 reload`; Node's cluster has none).
     Then 64 workers in round-robin, netclusterd against Node's rr: the
     hand-off rate under (c)'s load and the balance over the workers.
  p  many pools: 32 services of 2 echo workers, each on a port of its
     own: the startup, reloads of one service under load on its port,
     the master's CPU idle; PM2 with 32 apps of 2 instances beside it.

bench/run imports this module and calls attach() with itself, then
many_workers(bench), many_pools(bench) and tables(raw). Rows go into
bench/run's raw.csv: scenario n or p, the figure in `load` (startup,
pss, idle, count, reload, rr), the value in `rate`.

Environment, for short runs: NC_BENCH_MANY_COUNTS (default 16,64,256),
NC_BENCH_MANY_PEERS (default echo,program,node,pm2), NC_BENCH_NPM (the
npm prefix PM2 is installed into when missing; default
$TMPDIR/netcluster-bench-npm)."""

import json
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time

R = None                    # bench/run, as a module (attach())

COUNTS = tuple(int(x) for x in os.environ.get(
    "NC_BENCH_MANY_COUNTS", "16,64,256").split(","))
PEERS = tuple(os.environ.get("NC_BENCH_MANY_PEERS",
                             "echo,program,node,pm2").split(","))
IDLE = (30.0, 10.0)         # the idle window (s; --quick)
SCRAPE_EVERY = 15.0         # a scrape this often while idle (s)
SETTLE = 2.0                # after a start, before the idle window (s)
RELOADS = (3, 1)            # netclusterd's reloads under load (--quick)
PM2_RELOADS = 1             # pm2 reload of N instances takes a while
RELOAD_CONNS = 64           # (c)'s load: connections in flight
COUNT_CALLS = 20            # netclusterctl connections, timed
RR_WORKERS = 64
RR_ROUNDS = 3
RR_SECONDS = 3.0
POOLS, POOL_WORKERS = 32, 2
RSS_MIB = 65536             # recycle.rss_mib: sampled, never reached
NOFILE = 65536              # RLIMIT_NOFILE of every server (root)
PM2_VERSION = "pm2@7"       # what npm installs when PM2 is missing
MIB = 1024.0 * 1024.0

# A Node worker's preload (node -r), for Node's cluster and PM2: it
# appends its pid to $NC_PROBE_DIR/listening when its server listens
# (PM2 has no "listening" of its own to read), and on SIGUSR2 writes the
# connections it took to $NC_PROBE_DIR/count.PID. The primary (and PM2's
# daemon, which is not started with it) does nothing.
PROBE = r"""'use strict';
const cluster = require('cluster');
const fs = require('fs');
const net = require('net');
const dir = process.env.NC_PROBE_DIR;
if (dir && cluster.isWorker) {
  let n = 0;
  const emit = net.Server.prototype.emit;
  net.Server.prototype.emit = function (ev, ...args) {
    if (ev === 'connection') n++;
    else if (ev === 'listening')
      fs.appendFileSync(dir + '/listening', process.pid + '\n');
    return emit.call(this, ev, ...args);
  };
  process.on('SIGUSR2', () => {
    fs.writeFileSync(dir + '/count.' + process.pid + '.tmp', String(n));
    fs.renameSync(dir + '/count.' + process.pid + '.tmp',
                  dir + '/count.' + process.pid);
  });
}
"""


def attach(run):
    global R
    R = run


def log(msg):
    R.log(msg)


class Limits:
    """RLIMIT_NOFILE of this process, which every server started here
    inherits, raised to NOFILE (as root, past the hard limit) for the
    scenario, and put back after it."""

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_NOFILE)
        hard = self.saved[1]
        want = max(hard, NOFILE) if os.geteuid() == 0 else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return self

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_NOFILE, self.saved)
        return False


def pss_kib(pid):
    """Pss and Rss of pid (smaps_rollup), KiB; (0, 0) if gone."""
    out = {"Pss:": 0, "Rss:": 0}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k = line.split(None, 1)[0]
                if k in out:
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out["Pss:"], out["Rss:"]


def proc_ns(pids):
    """The run time of every thread of pids, ns (the gone count 0)."""
    total = 0
    for p in pids:
        try:
            total += R.run_ns(p)
        except OSError:
            pass
    return total


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def wait_until(pred, bound, step=0.01):
    deadline = time.monotonic() + bound
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


class Scrapes:
    """GET /metrics at the start and every `every` s, count times, each on
    a connection of its own (the master closes a keep-alive connection
    idle 5 s; Prometheus connects again), in a thread."""

    def __init__(self, addr, every, count):
        self.addr, self.every, self.count = addr, every, count
        self.done = self.errors = self.bytes = 0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        import http.client
        due = time.monotonic()
        for _ in range(self.count):
            if self.halt.wait(max(0.0, due - time.monotonic())):
                return
            c = http.client.HTTPConnection(self.addr[0], self.addr[1],
                                           timeout=10)
            try:
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read()
                if r.status == 200 and \
                        b"netcluster_connections_accepted_total" in body:
                    self.done += 1
                    self.bytes = len(body)
                else:
                    self.errors += 1
            except OSError as e:
                log("  scrape: %s" % e)
                self.errors += 1
            finally:
                c.close()
            due += self.every

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.halt.set()
        self.thread.join(20)


class Skip(Exception):
    """A peer that cannot run here; the table says why."""


class Many:
    """A server of scenario n or p: started by start() (which returns
    the startup time), its master, its workers' pids, stopped by
    stop() whatever happened."""

    kind = "?"
    name = "?"

    def __init__(self, build, workers):
        self.build = build
        self.workers = workers
        self.dir = tempfile.mkdtemp(prefix="nc-bench-many.")
        self.proc = None
        self.port = free_port()

    def targets(self):
        return ["127.0.0.1:%d" % self.port]

    def master(self):
        return self.proc.pid

    def session(self):
        """Every process of the server's session (netclusterd, Node)."""
        out = []
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if int(R.stat(int(p))[3]) == self.proc.pid:
                        out.append(int(p))
                except (OSError, IndexError):
                    pass
        return out

    def kill_all(self, pids):
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not any(R.alive(p) for p in pids), 10)

    def stop(self):
        if self.proc is not None:
            rest = self.session()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.kill_all(rest)
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def free_port():
    return R.free_port()


class Notify:
    """A NOTIFY_SOCKET of our own: a thread keeps every datagram with the
    time it came (netclusterd says READY=1 once every worker is online)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.got = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.cond:
                self.got.append((time.monotonic(), data.decode(
                    errors="replace")))
                self.cond.notify_all()

    def wait(self, text, after, bound):
        """The time of the first datagram after `after` with a line text;
        None after bound s."""
        deadline = time.monotonic() + bound
        with self.cond:
            while True:
                for t, d in self.got:
                    if t >= after and text in d.split("\n"):
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Nc(Many):
    """netclusterd with the services given, the metrics listener on, the
    supervision as by default (worker_timeout_ms 30000: a pong a second
    from every worker) and recycle.rss_mib (its RSS sampled every second),
    its log at info level, READY=1 on a NOTIFY_SOCKET of ours."""

    kind = "netclusterd"

    def __init__(self, build, name, workers):
        super().__init__(build, workers)
        self.name = name
        self.control = os.path.join(self.dir, "control.sock")
        self.log = os.path.join(self.dir, "netclusterd.log")
        self.conf = os.path.join(self.dir, "netcluster.json")
        self.services = []
        self.notify = None
        self.metrics = None

    def write(self, services):
        """The configuration: services, each with recycle.rss_mib and a
        4096-deep backlog unless they say otherwise."""
        for s in services:
            s.setdefault("recycle", {"rss_mib": RSS_MIB})
            s.setdefault("backlog", 4096)
        self.services = services
        with open(self.conf, "w") as f:
            json.dump({"workers": self.workers,
                       "control_socket": self.control, "log_level": "info",
                       "metrics": {"listen": "127.0.0.1:0"},
                       "services": services}, f, indent=1)
        return self

    def start(self):
        """Seconds from the exec of netclusterd to its READY=1."""
        self.notify = Notify(os.path.join(self.dir, "notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        total = sum(s.get("workers", self.workers) for s in self.services)
        with open(self.log, "ab") as out:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                [os.path.join(self.build, "netclusterd"), "-c", self.conf],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        t = self.notify.wait("READY=1", t0, 60 + total * 0.5)
        if t is None:
            raise RuntimeError("%s: no READY=1 within %.0f s" % (
                self.name, 60 + total * 0.5))
        st = self.ctl("status")
        online = sum(s["online"] for s in st["services"])
        if online != total:
            raise RuntimeError("%s: READY=1 with %d of %d online" % (
                self.name, online, total))
        host, _, port = st["metrics"].rpartition(":")
        self.metrics = (host, int(port))
        return t - t0

    def ctl(self, *args, check=True):
        p = subprocess.run([os.path.join(self.build, "netclusterctl"), "-s",
                            self.control, "--json"] + list(args),
                           capture_output=True, timeout=60)
        if p.returncode != 0:
            if check:
                raise RuntimeError("netclusterctl %s: %s" % (
                    " ".join(args), p.stderr.decode().strip()))
            return None
        return json.loads(p.stdout)

    def worker_pids(self):
        return [w["pid"] for w in self.ctl("workers")["workers"]
                if w["state"] == "online"]

    def accepted(self):
        return {w["slot"]: w.get("accepted", 0)
                for w in self.ctl("workers")["workers"]
                if w["state"] == "online"}

    def reload(self, service=None, batch=None):
        """netclusterctl reload [SERVICE] [--batch K]: it answers once
        the new generation is online; asked again while two older
        generations still drain (as (i) does), for at most 30 s. True
        when done."""
        deadline = time.monotonic() + 30
        cmd = [os.path.join(self.build, "netclusterctl"), "-s",
               self.control, "reload"] + ([service] if service else []) + (
                   ["--batch", str(batch)] if batch else [])
        while True:
            p = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=120)
            if p.returncode == 0:
                return True
            if "still draining" not in p.stderr or \
                    time.monotonic() > deadline:
                log("  reload: " + p.stderr.strip())
                return False
            time.sleep(0.02)

    def crashes(self):
        """As (i): workers that ended otherwise than by exiting 0."""
        n = 0
        try:
            with open(self.log, errors="replace") as f:
                for x in f:
                    x = x.rstrip("\n")
                    if "after draining" in x and not \
                            x.endswith("exited with status 0 after "
                                       "draining"):
                        n += 1
                    elif "restarting in" in x:
                        n += 1
        except OSError:
            pass
        return n

    def stop(self):
        try:
            super().stop()
        finally:
            if self.notify:
                self.notify.close()


def nc_echo(build, workers, mode="shared"):
    nc = Nc(build, "netclusterd echo" + (
        " round-robin" if mode == "round-robin" else ""), workers)
    return nc.write([{"name": "echo", "handler": "echo", "mode": mode,
                      "listen": ["127.0.0.1:%d" % nc.port]}])


def cluster_echo(build):
    """examples/cluster-echo: the binary itself where libtool left a
    wrapper script (a shell per worker start otherwise), and the
    LD_LIBRARY_PATH it needs; built if missing."""
    wrapper = os.path.join(build, "examples", "cluster-echo")
    if not os.access(wrapper, os.X_OK):
        subprocess.run(["make", "examples/cluster-echo"], cwd=build,
                       check=True, stdout=subprocess.DEVNULL)
    real = os.path.join(build, "examples", ".libs", "cluster-echo")
    if os.access(real, os.X_OK):
        return real, {"LD_LIBRARY_PATH": os.path.join(build, ".libs")}
    return wrapper, {}


def nc_program(build, workers):
    path, env = cluster_echo(build)
    nc = Nc(build, "netclusterd C program", workers)
    svc = {"name": "echo", "handler": "program", "sockets": "cluster",
           "mode": "shared", "listen": ["127.0.0.1:%d" % nc.port],
           "command": [path, "-p", str(nc.port), "-h", "127.0.0.1"]}
    if env:
        svc["env"] = env
    return nc.write([svc])


def nc_pools(build, pools, workers):
    nc = Nc(build, "netclusterd %dx%d" % (pools, workers), workers)
    nc.ports = {}
    services = []
    for i in range(pools):
        name = "echo%d" % i
        nc.ports[name] = nc.port if i == 0 else free_port()
        services.append({"name": name, "handler": "echo", "mode": "shared",
                         "listen": ["127.0.0.1:%d" % nc.ports[name]],
                         "workers": workers})
    return nc.write(services)


class NodeCluster(Many):
    """bench/node-echo-cluster.js: the primary prints "ready" once every
    worker listens. With probe, each worker runs PROBE (node -r)."""

    kind = "node"

    def __init__(self, build, workers, policy="rr", probe=None):
        super().__init__(build, workers)
        self.policy = policy
        self.probe = probe
        self.name = "node cluster" + (" rr" if probe else "")
        self.probe_dir = os.path.join(self.dir, "probe")
        os.mkdir(self.probe_dir)

    def start(self):
        env = dict(os.environ, NODE_CLUSTER_SCHED_POLICY=self.policy,
                   NC_BENCH_BACKLOG="4096", NC_PROBE_DIR=self.probe_dir)
        cmd = ["node"] + (["-r", self.probe] if self.probe else []) + [
            os.path.join(R.HERE, "node-echo-cluster.js"), str(self.port),
            str(self.workers)]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        bound = 60 + self.workers * 0.5
        r, _, _ = select.select([self.proc.stdout], [], [], bound)
        line = self.proc.stdout.readline() if r else b""
        t = time.monotonic()
        if line.strip() != b"ready":
            raise RuntimeError("node did not say ready within %.0f s" % bound)
        R.wait_port(self.port)
        return t - t0

    def worker_pids(self):
        return R.children(self.proc.pid)

    def counts(self, pids):
        """Each worker's connections so far (PROBE, on SIGUSR2)."""
        for p in pids:
            try:
                os.unlink(os.path.join(self.probe_dir, "count.%d" % p))
            except FileNotFoundError:
                pass
            os.kill(p, signal.SIGUSR2)
        files = [os.path.join(self.probe_dir, "count.%d" % p) for p in pids]
        if not wait_until(lambda: all(os.path.exists(f) for f in files), 20):
            raise RuntimeError("node workers did not write their counts")
        out = {}
        for p, f in zip(pids, files):
            with open(f) as fh:
                out[p] = int(fh.read())
        return out


def npm_prefix():
    return os.environ.get("NC_BENCH_NPM") or os.path.join(
        tempfile.gettempdir(), "netcluster-bench-npm")


def pm2_bin():
    """PM2 from the bench's own npm prefix, installed there when
    missing (npm; as root, Debian's npm when there is none)."""
    prefix = npm_prefix()
    pm2 = os.path.join(prefix, "node_modules", ".bin", "pm2")
    if os.access(pm2, os.X_OK):
        return pm2
    if shutil.which("npm") is None:
        if os.geteuid() != 0:
            raise Skip("no npm to install PM2 with")
        log("installing npm (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q",
                        "--no-install-recommends", "npm"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
    log("installing %s into %s (npm)" % (PM2_VERSION, prefix))
    os.makedirs(prefix, exist_ok=True)
    p = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit",
                        "--no-fund", "--loglevel", "error", PM2_VERSION],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0 or not os.access(pm2, os.X_OK):
        raise Skip("npm install %s failed: %s" % (
            PM2_VERSION, (p.stderr or p.stdout).strip()[-200:]))
    return pm2


def pm2_version():
    try:
        with open(os.path.join(npm_prefix(), "node_modules", "pm2",
                               "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


class Pm2(Many):
    """PM2's cluster mode with a PM2_HOME of its own: apps of
    bench/node-echo-cluster.js (its worker branch: PM2's daemon is the
    cluster's primary), each instance running PROBE. Ready once every
    instance said it listens, and `pm2 jlist` says every one online."""

    kind = "pm2"

    def __init__(self, build, workers, probe, apps=1):
        super().__init__(build, workers)
        self.pm2 = pm2_bin()
        self.name = "pm2 cluster" if apps == 1 else "pm2 %dx%d" % (
            apps, workers)
        self.home = os.path.join(self.dir, "pm2")
        self.probe_dir = os.path.join(self.dir, "probe")
        os.mkdir(self.probe_dir)
        self.env = dict(os.environ, PM2_HOME=self.home,
                        NC_PROBE_DIR=self.probe_dir)
        self.ports = {}
        doc = {"apps": []}
        for i in range(apps):
            name = "echo" if apps == 1 else "echo%d" % i
            port = self.port if i == 0 else free_port()
            self.ports[name] = port
            doc["apps"].append({
                "name": name,
                "script": os.path.join(R.HERE, "node-echo-cluster.js"),
                "args": [str(port), str(workers)], "instances": workers,
                "exec_mode": "cluster", "node_args": ["-r", probe],
                "env": {"NC_PROBE_DIR": self.probe_dir,
                        "NC_BENCH_BACKLOG": "4096"}})
        self.total = apps * workers
        self.eco = os.path.join(self.dir, "ecosystem.json")
        with open(self.eco, "w") as f:
            json.dump(doc, f, indent=1)
        self.god = None
        self.known = set()

    def run(self, *args, timeout=120):
        return subprocess.run([self.pm2] + list(args), env=self.env,
                              capture_output=True, text=True,
                              timeout=timeout)

    def listening(self):
        try:
            with open(os.path.join(self.probe_dir, "listening")) as f:
                return len(f.read().split())
        except FileNotFoundError:
            return 0

    def start(self):
        """Seconds from `pm2 start` (its daemon not running yet) to the
        last instance listening."""
        bound = 60 + self.total * 1.0
        t0 = time.monotonic()
        p = subprocess.Popen([self.pm2, "start", self.eco], env=self.env,
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.proc = p
        try:
            if not wait_until(lambda: self.listening() >= self.total, bound,
                              0.02):
                raise RuntimeError("pm2: %d of %d listening after %.0f s" %
                                   (self.listening(), self.total, bound))
            t = time.monotonic()
            p.wait(timeout=bound)
            self.cli_s = time.monotonic() - t0
        finally:
            self.read_god()
        jl = self.jlist()
        online = sum(x["pm2_env"]["status"] == "online" for x in jl)
        if online != self.total:
            raise RuntimeError("pm2: %d of %d online" % (online,
                                                          self.total))
        for name, port in self.ports.items():
            R.wait_port(port)
        return t - t0

    def read_god(self):
        try:
            with open(os.path.join(self.home, "pm2.pid")) as f:
                self.god = int(f.read())
            self.known.add(self.god)
        except (OSError, ValueError):
            pass

    def master(self):
        return self.god

    def jlist(self):
        p = self.run("jlist")
        out = p.stdout
        try:
            jl = json.loads(out[out.index("["):])
        except ValueError:
            raise RuntimeError("pm2 jlist: %s" % (p.stderr or out)[:200])
        self.known.update(x["pid"] for x in jl if x.get("pid"))
        return jl

    def worker_pids(self):
        return [x["pid"] for x in self.jlist()
                if x["pm2_env"]["status"] == "online" and x.get("pid")]

    def reload(self, app=None):
        p = self.run("reload", app or "all", timeout=600)
        if p.returncode != 0:
            log("  pm2 reload: " + (p.stderr or p.stdout).strip()[-300:])
        return p.returncode == 0

    def stop(self):
        try:
            if self.god and R.alive(self.god):
                self.known.update(R.children(self.god))
                try:
                    self.run("kill", timeout=120)
                except subprocess.TimeoutExpired:
                    pass
            self.kill_all(list(self.known))
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            if self.proc is not None:
                self.proc.wait()
            self.proc = None
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Scenario:
    """What n and p share: recording, the idle window, reloads under
    load, memory."""

    def __init__(self, bench):
        self.b = bench
        self.quick = bench.args.quick
        self.probe = None
        self.pss_seen = {}      # server kind -> KiB per worker

    def row(self, sc, figure, server, workers, value, unit, extra="",
            rnd=0, **more):
        row = dict.fromkeys(R.FIELDS, "")
        row.update({"round": rnd, "scenario": sc, "load": figure,
                    "server": server, "workers": workers, "rate": value,
                    "ops": more.pop("ops", 0), "cpu_s": more.pop("cpu_s", 0.0),
                    "cpu_us_per_op": more.pop("cpu_us_per_op", 0.0),
                    "unit": unit, "extra": extra})
        row.update(more)
        self.b.raw.append(row)
        log("  %s  %-24s w=%-4d %-8s %s %s%s" % (
            sc, server, workers, figure,
            "%.4g" % value if isinstance(value, float) else value, unit,
            "  " + extra if extra else ""))
        return row

    def probe_path(self, d):
        path = os.path.join(d, "nc-probe.js")
        with open(path, "w") as f:
            f.write(PROBE)
        return path

    def fits(self, kind, workers):
        """Raises Skip when workers of kind would not fit in memory, by
        the PSS a worker had at a smaller count (80 MiB for Node before
        any was seen)."""
        per = self.pss_seen.get(kind, 80 * 1024 if kind in ("node", "pm2")
                                else 8 * 1024)
        need = per * 1024 * workers * 1.25 + 1024 * MIB
        have = mem_available()
        if need > have:
            raise Skip("needs about %.1f GiB (%.0f MiB a worker), %.1f GiB "
                       "available" % (need / 1024 / MIB, per / 1024,
                                      have / 1024 / MIB))

    def memory(self, sc, s, workers):
        pids = s.worker_pids()
        if len(pids) != s.workers and s.kind != "pm2":
            log("  %s: %d worker pids for %d workers" % (s.name, len(pids),
                                                         s.workers))
        figs = [pss_kib(p) for p in pids]
        figs = [f for f in figs if f[0]]
        if not figs:
            return
        pss = sum(f[0] for f in figs) / len(figs)
        rss = sum(f[1] for f in figs) / len(figs)
        mp, mr = pss_kib(s.master())
        self.pss_seen[s.kind] = max(self.pss_seen.get(s.kind, 0), pss)
        self.row(sc, "pss", s.name, workers, pss / 1024, "MiB",
                 "RSS %.1f MiB a worker over %d; master PSS %.1f MiB, RSS "
                 "%.1f MiB; total PSS %.0f MiB" % (
                     rss / 1024, len(figs), mp / 1024, mr / 1024,
                     (sum(f[0] for f in figs) + mp) / 1024),
                 ops=len(figs), p50_us=mp)

    def idle(self, sc, s, workers):
        """The master's run time (its threads', schedstat, and its
        /proc/PID/stat ticks) over IDLE s with nothing to serve, after
        SETTLE s; a scrape of /metrics at the start and every 15 s within
        (netclusterd). Beside it, every worker's run time summed."""
        window = IDLE[1 if self.quick else 0]
        master = s.master()
        pids = s.worker_pids()
        time.sleep(SETTLE)
        scraper = None
        f0 = R.stat(master)
        c0, w0, t0 = R.run_ns(master), proc_ns(pids), time.monotonic()
        if getattr(s, "metrics", None):
            scraper = Scrapes(s.metrics, SCRAPE_EVERY, int(
                (window - 1e-6) // SCRAPE_EVERY) + 1).start()
        try:
            time.sleep(window)
        finally:
            if scraper:
                scraper.stop()
        c1, w1, t1 = R.run_ns(master), proc_ns(pids), time.monotonic()
        f1 = R.stat(master)
        ticks = (int(f1[11]) + int(f1[12]) - int(f0[11]) - int(f0[12])) / \
            R.TICK
        secs = t1 - t0
        pct = 100.0 * (c1 - c0) / 1e9 / secs
        extra = "%.1f ms over %.1f s (stat: %.2f s); workers %.2f%% of a " \
                "core summed" % ((c1 - c0) / 1e6, secs, ticks,
                                 100.0 * (w1 - w0) / 1e9 / secs)
        if scraper:
            extra += "; %d scrapes, %d failed, %d B" % (
                scraper.done, scraper.errors, scraper.bytes)
        self.row(sc, "idle", s.name, workers, pct, "% core", extra,
                 cpu_s=(c1 - c0) / 1e9, max_us=ticks, ops=secs)

    def count_rounds(self, sc, s, workers):
        """netclusterctl connections, COUNT_CALLS times one after the
        other: each call's wall time (the CLI's start included)."""
        cmd = [os.path.join(self.b.build, "netclusterctl"), "-s",
               s.control, "connections"]
        took = []
        for _ in range(COUNT_CALLS):
            t = time.monotonic()
            p = subprocess.run(cmd, capture_output=True, timeout=60)
            took.append(time.monotonic() - t)
            if p.returncode != 0:
                raise RuntimeError("netclusterctl connections: %s" %
                                   p.stderr.decode().strip())
        self.row(sc, "count", s.name, workers, median(took) * 1000, "ms",
                 "median of %d; max %.1f ms" % (len(took),
                                                max(took) * 1000),
                 p50_us=median(took) * 1e6, max_us=max(took) * 1e6,
                 ops=len(took))

    def reloads(self, sc, s, workers, times, service=None, port=None,
                batch=None):
        """times reloads under (c)'s load (ncload -m conn -c 64 -b) on
        port: 1 s of load before the first, 1 s after each; then the
        load stops starting connections (SIGTERM) and lets those in
        flight finish. Every reload's time, those refused, the
        connections failed, the workers crashed meanwhile (as in (i))."""
        crashed = s.crashes() if hasattr(s, "crashes") else None
        class T:
            def targets(self_):
                return ["127.0.0.1:%d" % (port or s.port)]
        cmd = self.b.ncload(T(), "conn", RELOAD_CONNS, 4,
                            ["-b", "-t", "3000"], seconds=3600)
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        took, done = [], 0
        try:
            time.sleep(1.0)
            t_all = time.monotonic()
            for _ in range(times):
                if load.poll() is not None:
                    break
                t = time.monotonic()
                ok = s.reload(service, batch) if batch else \
                    s.reload(service)
                took.append(time.monotonic() - t)
                done += ok
                time.sleep(1.0)
            span = time.monotonic() - t_all
            load.send_signal(signal.SIGTERM)
            out, err = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        try:
            r = json.loads(out)
        except ValueError:
            raise RuntimeError("ncload against %s: %s" % (s.name,
                                                           err.strip()))
        failed = sum(r[k] for k in R.FAILED)
        detail = " ".join("%s %d" % (k, r[k]) for k in R.FAILED if r[k])
        crashes = s.crashes() - crashed if crashed is not None else ""
        self.row(sc, "reload-batch" if batch else "reload", s.name, workers,
                 median(took), "s",
                 "%d reload(s)%s%s, %d done: %s s; %d connections made at "
                 "%.0f/s, %d failed%s%s" % (
                     len(took), " of " + service if service else "",
                     " --batch %d" % batch if batch else "", done,
                     " ".join("%.2f" % x for x in took), r["made"],
                     r["rate"], failed, " (" + detail + ")" if detail else "",
                     "; %s crashed" % crashes if crashes != "" else ""),
                 made=r["made"], failed=failed, reloads=done,
                 max_us=max(took) * 1e6 if took else 0,
                 crashes=crashes, ops=len(took), base_rate=r["rate"],
                 cpu_s=span)

    def skipped(self, sc, figure, server, workers, why):
        self.row(sc, figure, server, workers, "", "not run", why)


def many_workers(bench):
    """Scenario n."""
    with Limits():
        sc = Scenario(bench)
        probe_dir = tempfile.mkdtemp(prefix="nc-bench-probe.")
        try:
            probe = sc.probe_path(probe_dir)
            for n in COUNTS:
                for kind in ("echo", "program", "node", "pm2"):
                    if kind in PEERS:
                        one_count(sc, bench, kind, n, probe)
            if "echo" in PEERS or "node" in PEERS:
                rr(sc, bench, probe)
        finally:
            shutil.rmtree(probe_dir, ignore_errors=True)


def one_count(sc, b, kind, n, probe):
    """n: one server with n workers, from its start to its stop."""
    name, make = {
        "echo": ("netclusterd echo", lambda: nc_echo(b.build, n)),
        "program": ("netclusterd C program", lambda: nc_program(b.build,
                                                                  n)),
        "node": ("node cluster", lambda: NodeCluster(b.build, n)),
        "pm2": ("pm2 cluster", lambda: Pm2(b.build, n, probe))}[kind]
    log("  n: %s, %d workers" % (name, n))
    s = None
    stage = "startup"
    try:
        if kind in ("node", "pm2"):
            sc.fits(kind, n)
        s = make()
        took = s.start()
        sc.row("n", "startup", s.name, n, took, "s",
               "pm2 start returned after %.2f s" % s.cli_s
               if kind == "pm2" else "")
        stage = "pss"
        sc.memory("n", s, n)
        stage = "idle"
        sc.idle("n", s, n)
        if kind in ("echo", "program"):
            stage = "count"
            sc.count_rounds("n", s, n)
            stage = "reload"
            sc.reloads("n", s, n, RELOADS[1 if b.args.quick else 0])
            stage = "reload-batch"
            sc.reloads("n", s, n, 1, batch=max(1, n // 4))
        elif kind == "pm2":
            stage = "reload"
            sc.reloads("n", s, n, PM2_RELOADS)
        else:
            sc.skipped("n", "reload", s.name, n,
                       "none: Node's cluster has no reload of its own")
    except Skip as e:
        log("  n: %s with %d workers not run: %s" % (name, n, e))
        sc.skipped("n", stage, name, n, "not run: %s" % e)
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError,
            ValueError) as e:
        log("  n: %s with %d workers failed in %s: %s" % (name, n, stage, e))
        sc.skipped("n", stage, name, n, "failed (%s): %s" % (stage, e))
    finally:
        if s is not None:
            s.stop()


def rr(sc, b, probe):
    """n, round-robin with RR_WORKERS workers: netclusterd against Node's
    rr; (c)'s load, rounds back to back; per round the connections/s,
    the master's CPU per connection and each worker's share."""
    servers = []
    rounds = 1 if b.args.quick else RR_ROUNDS
    seconds = 1.0 if b.args.quick else RR_SECONDS
    try:
        if "echo" in PEERS:
            s = nc_echo(b.build, RR_WORKERS, "round-robin")
            servers.append(s)
            s.start()
        if "node" in PEERS:
            s = NodeCluster(b.build, RR_WORKERS, "rr", probe)
            servers.append(s)
            s.start()
        for rnd in range(rounds):
            for s in servers:
                if isinstance(s, Nc):
                    a0 = s.accepted()
                else:
                    pids = s.worker_pids()
                    a0 = s.counts(pids)
                master = s.master()
                c0 = R.run_ns(master)
                cmd = b.ncload(s, "conn", 64, 4, ["-b"], seconds=seconds)
                p = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=seconds + 60)
                cpu = (R.run_ns(master) - c0) / 1e9
                r = json.loads(p.stdout)
                a1 = s.accepted() if isinstance(s, Nc) else s.counts(pids)
                got = [a1[k] - a0.get(k, 0) for k in a1]
                spread = max(got) / max(1, min(got))
                failed = sum(r[k] for k in R.FAILED)
                sc.row("n", "rr", s.name, RR_WORKERS, r["rate"], "conn/s",
                       "balance %.2f max/min (%d..%d a worker, %d workers); "
                       "master %.2f us/conn; %d failed" % (
                           spread, min(got), max(got), len(got),
                           cpu * 1e6 / max(1, r["made"]), failed),
                       rnd=rnd, ops=r["made"], cpu_s=cpu,
                       cpu_us_per_op=cpu * 1e6 / max(1, r["made"]),
                       kept=spread, made=r["made"], failed=failed)
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError,
            ValueError) as e:
        log("  n: round-robin failed: %s" % e)
        sc.skipped("n", "rr", "round-robin", RR_WORKERS, "failed: %s" % e)
    finally:
        for s in servers:
            s.stop()


def many_pools(bench):
    """Scenario p."""
    with Limits():
        sc = Scenario(bench)
        probe_dir = tempfile.mkdtemp(prefix="nc-bench-probe.")
        try:
            probe = sc.probe_path(probe_dir)
            pools_one(sc, bench, "netclusterd", lambda: nc_pools(
                bench.build, POOLS, POOL_WORKERS))
            if "pm2" in PEERS:
                pools_one(sc, bench, "pm2", lambda: Pm2(
                    bench.build, POOL_WORKERS, probe, POOLS))
        finally:
            shutil.rmtree(probe_dir, ignore_errors=True)


def pools_one(sc, b, kind, make):
    """p: one server, POOLS services (apps) of POOL_WORKERS."""
    name = "%s %dx%d" % (kind, POOLS, POOL_WORKERS)
    total = POOLS * POOL_WORKERS
    one = "echo%d" % (POOLS // 2)
    log("  p: %s" % name)
    s = None
    stage = "startup"
    try:
        s = make()
        took = s.start()
        sc.row("p", "startup", s.name, total, took, "s",
               "pm2 start returned after %.2f s" % s.cli_s
               if kind == "pm2" else "")
        stage = "idle"
        sc.idle("p", s, total)
        stage = "reload"
        sc.reloads("p", s, total, RELOADS[1 if b.args.quick else 0],
                   service=one, port=s.ports[one])
    except Skip as e:
        sc.skipped("p", stage, name, total, "not run: %s" % e)
    except (RuntimeError, OSError, subprocess.SubprocessError, KeyError,
            ValueError) as e:
        log("  p: %s failed in %s: %s" % (name, stage, e))
        sc.skipped("p", stage, name, total, "failed (%s): %s" % (stage, e))
    finally:
        if s is not None:
            s.stop()


# The tables.

SERVERS_N = ("netclusterd echo", "netclusterd C program", "node cluster",
             "pm2 cluster")


STAGES = ("startup", "pss", "idle", "count", "reload", "reload-batch",
          "rr")


def cell(rows, sc, figure, server, workers):
    """The text of one cell of n's or p's table."""
    mine = [r for r in rows if (r["scenario"], r["load"], r["server"],
                                r["workers"]) == (sc, figure, server,
                                                  workers)]
    if not mine and figure in ("count", "reload-batch") and \
            not server.startswith("netclusterd"):
        return ""
    if not mine:
        # A server that failed or was not run before this figure: why.
        st = [r for r in rows if (r["scenario"], r["server"], r["workers"])
              == (sc, server, workers) and r["unit"] == "not run" and
              STAGES.index(r["load"]) < STAGES.index(figure)]
        return st[0]["extra"] if st else ""
    r = mine[0]
    if r["unit"] == "not run":
        return r["extra"]
    if figure == "startup":
        return "%.2f s" % r["rate"]
    if figure == "pss":
        return "%.2f MiB (master %.1f)" % (r["rate"], r["p50_us"] / 1024)
    if figure == "idle":
        return "%.3f%%" % r["rate"]
    if figure == "count":
        return "%.1f ms (max %.1f)" % (r["rate"], r["max_us"] / 1000)
    if figure.startswith("reload"):
        return "%.2f s (max %.2f)%s, %d failed of %d%s" % (
            r["rate"], r["max_us"] / 1e6,
            ", %d of %d refused" % (r["ops"] - r["reloads"], r["ops"])
            if r["reloads"] != r["ops"] else "", r["failed"], r["made"],
            ", %d crashed" % r["crashes"] if r["crashes"] not in ("", 0)
            else "")
    return str(r["rate"])


def tables(raw):
    """The tables of n and p, and their targets (markdown)."""
    out = []
    n = [r for r in raw if r["scenario"] == "n"]
    if n:
        counts = sorted({r["workers"] for r in n if r["load"] != "rr"})
        servers = [s for s in SERVERS_N if any(r["server"] == s for r in n)]
        window = max([r["ops"] for r in n if r["load"] == "idle"] or [0])
        out.append("Many workers (n): one service, each server started "
                   "alone; idle: the master's (Node's primary's, PM2's "
                   "daemon's) CPU over %.0f s, a scrape of /metrics every "
                   "%.0f s (netclusterd); PM2 %s" % (
                       window, SCRAPE_EVERY, pm2_version()))
        out.append("")
        out.append("| figure | workers | " + " | ".join(servers) + " |")
        out.append("| --- | --- | " + " | ".join("---" for _ in servers)
                   + " |")
        for figure, label in (("startup", "startup, to every worker ready"),
                              ("reload", "reload under load: median (max), "
                               "connections failed"),
                              ("reload-batch", "reload --batch N/4 under "
                               "load (netclusterd)"),
                              ("idle", "master idle CPU, % of a core"),
                              ("pss", "PSS per worker"),
                              ("count", "`netclusterctl connections`, median "
                               "(max) of %d" % COUNT_CALLS)):
            for w in counts:
                cells = [cell(n, "n", figure, s, w) for s in servers]
                if not any(cells):
                    continue
                out.append("| %s | %d | %s |" % (label, w, " | ".join(
                    c or "-" for c in cells)))
        rrs = [r for r in n if r["load"] == "rr" and r["unit"] != "not run"]
        if rrs:
            out += ["", "Round-robin, %d workers, (c)'s load (%d rounds):" %
                    (RR_WORKERS, len({r["round"] for r in rrs})), "",
                    "| server | conn/s | master CPU us/conn | balance max/min "
                    "| per round |", "| --- | --- | --- | --- | --- |"]
            for name in sorted({r["server"] for r in rrs}):
                m = [r for r in rrs if r["server"] == name]
                out.append("| %s | %.0f | %.2f | %.2f | %s |" % (
                    name, median([r["rate"] for r in m]),
                    median([r["cpu_us_per_op"] for r in m]),
                    median([r["kept"] for r in m]),
                    " / ".join(r["extra"] for r in m)))
    p = [r for r in raw if r["scenario"] == "p"]
    if p:
        servers = []
        for r in p:
            if r["server"] not in servers:
                servers.append(r["server"])
        w = p[0]["workers"]
        out += ["", "Many pools (p): %d services of %d workers" % (
            POOLS, POOL_WORKERS), "",
            "| figure | " + " | ".join(servers) + " |",
            "| --- | " + " | ".join("---" for _ in servers) + " |"]
        for figure, label in (("startup", "startup, to every worker ready"),
                              ("reload", "reload of one service under load "
                               "on its port"),
                              ("idle", "master idle CPU, % of a core")):
            out.append("| %s | %s |" % (label, " | ".join(
                cell(p, "p", figure, s, w) or "-" for s in servers)))
    t = targets(raw)
    if t:
        out += ["", "Targets of n and p:", "", t]
    return "\n".join(out)


def targets(raw):
    out = ["| target | case | value | met |", "| --- | --- | --- | --- |"]
    top = max([r["workers"] for r in raw if r["scenario"] == "n"] or [0])
    for r in raw:
        if r["scenario"] != "n" or not r["server"].startswith(
                "netclusterd") or r["workers"] != top or \
                r["unit"] == "not run":
            continue
        case = "%s, %d workers" % (r["server"], top)
        if r["load"] == "startup":
            out.append("| startup at most 1 s | %s | %.2f s | %s |" % (
                case, r["rate"], "yes" if r["rate"] <= 1 else "no"))
        elif r["load"] in ("reload", "reload-batch"):
            ok = r["max_us"] <= 2e6 and r["failed"] == 0 and \
                r["reloads"] == r["ops"]
            out.append("| reload under load at most 2 s, none failed | %s%s "
                       "| %.2f s (max %.2f), %d of %d done, %d connections "
                       "failed | %s |" % (
                           case, ", --batch %d" % (top // 4)
                           if r["load"] == "reload-batch" else "",
                           r["rate"], r["max_us"] / 1e6, r["reloads"],
                           r["ops"], r["failed"], "yes" if ok else "no"))
        elif r["load"] == "idle":
            out.append("| master idle CPU at most 0.5%% of a core | %s | "
                       "%.3f%% | %s |" % (case, r["rate"], "yes"
                                          if r["rate"] <= 0.5 else "no"))
    return "\n".join(out) if len(out) > 2 else ""
