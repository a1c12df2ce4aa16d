"""Scripted content filters for the filter tests: an after-queue SMTP filter in the style of
amavisd-new (FILTER_README's "advanced content filter"): it listens on 127.0.0.1, receives mail
from postern-smtp, adds a header and reinjects each message with the same envelope over SMTP into
Postern's return listener; the answer it gives postern-smtp is the reinjection's. Every message
it received is kept (envelope and data) so tests can count them end to end."""

import smtplib
import socket
import threading

from smtp_peers import read_data


class AfterQueueFilter:
    """An SMTP server on 127.0.0.1:port (a free one when port is None). reinject_port: Postern's
    return listener. header: the line it adds at the top. A message whose data contains
    b"FILTER-REJECT" is refused with 554 (as a filter that finds a virus)."""

    def __init__(self, reinject_port, header=b"X-Test-Filter: scanned", port=None):
        self.reinject_port = reinject_port
        self.header = header
        self.received = []      # (sender, [recipients], data)
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.received)

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _reinject(self, sender, rcpts, data):
        """The message back into Postern, the filter's header on top; the reply to give."""
        body = data.replace(b"\r\n..", b"\r\n.")
        if body.startswith(b".."):
            body = body[1:]
        try:
            with smtplib.SMTP("127.0.0.1", self.reinject_port, local_hostname="filter.test", timeout=30) as s:
                s.sendmail(sender, rcpts, self.header + b"\r\n" + body)
            return b"250 2.0.0 Ok: reinjected"
        except smtplib.SMTPResponseException as e:
            return b"%d %s" % (e.smtp_code, e.smtp_error)
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            return b"%d %s" % (code, text)
        except (OSError, smtplib.SMTPException) as e:
            return b"451 4.3.0 reinjection failed: " + str(e).encode()

    def _serve(self, conn):
        f = conn.makefile("rb")
        send = conn.sendall
        sender, rcpts = None, []
        try:
            send(b"220 filter.test ESMTP test filter\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().decode(errors="replace")
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "LHLO"):
                    send(b"250-filter.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == "HELO":
                    send(b"250 filter.test\r\n")
                elif verb == "MAIL":
                    sender, rcpts = cmd.split(":", 1)[1].split(">")[0].strip(" <"), []
                    send(b"250 2.1.0 Ok\r\n")
                elif verb == "RCPT":
                    rcpts.append(cmd.split(":", 1)[1].split(">")[0].strip(" <"))
                    send(b"250 2.1.5 Ok\r\n")
                elif verb == "DATA":
                    send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    data = read_data(f)
                    if data is None:
                        return
                    with self.lock:
                        self.received.append((sender, list(rcpts), data))
                    reply = (b"554 5.7.0 Rejected by the test filter" if b"FILTER-REJECT" in data
                             else self._reinject(sender, rcpts, data))
                    send(reply + b"\r\n")
                    sender, rcpts = None, []
                elif verb == "RSET":
                    sender, rcpts = None, []
                    send(b"250 2.0.0 Ok\r\n")
                elif verb == "NOOP":
                    send(b"250 2.0.0 Ok\r\n")
                elif verb == "QUIT":
                    send(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    send(b"502 5.5.2 Error: command not recognized\r\n")
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


class BeforeQueueProxy:
    """A before-queue proxy filter (SMTPD_PROXY_README) on 127.0.0.1: it answers MAIL and RCPT
    itself and, at the end of DATA, relays the message to Postern's listener on relay_port (which
    queues it) and answers with that listener's reply. Scripted refusals: a recipient containing
    "proxyreject" gets 550; a message containing b"PROXY-REJECT" gets 554; one containing
    b"PROXY-HANG" gets no answer at all (until the client goes away). Keeps each session's
    commands (self.sessions) and each relayed message (self.relayed)."""

    def __init__(self, relay_port):
        self.relay_port = relay_port
        self.sessions = []      # lists of command lines, one list per connection
        self.relayed = []       # (sender, [recipients], data)
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def relayed_count(self):
        with self.lock:
            return len(self.relayed)

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _relay(self, sender, rcpts, data):
        body = data.replace(b"\r\n..", b"\r\n.")
        if body.startswith(b".."):
            body = body[1:]
        try:
            with smtplib.SMTP("127.0.0.1", self.relay_port, local_hostname="proxy.test", timeout=30) as s:
                s.ehlo()
                code, text = s.mail(sender)
                if code != 250:
                    return b"%d %s" % (code, text)
                for r in rcpts:
                    code, text = s.rcpt(r)
                    if code != 250:
                        return b"%d %s" % (code, text)
                code, text = s.data(body)
                with self.lock:
                    if code == 250:
                        self.relayed.append((sender, list(rcpts), data))
                return b"%d %s" % (code, text)
        except (OSError, smtplib.SMTPException) as e:
            return b"451 4.3.0 relay failed: " + str(e).encode()

    def _serve(self, conn):
        f = conn.makefile("rb")
        send = conn.sendall
        commands = []
        with self.lock:
            self.sessions.append(commands)
        sender, rcpts = None, []
        try:
            send(b"220 proxy.test ESMTP test proxy\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.strip().decode(errors="replace")
                commands.append(cmd)
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    send(b"250-proxy.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 DSN\r\n")
                elif verb == "MAIL":
                    sender, rcpts = cmd.split(":", 1)[1].split(">")[0].strip(" <"), []
                    send(b"250 2.1.0 Sender ok at the proxy\r\n")
                elif verb == "RCPT":
                    rcpt = cmd.split(":", 1)[1].split(">")[0].strip(" <")
                    if "proxyreject" in rcpt:
                        send(b"550 5.7.1 Recipient refused by the proxy\r\n")
                    else:
                        rcpts.append(rcpt)
                        send(b"250 2.1.5 Recipient ok at the proxy\r\n")
                elif verb == "DATA":
                    send(b"354 Go ahead, proxy listening\r\n")
                    data = read_data(f)
                    if data is None:
                        return
                    commands.append("<message>")
                    if b"PROXY-HANG" in data:
                        f.read()          # no answer until the client gives up
                        return
                    reply = (b"554 5.7.1 Message refused by the proxy" if b"PROXY-REJECT" in data
                             else self._relay(sender, rcpts, data))
                    send(reply + b"\r\n")
                elif verb == "RSET":
                    sender, rcpts = None, []
                    send(b"250 2.0.0 Ok\r\n")
                elif verb == "QUIT":
                    send(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    send(b"502 5.5.2 Error: command not recognized\r\n")
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
