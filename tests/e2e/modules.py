"""Handler modules: the example module serves through netclusterd with
its options; netclusterd -t names the path and the reason when a module
does not load or is built for another API version."""

import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, NETCLUSTERD, Daemon, check, run

UPPER = os.path.join(BUILD, "examples", "modules", ".libs", "uppercase.so")
BAD = os.path.join(BUILD, "tests", "modules", ".libs", "badversion.so")


def module_service(path, **kw):
    s = {"name": "upper", "handler": "module", "module": path,
         "listen": ["127.0.0.1:0"]}
    s.update(kw)
    return [s]


def test_example_module_serves():
    for mode in ("shared", "round-robin"):
        module_serves(mode)


def module_serves(mode):
    d = Daemon(module_service(UPPER, options={"greeting": "ready"},
                              mode=mode), workers=2)
    try:
        d.wait_online()
        for _ in range(4):
            c = socket.create_connection(("127.0.0.1", d.port()), timeout=10)
            c.sendall(b"hello world\nmixed Case\n")
            got = b""
            while got.count(b"\n") < 3:
                got += c.recv(100)
            c.close()
            check(got == b"ready\nHELLO WORLD\nMIXED CASE\n", "got %r" % got)
        print("  uppercase.so through 2 workers, %s: greeting and upper "
              "case" % mode)
    finally:
        d.stop()


def check_t(path, want):
    with tempfile.TemporaryDirectory() as t:
        conf = os.path.join(t, "c.json")
        with open(conf, "w") as f:
            f.write('{"services": [{"name": "m", "handler": "module", '
                    '"module": "%s", "listen": ["0"]}]}' % path)
        p = subprocess.run([NETCLUSTERD, "-t", "-c", conf],
                           capture_output=True, text=True)
        check(p.returncode == 1, "exit %d for %s" % (p.returncode, path))
        # FILE:LINE:COL, the column where the module's path starts
        col = len('{"services": [{"name": "m", "handler": "module", '
                  '"module": ') + 1
        check(p.stderr == "%s:1:%d: services[0].module: %s\n" % (
              conf, col, want), "got %r" % p.stderr)


def test_t_reports_bad_modules():
    missing = os.path.join(BUILD, "no-such-module.so")
    check_t(missing, "cannot load %s: %s: cannot open shared object file: "
            "No such file or directory" % (missing, missing))
    check_t(BAD, "%s is built for handler API version 42, this netcluster "
            "has version 1" % BAD)
    with tempfile.NamedTemporaryFile(suffix=".so") as junk:
        junk.write(b"not an ELF file" * 100)
        junk.flush()
        check_t(junk.name, "cannot load %s: %s: invalid ELF header" % (
            junk.name, junk.name))


run([test_example_module_serves, test_t_reports_bad_modules])
