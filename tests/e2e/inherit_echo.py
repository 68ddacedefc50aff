#!/usr/bin/env python3
"""An echo server that does not link libnetcluster: it takes its
listening sockets as systemd passes them (sd_listen_fds(3): LISTEN_PID,
LISTEN_FDS, fds from 3), as netclusterd's "handler": "program" does.
Each connection is greeted with "hello\\r\\n" and gets its bytes back; a
connection whose first bytes are "pid\\n" gets instead one line saying
who answered ("pid P listen_pid L fds N names NAMES"). On SIGTERM it
closes its listeners, lets open connections finish, and exits 0. With
INHERIT_ECHO_NOISE=N, it first writes N long lines on stderr.

With a message channel ("messages": true: NETCLUSTER_MESSAGE_FD, lines
of JSON), a client line "broadcast JSON" sends JSON to the other
workers, and each message that comes is logged as "inherit_echo: pid P
message from ID: JSON"."""

import json
import os
import socket
import sys

from inherited import EchoLoop, listen_fds


class InheritEcho(EchoLoop):
    def __init__(self, chan):
        super().__init__()
        self.chan = chan
        self.inbox = b""
        if chan is not None:
            self.watch(chan, self.message)

    def message(self, key):
        d = self.chan.recv(65536)
        if not d:
            self.sel.unregister(self.chan)
            return
        self.inbox += d
        while b"\n" in self.inbox:
            line, self.inbox = self.inbox.split(b"\n", 1)
            m = json.loads(line)
            print("inherit_echo: pid %d message from %d: %s" % (
                os.getpid(), m["from"], json.dumps(
                    m["message"], separators=(",", ":"))),
                file=sys.stderr, flush=True)

    def on_data(self, conn, data, first):
        if first and data.startswith(b"pid\n"):
            data = ("pid %d listen_pid %s fds %s names %s\n" % (
                os.getpid(), os.environ.get("LISTEN_PID"),
                os.environ.get("LISTEN_FDS"),
                os.environ.get("LISTEN_FDNAMES"))).encode()
        if self.chan is not None:
            for line in data.split(b"\n"):
                if line.startswith(b"broadcast "):
                    self.chan.sendall(line[10:].strip() + b"\n")
        return data

    def on_stop(self):
        print("<5>inherit_echo: SIGTERM, closing %d listeners, "
              "%d connections open" % (len(self.listeners), len(self.conns)),
              file=sys.stderr, flush=True)
        return True


def main():
    listeners = listen_fds()
    if not listeners:
        print("<3>inherit_echo: no sockets passed (LISTEN_FDS)",
              file=sys.stderr, flush=True)
        return 1
    chan = None
    if os.environ.get("NETCLUSTER_MESSAGE_FD"):
        chan = socket.socket(fileno=int(os.environ["NETCLUSTER_MESSAGE_FD"]))
    loop = InheritEcho(chan)
    loop.serve(listeners)
    # For the tests of the master's log: lines too long, with a control
    # character, at warning priority, NOISE of them.
    for _ in range(int(os.environ.get("INHERIT_ECHO_NOISE", "0"))):
        print("<4>noise \x01" + "x" * 2000, file=sys.stderr)
    print("inherit_echo: pid %d serving %d sockets (%s)" % (
        os.getpid(), len(listeners), os.environ.get("LISTEN_FDNAMES")),
        file=sys.stderr, flush=True)
    return loop.run()


if __name__ == "__main__":
    sys.exit(main())
