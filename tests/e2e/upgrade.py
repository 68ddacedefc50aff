"""An upgrade runs the new binary: netclusterd started from a copy in a
temporary directory, under a steady load of echo connections, has its
file replaced by a build of another version (renamed over it, as dpkg
does; then unlinked and written anew, as install does) and is upgraded:
the new version runs in the same pid, from the file on disk, and no
connection is lost. Files that are no working netclusterd (a script
that exits 1, garbage, a truncated binary, no exec permission, a -t that
refuses, a check that hangs) are refused with their reason, and the old
master serves on, untouched. Started by a symbolic link, the master
upgrades to where the link points then."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, Daemon, Failure, NETCLUSTERCTL, NETCLUSTERD,
                     SCALE, WORKER, check, load, run)

NEXT = os.path.join(BUILD, "tests", "netclusterd-next")
THREADS = 4


def version_of(binary):
    out = subprocess.run([binary, "-V"], capture_output=True, text=True,
                         timeout=10 * SCALE).stdout
    check(out.startswith("netclusterd "), "%s -V: %r" % (binary, out))
    return out.split()[1]


class Installed:
    """netclusterd run from a copy of the build in a directory of its
    own, so the test can replace the file; under load from start()."""

    def __init__(self):
        self.bindir = tempfile.mkdtemp(prefix="nc-bin.")
        self.path = os.path.join(self.bindir, "netclusterd")
        shutil.copy(NETCLUSTERD, self.path)
        self.d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"],
                          "mode": "shared"}], workers=2,
                        env={"NETCLUSTER_WORKER": WORKER},
                        binary=self.path)
        self.stats = {}
        self.during = {}
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.threads = []

    def start(self):
        self.d.wait_online()
        self.port = self.d.port()
        self.threads = [threading.Thread(target=load, args=(
            self.port, self.stop_load, self.stats, self.lock))
            for _ in range(THREADS)]
        for t in self.threads:
            t.start()

    def made(self):
        with self.lock:
            return self.stats.get("made", 0)

    def wait_traffic(self, n=1000):
        """Waits until n more connections were served."""
        target = self.made() + n
        deadline = time.monotonic() + 20 * SCALE
        while self.made() < target:
            check(time.monotonic() < deadline, "no traffic: %s" % self.stats)
            self.d.read_lines(0.05)

    def replace_rename(self, src):
        """dpkg's way: a new file beside, renamed over the old one."""
        tmp = self.path + ".dpkg-new"
        shutil.copy(src, tmp)
        os.rename(tmp, self.path)

    def replace_unlink(self, src, mode=0o755):
        """install's way: the old name unlinked, a new file written."""
        os.unlink(self.path)
        with open(src, "rb") as f, open(self.path, "wb") as g:
            g.write(f.read())
        os.chmod(self.path, mode)

    def write(self, data, mode=0o755):
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.rename(tmp, self.path)

    def upgrade(self):
        """netclusterctl upgrade; adds what the load saw while it ran
        to self.during."""
        with self.lock:
            before = dict(self.stats)
        p = subprocess.run([NETCLUSTERCTL, "-s", self.d.control,
                            "upgrade"], capture_output=True, text=True,
                           timeout=60 * SCALE)
        with self.lock:
            for k, v in self.stats.items():
                self.during[k] = self.during.get(k, 0) + v - before.get(k, 0)
        return p

    def exe(self):
        return os.readlink("/proc/%d/exe" % self.d.proc.pid)

    def finish(self):
        """Stops the load; returns its figures."""
        self.stop_load.set()
        for t in self.threads:
            t.join(30 * SCALE)
        return dict(self.stats)

    def close(self):
        self.stop_load.set()
        for t in self.threads:
            t.join(30 * SCALE)
        try:
            self.d.stop()
        finally:
            shutil.rmtree(self.bindir)


