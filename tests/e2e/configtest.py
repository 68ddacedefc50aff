"""netclusterd -t checks what startup checks, short of binding. For each
broken config, `netclusterd -t -c F` and `netclusterd -c F` both refuse,
with the same exit status and the same error line, and the start leaves
no process and no socket behind. Every config -t passes here, and every
conf/*.json (its fixed ports moved to 0, its control socket to a
temporary directory), really starts: its workers come online and it stops
cleanly.

What the workers' user must reach is checked as that user: as root, with
"user": "nobody", a program's command or cwd, or the netcluster-worker
NETCLUSTER_WORKER names, under a directory of mode 0700 is refused by -t
and by startup alike, naming the file and the user. Where a test's
workers run as nobody, what they run is a copy nobody can reach
(harness.Reachable), wherever the checkout is."""

import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, Failure, NETCLUSTERCTL, NETCLUSTERD, SCALE,
                     WORKER, Reachable, check, echo_clients, free_port, run)

UPPER = os.path.join(BUILD, "examples", "modules", ".libs", "uppercase.so")
BAD_MODULE = os.path.join(BUILD, "tests", "modules", ".libs",
                          "badversion.so")
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "conf")
ACTIVATE = shutil.which("systemd-socket-activate")
# What the daemon puts before a line once it logs (time, name, level).
LOG_PREFIX = re.compile(r"^(<\d>|\S+ \S+ netclusterd\[\d+\]: \w+: )")


class Case:
    """A config in a temporary directory, and how to run netclusterd on
    it: fds to pass, systemd socket names to activate it with, variables
    to add to its environment. exact: -t and startup must exit 1 with
    one line, the file's position and exactly what refused_alike wants."""

    def __init__(self, name, services, extra=None, fds=(), sd_names=(),
                 workers=1, conf=None, env=None, exact=False):
        self.name = name
        self.env = dict(env or {})
        self.exact = exact
        self.dir = tempfile.mkdtemp(prefix="nc-conftest.")
        self.control = os.path.join(self.dir, "control.sock")
        if conf is None:
            conf = {"workers": workers, "control_socket": self.control,
                    "log_level": "info", "shutdown_timeout_ms": 3000,
                    "services": services}
        conf.update(extra or {})
        self.control = conf.get("control_socket", self.control)
        self.workers = conf.get("workers", 1)
        self.path = os.path.join(self.dir, "netcluster.json")
        with open(self.path, "w") as f:
            json.dump(conf, f, indent=2)
        self.fds = list(fds)
        self.sd_names = list(sd_names)
        self.sd_ports = [free_port() for _ in self.sd_names]
        self.before = sorted(os.listdir(self.dir))

    def argv(self, test):
        cmd = [NETCLUSTERD] + (["-t"] if test else []) + ["-c", self.path]
        if not self.sd_names:
            return cmd
        check(ACTIVATE is not None, "systemd-socket-activate is missing")
        pre = [ACTIVATE]
        for p in self.sd_ports:
            pre += ["-l", "127.0.0.1:%d" % p]
        return pre + ["--fdname=" + ":".join(self.sd_names)] + cmd

    def start(self, test):
        """Popen in a session of its own, so that whatever it leaves
        behind can be found; under systemd-socket-activate, once it
        listens, a first client makes it start netclusterd."""
        env = dict(os.environ)
        env.update(self.env)
        p = subprocess.Popen(self.argv(test), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, pass_fds=self.fds,
                             start_new_session=True, env=env)
        os.set_blocking(p.stderr.fileno(), False)
        p.lines = []
        p.buf = b""
        if self.sd_names:
            wait_line(p, "Listening on",
                      len(self.sd_ports))
            # Queued, then closed: nothing stays open for the stop to
            # wait for. A netclusterd that exits at once (-t) may close
            # the listening socket under the connect: it was started.
            for port in self.sd_ports:
                try:
                    socket.create_connection(("127.0.0.1", port),
                                             timeout=10 * SCALE).close()
                except ConnectionResetError:
                    pass
        return p

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def read_lines(p, timeout):
    r, _, _ = select.select([p.stderr], [], [], timeout)
    if not r:
        return False
    chunk = p.stderr.read() or b""
    p.buf += chunk
    while b"\n" in p.buf:
        line, p.buf = p.buf.split(b"\n", 1)
        p.lines.append(line.decode("utf-8", "replace"))
    return bool(chunk)


