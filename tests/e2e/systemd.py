"""netclusterd under systemd's protocols, with the real thing where it
exists: a NOTIFY_SOCKET datagram socket the test reads (READY, STATUS,
WATCHDOG, STOPPING) and systemd-socket-activate passing a named socket.
READY=1 waits for every worker, a notify program's own READY=1 too."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, NETCLUSTERD, SCALE, check, echo_clients,
                     free_port, run, terminate)


class Notify:
    """A NOTIFY_SOCKET of our own: every datagram the daemon sends."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nc-notify.")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, line, timeout=10, count=1):
        deadline = time.monotonic() + timeout * SCALE
        while True:
            if self.lines().count(line) >= count:
                return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("no %r from the daemon; got %s" % (
                    line, self.messages))
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def lines(self):
        return [l for m in self.messages for l in m.split("\n")]

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir)


def svc(listen):
    return [{"name": "echo", "listen": listen, "mode": "shared"}]


def test_notify_ready_status_stopping():
    n = Notify()
    d = Daemon(svc(["127.0.0.1:0"]), workers=2,
               env={"NOTIFY_SOCKET": n.path})
    try:
        n.wait_for("READY=1")
        # READY comes only once every worker is online.
        d.wait_online(2)
        st = d.ctl("workers")["workers"]
        check(all(w["state"] == "online" for w in st), "not online: %s" % st)
        status = [l for l in n.lines() if l.startswith("STATUS=")]
        check(status and "2 workers online" in status[-1],
              "STATUS %s" % status)
        # Workers do not get NOTIFY_SOCKET: only the master speaks.
        for pid in d.worker_pids():
            env = open("/proc/%d/environ" % pid, "rb").read().split(b"\0")
            check(not any(e.startswith(b"NOTIFY_SOCKET=") for e in env),
                  "worker %d has NOTIFY_SOCKET" % pid)
        d.proc.send_signal(signal.SIGTERM)
        n.wait_for("STOPPING=1")
        seq = [l for l in n.lines() if l in ("READY=1", "STOPPING=1")]
        check(seq == ["READY=1", "STOPPING=1"], "sequence %s" % seq)
        print("  notify sequence: %s" % seq)
    finally:
        try:
            d.stop()
        finally:
            n.close()


def test_notify_reload_sequence():
    """READY, RELOADING (with MONOTONIC_USEC), READY, then a bad reload:
    RELOADING, STATUS naming the failure, READY; STOPPING at the end."""
    n = Notify()
    d = Daemon(svc(["127.0.0.1:0"]), workers=2,
               env={"NOTIFY_SOCKET": n.path})
    try:
        n.wait_for("READY=1")
        p = subprocess.run([os.path.join(os.path.dirname(NETCLUSTERD),
                            "netclusterctl"), "-s", d.control, "reload"],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, p.stderr)
        n.wait_for("READY=1", count=2)
        good = open(d.config).read()
        with open(d.config, "w") as f:
            f.write(good.replace('"mode": "shared"', '"mode": "rr"'))
        d.proc.send_signal(signal.SIGHUP)
        n.wait_for("READY=1", count=3)
        d.proc.send_signal(signal.SIGTERM)
        n.wait_for("STOPPING=1")
        seq = [l for l in n.lines() if l in ("READY=1", "RELOADING=1",
                                            "STOPPING=1")]
        check(seq == ["READY=1", "RELOADING=1", "READY=1", "RELOADING=1",
                      "READY=1", "STOPPING=1"], "sequence %s" % seq)
        usec = [l for l in n.lines() if l.startswith("MONOTONIC_USEC=")]
        check(len(usec) == 2 and all(int(u.split("=")[1]) > 0
                                     for u in usec), "usec %s" % usec)
        failed = [l for l in n.lines() if l.startswith("STATUS=reload "
                                                       "failed")]
        check(failed and "services[0].mode" in failed[0],
              "STATUS %s" % failed)
        print("  notify sequence: %s" % seq)
    finally:
        try:
            d.stop()
        finally:
            n.close()


