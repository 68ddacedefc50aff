"""netclusterd end to end: the four listener modes with real clients,
aggregated connection counts, workers killed under load, the master
killed, and a hostile worker on the channel."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, NETCLUSTERCTL, NETCLUSTERD, SCALE,
                     WORKER, Reachable, check, echo_clients, echo_service,
                     run)


def modes_serve(mode, workers, clients=300, waves=6):
    """clients in waves of concurrent ones (traffic, not one burst: in
    round-robin, a burst beyond a worker's window of hand-offs in flight
    goes to the others while that worker waits for the CPU, by design)."""
    d = Daemon([echo_service(mode)], workers=workers)
    try:
        d.wait_online()
        port = d.port()
        check(port > 0, "no port")
        ok, bad = 0, []
        for _ in range(waves):
            n, b = echo_clients(("127.0.0.1", port), clients // waves)
            ok += n
            bad += b
        check(not bad and ok == clients,
              "%s/%d: %d ok, failures %s" % (mode, workers, ok, bad[:5]))
        ws = d.ctl("workers")["workers"]
        shares = [w.get("accepted", 0) for w in ws]
        check(sum(shares) == clients, "%s: shares %s" % (mode, shares))
        print("  %s, %d workers: %d clients ok, per worker %s" % (
            mode, workers, ok, shares))
        if mode == "round-robin":
            fair = clients / workers
            check(min(shares) >= fair * 0.5,
                  "round-robin unfair: %s" % shares)
        return shares
    finally:
        d.stop()


def test_shared():
    modes_serve("shared", 2)
    modes_serve("shared", 4)


def test_round_robin():
    modes_serve("round-robin", 2)
    modes_serve("round-robin", 4)


def test_reuseport():
    modes_serve("reuseport", 2)
    modes_serve("reuseport", 4)


def test_exclusive_port0_distinct():
    d = Daemon([echo_service("exclusive")], workers=2)
    try:
        d.wait_online()
        ws = d.ctl("workers")["workers"]
        ports = [w["listening"][0]["port"] for w in ws]
        check(len(set(ports)) == 2 and all(p > 0 for p in ports),
              "exclusive ports %s" % ports)
        for p in ports:
            ok, bad = echo_clients(("127.0.0.1", p), 20)
            check(ok == 20 and not bad, "port %d: %s" % (p, bad[:3]))
        print("  exclusive, 2 workers on port 0: ports %s" % ports)
    finally:
        d.stop()


def test_exclusive_eaddrinuse():
    """exclusive: the master binds each worker's socket; an address in
    use is refused at startup, naming the service and the address."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    d = tempfile.mkdtemp(prefix="nc-e2e-excl.")
    try:
        conf = os.path.join(d, "c.json")
        with open(conf, "w") as f:
            json.dump({"workers": 1, "control_socket": os.path.join(
                d, "ctl.sock"), "services": [echo_service(
                    "exclusive", ["127.0.0.1:%d" % port])]}, f)
        p = subprocess.run([NETCLUSTERD, "-c", conf], capture_output=True,
                           text=True, timeout=30 * SCALE)
        check(p.returncode == 1 and "EADDRINUSE" in p.stderr and "echo" in
              p.stderr and str(port) in p.stderr,
              "rc %d: %s" % (p.returncode, p.stderr))
    finally:
        shutil.rmtree(d, ignore_errors=True)
        s.close()


def test_round_robin_full_workers_queue():
    """max_connections 2 per worker, 2 workers: the fifth connection waits
    in the master, not dropped, and is served once a slot frees."""
    d = Daemon([echo_service("round-robin", max_connections=2)], workers=2)
    try:
        d.wait_online()
        port = d.port()
        held = []
        for i in range(4):
            c = socket.create_connection(("127.0.0.1", port))
            c.settimeout(10 * SCALE)
            check(c.recv(7) == b"hello\r\n", "no hello for %d" % i)
            held.append(c)
        fifth = socket.create_connection(("127.0.0.1", port))
        fifth.settimeout(0.5)
        try:
            got = fifth.recv(7)
        except socket.timeout:
            got = None
        check(got is None, "fifth served past max_connections: %r" % got)
        first = held.pop(0)
        first.shutdown(socket.SHUT_WR)
        wait_fin(first)
        first.close()
        fifth.settimeout(10 * SCALE)
        check(fifth.recv(7) == b"hello\r\n", "fifth never served")
        fifth.sendall(b"x")
        check(fifth.recv(1) == b"x", "no echo")
        fifth.close()
        for c in held:
            c.close()
        print("  round-robin with full workers: the waiting connection was"
              " served once a slot freed")
    finally:
        d.stop()