def check_runs(inst, version, pid):
    """version runs in pid, from the file at inst.path."""
    st = inst.d.ctl("status")
    check(st["pid"] == pid and inst.d.proc.poll() is None,
          "the master's pid changed: %d, was %d" % (st["pid"], pid))
    check(st["version"] == version, "status version %r, want %r" % (
        st["version"], version))
    check(st["binary"] == inst.path, "status binary %r" % st["binary"])
    check(st["binary_changed"] is False, "binary_changed after upgrade")
    check(inst.exe() == inst.path, "/proc/%d/exe is %r" % (pid, inst.exe()))


def test_upgrade_runs_the_new_binary():
    inst = Installed()
    try:
        old = version_of(inst.path)
        new = version_of(NEXT)
        check(old != new, "netclusterd-next has the same version %s" % old)
        inst.start()
        pid = inst.d.proc.pid
        check_runs(inst, old, pid)
        inst.wait_traffic()

        # 1. dpkg: renamed over. The running file is the deleted one now.
        inst.replace_rename(NEXT)
        st = inst.d.ctl("status")
        check(st["binary_changed"] is True and st["version"] == old,
              "status after the rename: %s" % st)
        check(inst.exe().endswith(" (deleted)"), "exe %r" % inst.exe())
        text = subprocess.run([NETCLUSTERCTL, "-s", inst.d.control,
                               "status"], capture_output=True, text=True,
                              timeout=10 * SCALE).stdout
        check("version %s, binary %s (replaced on disk" % (old, inst.path)
              in text, "status text: %r" % text)
        before = inst.made()
        p = inst.upgrade()
        check(p.returncode == 0 and p.stdout == "upgraded: netclusterd %s "
              "-> %s (pid %d)\n" % (old, new, pid),
              "upgrade: %d %r %r" % (p.returncode, p.stdout, p.stderr))
        check_runs(inst, new, pid)
        inst.wait_traffic()

        # 2. install: unlinked and written anew, back to the first build;
        # the path survived the first upgrade.
        inst.replace_unlink(NETCLUSTERD)
        check(inst.d.ctl("status")["binary_changed"] is True,
              "binary_changed after unlink+create")
        p = inst.upgrade()
        check(p.returncode == 0 and p.stdout == "upgraded: netclusterd %s "
              "-> %s (pid %d)\n" % (new, old, pid),
              "second upgrade: %d %r %r" % (p.returncode, p.stdout,
                                            p.stderr))
        check_runs(inst, old, pid)
        inst.wait_traffic()
        stats = inst.finish()
        print("  2 upgrades (%s -> %s -> %s), pid %d: %d connections, "
              "%s while netclusterctl upgrade ran, %d from the first "
              "upgrade on: %s" % (old, new, old, pid, sum(stats.values()),
                                  inst.during, stats.get("made", 0) - before,
                                  stats))
        bad = {k: v for k, v in stats.items() if k != "made"}
        check(not bad, "connections lost: %s" % bad)
        check(inst.during.get("made", 0) > 0, "no load while upgrading")
        check(sum("upgraded in place: pid %d" % pid in l
                  for l in inst.d.lines) == 2, "not 2 upgrades in place")
    finally:
        inst.close()