def test_ready_waits_for_notify_programs():
    """netclusterd's READY=1 to systemd comes once every worker said its
    own READY=1 on the NOTIFY_SOCKET the master gave it: a program
    (supervision_notify.py) that warms up 1.5 s first."""
    n = Notify()
    t = tempfile.mkdtemp(prefix="nc-notify-prog.")
    program = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "supervision_notify.py")
    start = time.monotonic()
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"], "mode": "shared",
                 "handler": "program", "sockets": "inherit", "notify": True,
                 "command": [sys.executable, program], "cwd": t,
                 "env": {"SV_DIR": t, "SV_READY_DELAY": "1.5"}}],
               workers=2, env={"NOTIFY_SOCKET": n.path})
    try:
        n.wait_for("READY=1", timeout=20)
        took = time.monotonic() - start
        ws = d.ctl("workers")["workers"]
        print("  READY=1 to systemd %.2f s after the start; workers %s" % (
            took, [(w["state"], w.get("status")) for w in ws]))
        check(took >= 1.5, "READY=1 after %.2f s, before the programs "
              "warmed up" % took)
        check(len(ws) == 2 and all(w["state"] == "online" and
                                   (w.get("status") or "").startswith(
                                       "serving") for w in ws),
              "workers when READY=1 came: %s" % ws)
        for pid in d.worker_pids():
            env = open("/proc/%d/environ" % pid, "rb").read().split(b"\0")
            mine = [e for e in env if e.startswith(b"NOTIFY_SOCKET=")]
            check(mine and mine[0].startswith(b"NOTIFY_SOCKET=@netclusterd/"),
                  "worker %d: %s, not a socket of the master's" % (pid, mine))
    finally:
        try:
            d.stop()
        finally:
            n.close()
            shutil.rmtree(t, ignore_errors=True)


def test_watchdog():
    n = Notify()
    d = Daemon(svc(["127.0.0.1:0"]), workers=1,
               env={"NOTIFY_SOCKET": n.path, "WATCHDOG_USEC": "200000"})
    try:
        n.wait_for("READY=1")
        start = time.monotonic()
        n.wait_for("WATCHDOG=1", timeout=2, count=3)
        took = time.monotonic() - start
        check(took < 2 * SCALE, "3 WATCHDOG=1 took %.2f s" % took)
        print("  3 WATCHDOG=1 in %.2f s with WATCHDOG_USEC=200000" % took)
    finally:
        try:
            d.stop()
        finally:
            n.close()


class Activated:
    """systemd-socket-activate binding one free loopback port per name
    (--fdname=A:B...) and starting netclusterd on config (whose
    "%(dir)s" becomes a temporary directory) on the first client, with a
    NOTIFY_SOCKET of ours. Its stderr (the tool's and the daemon's) is
    kept in log."""

    def __init__(self, names, config):
        tool = shutil.which("systemd-socket-activate")
        check(tool is not None, "systemd-socket-activate is missing")
        self.ports = [free_port() for _ in names]
        self.dir = tempfile.mkdtemp(prefix="nc-sa.")
        conf = os.path.join(self.dir, "c.json")
        with open(conf, "w") as f:
            f.write(config % {"dir": self.dir})
        self.notify = Notify()
        argv = [tool]
        for port in self.ports:
            argv += ["-l", "127.0.0.1:%d" % port]
        argv += ["--fdname=" + ":".join(names), "-E",
                 "NOTIFY_SOCKET=" + self.notify.path, NETCLUSTERD, "-c",
                 conf]
        self.proc = subprocess.Popen(argv, env=dict(
            os.environ, NOTIFY_SOCKET=self.notify.path),
            stderr=subprocess.PIPE)
        self.log = []
        listening = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line.decode("utf-8", "replace"))
                if sum("Listening on" in l for l in self.log) == \
                        len(names):
                    listening.set()

        self.reader = threading.Thread(target=drain)
        self.reader.start()
        # It says when it listens; the daemon starts on the first client.
        if not listening.wait(10 * SCALE):
            self.close()
            raise Failure("not listening: %s" % self.log)

    def close(self):
        terminate(self.proc)
        self.reader.join(10 * SCALE)
        self.proc.stderr.close()
        self.notify.close()
        shutil.rmtree(self.dir)
        bad = [l for l in self.log
               if "Sanitizer" in l or "runtime error:" in l]
        check(not bad, "sanitizer report: %s" % self.log[-30:])


