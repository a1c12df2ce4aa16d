"""A real SMTP server with TLS for the postern-smtp TLS tests (Python's ssl, i.e. OpenSSL, as
the peer of Postern's GnuTLS client): STARTTLS offered or not, implicit TLS (wrappermode, port
465 style), a STARTTLS that breaks the handshake, and the plaintext-injection case where the
220 to STARTTLS and a fake reply arrive in one write, or a refused STARTTLS; optionally a SASL
server inside TLS (auth=, e.g. scram_server.ScramServer) and a TLS version cap (tls_max=). It
records per connection whether TLS was on, the SNI the client sent, the commands and messages."""

import socket
import ssl
import time

from smtp_peers import ThreadedListener, read_data


class TlsSmtpServer(ThreadedListener):
    def __init__(self, cert, key, starttls=True, wrapper=False, break_handshake=False,
                 inject=False, refuse=None, stall=False, name="tls-peer", host="127.0.0.1", port=0,
                 client_ca=None, requiretls=False, auth=None, tls_max=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
        if tls_max:
            self.ctx.maximum_version = tls_max
        self.auth = auth             # .mechanisms (the AUTH keyword's list), .exchange(conn, f, cmd)
        if client_ca:
            # ask for a client certificate and verify it against client_ca (none is also fine)
            self.ctx.verify_mode = ssl.CERT_OPTIONAL
            self.ctx.load_verify_locations(cafile=str(client_ca))
        self.client_certs = []       # per TLS handshake: the client's certificate (DER) or None
        self.requiretls = requiretls  # offer REQUIRETLS (RFC 8689) inside TLS
        self.ctx.sni_callback = self._sni
        self.starttls, self.wrapper = starttls, wrapper
        self.break_handshake, self.inject, self.name = break_handshake, inject, name
        self.refuse = refuse         # a reply to STARTTLS instead of 220
        self.stall = stall           # after the 220 to STARTTLS: silence (a handshake that hangs)
        self.tls_connections = 0
        self.resumed = []            # per TLS handshake: whether it resumed an earlier session
        self.sni = []                # server names seen in ClientHellos
        self.commands = []           # (tls?, command line)
        self.messages = []           # (tls?, message bytes)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.port = sock.getsockname()[1]
        self._listen(sock, 50)

    def _sni(self, sslobj, server_name, ctx):
        self.sni.append(server_name)

    def _wrap(self, conn):
        conn.settimeout(10)
        t = self.ctx.wrap_socket(conn, server_side=True)
        self.tls_connections += 1
        self.resumed.append(t.session_reused)
        self.client_certs.append(t.getpeercert(binary_form=True))
        return t

    def _session(self, conn):
        tls = False
        try:
            conn.settimeout(30)
            if self.wrapper:
                conn = self._wrap(conn)
                tls = True
            f = conn.makefile("rb")
            conn.sendall(f"220 {self.name} ESMTP\r\n".encode())
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").rstrip("\r\n")
                self.commands.append((tls, cmd))
                verb = cmd.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb in ("EHLO", "LHLO"):   # LHLO: LMTP, fine for one recipient (one reply after DATA)
                    kw = ["PIPELINING", "SIZE 10240000", "8BITMIME"]
                    if self.starttls and not tls:
                        kw.append("STARTTLS")
                    if tls:
                        # only inside TLS: the client must see it there
                        kw.append(f"AUTH {self.auth.mechanisms if self.auth else 'PLAIN'}")
                    if tls and self.requiretls:
                        kw.append("REQUIRETLS")
                    lines = [self.name] + kw
                    conn.sendall("".join(f"250{'-' if i < len(lines) - 1 else ' '}{l}\r\n"
                                         for i, l in enumerate(lines)).encode())
                elif verb == "STARTTLS" and self.starttls and not tls and self.refuse:
                    conn.sendall(self.refuse.encode() + b"\r\n")
                elif verb == "STARTTLS" and self.starttls and not tls:
                    if self.inject:
                        # One write: the 220 and a reply the client must never take as one.
                        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n250 injected\r\n")
                    else:
                        conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                    if self.stall and self.connections == 1:
                        time.sleep(5)   # a stalled peer: no handshake
                        return
                    if self.break_handshake:
                        conn.sendall(b"this is not a TLS record\r\n" * 4)
                        return
                    f.close()
                    conn = self._wrap(conn)
                    tls = True
                    f = conn.makefile("rb")
                elif verb == "AUTH" and tls and self.auth:
                    self.auth.exchange(conn, f, cmd)
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    data = read_data(f)
                    if data is None:
                        return
                    self.messages.append((tls, data))
                    conn.sendall(f"250 2.0.0 Ok: queued as TLS{len(self.messages)}{'T' if tls else 'P'}\r\n".encode())
                elif verb == "QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"502 5.5.2 unknown command\r\n")
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

