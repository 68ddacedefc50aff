"""Scale-out behind a real HAProxy: two netclusterd hosts (distinct
loopback addresses standing for hosts) behind one HAProxy with
send-proxy-v2 to one and send-proxy (v1) to the other, and health checks. Traffic spreads over both hosts, each
host sees the client's real address (it forwards it again with
send_proxy to an application that records it), and stopping one host
(`netclusterctl stop`) while clients keep coming loses none of them."""

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
from harness import NETCLUSTERCTL, SCALE, Daemon, check, read_to_eof, run


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
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
        probe.close()
        cfg = os.path.join(t, "haproxy.cfg")
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
    server h1 127.0.0.2:%d check send-proxy-v2 check-send-proxy inter 100ms fall 1 rise 1
    server h2 127.0.0.3:%d check send-proxy check-send-proxy inter 100ms fall 1 rise 1
""" % (os.path.join(t, "admin.sock"), front, h1.port(), h2.port()))
        # haproxy -Ws tells systemd it is ready: our NOTIFY_SOCKET hears it.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        npath = os.path.join(t, "notify.sock")
        notify.bind(npath)
        notify.settimeout(10 * SCALE)
        hp = subprocess.Popen([haproxy, "-Ws", "-f", cfg],
                              env=dict(os.environ, NOTIFY_SOCKET=npath),
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        while b"READY=1" not in notify.recv(4096):
            pass

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
            hp.send_signal(signal.SIGTERM)
            try:
                hp.wait(10 * SCALE)
            except subprocess.TimeoutExpired:
                hp.kill()
                hp.wait()
            hp.stderr.close()
        h1.stop()
        h2.stop()
        app.close()
        shutil.rmtree(t)


run([test_haproxy_scale_out])
