"""The server side of SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677, channel binding
tls-unique of RFC 5929) for one user, for TlsSmtpServer(auth=...): written here from the RFCs with
hashlib/hmac, so that postern-smtp's client is checked against an implementation of its own. It
verifies the gs2 header (-PLUS must bind tls-unique; "y" is refused when -PLUS was offered, the
downgrade RFC 5802 6 detects), the channel binding data against the server's own TLS session,
the nonce and the client proof; then sends v= and 235, or 535. Python's ssl has tls-unique only,
so the TLS server that uses it runs at TLS 1.2."""

import base64
import hashlib
import hmac
import os


def _b64(b):
    return base64.b64encode(b).decode()


def _hmac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


class ScramServer:
    def __init__(self, user, password, plus=True, iterations=4096):
        self.user, self.iterations, self.plus = user, iterations, plus
        self.salt = os.urandom(16)
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, iterations)
        self.stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        self.server_key = _hmac(salted, b"Server Key")
        self.mechanisms = "SCRAM-SHA-256-PLUS SCRAM-SHA-256" if plus else "SCRAM-SHA-256"
        self.results = []      # (mechanism, gs2 header, c= decoded, accepted?)

    def exchange(self, conn, f, cmd):
        """Runs the AUTH command cmd on the TLS socket conn (f: its reader) to its final reply."""
        words = cmd.split(" ")
        mech = words[1].upper()
        ir = words[2] if len(words) > 2 else None
        if ir is None:
            conn.sendall(b"334 \r\n")
            ir = f.readline().decode().strip()
        first = base64.b64decode(ir).decode()
        flag, authzid, bare = first.split(",", 2)
        gs2 = f"{flag},{authzid},"
        attrs = dict(a.split("=", 1) for a in bare.split(","))
        nonce = attrs["r"] + _b64(os.urandom(12))
        server_first = f"r={nonce},s={_b64(self.salt)},i={self.iterations}"
        conn.sendall(f"334 {_b64(server_first.encode())}\r\n".encode())
        final = base64.b64decode(f.readline().decode().strip()).decode()
        without_proof, proof = final.rsplit(",p=", 1)
        fattrs = dict(a.split("=", 1) for a in without_proof.split(","))
        cbind = base64.b64decode(fattrs["c"])
        if mech == "SCRAM-SHA-256-PLUS":
            expected = gs2.encode() + conn.get_channel_binding("tls-unique")
            ok = flag == "p=tls-unique" and self.plus
        else:
            expected = gs2.encode()
            ok = flag == "n" or (flag == "y" and not self.plus)
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), _hmac(self.stored_key, auth_message)))
        ok = (ok and cbind == expected and fattrs["r"] == nonce and attrs["n"] == self.user
              and hashlib.sha256(client_key).digest() == self.stored_key)
        self.results.append((mech, gs2, cbind, ok))
        if not ok:
            conn.sendall(b"535 5.7.8 Authentication credentials invalid\r\n")
            return
        conn.sendall(f"334 {_b64(b'v=' + _b64(_hmac(self.server_key, auth_message)).encode())}\r\n".encode())
        f.readline()
        conn.sendall(b"235 2.7.0 Authentication successful\r\n")
