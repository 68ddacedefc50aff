"""Scale-out behind a real HAProxy: two netclusterd hosts (distinct
loopback addresses standing for hosts) behind one HAProxy with
send-proxy-v2 to one and send-proxy (v1) to the other, and health checks. Traffic spreads over both hosts, each
host sees the client's real address (it forwards it again with
send_proxy to an application that records it), and stopping one host
(`netclusterctl stop`) while clients keep coming loses none of them.

Then the one-command drain: two hosts on 127.0.0.1 each with an agent
listener, HAProxy reading it (agent-check); `netclusterctl drain --wait
--stop` alone takes a host out under load with long connections open
across it, and `undrain` puts a drained host back."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, NETCLUSTERCTL, SCALE, check,
                     echo_service, free_port, load, read_to_eof, run,
                     terminate)


class App:
    """The application behind the hosts: reads the PROXY v1 header a
    host sends, records it, answers "ok", closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.headers = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(10 * SCALE)
            try:
                line = b""
                while not line.endswith(b"\r\n"):
                    line += c.recv(1)
                self.headers.append(line.decode().split())
                c.sendall(b"ok\n")
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def host(addr, app_port):
    return Daemon([{"name": "web", "handler": "proxy",
                    "listen": ["%s:0" % addr], "proxy_protocol": True,
                    "upstream": ["127.0.0.1:%d" % app_port],
                    "send_proxy": "v1"}], workers=2)