def wait_fin(s):
    s.settimeout(10 * SCALE)
    while s.recv(4096):
        pass


def test_get_connections():
    d = Daemon([echo_service("round-robin")], workers=2)
    try:
        d.wait_online()
        port = d.port()
        conns = []
        for i in range(5):
            c = socket.create_connection(("127.0.0.1", port))
            c.settimeout(10 * SCALE)
            check(c.recv(7) == b"hello\r\n", "no hello")
            conns.append(c)
        check(d.ctl("connections")["connections"] == 5, "count != 5")
        check(d.ctl("connections", "echo")["connections"] == 5,
              "service count != 5")
        seen = [5]
        while conns:
            c = conns.pop()
            c.shutdown(socket.SHUT_WR)
            wait_fin(c)
            c.close()
            n = d.ctl("connections")["connections"]
            seen.append(n)
            check(n == len(conns), "count %d, want %d" % (n, len(conns)))
        print("  connections followed: %s" % seen)
        # A stopped worker is reported, not waited for.
        pid = d.worker_pids()[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            r = d.ctl("connections")
            took = time.monotonic() - start
            check(took < 3 * SCALE, "took %.1f s" % took)
            check(len(r["missing"]) == 1, "missing %s" % r["missing"])
            print("  with a stopped worker: answered in %.2f s, missing %s"
                  % (took, r["missing"]))
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        d.stop()


def load_during(d, port, action, threads=8, seconds=2.0):
    """Sequential echo connections in several threads while action()
    runs; returns (made, refused, unanswered, reset)."""
    stats = {"made": 0, "refused": 0, "unanswered": 0, "reset": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                c = socket.create_connection(("127.0.0.1", port),
                                             timeout=5 * SCALE)
            except ConnectionRefusedError:
                with lock:
                    stats["refused"] += 1
                continue
            except OSError:
                with lock:
                    stats["unanswered"] += 1
                continue
            try:
                c.sendall(b"ping")
                got = b""
                while len(got) < 11:
                    d_ = c.recv(64)
                    if not d_:
                        raise ConnectionResetError("eof")
                    got += d_
                key = "made" if got == b"hello\r\nping" else "reset"
            except socket.timeout:
                key = "unanswered"
            except OSError:
                key = "reset"
            finally:
                c.close()
            with lock:
                stats[key] += 1

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    try:
        action()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            d.read_lines(0.2)
    finally:
        stop.set()
        for t in ts:
            t.join(30 * SCALE)
    return stats


def kill_worker_under_load(mode):
    d = Daemon([echo_service(mode)], workers=2)
    try:
        d.wait_online()
        port = d.port()
        victim = d.worker_pids()[0]
        stats = load_during(d, port, lambda: os.kill(victim, signal.SIGKILL))
        d.wait_online(3)    # the replacement came up
        print("  %s: kill -9 of a worker under load: %s" % (mode, stats))
        check(stats["refused"] == 0 and stats["unanswered"] == 0,
              "%s: %s" % (mode, stats))
        check(stats["made"] > 100, "too little load: %s" % stats)
        return stats
    finally:
        d.stop()


def test_kill_worker_shared():
    kill_worker_under_load("shared")


def test_kill_worker_reuseport():
    kill_worker_under_load("reuseport")


def test_kill_worker_round_robin():
    kill_worker_under_load("round-robin")


def test_sigterm_storm():
    """SIGTERM after SIGTERM while the master stops: it still stops
    cleanly and exits 0 (it used to die of one that came after it freed
    its signal events, on its very way out)."""
    for i in range(10):
        d = Daemon([echo_service("shared")], workers=1)
        try:
            d.wait_online()
            sent = 0
            deadline = time.monotonic() + 10 * SCALE
            while d.proc.poll() is None and time.monotonic() < deadline:
                try:
                    d.proc.send_signal(signal.SIGTERM)
                    sent += 1
                except ProcessLookupError:
                    break
            check(d.proc.wait(10 * SCALE) == 0, "round %d: netclusterd "
                  "exited %s under %d SIGTERMs" % (i, d.proc.returncode,
                                                   sent))
        finally:
            d.stop()
    print("  10 stops under a storm of SIGTERM: each exited 0")


def test_kill_master():
    d = Daemon([echo_service("shared")], workers=3)
    try:
        d.wait_online()
        pids = d.worker_pids()
        check(len(pids) == 3, "workers %s" % pids)
        # pidfds become readable when their process exits.
        fds = {os.pidfd_open(p): p for p in pids}
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        start = time.monotonic()
        d.proc.kill()
        d.proc.wait()
        gone = set()
        deadline = start + 1.0 * SCALE
        while len(gone) < len(fds) and time.monotonic() < deadline:
            left = max(0, deadline - time.monotonic())
            for fd, _ in poller.poll(left * 1000):
                gone.add(fd)
                poller.unregister(fd)
        took = time.monotonic() - start
        for fd in fds:
            os.close(fd)
        check(len(gone) == len(fds), "workers alive 1 s after the master "
              "died: %s" % [fds[f] for f in fds if f not in gone])
        print("  kill -9 of the master: %d workers gone in %.3f s"
              % (len(pids), took))
    finally:
        d.stop()


FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "fake_worker.py")


def test_hostile_worker():
    # Baseline: the master's fds with a real worker online.
    base = Daemon([echo_service("shared")], workers=1)
    try:
        base.wait_online()
        baseline = base.fd_count()
    finally:
        base.stop()
    import tempfile
    fd, counter = tempfile.mkstemp(prefix="nc-fake.")
    os.close(fd)
    env = {"NETCLUSTER_WORKER": FAKE, "FAKE_COUNTER": counter,
           "FAKE_REAL_WORKER": WORKER}
    d = Daemon([echo_service("shared")], workers=1, env=env)
    try:
        d.wait_online(1, timeout=30)
        log = "\n".join(d.lines)
        for want in ("malformed message", "oversized message",
                     "wrong fd count", "refused a handle for 127.0.0.1:1",
                     "unknown message", "too many fds",
                     "unexpected conn frame",
                     "unexpected conn.ack frame in state starting",
                     "frame version 7 not understood"):
            check(want in log, "no %r in the log:\n%s" % (want, log))
        ok, bad = echo_clients(("127.0.0.1", d.port()), 20)
        check(ok == 20 and not bad, "not serving after abuse: %s" % bad[:3])
        # Once the master has freed our control clients (d.port()'s).
        fds = d.settled_fd_count()
        check(fds == baseline, "master fds %d, baseline %d" % (
            fds, baseline))
        print("  hostile worker: 9 kinds of abuse, master fds %d = %d"
              % (fds, baseline))
    finally:
        d.stop()
        if os.path.exists(counter):
            os.unlink(counter)


def proc_status(pid):
    fields = {}
    for line in open("/proc/%d/status" % pid):
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def test_privilege_drop():
    """As root, with "user": "nobody": the master stays root and binds
    port 1023 (privileged); every worker runs as nobody, groups cleared.
    The workers run a copy of netcluster-worker where nobody can reach
    it, wherever the build is."""
    import pwd
    if os.geteuid() != 0:
        raise Failure("this test runs as root (as in CI)")
    nobody = pwd.getpwnam("nobody")
    low = None
    for port in range(1023, 900, -1):     # a free privileged port
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            low = port
            break
        except OSError:
            pass
        finally:
            s.close()
    check(low is not None, "no free port under 1024")
    reach = Reachable()
    env = reach.worker_env()
    d = None
    try:
        d = Daemon([echo_service("shared", ["127.0.0.1:0", "127.0.0.1:%d"
                                             % low])],
                   workers=2, extra={"user": "nobody"}, env=env)
        d.wait_online()
        master = proc_status(d.proc.pid)
        check(master["Uid"] == ["0"] * 4, "master uid %s" % master["Uid"])
        for pid in d.worker_pids():
            exe = os.readlink("/proc/%d/exe" % pid)
            check(exe == env["NETCLUSTER_WORKER"], "worker runs %s" % exe)
            st = proc_status(pid)
            check(st["Uid"] == [str(nobody.pw_uid)] * 4,
                  "worker uid %s" % st["Uid"])
            check(st["Gid"] == [str(nobody.pw_gid)] * 4,
                  "worker gid %s" % st["Gid"])
            check(st.get("Groups", []) == [], "groups %s" % st["Groups"])
        ok, bad = echo_clients(("127.0.0.1", d.port()), 20)
        check(ok == 20 and not bad, "not serving: %s" % bad[:3])
        print("  workers run as uid %d gid %d, no groups; master uid 0"
              % (nobody.pw_uid, nobody.pw_gid))
    finally:
        if d is not None:
            d.stop()
        reach.remove()


def test_pools_own_users_and_counts():
    """Each service a pool of its own: "a" sets "workers": 3 and "user":
    "nobody"; "b" sets neither, so -w 4 (over the top-level 2) gives its
    count and it runs as the master does. Each worker runs its service
    only (NETCLUSTER_SERVICE), as its pool's user; both answer."""
    import pwd
    if os.geteuid() != 0:
        raise Failure("this test runs as root (as in CI)")
    nobody = pwd.getpwnam("nobody")
    reach = Reachable()
    wrapper = os.path.join(reach.dir, "netclusterd-w4")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec %s -w 4 \"$@\"\n" % NETCLUSTERD)
    os.chmod(wrapper, 0o755)
    d = None
    try:
        d = Daemon([{"name": "a", "listen": ["127.0.0.1:0"], "workers": 3,
                     "user": "nobody"},
                    {"name": "b", "listen": ["127.0.0.1:0"]}], workers=2,
                   env=reach.worker_env(), binary=wrapper)
        d.wait_online(7)
        st = {s["name"]: s for s in d.ctl("status")["services"]}
        check((st["a"]["workers"], st["b"]["workers"]) == (3, 4),
              "counts %s" % {k: v["workers"] for k, v in st.items()})
        seen = {"a": 0, "b": 0}
        for w in d.ctl("workers")["workers"]:
            env = open("/proc/%d/environ" % w["pid"], "rb").read()
            check(b"NETCLUSTER_SERVICE=%s\0" % w["service"].encode() in env,
                  "worker %d of %s" % (w["pid"], w["service"]))
            uid = proc_status(w["pid"])["Uid"]
            want = nobody.pw_uid if w["service"] == "a" else 0
            check(uid == [str(want)] * 4, "%s worker uid %s" % (
                w["service"], uid))
            seen[w["service"]] += 1
        check(seen == {"a": 3, "b": 4}, "workers %s" % seen)
        for i in (0, 1):
            ok, bad = echo_clients(("127.0.0.1", d.port(i)), 10)
            check(ok == 10 and not bad, "service %d: %s" % (i, bad[:3]))
        print("  a: 3 workers as uid %d; b: 4 (-w) as uid 0" %
              nobody.pw_uid)
    finally:
        if d is not None:
            d.stop()
        reach.remove()


