"""Scripted content filters for the filter tests, both small SMTP servers on 127.0.0.1:

- AfterQueueFilter, in the style of amavisd-new (FILTER_README's "advanced content filter"): it
  receives mail from postern-smtp, adds a header and reinjects each message with the same
  envelope (and the XFORWARD it got, when the return listener offers it) over SMTP into Postern's
  return listener; its answer to postern-smtp is the reinjection's.
- BeforeQueueProxy (SMTPD_PROXY_README): postern-smtpd talks to it during the client's session;
  it relays each message (with the XFORWARD it got) to Postern's listener that queues it and
  answers with that reply.

Each keeps what it received, so tests count messages end to end."""

import smtplib
import socket
import threading

from smtp_peers import read_data


def unstuff(data):
    """DATA as read (dot-stuffed, CRLF) without the dot-stuffing, ready for smtplib to send."""
    body = data.replace(b"\r\n..", b"\r\n.")
    return body[1:] if body.startswith(b"..") else body


def relay(port, helo, sender, rcpts, body, xforward=None):
    """Sends body over SMTP to 127.0.0.1:port (first the XFORWARD command line given, when the
    server offers it); the server's reply as bytes ("250 2.0.0 Ok ...")."""
    try:
        with smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=30) as s:
            s.ehlo()
            code = 250
            if xforward and s.has_extn("xforward"):
                code, text = s.docmd(xforward)
            if code == 250:
                code, text = s.mail(sender)
            for r in rcpts:
                if code == 250:
                    code, text = s.rcpt(r)
            if code == 250:
                code, text = s.data(body)
            return b"%d %s" % (code, text)
    except (OSError, smtplib.SMTPException) as e:
        return b"451 4.3.0 relay failed: " + str(e).encode()


class _SmtpServer:
    """A threaded SMTP server: subclasses answer RCPT (rcpt_reply) and the message
    (message_reply; None: no answer until the client goes away); every command line of each
    connection is kept in self.sessions."""

    ehlo = b"250-test.filter\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    mail_reply = b"250 2.1.0 Ok"
    data_reply = b"354 End data with <CR><LF>.<CR><LF>"

    def __init__(self, port=None):
        self.lock = threading.Lock()
        self.sessions = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def rcpt_reply(self, rcpt):
        return b"250 2.1.5 Ok"

    def message_reply(self, sender, rcpts, data, commands):
        raise NotImplementedError

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        commands = []
        with self.lock:
            self.sessions.append(commands)
        sender, rcpts = None, []
        try:
            conn.sendall(b"220 test.filter ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().decode(errors="replace")
                commands.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                arg = cmd.split(":", 1)[1].split(">")[0].strip(" <") if ":" in cmd else ""
                reply = None
                if verb == "EHLO":
                    conn.sendall(self.ehlo)
                elif verb == "HELO":
                    reply = b"250 test.filter"
                elif verb == "XFORWARD" and b"XFORWARD" in self.ehlo:
                    reply = b"250 2.0.0 Ok"
                elif verb == "MAIL":
                    sender, rcpts, reply = arg, [], self.mail_reply
                elif verb == "RCPT":
                    reply = self.rcpt_reply(arg)
                    if reply.startswith(b"2"):
                        rcpts.append(arg)
                elif verb == "DATA":
                    conn.sendall(self.data_reply + b"\r\n")
                    data = read_data(f)
                    if data is None:
                        return
                    commands.append("<message>")
                    reply = self.message_reply(sender, list(rcpts), data, commands)
                    if reply is None:
                        f.read()          # no answer until the client gives up
                        return
                    sender, rcpts = None, []
                elif verb in ("RSET", "NOOP"):
                    if verb == "RSET":
                        sender, rcpts = None, []
                    reply = b"250 2.0.0 Ok"
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    reply = b"502 5.5.2 Error: command not recognized"
                if reply is not None:
                    conn.sendall(reply + b"\r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept() and stops listening
        except OSError:
            pass
        self.sock.close()


class AfterQueueFilter(_SmtpServer):
    """Reinjects into Postern's return listener on reinject_port with header on top. A message
    containing b"FILTER-REJECT" is refused with 554 (as a filter that finds a virus)."""

    ehlo = b"250-test.filter\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 XFORWARD NAME ADDR PROTO HELO IDENT SOURCE\r\n"

    def __init__(self, reinject_port, header=b"X-Test-Filter: scanned", port=None):
        self.reinject_port = reinject_port
        self.header = header
        self.received = []      # (sender, [recipients], data)
        super().__init__(port)

    def count(self):
        with self.lock:
            return len(self.received)

    def message_reply(self, sender, rcpts, data, commands):
        with self.lock:
            self.received.append((sender, rcpts, data))
        if b"FILTER-REJECT" in data:
            return b"554 5.7.0 Rejected by the test filter"
        # the XFORWARD postern-smtp sent in this session, passed on (as amavisd-new does)
        xforward = next((c for c in reversed(commands) if c.upper().startswith("XFORWARD ")), None)
        return relay(self.reinject_port, "filter.test", sender, rcpts, self.header + b"\r\n" + unstuff(data),
                     xforward)


class BeforeQueueProxy(_SmtpServer):
    """Answers MAIL and RCPT itself and relays each message to Postern's listener on relay_port.
    Scripted refusals: a recipient containing "proxyreject" gets 550 ("proxygarbage": a line that
    is no SMTP reply); a message containing b"PROXY-REJECT" gets 554; one containing
    b"PROXY-HANG" gets no answer at all."""

    ehlo = b"250-proxy.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-DSN\r\n250 XFORWARD NAME ADDR PROTO HELO\r\n"
    mail_reply = b"250 2.1.0 Sender ok at the proxy"
    data_reply = b"354 Go ahead, proxy listening"

    def __init__(self, relay_port):
        self.relay_port = relay_port
        self.relayed = []       # (sender, [recipients], data) the queueing listener accepted
        super().__init__()

    def relayed_count(self):
        with self.lock:
            return len(self.relayed)

    def rcpt_reply(self, rcpt):
        if "proxygarbage" in rcpt:
            return b"this is not SMTP"
        return b"550 5.7.1 Recipient refused by the proxy" if "proxyreject" in rcpt else b"250 2.1.5 Recipient ok at the proxy"

    def message_reply(self, sender, rcpts, data, commands):
        if b"PROXY-HANG" in data:
            return None
        if b"PROXY-REJECT" in data:
            return b"554 5.7.1 Message refused by the proxy"
        xforward = next((c for c in reversed(commands) if c.upper().startswith("XFORWARD ")), None)
        reply = relay(self.relay_port, "proxy.test", sender, rcpts, unstuff(data), xforward)
        if reply.startswith(b"250"):
            with self.lock:
                self.relayed.append((sender, rcpts, data))
        return reply
