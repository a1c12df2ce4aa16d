"""Real SMTP/LMTP peers for the postern-smtp tests: Postfix's smtp-sink (counting and dumping
what it receives), aiosmtpd servers with scripted replies, and a small scripted line server for
the stages aiosmtpd cannot fail (greeting, DATA itself, silence, per-recipient LMTP replies)."""

import os
import pathlib
import socket
import subprocess
import threading
import time


def peer_factory(start):
    """The body of a fixture that makes peers on demand: yields make(*args, **kw) -> start(...)
    and stops every peer made when the test ends. Use as `yield from peer_factory(Scripted)`."""
    made = []

    def make(*args, **kw):
        p = start(*args, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def read_data(f):
    """The message a client sends after a 354, up to (not including) the "." line, as bytes
    (still dot-stuffed, CRLF kept); None when the client goes away first."""
    data = b""
    while True:
        line = f.readline()
        if not line:
            return None
        if line == b".\r\n":
            return data
        data += line


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(host, port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)   # polling until the port listens, with a deadline
    raise RuntimeError(f"nothing listens on {host}:{port}")


class Sink:
    """smtp-sink on host:port dumping each message into its own file under dump_dir."""

    def __init__(self, dump_dir, host="127.0.0.1", port=None, extra=()):
        self.host = host
        self.port = port or free_port(host)
        self.dump_dir = pathlib.Path(dump_dir)
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dump_dir, 0o777)
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "-d", f"{self.dump_dir}/%M.",
                                      *extra, f"{host}:{self.port}", "1000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(host, self.port)
        self.probe_connections = 1

    def _files_being_written(self):
        """The dump files smtp-sink still holds open: it creates a message's file when the
        transaction starts and closes it at the end of DATA, so an open one is incomplete."""
        fd_dir = pathlib.Path(f"/proc/{self.proc.pid}/fd")
        names = set()
        try:
            fds = list(fd_dir.iterdir())
        except FileNotFoundError:
            return names
        for fd in fds:
            try:
                names.add(os.readlink(fd))
            except OSError:
                pass
        return names

    def messages(self):
        """The messages received completely (files smtp-sink has closed)."""
        open_now = self._files_being_written()
        files = sorted(p for p in self.dump_dir.rglob("*") if p.is_file() and str(p) not in open_now)
        return [f.read_bytes() for f in files]

    def wait_count(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages()) >= n:
                return self.messages()
            time.sleep(0.05)   # the poll interval of a wait with a deadline
        raise AssertionError(f"smtp-sink got {len(self.messages())} messages, expected {n}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


class ThreadedListener:
    """The accept loop the scripted servers share: a listening socket, one thread per
    connection running self._session(conn), a connection count, the clients' addresses, stop()."""

    def _listen(self, sock, backlog=100):
        self.sock = sock
        self.sock.listen(backlog)
        self.connections = 0
        self.peers = []             # the client address of each connection (TCP: host, UNIX: "")
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.peers.append(addr[0] if isinstance(addr, tuple) else "")
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def stop(self):
        """Stops listening at once: close() alone leaves a thread blocked in accept() holding the
        socket, still listening (and answering the next test's connections on that port)."""
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes accept() (EINVAL)
        except OSError:
            pass
        self.thread.join(timeout=5)
        self.sock.close()


class Scripted(ThreadedListener):
    """A line-based SMTP (or LMTP) server on TCP or a UNIX socket. `replies` maps a stage
    ("greeting", "EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "DOT", "RSET") to the reply
    text; "RCPT" and "DOT" may be callables taking the recipient (or the list of accepted
    recipients for LMTP "DOT") and returning one reply (or a list of replies). A reply of None
    means: say nothing and keep the connection open (to provoke timeouts)."""

    EHLO = "250-scripted\r\n250-PIPELINING\r\n250-SIZE {size}\r\n250-8BITMIME\r\n250 DSN"

    def __init__(self, replies=None, unix_path=None, size=10240000, lmtp=False, ehlo=None):
        self.replies = {"greeting": "220 scripted ESMTP", "EHLO": ehlo or self.EHLO.format(size=size),
                        "LHLO": ehlo or self.EHLO.format(size=size), "HELO": "250 scripted",
                        "MAIL": "250 2.1.0 Ok", "RCPT": "250 2.1.5 Ok", "DATA": "354 go ahead",
                        "DOT": "250 2.0.0 Ok: queued as SCRIPTED", "RSET": "250 2.0.0 Ok",
                        "QUIT": "221 2.0.0 Bye"}
        self.replies.update(replies or {})
        self.lmtp = lmtp
        self.commands = []          # every command line received, in order
        self.messages = []          # message bodies as received (dot-stuffed wire form)
        if unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(str(unix_path))
            self.address = str(unix_path)
        else:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._listen(sock)

    def _reply(self, conn, stage, arg=None):
        r = self.replies.get(stage)
        if callable(r):
            r = r(arg)
        if r is None:
            return False
        for line in (r if isinstance(r, list) else [r]):
            conn.sendall(line.encode() + b"\r\n")
        return True

    def _session(self, conn):
        f = conn.makefile("rb")
        accepted = []
        mail_ok = False
        try:
            if not self._reply(conn, "greeting"):
                time.sleep(3600)   # a stalled peer: never answer
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").rstrip("\r\n")
                self.commands.append(cmd)
                verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb in ("RCPT", "DATA") and not mail_ok:
                    conn.sendall(b"503 5.5.1 Error: need MAIL command\r\n")
                    continue
                if verb == "DATA" and not accepted:
                    conn.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
                    continue
                if verb == "RCPT":
                    addr = cmd[cmd.index("<") + 1:cmd.index(">")]
                    r = self.replies["RCPT"]
                    rep = r(addr) if callable(r) else r
                    if rep is None:
                        time.sleep(3600)   # a stalled peer: never answer (the docstring's None)
                    conn.sendall(rep.encode() + b"\r\n")
                    if rep.startswith("2"):
                        accepted.append(addr)
                    continue
                if verb in ("MAIL", "RSET"):
                    accepted = []
                    mail_ok = False
                if verb == "MAIL":
                    mail_ok = self.replies["MAIL"].startswith("2")
                if verb == "DATA":
                    if not self._reply(conn, "DATA"):
                        time.sleep(3600)   # a stalled peer: never answer
                    if not self.replies["DATA"].startswith("354"):
                        continue
                    data = read_data(f)
                    if data is None:
                        return
                    self.messages.append(data)
                    mail_ok = False
                    r = self.replies["DOT"]
                    if callable(r):
                        r = r(accepted)
                    if r is None:
                        time.sleep(3600)   # a stalled peer: never answer
                    for rep in (r if isinstance(r, list) else [r] * (len(accepted) if self.lmtp else 1)):
                        conn.sendall(rep.encode() + b"\r\n")
                    continue
                if verb in self.replies:
                    if not self._reply(conn, verb):
                        time.sleep(3600)   # a stalled peer: never answer
                    r = self.replies[verb]
                    if verb == "QUIT" or (isinstance(r, str) and r.startswith("421")):
                        return
                else:
                    conn.sendall(b"502 5.5.2 unknown command\r\n")
        except OSError:
            return
        finally:
            conn.close()



class Handler:
    """aiosmtpd handler answering MAIL, RCPT and end of data as told: mail/data are fixed
    replies, rcpt(address) returns a reply or None (None: accept); records what it accepted."""

    def __init__(self, mail=None, rcpt=None, data=None):
        self.mail, self.rcpt, self.data = mail, rcpt, data
        self.envelopes = []
        self.peers = []        # client address of each EHLO

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.peers.append(session.peer[0])
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail:
            return self.mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = (self.rcpt(address) if self.rcpt else None) or "250 2.1.5 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return self.data or "250 2.0.0 accepted"

