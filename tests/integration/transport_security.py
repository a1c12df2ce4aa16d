"""Shared peers of the transport-security tests (test_smtp_dane.py, test_smtp_mta_sts.py,
test_smtp_dane_sts.py): a validating unbound serving a zone the test signs (DANE), the HTTPS
server of MTA-STS policies, and the digests TLSA records are made of. The fixtures `unbound`
and `web` are imported by the test files that use them."""

import hashlib
import http.server
import os
import pathlib
import shutil
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import dnszone
from test_smtpd_tls import _ca, _leaf

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
HAVE_DNSSEC_TOOLS = bool(os.path.exists(UNBOUND) and shutil.which("ldns-signzone") and shutil.which("ldns-keygen")
                         and shutil.which("openssl"))
MX_ADDR = "127.0.0.7"      # the DANE tests' receiving server
WEB_ADDR = "127.0.0.5"     # the MTA-STS policy server (port 443)
STS_MX = "mx.sts.test"     # the mx pattern PolicyServer.policy() serves unless told (test_smtp_mta_sts.py's MX)


def ecdsa_pki(prefix, cn, leaves):
    """A test CA (ca.crt, ca.key) in a new directory and, signed by it, one ECDSA certificate per
    leaves item name: dns_name ({name}.crt, .key, and .pem with key and chain). Returns the
    directory (the caller removes it)."""
    d = _ca(prefix, cn)
    for name, dns in leaves.items():
        _leaf(d, name, ["--key-type=ecdsa", "--curve=secp256r1"], [dns])
    return d


def der(crt):
    return ssl.PEM_cert_to_DER_cert(pathlib.Path(crt).read_text())


def spki(crt):
    pub = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-pubkey"], check=True,
                         capture_output=True).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, check=True,
                          capture_output=True).stdout


def sha256(b):
    return hashlib.sha256(b).hexdigest()


class Unbound:
    """unbound on a free 127.53.x.y:53 serving dane.test (signed, validated) and insecure.test
    (unsigned), and /etc/resolv.conf pointing at it while active."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-unbound-"))
        self.address = dnszone._free_address()
        self.proc = None
        self.mounted = False

    def serve(self, signed, unsigned=(), corrupt=None):
        """signed/unsigned: record lines relative to their zone's origin. corrupt: a string in
        the signed zone file replaced after signing (its RRSIG then fails: a bogus answer)."""
        soa = "@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n"
        zone = self.dir / "dane.test.zone"
        zone.write_text("$ORIGIN dane.test.\n$TTL 300\n" + soa + "".join(r + "\n" for r in signed))
        key = subprocess.run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", "dane.test"], cwd=self.dir,
                             check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["ldns-signzone", "-n", str(zone), key], cwd=self.dir, check=True, capture_output=True)
        signed_file = self.dir / "dane.test.zone.signed"
        if corrupt:
            text = signed_file.read_text()
            assert corrupt[0] in text
            signed_file.write_text(text.replace(corrupt[0], corrupt[1]))
        (self.dir / "insecure.test.zone").write_text("$ORIGIN insecure.test.\n$TTL 300\n" + soa +
                                                     "".join(r + "\n" for r in unsigned))
        (self.dir / "unbound.conf").write_text(f"""server:
  interface: {self.address}
  port: 53
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{self.dir}"
  pidfile: ""
  use-syslog: no
  logfile: "{self.dir}/unbound.log"
  module-config: "validator iterator"
  trust-anchor-file: "{self.dir}/{key}.ds"
  access-control: 127.0.0.0/8 allow
  do-ip6: no
  qname-minimisation: no
  local-zone: "test." nodefault
""" + "".join(f"""auth-zone:
  name: "{name}"
  zonefile: "{path}"
  for-upstream: yes
  for-downstream: no
  fallback-enabled: no
""" for name, path in (("dane.test", signed_file), ("insecure.test", self.dir / "insecure.test.zone"))))
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", str(self.dir / "unbound.conf")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        dnszone.wait_answering(self.proc, self.address, "unbound", "dane.test")
        resolv = self.dir / "resolv.conf"
        # no "options trust-ad": postern-smtp asks for the AD bit itself (RES_TRUSTAD)
        resolv.write_text(f"nameserver {self.address}\noptions timeout:2 attempts:2\n")
        subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
        self.mounted = True

    def close(self):
        if self.mounted:
            subprocess.run(["umount", "/etc/resolv.conf"], check=True)
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc.stderr.close()
        if not os.environ.get("POSTERN_KEEP_ROOT"):
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def unbound():
    u = Unbound()
    yield u
    u.close()


class PolicyServer:
    """HTTPS on WEB_ADDR:443 answering every GET with self.reply = (status, headers, body), and
    every POST (a TLSRPT report) with self.post_reply, keeping (path, Host, Content-Type, body)
    in self.posts."""

    def __init__(self, pki, cert="web"):
        self.requests = []
        self.reply = (200, {"Content-Type": "text/plain"}, b"")
        self.posts = []
        self.post_reply = (201, {}, b"")
        self.delay = 0               # seconds before each reply (a slow server)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Host")))
                time.sleep(server.delay)   # the slow server itself, not a wait in the test
                self.answer(*server.reply)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.posts.append((self.path, self.headers.get("Host"), self.headers.get("Content-Type"), body))
                self.answer(*server.post_reply)

            def answer(self, status, headers, body):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((WEB_ADDR, 443), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile=str(pki["dir"] / f"{cert}.crt"), keyfile=str(pki["dir"] / f"{cert}.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def policy(self, mode="enforce", mx=(STS_MX,), max_age=86400, extra=""):
        text = f"version: STSv1\nmode: {mode}\n" + "".join(f"mx: {m}\n" for m in mx) + f"max_age: {max_age}\n" + extra
        self.reply = (200, {"Content-Type": "text/plain; charset=utf-8"}, text.encode())

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


@pytest.fixture
def web(pki):
    servers = []

    def make(**kw):
        s = PolicyServer(pki, **kw)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.stop()


