"""Helpers for the postern-smtpd integration tests: a raw SMTP client that sends exact bytes
(pipelined batches, bare LFs, NUL bytes, overlong lines) and reads replies one at a time.
No tests live here; the test_smtpd_*.py modules import it (and mailtest.py for messages and
queue ids)."""

import contextlib
import socket
import sqlite3
import threading
import time


class Raw:
    """A byte-exact SMTP client on a TCP port or an AF_UNIX path."""

    def __init__(self, port=None, source=None, path=None, sock=None, timeout=10):
        if sock is not None:
            self.s = sock
        elif path is not None:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(str(path))
        else:
            self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if source:
                self.s.bind((source, 0))
            self.s.connect(("127.0.0.1", port))
        self.s.settimeout(timeout)
        self.buf = b""
        self.greeting = self.reply()

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("connection closed; pending: %r" % self.buf)
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def reply(self):
        """Returns (code, [lines of text]) of one (possibly multi-line) reply."""
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), lines

    def text(self):
        code, lines = self.reply()
        return f"{code} " + "\n".join(lines)

    def cmd(self, line):
        """Sends one command line (CRLF added) and returns its reply as 'CODE text'."""
        self.send(line.encode() + b"\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.text()

    def is_closed(self, timeout=5):
        """True when the server closed the connection (after any pending bytes)."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, TimeoutError):
            return False
        except ConnectionResetError:
            return True


def connect_from(postern, source):
    """A plain socket to the smtp port from the loopback address source (10 s timeout)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.connect(("127.0.0.1", postern.smtp_port))
    s.settimeout(10)
    return s


def read_line(s):
    """One line (to its newline) that socket s receives, as text; the rest stays unread."""
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(1)
        if not d:
            break
        buf += d
    return buf.decode()


def read_all(s):
    """Everything socket s receives until the server closes it, as text."""
    out = b""
    while True:
        d = s.recv(4096)
        if not d:
            return out.decode()
        out += d


def raw(postern, source=None, **kw):
    return Raw(port=postern.smtp_port, source=source, **kw)


def transaction(c, rcpts=("ptest1@localhost",), sender="a@example.org", mail_params="",
                helo="EHLO client.test"):
    """Greets, then MAIL FROM (with mail_params) and one RCPT TO per address on raw client c, each
    of which must be accepted."""
    c.send(helo + "\r\n")
    assert c.reply()[0] == 250
    assert c.cmd(f"MAIL FROM:<{sender}>{mail_params}") == "250 2.1.0 Ok"
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>") == "250 2.1.5 Ok"


def open_data(c, rcpts=("ptest1@localhost",), helo="EHLO client.test", sender="a@example.org"):
    """transaction(), then DATA, which must be answered 354: the message text comes next."""
    transaction(c, rcpts=rcpts, sender=sender, helo=helo)
    assert c.cmd("DATA") == "354 End data with <CR><LF>.<CR><LF>"


def send_message(postern, message, rcpts=("ptest1@localhost",), sender="a@example.org", source=None):
    """One message (LF form; CRLF and the end of data are added) through a raw client from source,
    with transaction(); returns the reply to the end of data as 'CODE text'."""
    with raw(postern, source=source) as c:
        transaction(c, rcpts=rcpts, sender=sender)
        assert c.cmd("DATA").startswith("354")
        c.send(message.replace("\n", "\r\n") + "\r\n.\r\n")
        reply = c.text()
        assert c.cmd("QUIT").startswith("221")
    return reply


def raw_message(postern, data, source=None):
    """Sends data (message text and end of data, exact bytes) after open_data() on a fresh raw
    client (from source); returns the reply to it as 'CODE text'."""
    with raw(postern, source=source) as c:
        open_data(c)
        c.send(data)
        return c.text()


def start_smtpd(postern, **params):
    if params:
        postern.configure(**params)
    postern.start("smtpd")


RELAY = "permit_mynetworks, reject_unauth_destination"
OUTSIDE = "127.0.0.2"   # a client outside start_relay()'s mynetworks


def start_relay(postern, **params):
    """smtpd alone with mynetworks = 127.0.0.1/32 and smtpd_relay_restrictions = RELAY (params add
    to or override them): clients from OUTSIDE may not relay."""
    start_smtpd(postern, **(dict(mynetworks="127.0.0.1/32", smtpd_relay_restrictions=RELAY) | params))


def session(postern, source=OUTSIDE, helo="client.test", sender="s@example.org"):
    """A raw client from source that has sent EHLO helo and MAIL FROM:<sender>, each accepted
    (helo None: no EHLO; sender None: no MAIL)."""
    c = raw(postern, source=source)
    if helo:
        assert c.cmd(f"EHLO {helo}").startswith("250")
    if sender is not None:
        r = c.cmd(f"MAIL FROM:<{sender}>")
        assert r == "250 2.1.0 Ok", r
    return c


@contextlib.contextmanager
def queue_write_locked(postern):
    """Holds the write lock of queue.db (which a first message creates) for the block (BEGIN
    IMMEDIATE), so smtpd's commits wait; yields the connection (execute ROLLBACK on it to let
    them go on). The lock is given up at the end in any case."""
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), isolation_level=None, timeout=1)
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    finally:
        if con.in_transaction:
            con.execute("ROLLBACK")
        con.close()


def queue_ids(postern):
    return [r[0] for r in postern.queue_rows("SELECT queue_id FROM messages ORDER BY id")]


def content_of(postern, queue_id):
    rows = postern.queue_rows("SELECT c.data FROM content c JOIN messages m ON m.id = c.message_id "
                              "WHERE m.queue_id = ?", (queue_id,))
    assert rows, f"no content for {queue_id}"
    data = rows[0][0]
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def wait_until(pred, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)   # the poll interval of a wait with a deadline
    return pred()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedPolicy:
    """A policy server on a unix or TCP socket. `answers` is a list consumed per request:
    "action=..." text to answer, "close" (hang up), "garbage" (an answer without action=),
    "slow" (never answer), "huge" (an endless answer). Every answer waits `delay` seconds first
    (a slow but working server)."""

    def __init__(self, tmp_path, answers, unix=False, delay=0):
        self.answers = list(answers)
        self.delay = delay
        self.requests = []
        self.connections = 0
        self.closed = 0         # connections that ended (either side hung up)
        if unix:
            self.path = str(tmp_path / "policy.sock")
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(self.path)
            self.service = "unix:" + self.path
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.service = "inet:127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(16)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        try:
            self._converse(conn)
        finally:
            self.closed += 1

    def _converse(self, conn):
        f = conn.makefile("rb")
        with conn:
            while True:
                req = {}
                while True:
                    line = f.readline()
                    if not line:
                        return
                    line = line.decode().rstrip("\n")
                    if line == "":
                        break
                    k, _, v = line.partition("=")
                    req[k] = v
                self.requests.append(req)
                ans = self.answers.pop(0) if self.answers else "action=DUNNO"
                if self.delay:
                    time.sleep(self.delay)   # a slow but working server
                if ans == "close":
                    return
                if ans == "slow":
                    time.sleep(5)   # the answer that never comes (smtpd's timeout is shorter)
                    return
                if ans == "garbage":
                    conn.sendall(b"hello there\nwhat=ever\n\n")
                elif ans == "huge":
                    try:
                        conn.sendall(b"x" * 100000)
                    except OSError:
                        pass
                    return
                else:
                    conn.sendall(ans.encode() + b"\n\n")

    def close(self):
        self.sock.close()