def start_haproxy(d, stats, front, servers):
    """HAProxy -Ws in d on 127.0.0.1:front with the servers' lines of
    its one backend and an admin stats socket; returned once it told
    systemd (our NOTIFY_SOCKET) it is ready."""
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("""global
    maxconn 1000
    stats socket %s mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch
frontend web
    bind 127.0.0.1:%d
    default_backend hosts
backend hosts
    balance roundrobin
%s""" % (stats, front, servers))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    npath = os.path.join(d, "notify.sock")
    notify.bind(npath)
    notify.settimeout(10 * SCALE)
    try:
        hp = subprocess.Popen([shutil.which("haproxy"), "-Ws", "-f", cfg],
                              env=dict(os.environ, NOTIFY_SOCKET=npath),
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        while b"READY=1" not in notify.recv(4096):
            pass
    finally:
        notify.close()
    return hp


def test_haproxy_scale_out():
    haproxy = shutil.which("haproxy")
    check(haproxy is not None, "haproxy is not installed")
    app = App()
    h1, h2 = host("127.0.0.2", app.port), host("127.0.0.3", app.port)
    t = tempfile.mkdtemp(prefix="nc-haproxy.")
    hp = None
    try:
        h1.wait_online()
        h2.wait_online()
        front = free_port()
        hp = start_haproxy(t, os.path.join(t, "admin.sock"), front,
                           "    server h1 127.0.0.2:%d check send-proxy-v2 "
                           "check-send-proxy inter 100ms fall 1 rise 1\n"
                           "    server h2 127.0.0.3:%d check send-proxy "
                           "check-send-proxy inter 100ms fall 1 rise 1\n" %
                           (h1.port(), h2.port()))

        def one():
            c = socket.create_connection(("127.0.0.1", front),
                                         timeout=10 * SCALE)
            port = c.getsockname()[1]
            got = read_to_eof(c)
            c.close()
            return port, got

        ports = []
        for _ in range(40):
            port, got = one()
            check(got == b"ok\n", "through HAProxy: %r" % got)
            ports.append(port)
        # PROXY TCP4 <client> <host's address> <client port> <host port>
        # (HAProxy's health checks show up too, as UNKNOWN or its port.)
        seen = [h for h in app.headers if len(h) == 6 and
                int(h[4]) in ports]
        by_host = {}
        for h in seen:
            by_host[h[3]] = by_host.get(h[3], 0) + 1
        check(set(by_host) == {"127.0.0.2", "127.0.0.3"},
              "traffic went to %s" % by_host)
        # Every client's port arrived; a health check from 127.0.0.1 may
        # reuse a client's port towards another address, so one port can
        # show up twice.
        got_ports = [int(h[4]) for h in seen]
        check(set(got_ports) == set(ports) and len(got_ports) >= len(ports),
              "the hosts did not see every client's real port: missing %s, "
              "seen %d for %d clients" % (sorted(set(ports) - set(got_ports)),
                                          len(got_ports), len(ports)))
        check(all(h[2] == "127.0.0.1" for h in seen), "client addresses")

        # Stop one host while clients keep coming: none may fail.
        results = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    key = "ok" if one()[1] == b"ok\n" else "failed"
                except OSError:
                    key = "failed"
                results[key] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for th in threads:
            th.start()
        # The documented drain: out of the balancer, connections done,
        # then stopped.
        admin = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        admin.settimeout(10 * SCALE)
        admin.connect(os.path.join(t, "admin.sock"))
        admin.sendall(b"set server hosts/h1 state drain\n")
        read_to_eof(admin)
        admin.close()
        before = results["ok"]
        deadline = time.monotonic() + 10 * SCALE
        while results["ok"] < before + 100:    # traffic goes on, to h2
            check(time.monotonic() < deadline, "no traffic after drain")
            h2.read_lines(0.05)
        while h1.ctl("connections")["connections"] != 0:
            check(time.monotonic() < deadline, "h1 did not drain")
            h1.read_lines(0.05)
        p = subprocess.run([NETCLUSTERCTL, "-s", h1.control, "stop"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        h1.proc.wait(timeout=30 * SCALE)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            h2.read_lines(0.1)
        stop.set()
        for th in threads:
            th.join(30 * SCALE)
        check(p.returncode == 0, "stop: %r" % p.stderr)
        check(results["failed"] == 0 and results["ok"] > 50,
              "while a host stopped: %s" % results)
        print("  2 hosts behind HAProxy: %s of 40; real client ports seen; "
              "stopping one host under load: %s" % (by_host, results))
    finally:
        if hp is not None:
            terminate(hp)
            hp.stderr.close()
        h1.stop()
        h2.stop()
        app.close()
        shutil.rmtree(t)


# The one-command drain: HAProxy reads each host's agent.

def agent_host():
    """An echo host on 127.0.0.1 taking the PROXY header, with an agent
    listener and a short shutdown_timeout_ms (what drain --wait waits)."""
    return Daemon([echo_service(proxy_protocol=True)], workers=2,
                  extra={"agent": {"listen": "127.0.0.1:0"},
                         "shutdown_timeout_ms": 5000})


def pause(hosts):
    """A round of a poll: reads the logs of the hosts still running
    (one may exit meanwhile: drain --stop), at most 25 ms each."""
    live = [h for h in hosts if h.proc.poll() is None]
    for h in live:
        try:
            h.read_lines(0.025)
        except Failure:
            if h.proc.poll() is None:
                raise
    if not live:
        time.sleep(0.025)


class Balancer:
    """HAProxy in front of the hosts, each server agent-checked on the
    port its host's agent listener is bound to; its stats socket."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.dir = tempfile.mkdtemp(prefix="nc-haproxy.")
        self.stats = os.path.join(self.dir, "stats.sock")
        self.proc = None
        self.log = []
        self.front = free_port()
        servers = ""
        for i, h in enumerate(hosts, 1):
            agent = h.ctl("status")["agent"]
            check(agent is not None and agent.startswith("127.0.0.1:"),
                  "agent bound to %r" % agent)
            servers += ("    server h%d 127.0.0.1:%d check send-proxy-v2 "
                        "check-send-proxy inter 100ms fall 1 rise 1 "
                        "agent-check agent-port %s agent-inter 200ms\n" %
                        (i, h.port(), agent.rsplit(":", 1)[1]))
        self.proc = start_haproxy(self.dir, self.stats, self.front,
                                  servers)

    def ask(self, command):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10 * SCALE)
        s.connect(self.stats)
        s.sendall(command.encode() + b"\n")
        text = read_to_eof(s).decode()
        s.close()
        return text

    def stat(self):
        """show stat: {server name: {field: value}} for backend hosts."""
        lines = self.ask("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "hosts" and row["svname"] != "BACKEND":
                rows[row["svname"]] = row
        return rows

    def admin_state(self):
        """show servers state: {server name: srv_admin_state}; 0x08 is
        SRV_ADMF_FDRAIN, the drain an agent (or the CLI) forced."""
        lines = self.ask("show servers state hosts").splitlines()
        head = lines[1].lstrip("# ").split()
        out = {}
        for line in lines[2:]:
            row = dict(zip(head, line.split()))
            if "srv_name" in row:
                out[row["srv_name"]] = int(row["srv_admin_state"])
        return out

    def wait(self, cond, what, timeout=10):
        """Polls show stat until cond(rows); the hosts' logs are read
        in between (the pause of each round)."""
        deadline = time.monotonic() + timeout * SCALE
        while True:
            rows = self.stat()
            if cond(rows):
                return rows
            check(time.monotonic() < deadline, "%s: %s" % (what, {
                k: (v["status"], v.get("agent_desc"), v["stot"])
                for k, v in rows.items()}))
            pause(self.hosts)

    def close(self):
        if self.proc is not None:
            terminate(self.proc)
            self.proc.stderr.close()
        shutil.rmtree(self.dir)


class Long:
    """A client that holds its connection through HAProxy: one echo now,
    one more at finish()."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=10 * SCALE)
        self.echo(b"hello\r\n", os.urandom(16))

    def echo(self, greeting, payload):
        self.sock.sendall(payload)
        want = greeting + payload
        got = b""
        while len(got) < len(want):
            d = self.sock.recv(64)
            check(d, "a long connection closed after %r" % got)
            got += d
        check(got == want, "long connection: %r for %r" % (got, want))

    def finish(self):
        self.echo(b"", os.urandom(16))
        self.sock.shutdown(socket.SHUT_WR)
        check(read_to_eof(self.sock) == b"", "bytes after the echo")
        self.sock.close()


def up(name):
    """UP in show stat, with the agent asked at least once."""
    return lambda rows: (rows[name]["status"] == "UP" and
                         rows[name]["agent_status"] not in ("", "INI"))


def wait_made(stats, lock, n, hosts, what):
    """Until the load made n more connections than now."""
    with lock:
        target = stats.get("made", 0) + n
    deadline = time.monotonic() + 20 * SCALE
    while True:
        with lock:
            made = stats.get("made", 0)
            if made >= target:
                return made
        check(time.monotonic() < deadline, "%s: %s" % (what, stats))
        pause(hosts)


def test_agent_drain_wait_stop():
    check(shutil.which("haproxy") is not None, "haproxy is not installed")
    h1, h2 = agent_host(), agent_host()
    lb = None
    longs = []
    stats, lock, stop = {}, threading.Lock(), threading.Event()
    threads = []
    try:
        h1.wait_online()
        h2.wait_online()
        lb = Balancer([h1, h2])
        lb.wait(lambda r: up("h1")(r) and up("h2")(r), "hosts up")
        # Two long connections on each host (round robin).
        longs = [Long(lb.front) for _ in range(4)]
        rows = lb.stat()
        check(rows["h1"]["scur"] == "2" and rows["h2"]["scur"] == "2",
              "long connections: h1 %s, h2 %s" % (rows["h1"]["scur"],
                                                  rows["h2"]["scur"]))
        threads = [threading.Thread(target=load,
                                    args=(lb.front, stop, stats, lock))
                   for _ in range(4)]
        for th in threads:
            th.start()
        wait_made(stats, lock, 100, [h1, h2], "no load through HAProxy")
        with lock:
            made0 = stats.get("made", 0)
        start = time.monotonic()
        drain = subprocess.Popen([NETCLUSTERCTL, "-s", h1.control, "drain",
                                  "--wait", "--stop"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        rows = lb.wait(lambda r: r["h1"]["status"].startswith("DRAIN"),
                       "HAProxy did not see the agent's drain")
        seen = time.monotonic() - start
        stot = int(rows["h1"]["stot"])
        check(lb.admin_state()["h1"] & 0x08,
              "h1's admin state while drained: %s" % lb.admin_state())
        # Traffic goes on, to h2 alone; h1 keeps its long connections
        # and drain --wait waits for them.
        wait_made(stats, lock, 200, [h1, h2], "no traffic while draining")
        rows = lb.stat()
        check(int(rows["h1"]["stot"]) == stot,
              "HAProxy still sent to the drained host: %s then %s" % (
                  stot, rows["h1"]["stot"]))
        check(h1.ctl("connections")["connections"] == 2,
              "h1's connections while draining: %s" %
              h1.ctl("connections"))
        if drain.poll() is not None:
            raise Failure("drain --wait returned with connections open: "
                          "%r" % (drain.communicate(),))
        for c in longs:
            c.finish()
        longs = []
        deadline = time.monotonic() + 10 * SCALE
        while drain.poll() is None:
            check(time.monotonic() < deadline, "drain --wait did not return")
            pause([h1])
        out, err = drain.communicate()
        took = time.monotonic() - start
        check(drain.returncode == 0 and "drained" in out and
              "stopping" in out, "drain --wait --stop: %d %r %r" % (
                  drain.returncode, out, err))
        h1.proc.wait(timeout=10 * SCALE)
        check(h1.proc.returncode == 0, "h1 exited %d" % h1.proc.returncode)
        exited = time.monotonic() - start
        with lock:
            during = stats.get("made", 0) - made0
        # h1 gone: HAProxy marks it down, and h2 takes everything.
        lb.wait(lambda r: r["h1"]["status"] != "UP" and not r["h1"]["status"].startswith("DRAIN"),
                "HAProxy still has h1 up")
        wait_made(stats, lock, 100, [h2], "no traffic after the stop")
        stop.set()
        for th in threads:
            th.join(30 * SCALE)
        threads = []
        rows = lb.stat()
        check(int(rows["h1"]["stot"]) == stot,
              "HAProxy sent to h1 after its drain: %s then %s" % (
                  stot, rows["h1"]["stot"]))
        lost = sum(v for k, v in stats.items() if k != "made")
        check(lost == 0 and stats["made"] > 400,
              "connections through a drain: %s" % stats)
        print("  drain --wait --stop under load: HAProxy saw drain after "
              "%.2f s; %d connections during the drain, 0 lost; 4 long "
              "connections finished; drain --wait took %s; h1 exited "
              "after %.2f s; %s in all" % (
                  seen, during, out.split("after ")[-1].split("\n")[0],
                  exited, stats))
    finally:
        stop.set()
        for th in threads:
            th.join(30 * SCALE)
        for c in longs:
            c.sock.close()
        if lb is not None:
            lb.close()
        h1.stop()
        h2.stop()


def test_agent_undrain():
    check(shutil.which("haproxy") is not None, "haproxy is not installed")
    h1, h2 = agent_host(), agent_host()
    lb = None
    stats, lock, stop = {}, threading.Lock(), threading.Event()
    threads = []
    try:
        h1.wait_online()
        h2.wait_online()
        lb = Balancer([h1, h2])
        lb.wait(lambda r: up("h1")(r) and up("h2")(r), "hosts up")
        threads = [threading.Thread(target=load,
                                    args=(lb.front, stop, stats, lock))
                   for _ in range(2)]
        for th in threads:
            th.start()
        wait_made(stats, lock, 50, [h1, h2], "no load through HAProxy")
        p = subprocess.run([NETCLUSTERCTL, "-s", h1.control, "drain"],
                           capture_output=True, text=True, timeout=10 * SCALE)
        check(p.returncode == 0, "drain: %r" % p.stderr)
        st = h1.ctl("status")
        check(st["draining"] is True and st["ready"] is False,
              "status while drained: %s" % st)
        rows = lb.wait(lambda r: r["h1"]["status"].startswith("DRAIN"),
                       "HAProxy did not see the agent's drain")
        stot = int(rows["h1"]["stot"])
        wait_made(stats, lock, 100, [h1, h2], "no traffic while drained")
        check(int(lb.stat()["h1"]["stot"]) == stot,
              "HAProxy sent to the drained host")
        p = subprocess.run([NETCLUSTERCTL, "-s", h1.control, "undrain"],
                           capture_output=True, text=True, timeout=10 * SCALE)
        check(p.returncode == 0, "undrain: %r" % p.stderr)
        st = h1.ctl("status")
        check(st["draining"] is False and st["ready"] is True,
              "status after undrain: %s" % st)
        lb.wait(up("h1"), "HAProxy did not put h1 back")
        check(lb.admin_state()["h1"] == 0,
              "h1's admin state after undrain: %s" % lb.admin_state())
        rows = lb.wait(lambda r: int(r["h1"]["stot"]) >= stot + 20,
                       "h1 gets no connection after undrain")
        stop.set()
        for th in threads:
            th.join(30 * SCALE)
        threads = []
        lost = sum(v for k, v in stats.items() if k != "made")
        check(lost == 0, "connections through drain and undrain: %s" % stats)
        print("  drain, undrain: h1 out of HAProxy at %d sessions, back "
              "(%s so far); %s" % (stot, rows["h1"]["stot"], stats))
    finally:
        stop.set()
        for th in threads:
            th.join(30 * SCALE)
        if lb is not None:
            lb.close()
        h1.stop()
        h2.stop()


run([test_haproxy_scale_out, test_agent_drain_wait_stop, test_agent_undrain])