def test_refused_binaries():
    inst = Installed()
    try:
        old = version_of(inst.path)
        inst.start()
        pid = inst.d.proc.pid
        running = os.stat("/proc/%d/exe" % pid)
        workers = sorted(inst.d.worker_pids())
        with open(NETCLUSTERD, "rb") as f:
            real = f.read()
        cfg = inst.d.config
        cases = [
            ("a script that exits 1",
             lambda: inst.write(b"#!/bin/sh\nexit 1\n"),
             "%s is not a netclusterd: %s -V exited with status 1" % (
                 inst.path, inst.path)),
            ("garbage",
             lambda: inst.write(b"\0" + os.urandom(4095)),
             "cannot execute %s: Exec format error" % inst.path),
            # Cut inside its code: it crashes (a cut in the debug info
            # that follows would still run).
            ("a truncated binary",
             lambda: inst.write(real[:65536]),
             "%s is not a netclusterd: %s -V killed by signal" % (
                 inst.path, inst.path)),
            ("no exec permission",
             lambda: inst.replace_unlink(NEXT, mode=0o644),
             "cannot execute %s: Permission denied" % inst.path),
            ("a -t that refuses",
             lambda: inst.write(b"#!/bin/sh\n[ \"$1\" = -V ] && "
                                b"{ echo netclusterd 9.9; exit 0; }\n"
                                b"echo \"$3: bad config\"; exit 1\n"),
             "%s -t -c %s exited with status 1: %s: bad config" % (
                 inst.path, cfg, cfg)),
            ("a check that hangs",
             lambda: inst.write(b"#!/bin/sh\nexec sleep 600\n"),
             "%s -V did not finish within 5000 ms" % inst.path),
        ]
        for what, replace, reason in cases:
            inst.wait_traffic(100)
            replace()
            p = inst.upgrade()
            check(p.returncode == 1 and p.stderr.startswith(
                "netclusterctl: upgrade refused: ") and reason in p.stderr
                and p.stderr.count("\n") == 1,
                "%s: %d %r, want %r" % (what, p.returncode, p.stderr,
                                        reason))
            print("  %s: %s" % (what, p.stderr.strip()))
            st = inst.d.ctl("status")
            check(st["version"] == old and st["pid"] == pid and
                  st["binary_changed"] is True, "%s: status %s" % (what, st))
            now = os.stat("/proc/%d/exe" % pid)
            check((now.st_dev, now.st_ino) == (running.st_dev,
                  running.st_ino), "%s: another binary runs" % what)
            check(sorted(inst.d.worker_pids()) == workers,
                  "%s: workers replaced" % what)
            inst.d.wait_log("upgrade refused: ")
        inst.wait_traffic(100)
        # The refusals left nothing behind: a good file upgrades.
        inst.replace_rename(NEXT)
        p = inst.upgrade()
        check(p.returncode == 0, "upgrade after refusals: %r" % p.stderr)
        check_runs(inst, version_of(NEXT), pid)
        inst.wait_traffic(100)
        stats = inst.finish()
        print("  %d refusals, then an upgrade: %s" % (len(cases), stats))
        bad = {k: v for k, v in stats.items() if k != "made"}
        check(not bad, "connections lost: %s" % bad)
    finally:
        inst.close()


def test_upgrade_follows_a_symlink():
    """Started by a symbolic link (as alternatives or a versioned install
    lay it out), the master keeps the link's name: re-pointed, the link
    leads the upgrade to the other file."""
    d = None
    bindir = tempfile.mkdtemp(prefix="nc-bin.")
    try:
        for name, src in (("v1", NETCLUSTERD), ("v2", NEXT)):
            os.mkdir(os.path.join(bindir, name))
            shutil.copy(src, os.path.join(bindir, name, "netclusterd"))
        link = os.path.join(bindir, "netclusterd")
        os.symlink("v1/netclusterd", link)
        d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"]}], workers=1,
                   env={"NETCLUSTER_WORKER": WORKER}, binary=link)
        d.wait_online()
        st = d.ctl("status")
        check(st["binary"] == link and st["binary_changed"] is False,
              "status: %s" % st)
        tmp = link + ".new"
        os.symlink("v2/netclusterd", tmp)
        os.rename(tmp, link)
        check(d.ctl("status")["binary_changed"] is True,
              "re-pointed link not seen")
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "upgrade"],
                           capture_output=True, text=True,
                           timeout=60 * SCALE)
        check(p.returncode == 0 and "-> %s " % version_of(NEXT) in p.stdout,
              "upgrade: %r %r" % (p.stdout, p.stderr))
        print("  by a link re-pointed to v2: %s" % p.stdout.strip())
        st = d.ctl("status")
        check(st["binary"] == link and st["binary_changed"] is False and
              st["version"] == version_of(NEXT), "after: %s" % st)
        check(os.readlink("/proc/%d/exe" % d.proc.pid) == os.path.join(
              bindir, "v2", "netclusterd"), "exe %r" % os.readlink(
              "/proc/%d/exe" % d.proc.pid))
    finally:
        try:
            if d is not None:
                d.stop()
        finally:
            shutil.rmtree(bindir)


run([test_upgrade_runs_the_new_binary, test_refused_binaries,
     test_upgrade_follows_a_symlink])
