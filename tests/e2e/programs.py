"""Programs that do not link libnetcluster ("handler": "program"): an echo
server in Python (inherit_echo.py) and one in Node.js (inherit_echo.js),
each taking its sockets as systemd passes them, in shared and reuseport
mode. Traffic reaches every worker; a worker killed with SIGKILL is
replaced; 20 reloads under load lose no connection; an upgrade adopts
them; a stop drains them (SIGTERM reaches the program, which closes its
listener and exits 0); their stderr lines reach the master's log with
the worker's id; their connections are counted from the kernel, or
unknown (null) where the master cannot see them, never a made-up 0;
LISTEN_PID is
the program's pid. netclusterd -t refuses round-robin, exclusive and a
command the workers' user cannot execute, with the position."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, NETCLUSTERCTL, NETCLUSTERD, SCALE, Reachable,
                     check, run)
from harness import reloads_under_load as harness_reloads

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = shutil.which("node")
DURATION = 10.0         # seconds of load
RELOADS = 20
THREADS = 8


def command(prog):
    if prog == "python":
        return [sys.executable, os.path.join(HERE, "inherit_echo.py")]
    return [NODE, os.path.join(HERE, "inherit_echo.js")]


def program_service(prog, mode, **kw):
    s = {"name": "echo", "handler": "program", "listen": ["127.0.0.1:0"],
         "mode": mode, "command": command(prog), "env": {"NC_TEST": "1"},
         "cwd": HERE, "sockets": "inherit"}
    s.update(kw)
    return s


def ask_pid(port):
    """Who answers a connection: (pid, LISTEN_PID, LISTEN_FDS, names)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE)
    try:
        c.sendall(b"pid\n")
        got = b""
        while not got.endswith(b"\n") or got.count(b"\n") < 2:
            d = c.recv(256)
            if not d:
                break
            got += d
    finally:
        c.close()
    m = re.search(rb"pid (\d+) listen_pid (\S+) fds (\S+) names (\S+)\n", got)
    check(got.startswith(b"hello\r\n") and m, "bad answer %r" % got)
    return (int(m.group(1)), m.group(2).decode(), m.group(3).decode(),
            m.group(4).decode())


def reach_all(d, port, pids, tries=200, shared=False):
    """Connects until every pid in pids answered; checks LISTEN_*. In
    shared mode the kernel wakes every program and the first to run
    takes the connection, which on a busy machine may be the same one
    every time: then each of the others is made the only one running
    (the rest SIGSTOPped) and must answer."""
    seen = set()

    def ask():
        pid, listen_pid, nfds, names = ask_pid(port)
        check(str(pid) == listen_pid, "LISTEN_PID %s in pid %d" % (
            listen_pid, pid))
        check(nfds == "1" and names == "echo", "LISTEN_FDS %s, "
              "LISTEN_FDNAMES %s" % (nfds, names))
        check(pid in pids, "answered by %d, not a worker %s" % (pid, pids))
        seen.add(pid)
        return pid

    for _ in range(tries):
        ask()
        if seen == set(pids):
            return
        d.read_lines(0)
    check(shared, "only %s of %s answered in %d connections" % (
        seen, pids, tries))
    for target in set(pids) - seen:
        others = [p for p in pids if p != target]
        try:
            for p in others:
                os.kill(p, signal.SIGSTOP)
            pid = ask()
        finally:
            for p in others:
                os.kill(p, signal.SIGCONT)
        check(pid == target, "answered by %d with only %d running" % (
            pid, target))


def wait_serving(d, timeout=15):
    """Until each current worker's program said it serves, in the log,
    with the worker's id and its own pid; returns the pids."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        ws = d.ctl("workers")["workers"]
        want = {(w["id"], w["pid"]) for w in ws if w["state"] == "online"}
        got = set()
        for l in d.lines:
            m = re.search(r"worker (\d+) \[pid (\d+)\]: inherit_echo\S*: "
                          r"pid (\d+) serving", l)
            if m and m.group(2) == m.group(3):
                got.add((int(m.group(1)), int(m.group(2))))
        if len(want) == d.workers and want <= got:
            return sorted(p for _, p in want)
        check(time.monotonic() < deadline, "programs not serving: want "
              "%s, logged %s" % (want, got))
        d.read_lines(0.2)


def counts(d):
    """Each worker's count, the status and connections totals."""
    ws = d.ctl("workers")["workers"]
    st = d.ctl("status")
    return ([w["count"] for w in ws], st["connections"],
            st["services"][0]["connections"],
            d.ctl("connections")["connections"])


