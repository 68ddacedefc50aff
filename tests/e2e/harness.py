"""Helpers for the end-to-end tests: a netclusterd of our own on loopback
with a config in a temporary directory, clients, bounded waits on the
daemon's own output. Every wait has a deadline; nothing sleeps to wait."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.path.abspath(os.environ.get("top_builddir", "."))
SCALE = max(1, int(os.environ.get("NC_TEST_TIMEOUT_SCALE", "1") or 1))
NETCLUSTERD = os.path.join(BUILD, "netclusterd")
NETCLUSTERCTL = os.path.join(BUILD, "netclusterctl")
WORKER = os.path.join(BUILD, "netcluster-worker")


def echo_service(mode="shared", listen=None, **kw):
    """The spec's echo service on loopback port 0, with any other keys."""
    s = {"name": "echo", "listen": listen or ["127.0.0.1:0"], "mode": mode}
    s.update(kw)
    return s


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def searchable_by_all(path):
    """Whether any user may reach path: every directory from / down to
    it lets others search it."""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


class Reachable:
    """A fresh directory, mode 0755, in the temporary directory (/tmp if
    that one is out of reach), for copies of what a test's unprivileged
    user (workers run as "nobody", netclusterctl run as another uid) must
    execute or read, or take as its cwd: the checkout may be where that
    user cannot go, as under root's home directory (mode 0700). Removed
    by remove(), or at the end of a with block."""

    def __init__(self, prefix="nc-e2e-reach."):
        parent = tempfile.gettempdir()
        if not searchable_by_all(parent):
            parent = "/tmp"
        self.dir = tempfile.mkdtemp(prefix=prefix, dir=parent)
        os.chmod(self.dir, 0o755)

    def copy(self, src, name=None):
        """A copy of the file src, readable by all, and executable by all
        if src is executable; returns its path."""
        dst = os.path.join(self.dir, name or os.path.basename(src))
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755 if os.stat(src).st_mode & 0o111 else 0o644)
        return dst

    def worker_env(self):
        """The environment that has netclusterd run a copy of
        netcluster-worker from here (NETCLUSTER_WORKER)."""
        return {"NETCLUSTER_WORKER": self.copy(WORKER)}

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class Daemon:
    """netclusterd on a temporary config; stop() always cleans up."""

    def __init__(self, services, workers=2, extra=None, env=None,
                 nofile=None, binary=None, pass_fds=()):
        self.dir = tempfile.mkdtemp(prefix="nc-e2e.")
        self.control = os.path.join(self.dir, "control.sock")
        conf = {"workers": workers, "control_socket": self.control,
                "log_level": "info", "shutdown_timeout_ms": 3000,
                "services": services}
        conf.update(extra or {})
        self.config = os.path.join(self.dir, "netcluster.json")
        with open(self.config, "w") as f:
            json.dump(conf, f)
        # Every service has a pool of its own: its "workers", or these.
        self.workers = sum(s.get("workers", workers) for s in services)
        self.lines = []
        self.buf = b""
        e = dict(os.environ)
        e.update(env or {})
        def limit():
            if nofile is not None:      # the master, and so its workers
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.proc = subprocess.Popen(
            [binary or NETCLUSTERD, "-c", self.config],
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, env=e, preexec_fn=limit,
            pass_fds=pass_fds)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def read_lines(self, timeout):
        """Reads what the daemon logged within timeout; returns new lines."""
        r, _, _ = select.select([self.proc.stderr], [], [], timeout)
        new = []
        if r:
            chunk = self.proc.stderr.read() or b""
            self.buf += chunk
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                new.append(line.decode("utf-8", "replace"))
            self.lines.extend(new)
            if not chunk and self.proc.poll() is not None:
                raise Failure("netclusterd exited (%s):\n%s" % (
                    self.proc.returncode, "\n".join(self.lines[-20:])))
        return new

    def read_to_end(self):
        """Reads the rest of the log of a daemon that exited (until its
        EOF, or a 0.2 s with nothing new)."""
        try:
            while self.read_lines(0.2):
                pass
        except Failure:
            pass            # its end: EOF

    def wait_log(self, text, count=1, timeout=10):
        """Waits until text appeared count times in the log."""
        deadline = time.monotonic() + timeout * SCALE
        while sum(text in l for l in self.lines) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("timed out waiting for %r x%d; log:\n%s" % (
                    text, count, "\n".join(self.lines[-30:])))
            self.read_lines(min(left, 0.5))

    def wait_online(self, n=None, timeout=10):
        self.wait_log(" online", n or self.workers, timeout)

    def ctl(self, *args, check_ok=True, timeout=10):
        p = subprocess.run([NETCLUSTERCTL, "-s", self.control, "--json"] +
                           list(args), capture_output=True,
                           timeout=timeout * SCALE)
        if check_ok and p.returncode != 0:
            raise Failure("netclusterctl %s: %s" % (
                " ".join(args), p.stderr.decode()))
        return json.loads(p.stdout) if p.returncode == 0 else p

    def port(self, service=0, listener=0):
        st = self.ctl("status")
        return st["services"][service]["listeners"][listener]["port"]

    def worker_pids(self):
        return [w["pid"] for w in self.ctl("workers")["workers"]
                if w["state"] == "online"]

    def settled_fd_count(self):
        """The master's fds once it has freed every control client: a
        request of our own, whose close by the master comes after it
        handled what came before."""
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10 * SCALE)
        c.connect(self.control)
        c.sendall(b'{"command": "status"}\n')
        while not c.recv(65536).endswith(b"\n"):
            pass
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()
        return self.fd_count()

    def fd_count(self, pid=None):
        return len(os.listdir("/proc/%d/fd" % (pid or self.proc.pid)))

    def rss_kib(self, pid=None):
        for line in open("/proc/%d/status" % (pid or self.proc.pid)):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self):
        """SIGTERM; the master must exit 0 and nothing may have logged a
        sanitizer report (workers share the master's stderr)."""
        graceful = self.proc.poll() is None
        hung = False
        if graceful:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10 * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                hung = True
        self.read_to_end()
        self.proc.stderr.close()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)
        reports = [l for l in self.lines if "Sanitizer" in l or
                   "runtime error:" in l]
        if reports:
            raise Failure("sanitizer report:\n" + "\n".join(self.lines[-40:]))
        if hung:
            raise Failure("netclusterd still ran %d s after SIGTERM "
                          "(killed); log:\n%s" % (10 * SCALE,
                                                  "\n".join(self.lines[-30:])))
        if graceful and self.proc.returncode != 0:
            raise Failure("netclusterd exited %d after SIGTERM" %
                          self.proc.returncode)


