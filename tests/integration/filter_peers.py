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
        self.sock.close()