def control_request(path, data, timeout=10):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout * SCALE)
    c.connect(path)
    try:
        c.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass    # too long: the master answered and closed before the end
    got = b""
    while not got.endswith(b"\n"):
        d = c.recv(65536)
        if not d:
            break
        got += d
    # Our FIN; the master's answer to it (its close) says it freed us.
    try:
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass    # it closed with our request unread
    c.close()
    return got


def test_control_socket():
    """Mode 0600, only root or our uid; bad requests get an error that
    names what was wrong; the master stays up and leaks nothing."""
    import json
    import stat
    d = Daemon([echo_service("shared")], workers=1)
    try:
        d.wait_online()
        mode = stat.S_IMODE(os.stat(d.control).st_mode)
        check(mode == 0o600, "control socket mode %o" % mode)
        before = d.fd_count()
        cases = [
            (b"not json\n", "bad request: "),
            (b"[1]\n", "bad request: not a JSON object"),
            (b'{"command": 5}\n', '"command" must be a string'),
            (b'{"command": "format"}\n', 'unknown command "format"'),
            (b'{"command": "status", "x": 1}\n', 'unknown key "x"'),
            (b'{"command": "connections", "service": "nope"}\n',
             'no service named "nope"'),
            (b'{"command": "status"' + b" " * 70000 + b"}\n",
             "request longer than 66560 bytes"),
        ]
        for req, want in cases:
            r = json.loads(control_request(d.control, req))
            check(r["ok"] is False and want in r["error"],
                  "%r -> %r" % (req[:40], r))
        # A client that sends half a request and goes away.
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10 * SCALE)
        c.connect(d.control)
        c.sendall(b'{"comm')
        c.shutdown(socket.SHUT_WR)
        check(c.recv(100) == b"", "half a request got an answer")
        c.close()
        r = json.loads(control_request(d.control, b'{"command": "status"}\n'))
        check(r["ok"] and r["alive"] == 1, "status after abuse: %r" % r)
        check(d.fd_count() == before, "master fds %d, were %d" % (
            d.fd_count(), before))
        # A client that says nothing blocks nobody, and is dropped.
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.settimeout(20 * SCALE)
        silent.connect(d.control)
        r = json.loads(control_request(d.control, b'{"command": "status"}\n'))
        check(r["ok"], "status with a silent client: %r" % r)
        start = time.monotonic()
        check(silent.recv(10) == b"", "the silent client got bytes")
        dropped = time.monotonic() - start
        silent.close()
        check(dropped < 15 * SCALE, "silent client kept %.1f s" % dropped)
        # Another uid is refused by the socket's mode: it runs a copy of
        # netclusterctl it can reach, and may search the socket's
        # directory, so that nothing on the way refuses it before.
        os.chmod(d.dir, 0o755)
        with Reachable() as reach:
            p = subprocess.run([reach.copy(NETCLUSTERCTL), "-s", d.control,
                                "status"], capture_output=True, text=True,
                               user=65534, cwd=reach.dir,
                               timeout=10 * SCALE)
        check(p.returncode == 1 and "Permission denied" in p.stderr,
              "nobody: %d %r" % (p.returncode, p.stderr))
        print("  control socket: mode 0600, %d bad requests answered, a "
              "silent client dropped after %.1f s, another uid refused"
              % (len(cases), dropped))
    finally:
        d.stop()


