"""A scripted milter for the milter tests: Sendmail's milter protocol (version 6) written from
scratch with the standard library, on 127.0.0.1 or a unix socket.

ScriptedMilter(script=..., actions=..., protocol=..., symlist=...) answers the option negotiation
with the given action and protocol flags (and macro requests), then each command with what the
script says for its command byte ('C', 'H', 'M', 'R', 'T', 'U', 'L', 'N', 'B', 'E'):
a list of replies (each `(cmd, data)`, raw bytes sent as they are, or a float: seconds to
pause), "hang" (never answer),
"close" (hang up), or a callable (milter, data) returning one of these. Commands whose step the
milter negotiated away with NR_* flags are not answered. Everything received is recorded:
`events` (command byte, data) per connection and `macros` (the last value of each macro per
command byte)."""

import socket
import struct
import threading
import time

NR = {"C": 0x1000, "H": 0x2000, "M": 0x4000, "R": 0x8000, "T": 0x10000, "U": 0x20000,
      "N": 0x40000, "B": 0x80000, "L": 0x80}


def packet(cmd, data=b""):
    if isinstance(cmd, str):
        cmd = cmd.encode()
    return struct.pack(">I", len(data) + 1) + cmd + data


def replycode(text):
    return ("y", text.encode() + b"\0")


def header(name, value):
    return name.encode() + b"\0" + value.encode() + b"\0"


def strings(data):
    return [s.decode(errors="replace") for s in data.split(b"\0")[:-1]]


class ScriptedMilter:
    def __init__(self, script=None, actions=0x1FF, protocol=0, symlist=None, version=6, path=None,
                 negotiate=None):
        self.script = script or {}
        self.actions, self.protocol, self.version = actions, protocol, version
        self.symlist = symlist or {}
        self.negotiate = negotiate            # raw bytes answered to OPTNEG instead
        self.events = []                      # [(conn number, cmd, data)]
        self.macros = {}
        self.offered = None
        self.connections = 0
        self.lock = threading.Lock()
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.spec = "unix:" + path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.spec = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(64)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cmds(self, conn=None):
        """The command bytes received (macros, ABORT and QUIT left out), in order."""
        with self.lock:
            return "".join(c for n, c, _ in self.events if c not in "DAQ" and (conn is None or n == conn))

    def data_of(self, cmd):
        with self.lock:
            return [d for _, c, d in self.events if c == cmd]

    def close(self):
        self.stopped = True
        self.sock.close()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _read(self, c, n):
        b = b""
        while len(b) < n:
            k = c.recv(n - len(b))
            if not k:
                raise EOFError
            b += k
        return b

    def _answer(self, c, cmd, data):
        if cmd in NR and self.protocol & NR[cmd]:
            return True
        what = self.script.get(cmd)
        if callable(what):
            what = what(self, data)
        if what is None:
            what = [("c", b"")] if cmd in "CHMRTULNBE" else []
        if what == "hang":
            while not self.stopped:
                try:
                    c.settimeout(0.2)
                    if not c.recv(65536):
                        return False
                except socket.timeout:
                    continue
                except OSError:
                    return False
            return False
        if what == "close":
            c.close()
            return False
        for r in what:
            if isinstance(r, float):
                time.sleep(r)        # a slow milter (progress tests)
            else:
                c.sendall(r if isinstance(r, bytes) else packet(r[0], r[1]))
        return True

    def _serve(self, c, n):
        try:
            while True:
                size = struct.unpack(">I", self._read(c, 4))[0]
                body = self._read(c, size)
                cmd, data = chr(body[0]), body[1:]
                with self.lock:
                    self.events.append((n, cmd, data))
                if cmd == "O":
                    self.offered = struct.unpack(">III", data[:12])
                    if self.negotiate is not None:
                        c.sendall(self.negotiate)
                        continue
                    reply = struct.pack(">III", self.version, self.actions, self.protocol)
                    for where, names in self.symlist.items():
                        reply += struct.pack(">I", where) + names.encode() + b"\0"
                    c.sendall(packet("O", reply))
                    continue
                if cmd == "D":
                    parts = strings(data[1:])
                    with self.lock:
                        m = self.macros.setdefault(chr(data[0]), {})
                        for i in range(0, len(parts) - 1, 2):
                            m[parts[i]] = parts[i + 1]
                    continue
                if cmd in "AQK":
                    if cmd == "Q":
                        break
                    continue
                if not self._answer(c, cmd, data):
                    return
        except (EOFError, OSError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass


def wait_for(pred, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