def wait_line(p, text, count=1, timeout=10):
    deadline = time.monotonic() + timeout * SCALE
    while sum(text in l for l in p.lines) < count:
        left = deadline - time.monotonic()
        if left <= 0 or (not read_lines(p, min(left, 0.5)) and
                         p.poll() is not None):
            raise Failure("no %r x%d (exit %s):\n%s" % (
                text, count, p.poll(), "\n".join(p.lines[-20:])))


def finish(p, timeout=10):
    """Waits (bounded) for p to exit; returns its status and the lines
    it wrote to stderr."""
    try:
        p.wait(timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        kill_session(p.pid)
        p.wait()
        raise Failure("still running after %d s:\n%s" % (
            timeout, "\n".join(p.lines[-20:])))
    while read_lines(p, 0):
        pass
    if p.buf:
        p.lines.append(p.buf.decode("utf-8", "replace"))
        p.buf = b""
    out = p.stdout.read().decode()
    p.stdout.close()
    p.stderr.close()
    return p.returncode, out, p.lines


def session_pids(sid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(d))
    return pids


def kill_session(sid):
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def meaningful(lines):
    """The error lines, without the log prefix startup may add, nor the
    lines systemd-socket-activate writes about itself."""
    out = []
    for l in lines:
        if l.startswith(("Listening on", "Communication attempt",
                         "Execing ")):
            continue
        if "Sanitizer" in l or "runtime error:" in l:
            raise Failure("sanitizer report: %s" % l)
        out.append(LOG_PREFIX.sub("", l))
    return out


def refused_alike(case, want):
    """-t and startup refuse case with the same status and lines, the
    lines name want, and startup leaves nothing behind."""
    start = time.monotonic()
    t_rc, t_out, t_lines = finish(case.start(test=True))
    took = time.monotonic() - start
    s = case.start(test=False)
    s_rc, _, s_lines = finish(s)
    left = session_pids(s.pid)
    kill_session(s.pid)
    t_err, s_err = meaningful(t_lines), meaningful(s_lines)
    check(t_rc != 0 and t_rc == s_rc, "%s: -t exit %d, start exit %d" % (
        case.name, t_rc, s_rc))
    check(t_out == "", "%s: -t printed %r" % (case.name, t_out))
    check(len(t_err) > 0 and any(want in l for l in t_err),
          "%s: want %r in -t's %r" % (case.name, want, t_err))
    check(t_err == s_err, "%s: -t said %r, startup said %r" % (
        case.name, t_err, s_err))
    check(all(l.startswith(case.path + ":") for l in t_err),
          "%s: not FILE:LINE:COL: %r" % (case.name, t_err))
    if case.exact:
        check(t_rc == 1, "%s: -t exit %d, not 1" % (case.name, t_rc))
        check(len(t_err) == 1 and re.fullmatch(
            re.escape(case.path) + r":\d+:\d+: " + re.escape(want),
            t_err[0]), "%s: want FILE:LINE:COL: %r alone, -t said %r" % (
                case.name, want, t_err))
    check(not left, "%s: processes left: %s" % (case.name, left))
    after = sorted(os.listdir(case.dir))
    check(after == case.before, "%s: files left: %s" % (
        case.name, sorted(set(after) - set(case.before))))
    check(not os.path.exists(case.control), "%s: control socket left" %
          case.name)
    check(took < 5 * SCALE, "%s: -t took %.1f s" % (case.name, took))
    return t_err[0]


def starts(case, client=None):
    """-t passes case, making nothing, and netclusterd really runs it:
    every worker online (and client's check, if any), then a clean
    stop."""
    rc, out, lines = finish(case.start(test=True))
    check(rc == 0 and out == case.path + ": configuration OK\n",
          "%s: -t exit %d %r %r" % (case.name, rc, out, meaningful(lines)))
    after = sorted(os.listdir(case.dir))
    check(after == case.before, "%s: -t left %s" % (
        case.name, sorted(set(after) - set(case.before))))
    p = case.start(test=False)
    try:
        wait_line(p, " online", case.workers)
        if client is None and case.sd_ports:
            client = echo(case.sd_ports[0])
        if client is not None:
            client(p)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        rc, _, lines = finish(p)
        left = session_pids(p.pid)
        kill_session(p.pid)
    meaningful(lines)
    check(rc == 0, "%s: exit %d after SIGTERM:\n%s" % (
        case.name, rc, "\n".join(lines[-20:])))
    check(not left, "%s: processes left: %s" % (case.name, left))
    check(not os.path.exists(case.control), "%s: control socket left" %
          case.name)


def echo(port):
    def client(p):
        ok, bad = echo_clients(("127.0.0.1", port), 4)
        check(ok == 4, "echo on port %d: %s" % (port, bad[:2]))
    return client


def control_answers(case):
    """A client: case's control socket is a socket, and netclusterctl
    status gets an answer on it."""
    def client(p):
        check(stat.S_ISSOCK(os.stat(case.control).st_mode),
              "%s: %s is not a socket" % (case.name, case.control))
        r = subprocess.run([NETCLUSTERCTL, "-s", case.control, "status"],
                           capture_output=True, text=True,
                           timeout=10 * SCALE)
        check(r.returncode == 0, "%s: netclusterctl status: %d %r" % (
            case.name, r.returncode, r.stderr))
    return client


def svc(listen, **kw):
    s = {"name": "echo", "listen": listen}
    s.update(kw)
    return [s]


def proxy(upstream):
    return [{"name": "p", "handler": "proxy", "upstream": upstream,
             "listen": ["127.0.0.1:0"]}]


def module(path):
    return [{"name": "m", "handler": "module", "module": path,
             "listen": ["127.0.0.1:0"]}]


def test_refused_alike():
    """The broken configs: (what -t says) for each."""
    f = tempfile.TemporaryFile()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a, b = socket.socketpair()
    closed_fd = 57
    while True:
        try:
            os.fstat(closed_fd)
            closed_fd += 1
        except OSError:
            break
    cases = [
        (Case("bad IPv4", svc(["300.1.1.1:80"])),
         'got "300.1.1.1:80"'),
        (Case("unresolvable listen host", svc(["nosuch.invalid:80"])),
         "cannot resolve nosuch.invalid"),
        (Case("fd:N closed", svc(["fd:%d" % closed_fd])),
         "fd %d is not open" % closed_fd),
        (Case("fd:N a regular file", svc(["fd:%d" % f.fileno()]),
              fds=[f.fileno()]),
         "fd %d is not a socket" % f.fileno()),
        (Case("fd:N a datagram socket", svc(["fd:%d" % udp.fileno()]),
              fds=[udp.fileno()]),
         "fd %d is not a stream socket" % udp.fileno()),
        (Case("fd:N a connected socket", svc(["fd:%d" % a.fileno()]),
              fds=[a.fileno()]),
         "fd %d is a connected socket" % a.fileno()),
        (Case("systemd:NAME without systemd", svc(["systemd:web"])),
         "no socket named web was passed by systemd"),
        (Case("missing module", module("/nonexistent/handler.so")),
         "cannot load /nonexistent/handler.so"),
        (Case("module for another API", module(BAD_MODULE)),
         "is built for handler API version 42"),
        (Case("no such user", svc(["127.0.0.1:0"]),
              extra={"user": "nc-no-such-user"}),
         'no user named "nc-no-such-user"'),
        (Case("no such group", svc(["127.0.0.1:0"]),
              extra={"group": "nc-no-such-group"}),
         'no group named "nc-no-such-group"'),
        (Case("proxy upstream that does not parse", proxy(["nohost"])),
         'expected HOST:PORT'),
        (Case("proxy upstream bad IPv4", proxy(["300.1.1.1:9000"])),
         'got "300.1.1.1:9000"'),
        (Case("proxy upstream that does not resolve",
              proxy(["up.invalid:9000"])),
         "cannot resolve up.invalid"),
    ]
    # A control socket whose directory would be under a regular file,
    # or two levels down from anything there.
    c = Case("control socket under a file", svc(["127.0.0.1:0"]))
    with open(os.path.join(c.dir, "file"), "w") as x:
        x.write("x")
    c.before = sorted(os.listdir(c.dir))
    c.control = os.path.join(c.dir, "file", "sub", "c.sock")
    rewrite(c, {"control_socket": c.control})
    cases.append((c, "cannot be made: Not a directory"))
    c = Case("control socket two levels down", svc(["127.0.0.1:0"]))
    c.control = os.path.join(c.dir, "a", "b", "c.sock")
    rewrite(c, {"control_socket": c.control})
    cases.append((c, "cannot be made: No such file or directory"))
    # A directory where nothing can be made, though root may write there
    # as access(2) sees it: -t asks mkdir(2) itself.
    c = Case("control socket in /proc", svc(["127.0.0.1:0"]), exact=True)
    c.control = "/proc/no-such-dir/ctl.sock"
    rewrite(c, {"control_socket": c.control})
    cases.append((c, "control_socket: directory /proc/no-such-dir cannot "
                  "be made: No such file or directory"))
    if ACTIVATE is not None:
        cases.append((Case("systemd:NAME not the name passed",
                           svc(["systemd:web"]), sd_names=["other"]),
                      "no socket named web was passed by systemd"))
    try:
        for case, want in cases:
            got = refused_alike(case, want)
            print("  %s: %s" % (case.name, got.split(": ", 1)[1]))
    finally:
        for case, _ in cases:
            case.cleanup()
        f.close()
        udp.close()
        a.close()
        b.close()


def test_refused_unreachable():
    """As root, with "user": "nobody": a program's command, a program's
    cwd, and the netcluster-worker NETCLUSTER_WORKER names, each under
    a directory of mode 0700 (as a checkout in root's home is), are
    refused by -t and by startup alike, exit 1, with one line: the key,
    the file, "not accessible to user nobody (uid N): Permission
    denied". With the directory opened to all (0755), -t passes each.
    Only root may run workers as another user, so only root checks it."""
    if os.geteuid() != 0:
        print("  not root: workers cannot run as nobody; nothing to check")
        return
    who = "user nobody (uid %d)" % pwd.getpwnam("nobody").pw_uid
    secret = tempfile.mkdtemp(prefix="nc-conftest-0700.")
    cases = []
    try:
        os.chmod(secret, 0o700)
        prog = os.path.join(secret, "prog")
        with open(prog, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(prog, 0o755)
        sub = os.path.join(secret, "sub")
        os.mkdir(sub, 0o755)
        worker = os.path.join(secret, "netcluster-worker")
        shutil.copyfile(WORKER, worker)
        os.chmod(worker, 0o755)

        def program(**kw):
            s = {"name": "p", "handler": "program", "mode": "shared",
                 "listen": ["127.0.0.1:0"], "sockets": "inherit",
                 "command": ["/bin/true"]}
            s.update(kw)
            return [s]

        nobody = {"user": "nobody"}
        cases = [
            (Case("program under a 0700 directory", program(
                command=[prog]), extra=nobody, exact=True),
             "services[0].command[0]: %s: not accessible to %s: "
             "Permission denied" % (prog, who)),
            (Case("program cwd under a 0700 directory", program(cwd=sub),
                  extra=nobody, exact=True),
             "services[0].cwd: %s: not accessible to %s: Permission "
             "denied" % (sub, who)),
            (Case("netcluster-worker under a 0700 directory",
                  svc(["127.0.0.1:0"]), extra=nobody, exact=True,
                  env={"NETCLUSTER_WORKER": worker}),
             "user: %s: not accessible to %s: Permission denied" % (
                 worker, who)),
        ]
        for case, want in cases:
            got = refused_alike(case, want)
            print("  %s: %s" % (case.name, got.split(": ", 1)[1]))
        os.chmod(secret, 0o755)
        for case, _ in cases:
            rc, out, lines = finish(case.start(test=True))
            check(rc == 0 and out == case.path + ": configuration OK\n",
                  "%s, the directory 0755: -t exit %d %r %r" % (
                      case.name, rc, out, meaningful(lines)))
        print("  the same, the directory 0755: -t OK")
    finally:
        for case, _ in cases:
            case.cleanup()
        shutil.rmtree(secret, ignore_errors=True)


def rewrite(case, extra):
    with open(case.path) as f:
        conf = json.load(f)
    conf.update(extra)
    with open(case.path, "w") as f:
        json.dump(conf, f, indent=2)


def test_passed_configs_start():
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    up = socket.socket()
    up.bind(("127.0.0.1", 0))
    up.listen(16)
    runs = [
        (Case("loopback port 0", svc(["127.0.0.1:0"]), workers=2), None),
        (Case("localhost", svc(["localhost:0"])), None),
        (Case("fd:N listening", svc(["fd:%d" % listening.fileno()]),
              fds=[listening.fileno()], workers=2),
         echo(listening.getsockname()[1])),
        (Case("fd:N bound, not listening", svc(["fd:%d" % bound.fileno()],
              mode="round-robin"), fds=[bound.fileno()]),
         echo(bound.getsockname()[1])),
        (Case("module", module(UPPER)), None),
        (Case("proxy to a name", proxy(["localhost:%d" %
                                        up.getsockname()[1]])), None),
    ]
    # A directory that is not there yet: -t makes nothing (starts()
    # checks), startup makes it, and the socket answers there.
    c = Case("control socket directory to make", svc(["127.0.0.1:0"]))
    c.control = os.path.join(c.dir, "run", "c.sock")
    rewrite(c, {"control_socket": c.control})
    runs.append((c, control_answers(c)))
    # The workers run a copy of netcluster-worker nobody can reach.
    reach = Reachable()
    if os.geteuid() == 0:
        runs.append((Case("user and group", svc(["127.0.0.1:0"]),
                          extra={"user": "nobody", "group": "nogroup"},
                          env=reach.worker_env()), None))
    if ACTIVATE is not None:
        c = Case("systemd:web", svc(["systemd:web"]), sd_names=["web"])
        runs.append((c, None))
    try:
        for case, client in runs:
            starts(case, client)
            print("  %s: -t OK, started and stopped" % case.name)
    finally:
        for case, _ in runs:
            case.cleanup()
        reach.remove()
        listening.close()
        bound.close()
        up.close()


def test_conf_examples_start():
    """conf/*.json: fixed ports moved to 0, the control socket into a
    temporary directory, systemd: sockets passed by
    systemd-socket-activate."""
    # grafana-*.json are dashboards (tests/metrics-docs.sh checks them).
    names = sorted(n for n in os.listdir(CONF_DIR) if n.endswith(".json")
                   and not n.startswith("grafana-"))
    check(names, "no conf/*.json in %s" % CONF_DIR)
    for n in names:
        with open(os.path.join(CONF_DIR, n)) as f:
            conf = json.load(f)
        sd = []
        for s in conf["services"]:
            listen = []
            for a in s["listen"]:
                if a.startswith("systemd:"):
                    sd.append(a[len("systemd:"):])
                elif not a.startswith(("unix:", "fd:")):
                    host, _, port = a.rpartition(":")
                    a = host + ":0" if host else "0"
                listen.append(a)
            s["listen"] = listen
        if sd and ACTIVATE is None:
            print("  %s: skipped, no systemd-socket-activate" % n)
            continue
        case = Case(n, None, conf=conf, sd_names=sd)
        try:
            case.control = os.path.join(case.dir, "control.sock")
            rewrite(case, {"control_socket": case.control})
            starts(case)
            print("  conf/%s: -t OK, %d workers online, stopped" % (
                n, case.workers))
        finally:
            case.cleanup()


run([test_refused_alike, test_refused_unreachable, test_passed_configs_start,
     test_conf_examples_start])