def wait_counts(d, want, timeout=10):
    """Until the kernel's count of the programs' connections is want,
    everywhere it shows: the workers' counts add up to it, and the
    totals of status and connections are it."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        per, total, service, conns = counts(d)
        if (all(isinstance(n, int) for n in per) and sum(per) == want
                and total == service == conns == want):
            return per
        check(time.monotonic() < deadline, "counts %s, totals %s %s %s; "
              "want %d" % (per, total, service, conns, want))
        d.read_lines(0.1)


def check_counts_kernel(d, port):
    """A program cannot be asked: its connections are counted from the
    kernel (the sockets its process holds on its service's listeners)."""
    wait_counts(d, 0)
    held = []
    try:
        for _ in range(6):
            c = socket.create_connection(("127.0.0.1", port),
                                         timeout=5 * SCALE)
            held.append(c)
            got = b""
            while not got.startswith(b"hello\r\n"):
                b = c.recv(16)
                check(b, "closed before the greeting")
                got += b
        per = wait_counts(d, 6)
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "workers"],
                           capture_output=True, text=True,
                           timeout=10 * SCALE)
        rows = [r for r in p.stdout.splitlines() if r[:1].isdigit()]
        check(sorted(int(r.split()[-1]) for r in rows) == sorted(per),
              p.stdout)
    finally:
        for c in held:
            c.close()
    wait_counts(d, 0)


def reloads_under_load(d, port, what="reload", n=RELOADS):
    # A program is online at exec, before it accepts (there is no
    # channel to say more): the next reload waits until this generation
    # serves, or a slow starter could be replaced before it ever
    # accepted, and the backlog wait for seconds.
    done, stats, elapsed = harness_reloads(
        d, port, n, DURATION, THREADS, command=what,
        after=lambda i: wait_serving(d, timeout=30))
    d.wait_log("online; older workers drain", n)
    return done, stats, elapsed


def program_suite(prog, mode):
    if prog == "node" and NODE is None:
        print("  skipped: no node")
        return
    d = Daemon([program_service(prog, mode)], workers=2,
               extra={"shutdown_timeout_ms": 5000})
    try:
        d.wait_online()
        port = d.port()
        pids = wait_serving(d)
        reach_all(d, port, pids, shared=mode == "shared")
        check_counts_kernel(d, port)

        # SIGKILL: replaced at once, and the new one serves.
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        d.wait_log("[pid %d] (slot" % victim)
        d.wait_log("killed by signal 9")
        d.wait_online(3)
        pids = wait_serving(d)
        check(victim not in pids, "pid %d still listed" % victim)
        reach_all(d, port, pids, shared=mode == "shared")

        done, stats, elapsed = reloads_under_load(d, port)
        total = sum(stats.values())
        print("  %s %s: %d reloads in %.1f s, %d connections (%.0f/s): %s"
              % (prog, mode, done, elapsed, total, total / elapsed, stats))
        bad = {k: v for k, v in stats.items() if k != "made"}
        check(not bad, "lost connections during reloads: %s" % bad)
        # Between a generation's exec and its first accept, the load
        # waits in the backlog: a slow starter (node on a busy machine)
        # makes it light, but every reload must happen under load.
        check(stats.get("made", 0) >= 2 * RELOADS,
              "load too light: %s" % stats)
        pids = wait_serving(d, timeout=30)
        reach_all(d, port, pids, shared=mode == "shared")
        # The drained ones ended as programs should: SIGTERM, exit 0.
        check(any(re.search(r"notice: worker \d+ \[pid \d+\]: inherit_echo"
                            r"\S*: SIGTERM, closing", l) for l in d.lines),
              "no SIGTERM line at notice from a program")
        last = d.lines[:]
    finally:
        d.stop()
    # Stop: each program got SIGTERM, closed its listener, exited 0.
    for pid in pids:
        check(any("[pid %d]: inherit_echo" % pid in l and "SIGTERM, closing"
                  in l for l in d.lines), "pid %d: no SIGTERM line" % pid)
        check(any("[pid %d] (slot" % pid in l and "exited with status 0" in
                  l for l in d.lines), "pid %d did not exit 0" % pid)
    check(len(d.lines) > len(last), "nothing logged at stop")


def test_python_shared():
    program_suite("python", "shared")


def test_python_reuseport():
    program_suite("python", "reuseport")