def cpu_seconds(pid):
    """User plus system CPU time of pid so far, from /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# A build with --enable-sanitizers: several times slower, and its
# allocator keeps freed chunks by size class rather than giving them back.
ASAN = b"libasan" in subprocess.run(["ldd", NETCLUSTERD],
                                    capture_output=True).stdout


def no_quarantine():
    """The environment of a daemon whose RSS is measured: under ASan,
    freed memory waits in a quarantine (256 MB) RSS would count; without
    it, freed memory is reused as in a plain build."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (asan + ":" if asan else "") +
            "quarantine_size_mb=0"}


def free_port():
    """A loopback port nothing listens on (now)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def terminate(proc):
    """SIGTERM, then SIGKILL if it is not gone within 10 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10 * SCALE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def raise_nofile():
    """The test itself holds thousands of client sockets."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_to_eof(sock):
    """Everything sock receives until the peer's FIN."""
    data = b""
    while True:
        x = sock.recv(65536)
        if not x:
            return data
        data += x


def echo_clients(address, n, payload_size=16, timeout=10, family=None):
    """n concurrent clients: each must get hello and its bytes back.
    Returns (ok, failures)."""
    import selectors
    sel = selectors.DefaultSelector()
    conns = {}
    failures = []
    for i in range(n):
        if isinstance(address, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            s = socket.socket(family or socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(address)
        except BlockingIOError:
            pass
        except OSError as e:
            failures.append("connect: %s" % e)
            s.close()
            continue
        want = b"hello\r\n" + os.urandom(payload_size)
        conns[s] = {"want": want, "got": b"", "sent": False}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    deadline = time.monotonic() + timeout * SCALE
    ok = 0
    while conns and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            c = conns[s]
            try:
                if ev & selectors.EVENT_WRITE and not c["sent"]:
                    s.send(c["want"][7:])
                    c["sent"] = True
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                if ev & selectors.EVENT_READ:
                    d = s.recv(4096)
                    if not d:
                        raise OSError("closed after %r" % c["got"])
                    c["got"] += d
                    if len(c["got"]) >= len(c["want"]):
                        if c["got"] != c["want"]:
                            raise OSError("wrong echo %r" % c["got"][:40])
                        ok += 1
                        sel.unregister(s)
                        s.close()
                        del conns[s]
            except OSError as e:
                failures.append(str(e))
                sel.unregister(s)
                s.close()
                del conns[s]
    for s in list(conns):
        failures.append("unanswered")
        s.close()
    sel.close()
    return ok, failures


def echo_once(port, payload=None, timeout=5):
    """One echo connection to loopback port: it must get hello and its
    bytes back. What became of it: made, refused, reset (a listener
    closed under the SYN, or the end before the echo), unanswered or
    wrong."""
    payload = payload or os.urandom(16)
    try:
        c = socket.create_connection(("127.0.0.1", port),
                                     timeout=timeout * SCALE)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except OSError:
        return "unanswered"
    try:
        c.sendall(payload)
        want = b"hello\r\n" + payload
        got = b""
        while len(got) < len(want):
            d = c.recv(4096)
            if not d:
                return "reset"
            got += d
        return "made" if got == want else "wrong"
    except socket.timeout:
        return "unanswered"
    except OSError:
        return "reset"
    finally:
        c.close()


def load(port, stop, stats, lock):
    """Echo connections one after another until stop is set (echo_once()),
    counting in stats what became of each. port may be a function, asked
    before each connection (servers whose port changes)."""
    payload = os.urandom(16)
    while not stop.is_set():
        key = echo_once(port() if callable(port) else port, payload)
        with lock:
            stats[key] = stats.get(key, 0) + 1


def reloads_under_load(d, port, n, duration, threads, command="reload",
                       after=None, finish=None, stats=None, lock=None,
                       stop=None):
    """n `netclusterctl COMMAND`s spread over `duration` seconds of load()
    from `threads` clients on port (or what load() takes). A command
    refused because older generations still drain (at most two at once;
    on a busy machine they may take longer than the spacing) is tried
    again, as an operator would. after(i) runs after the i-th one;
    finish(), once the load is told to stop. stats, lock and stop are
    load()'s, made here unless given. Returns (done, stats, elapsed)."""
    import threading
    stats = {} if stats is None else stats
    lock = threading.Lock() if lock is None else lock
    stop = threading.Event() if stop is None else stop
    ts = [threading.Thread(target=load, args=(port, stop, stats, lock))
          for _ in range(threads)]
    start = time.monotonic()
    for t in ts:
        t.start()
    done = 0
    try:
        for i in range(n):
            target = start + (i + 0.5) * duration / n
            while time.monotonic() < target:
                d.read_lines(max(0, target - time.monotonic()))
            retry_until = time.monotonic() + 30 * SCALE
            while True:
                p = subprocess.run([NETCLUSTERCTL, "-s", d.control,
                                    command], capture_output=True,
                                   text=True, timeout=60 * SCALE)
                if (p.returncode == 0 or "still draining" not in p.stderr
                        or time.monotonic() > retry_until):
                    break
                d.read_lines(0.1)
            check(p.returncode == 0, "%s %d: %s" % (command, i, p.stderr))
            done += 1
            if after is not None:
                after(i)
        while time.monotonic() < start + duration:
            d.read_lines(max(0, start + duration - time.monotonic()))
    finally:
        stop.set()
        if finish is not None:
            finish()
        for t in ts:
            t.join(30 * SCALE)
    return done, stats, time.monotonic() - start


def run(tests):
    """Runs each test function, or those named on the command line (its
    arguments that are not options, such as resolver.py's --inner);
    prints figures; exits 0 or 1."""
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")]
    if wanted:
        names = {t.__name__: t for t in tests}
        unknown = [n for n in wanted if n not in names]
        if unknown:
            print("FAIL no test named %s in %s" % (", ".join(unknown),
                                                  sys.argv[0]))
            sys.exit(1)
        tests = [names[n] for n in wanted]
    failed = 0
    for t in tests:
        start = time.monotonic()
        try:
            t()
            print("ok   %s (%.1f s)" % (t.__name__, time.monotonic() - start))
        except Exception as e:  # every failure is reported, then the next
            failed += 1
            print("FAIL %s: %s: %s" % (t.__name__, type(e).__name__, e))
        sys.stdout.flush()
    sys.exit(1 if failed else 0)