def test_config_check():
    import tempfile
    with tempfile.TemporaryDirectory() as t:
        good = os.path.join(t, "good.json")
        with open(good, "w") as f:
            f.write('{"services": [{"name": "e", "listen": ["0"]}]}')
        p = subprocess.run([os.path.join(os.path.dirname(WORKER),
                            "netclusterd"), "-t", "-c", good],
                           capture_output=True, text=True)
        check(p.returncode == 0 and p.stdout == good +
              ": configuration OK\n", "good: %r %r" % (p.stdout, p.stderr))
        bad = os.path.join(t, "bad.json")
        with open(bad, "w") as f:
            f.write('{"services": [{"name": "e", "listen": ["0"],\n'
                    ' "mode": "rr"}]}')
        p = subprocess.run([os.path.join(os.path.dirname(WORKER),
                            "netclusterd"), "-t", "-c", bad],
                           capture_output=True, text=True)
        check(p.returncode == 1 and p.stderr == bad + ":2:10: services[0]."
              "mode: expected one of shared, round-robin, exclusive, "
              "reuseport, got \"rr\"\n", "bad: %r" % p.stderr)


run([test_config_check, test_shared, test_round_robin, test_reuseport,
     test_exclusive_port0_distinct, test_exclusive_eaddrinuse,
     test_get_connections, test_round_robin_full_workers_queue,
     test_kill_worker_shared,
     test_kill_worker_reuseport, test_kill_worker_round_robin,
     test_sigterm_storm, test_kill_master, test_hostile_worker, test_privilege_drop,
     test_pools_own_users_and_counts, test_control_socket])