def test_node_shared():
    program_suite("node", "shared")


def test_node_reuseport():
    program_suite("node", "reuseport")


def test_counts_unknown():
    """Where the master cannot read a program's fds (a program of another
    user, and no CAP_SYS_PTRACE, as under the shipped unit), its count is
    unknown (null, shown "?"), never a made-up 0, and so are its
    service's totals."""
    tmp = tempfile.mkdtemp(prefix="nc-e2e-noptrace.")
    wrapper = os.path.join(tmp, "netclusterd")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec setpriv --bounding-set -sys_ptrace "
                "--inh-caps -sys_ptrace %s \"$@\"\n" % NETCLUSTERD)
    os.chmod(wrapper, 0o755)
    # The system's python: nobody may run it, wherever ours is installed;
    # the program and its cwd where nobody may reach them, wherever the
    # checkout is.
    reach = Reachable()
    d = None
    try:
        reach.copy(os.path.join(HERE, "inherited.py"))   # what it imports
        d = Daemon([program_service("python", "shared", command=[
            shutil.which("python3", path="/usr/bin:/bin"),
            reach.copy(os.path.join(HERE, "inherit_echo.py"))],
            cwd=reach.dir)], workers=2, extra={"user": "nobody"},
            binary=wrapper)
        d.wait_online()
        port = d.port()
        reach_all(d, port, wait_serving(d))
        per, total, service, conns = counts(d)
        check(per == [None, None] and total is None and service is None
              and conns is None, "counts %s, totals %s %s %s" % (
                  per, total, service, conns))
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "workers"],
                           capture_output=True, text=True,
                           timeout=10 * SCALE)
        rows = [r for r in p.stdout.splitlines() if r[:1].isdigit()]
        check(len(rows) == d.workers and all(r.split()[-1] == "?"
                                             for r in rows), p.stdout)
    finally:
        if d is not None:
            d.stop()
        reach.remove()
        shutil.rmtree(tmp, ignore_errors=True)


def message_suite(prog):
    """With "messages": true, a program on inherited sockets gets a
    channel of JSON lines (Node's own IPC: process.send and
    process.on('message') as they are): what one worker sends reaches
    every other worker in order, never itself; netclusterctl send
    reaches all; a line that is not JSON is dropped and logged."""
    if prog == "node" and NODE is None:
        print("  skipped: no node")
        return
    d = Daemon([program_service(prog, "shared", messages=True)],
               workers=3)
    try:
        d.wait_online()
        pids = wait_serving(d)
        ids = {w["pid"]: w["id"] for w in d.ctl("workers")["workers"]}
        port = d.port()
        n = 100
        c = socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE)
        try:
            got = b""
            while not got.startswith(b"hello\r\n"):
                b = c.recv(64)
                check(b, "closed before the greeting")
                got += b
            c.setblocking(True)
            c.sendall(b"pid\n")
            while b"listen_pid" not in got:
                b = c.recv(256)
                check(b, "closed before the pid")
                got += b
            sender = int(re.search(rb"pid (\d+) listen_pid", got).group(1))
            c.sendall(b"".join(b'broadcast {"seq": %d}\n' % i
                               for i in range(n)))
            pat = re.compile(r"\[pid (\d+)\]: inherit_echo\S*: pid \d+ "
                             r'message from (\d+): \{"seq":(\d+)\}')
            deadline = time.monotonic() + 20 * SCALE
            while True:
                seen = {}
                for l in d.lines:
                    m = pat.search(l)
                    if m:
                        seen.setdefault(int(m.group(1)), []).append(
                            (int(m.group(2)), int(m.group(3))))
                others = [p for p in pids if p != sender]
                if all(len(seen.get(p, [])) >= n for p in others):
                    break
                check(time.monotonic() < deadline, "messages seen: %s" % {
                    p: len(v) for p, v in seen.items()})
                d.read_lines(0.1)
            for p in others:
                check(seen[p] == [(ids[sender], i) for i in range(n)],
                      "pid %d got them out of order or from elsewhere: %s"
                      % (p, seen[p][:5]))
            check(sender not in seen, "the sender got its own messages")
            if prog == "python":
                # A line that is not JSON: dropped, logged; the channel
                # goes on.
                c.sendall(b'broadcast {bad\nbroadcast {"after": 1}\n')
                d.wait_log("[pid %d]: a message that is not JSON" % sender)
                for p in others:
                    d.wait_log('[pid %d]: inherit_echo: pid %d message from '
                               '%d: {"after":1}' % (p, p, ids[sender]))
        finally:
            c.close()
        out = subprocess.run([NETCLUSTERCTL, "-s", d.control, "send", "echo",
                              '{"op": "flush"}'], capture_output=True,
                             text=True, timeout=10 * SCALE)
        check(out.returncode == 0 and "sent to 3 workers" in out.stdout,
              out.stdout + out.stderr)
        for p in pids:
            d.wait_log('[pid %d]: inherit_echo' % p + ("" if prog == "python"
                       else ".js") + ': pid %d message from 0: '
                       '{"op":"flush"}' % p)
    finally:
        d.stop()


