"""What the fake workers of the end-to-end tests share (fake_worker.py,
hostile_worker.py, forging_worker.py, handoff_worker.py): counting how
often the master started them, becoming the real worker, and their end
of the channel to the master (docs/protocol.md): packets with fds, and a
bounded wait for the master to end them."""

import array
import json
import os
import socket


def starts(counter):
    """How often this worker was started before (the file counter counts
    them), counting this start."""
    try:
        n = int(open(counter).read())
    except (OSError, ValueError):
        n = 0
    with open(counter, "w") as f:
        f.write(str(n + 1))
    return n


def become_real(path):
    """This process becomes the real worker, path."""
    os.execv(path, ["netcluster-worker"])


class Channel:
    """The master's channel, fd NETCLUSTER_CHANNEL_FD (3): blocking, with
    a timeout in seconds if one is given."""

    def __init__(self, timeout=None):
        self.sock = socket.socket(fileno=int(os.environ.get(
            "NETCLUSTER_CHANNEL_FD", "3")))
        self.sock.setblocking(True)
        if timeout is not None:
            self.sock.settimeout(timeout)
        self.seq = 0

    def send_raw(self, data, fds=(), flags=0):
        """One packet as it is, with fds."""
        anc = []
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    array.array("i", fds).tobytes())]
        self.sock.sendmsg([data], anc, flags)

    def send(self, msg, fds=(), flags=0):
        """One JSON message: its seq (and fds count) set here."""
        self.seq += 1
        msg["seq"] = self.seq
        if fds:
            msg["fds"] = len(fds)
        self.send_raw(json.dumps(msg).encode(), fds, flags)

    def recv(self):
        """One packet and the fds that came with it."""
        fds = array.array("i")
        data, anc, _, _ = self.sock.recvmsg(65536,
                                            socket.CMSG_SPACE(16 * 4))
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(cdata[:len(cdata) - len(cdata) %
                                    fds.itemsize])
        return data, list(fds)

    def wait_end(self, timeout=10):
        """Reads until the master closes the channel (it kills a worker
        that broke the protocol), at most timeout seconds."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