def test_socket_activation():
    """systemd-socket-activate binds, names the fd "web", and starts
    netclusterd, which takes it as systemd:web."""
    a = Activated(["web"], '{"workers": 2, "control_socket": '
                  '"%(dir)s/c.sock", "services": [{"name": "echo", '
                  '"listen": ["systemd:web"]}]}')
    try:
        port = a.ports[0]
        ok, bad = echo_clients(("127.0.0.1", port), 1, timeout=10)
        check(ok == 1, "first client: %s" % bad)
        a.notify.wait_for("READY=1")
        ok, bad = echo_clients(("127.0.0.1", port), 50)
        check(ok == 50 and not bad, "activated: %s" % bad[:3])
        # LISTEN_* were cleared: workers never see them.
        out = subprocess.run([os.path.join(os.path.dirname(NETCLUSTERD),
                              "netclusterctl"), "-s", a.dir + "/c.sock",
                              "--json", "workers"], capture_output=True)
        for w in json.loads(out.stdout)["workers"]:
            env_ = open("/proc/%d/environ" % w["pid"], "rb").read()
            check(b"LISTEN_FDS" not in env_, "worker sees LISTEN_FDS")
        print("  socket activation: systemd:web served 51 clients")
    finally:
        a.close()


def test_socket_activation_metrics():
    """Two sockets from systemd-socket-activate, named web and metrics:
    the metrics listener takes its own by name (systemd:metrics)."""
    a = Activated(["web", "metrics"], '{"workers": 1, "control_socket": '
                  '"%(dir)s/c.sock", "metrics": {"listen": '
                  '"systemd:metrics"}, "services": [{"name": "echo", '
                  '"listen": ["systemd:web"]}]}')
    try:
        # The first client of either socket starts the daemon.
        ok, bad = echo_clients(("127.0.0.1", a.ports[0]), 1, timeout=10)
        check(ok == 1, "first client: %s" % bad)
        a.notify.wait_for("READY=1")
        c = socket.create_connection(("127.0.0.1", a.ports[1]),
                                     timeout=10 * SCALE)
        c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        got = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += b
        c.close()
        check(got.startswith(b"HTTP/1.0 200") and
              b"\nnetcluster_build_info{" in got,
              "GET /metrics on systemd:metrics: %r" % got[:200])
        check(any("metrics listener on 127.0.0.1:%d" % a.ports[1] in l
                  for l in a.log), "no log of the metrics listener")
        print("  socket activation: systemd:metrics answered /metrics on "
              "port %d" % a.ports[1])
    finally:
        a.close()


def test_socket_activation_unknown_name():
    t = tempfile.mkdtemp(prefix="nc-sa.")
    conf = os.path.join(t, "c.json")
    with open(conf, "w") as f:
        f.write('{"workers": 1, "control_socket": "%s/c.sock", "services":'
                ' [{"name": "echo", "listen": ["systemd:nothere"]}]}' % t)
    try:
        p = subprocess.run([NETCLUSTERD, "-c", conf], capture_output=True,
                           text=True, timeout=10 * SCALE)
        check(p.returncode == 1, "exit %d" % p.returncode)
        check("no socket named nothere was passed by systemd" in p.stderr,
              p.stderr)
    finally:
        shutil.rmtree(t)


run([test_notify_ready_status_stopping, test_notify_reload_sequence,
     test_ready_waits_for_notify_programs, test_watchdog,
     test_socket_activation, test_socket_activation_metrics,
     test_socket_activation_unknown_name])