def test_python_messages():
    message_suite("python")


def test_node_messages():
    message_suite("node")


def test_messages_refused():
    """Without "messages", a program on inherited sockets has no channel:
    netclusterctl send says so, and -t refuses "messages" for a program
    linked with libnetcluster (its messages go on its channel)."""
    d = Daemon([program_service("python", "shared")], workers=1)
    try:
        d.wait_online()
        out = subprocess.run([NETCLUSTERCTL, "-s", d.control, "send", "echo",
                              "1"], capture_output=True, text=True,
                             timeout=10 * SCALE)
        check(out.returncode == 1 and "without a channel" in out.stderr,
              out.stderr)
    finally:
        d.stop()
    rc, out, path = configtest(program_service(
        "python", "round-robin", sockets="cluster", messages=True))
    check(rc == 1 and "services[0].messages: a program linked with "
          "libnetcluster" in out, out)


def test_upgrade_adopts_programs():
    """netclusterctl upgrade under load: the new master adopts the
    programs (their pids, their output pipes), starts a new generation,
    and SIGTERMs the adopted ones, whose last words still reach the log."""
    d = Daemon([program_service("python", "reuseport")], workers=2,
               extra={"shutdown_timeout_ms": 5000})
    try:
        d.wait_online()
        port = d.port()
        old = wait_serving(d)
        done, stats, elapsed = reloads_under_load(d, port, "upgrade", 3)
        print("  upgrade: %d upgrades in %.1f s: %s" % (done, elapsed,
                                                        stats))
        check(d.proc.poll() is None, "the master's pid changed")
        bad = {k: v for k, v in stats.items() if k != "made"}
        check(not bad, "lost connections during upgrades: %s" % bad)
        for pid in old:
            d.wait_log("[pid %d] of generation 1 adopted" % pid)
            d.wait_log("[pid %d]: inherit_echo: SIGTERM, closing" % pid)
            d.wait_log("[pid %d] of generation 1 exited with status 0" %
                       pid)
        reach_all(d, port, wait_serving(d, timeout=30))
    finally:
        d.stop()


def test_output_lines():
    """A chatty program: its lines are cut at 1024 bytes, keep their
    <N> priority, have control characters escaped, and the master
    answers its control socket meanwhile."""
    d = Daemon([program_service("python", "shared",
                                env={"INHERIT_ECHO_NOISE": "500"})],
               workers=1)
    try:
        d.wait_online()
        t0 = time.monotonic()
        d.ctl("status")
        d.wait_log("[line cut]", 500, timeout=30)
        pid = wait_serving(d)[0]
        noise = [l for l in d.lines if "noise" in l]
        check(all(("warning: worker 1 [pid %d]: noise \\x01xxx" % pid) in l
                  and len(l) < 1200 for l in noise), noise[0])
        print("  500 lines of 2000 bytes logged in %.1f s" % (
            time.monotonic() - t0))
    finally:
        d.stop()


def test_exec_failure_logged():
    """A command -t accepts but exec refuses (its interpreter is gone):
    the reason reaches the log, and the slot restarts with back-off."""
    dir = tempfile.mkdtemp(prefix="nc-programs.")
    script = os.path.join(dir, "prog")
    with open(script, "w") as f:
        f.write("#!/nonexistent/interpreter\n")
    os.chmod(script, 0o755)
    try:
        d = Daemon([program_service("python", "shared", command=[script])],
                   workers=1)
        try:
            d.wait_log("cannot run %s: exec: No such file or directory" %
                       script, 2)
            d.wait_log("exited with status 127", 2)
            check(not any(" online" in l for l in d.lines), "went online")
        finally:
            d.stop()
    finally:
        shutil.rmtree(dir)


