#!/usr/bin/env python3
"""No peer can forge a line of the log (src/common/log.c escapes every
message). Three sources a peer controls, each on the daemon's stderr as
the harness captures it, then with JOURNAL_STREAM naming that pipe (the
lines start with journald's "<N>"):
  type     a worker's message type "x\\n<0>forged type" (forging_worker.py),
           logged in the protocol error line
  fatal    a worker's fatal message "boom\\n<0>forged fatal"
  program  a program's stderr, "line\\n<0>forged output\\r\\n" and
           "a\\x1b[31mb\\n": a line each (docs/programs.md), a leading
           "<N>" its priority, never above err
Every line starts with the daemon's own prefix (time, ident and level; or
"<3>" to "<7>"), nothing after it looks like a priority, "forged" is only
ever inside the line that logged it, and no control character (ESC, CR)
reaches the output raw."""

import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Daemon, NETCLUSTERD, WORKER, check, echo_service, run

HERE = os.path.dirname(os.path.abspath(__file__))
FORGER = os.path.join(HERE, "forging_worker.py")
LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info",
          "debug"]
PLAIN = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [\w.-]+\[\d+\]: "
                   r"(err|warning|notice|info|debug): ")
JOURNAL = re.compile(r"<([0-7])>")
WORKER_RE = r"worker (\d+) \[pid (\d+)\]: "

# The program: writes its forgeries, then idles (at most 60 s) until the
# master stops it.
PROGRAM = r"""import select, sys
sys.stderr.write("line\n<0>forged output\r\n")
sys.stderr.write("a\x1b[31mb\n")
sys.stderr.flush()
select.select([], [], [], 60)
"""

# netclusterd with JOURNAL_STREAM set to its own stderr's device:inode,
# as systemd sets it for a service whose stderr is the journal.
JOURNAL_WRAPPER = """#!/bin/sh
JOURNAL_STREAM=$(stat -L -c %%d:%%i /proc/self/fd/2)
export JOURNAL_STREAM
exec '%s' "$@"
"""


def split(line, journal):
    """(level word, the rest) of a line, or (None, line) if the line does
    not start with the daemon's own prefix."""
    if journal:
        m = JOURNAL.match(line)
        return (LEVELS[int(m.group(1))], line[m.end():]) if m else \
            (None, line)
    m = PLAIN.match(line)
    return (m.group(1), line[m.end():]) if m else (None, line)


def forge(source, journal, wanted):
    """Runs the daemon with the forging peer of source until each of
    wanted ((level, body regex) in the order logged) is in the log, then
    checks every line. Returns the lines that matched."""
    tmp = tempfile.mkdtemp(prefix="nc-logs.")
    d = None
    try:
        env = {}
        binary = None
        if source == "program":
            prog = os.path.join(tmp, "forger.py")
            with open(prog, "w") as f:
                f.write(PROGRAM)
            services = [{"name": "echo", "handler": "program",
                         "sockets": "inherit", "listen": ["127.0.0.1:0"],
                         "command": [sys.executable, prog]}]
        else:
            services = [echo_service()]
            env = {"NETCLUSTER_WORKER": FORGER, "FORGE_WHAT": source,
                   "FORGE_COUNTER": os.path.join(tmp, "count"),
                   "FORGE_REAL_WORKER": WORKER}
        if journal:
            binary = os.path.join(tmp, "netclusterd")
            with open(binary, "w") as f:
                f.write(JOURNAL_WRAPPER % NETCLUSTERD)
            os.chmod(binary, 0o755)
        d = Daemon(services, workers=1, env=env, binary=binary)
        d.wait_log("forged")
        d.wait_online()
        if source == "program":
            d.wait_log("31mb")
    finally:
        if d is not None:
            d.stop()        # reads the rest of the log
        shutil.rmtree(tmp, ignore_errors=True)
    lines = d.lines
    check(d.buf == b"", "a log line without its newline: %r" % d.buf)
    raw = [l for l in lines if re.search(r"[\x00-\x1f\x7f]", l)]
    check(not raw, "control characters reached the log raw: %r" % raw[:3])
    found = []
    for line in lines:
        level, rest = split(line, journal)
        check(level is not None, "a line without the daemon's prefix "
              "(journal %s): %r" % (journal, line))
        check(level in LEVELS[3:], "a line at %s: %r" % (level, line))
        check(not line.startswith("<0>") and not line.startswith("forged")
              and not re.match(r"<\d>|forged", rest),
              "a forged line: %r" % line)
        if len(found) < len(wanted) and level == wanted[len(found)][0] and \
                re.fullmatch(wanted[len(found)][1], rest):
            found.append(line)
        else:
            check("forged" not in line, "forged text in a line of its own "
                  "or in another: %r" % line)
    check(len(found) == len(wanted), "%s (journal %s): wanted %s in order, "
          "found %s; log:\n%s" % (source, journal, [w[1] for w in wanted],
                                  found, "\n".join(lines)))
    # The line names the peer that sent it: the worker that started.
    for line in found:
        wid, pid = re.search(WORKER_RE, line).groups()
        check(any(re.search(r"service echo: worker %s \[pid %s\] \(slot 0\) "
                            r"started" % (wid, pid), l) for l in lines),
              "no worker %s [pid %s] started: %r" % (wid, pid, line))
    print("  %s, %s:\n%s" % (source, "journal" if journal else "plain",
                             "\n".join("    " + l for l in found)))
    return found


def test_message_type():
    for journal in (False, True):
        forge("type", journal, [
            ("err", WORKER_RE + r'protocol error: unknown message '
             r'"x\\x0a<0>forged type" in state starting')])


def test_fatal():
    for journal in (False, True):
        forge("fatal", journal, [
            ("err", WORKER_RE + r"service echo: boom\\x0a<0>forged fatal")])


def test_program_output():
    """A program's lines are its own, each logged as one: the newline
    ends the first, "<0>" is the second's priority, taken as err (the
    most a peer gets), the CR before the newline is not the line's, and
    ESC is escaped."""
    for journal in (False, True):
        forge("program", journal, [
            ("info", WORKER_RE + r"line"),
            ("err", WORKER_RE + r"forged output(\\x0d)?"),
            ("info", WORKER_RE + r"a\\x1b\[31mb")])


run([test_message_type, test_fatal, test_program_output])