def configtest(service, extra=None):
    """netclusterd -t on a config whose service is on line 3: (rc, out)."""
    dir = tempfile.mkdtemp(prefix="nc-programs.")
    try:
        path = os.path.join(dir, "netcluster.json")
        import json
        with open(path, "w") as f:
            f.write('{"control_socket": %s,%s\n "services": [\n  %s\n]}\n' % (
                json.dumps(os.path.join(dir, "c.sock")),
                "".join(' "%s": %s,' % (k, json.dumps(v))
                        for k, v in (extra or {}).items()),
                ",\n  ".join(json.dumps(x) for x in (
                    service if isinstance(service, list) else [service]))))
        p = subprocess.run([NETCLUSTERD, "-t", "-c", path],
                           capture_output=True, text=True, timeout=30 * SCALE)
        return p.returncode, p.stdout + p.stderr, path
    finally:
        shutil.rmtree(dir)


def test_configtest_refuses():
    svc = program_service("python", "shared")
    rc, out, _ = configtest(svc)
    check(rc == 0 and "configuration OK" in out, out)
    cases = [
        (dict(mode="round-robin"), r"services\[0\]\.mode: mode round-robin "
         r"needs a program linked with libnetcluster"),
        (dict(mode="exclusive"), r"services\[0\]\.mode: mode exclusive "
         r"needs a program linked with libnetcluster"),
        (dict(command=["bin/echo"]), r"services\[0\]\.command\[0\]: "
         r"expected an absolute path"),
        (dict(command=["/nonexistent/prog"]), r"services\[0\]\.command\[0\]:"
         r" /nonexistent/prog: No such file"),
        (dict(cwd="/nonexistent"), r"services\[0\]\.cwd: /nonexistent: "
         r"No such file or directory"),
        (dict(cwd="/etc/passwd"), r"services\[0\]\.cwd: /etc/passwd: "
         r"not a directory"),
        (dict(env={"LISTEN_FDS": "3"}), r"services\[0\]\.env\.LISTEN_FDS: "
         r"netclusterd sets LISTEN_FDS itself"),
        (dict(sockets="library"), r"services\[0\]\.sockets: expected one of "
         r"inherit"),
        (dict(max_connections=5), r"services\[0\]\.max_connections: the "
         r"program handler does not take"),
    ]
    nonexec = tempfile.NamedTemporaryFile(prefix="nc-prog.", delete=False)
    nonexec.close()
    os.chmod(nonexec.name, 0o644)
    cases.append((dict(command=[nonexec.name]), r"services\[0\]\."
                  r"command\[0\]: %s: not executable by the workers' user"
                  % re.escape(nonexec.name)))
    try:
        for change, want in cases:
            s = dict(svc)
            s.update(change)
            rc, out, path = configtest(s)
            check(rc == 1, "rc %d for %s: %s" % (rc, change, out))
            check(re.search(r"^%s:3:\d+: %s" % (re.escape(path), want), out,
                            re.M), "%s: want %r, got %r" % (change, want,
                                                            out))
        # As the workers' user: root may run it, nobody may not. The
        # only thing nobody may not use is the file (the cwd is one it
        # may enter, wherever the checkout is).
        if os.geteuid() == 0:
            os.chmod(nonexec.name, 0o700)
            s = dict(svc)
            s["command"] = [nonexec.name]
            with Reachable() as reach:
                s["cwd"] = reach.dir
                rc, out, _ = configtest(s)
                check(rc == 0, "root cannot run a 0700 file of its own: %s"
                      % out)
                rc, out, path = configtest(s, {"user": "nobody"})
            lines = out.splitlines()
            check(rc == 1 and len(lines) == 1 and re.search(
                r"^%s:3:\d+: services\[0\]\.command\[0\]: %s: not "
                r"executable by the workers' user" % (
                    re.escape(path), re.escape(nonexec.name)), out, re.M),
                out)
    finally:
        os.unlink(nonexec.name)
    # A program beside another service: each has a pool of its own.
    rc, out, path = configtest([svc, {"name": "e2", "listen": ["127.0.0.1:0"]}])
    check(rc == 0, "a program beside the echo service: %s" % out)


if __name__ == "__main__":
    run([test_configtest_refuses, test_output_lines,
         test_exec_failure_logged, test_python_shared,
         test_python_reuseport, test_node_shared, test_node_reuseport,
         test_counts_unknown, test_python_messages, test_node_messages,
         test_messages_refused, test_upgrade_adopts_programs])
