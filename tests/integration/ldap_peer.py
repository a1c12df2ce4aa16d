"""A real OpenLDAP server for the tests: slapd (Debian's slapd package; never its system
service) with a generated slapd.conf, an mdb database in a temporary directory filled from an
LDIF with slapadd, listening on ldap://127.0.0.1:<free port> and ldapi://<dir>/ldapi. Changes
go through ldapmodify/ldapadd/ldapdelete (ldap-utils) as the rootdn.

    s = Slapd(ldif)              # suffix SUFFIX, rootdn ROOTDN / ROOTPW
    s.start(); s.url; s.ldapi_url
    s.modify("dn: ...\\nchangetype: modify\\n...")
    s.stop(); s.start()          # same port and data: "the server went away and came back"
    s.pause(); s.resume()        # SIGSTOP/SIGCONT: a server that accepts and never answers
    s.close()

A missing slapd or ldap-utils raises (tests/run-all installs them: POSTERN_TEST_PEERS), so the
tests fail rather than skip."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=postern,dc=test"
ROOTDN = f"cn=admin,{SUFFIX}"
ROOTPW = "rootsecret"

SLAPD_CONF = """\
# written by tests/integration/ldap_peer.py
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/misc.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{rootdn}"
rootpw {rootpw}
directory {dir}/db
index objectClass eq
access to attrs=userPassword by anonymous auth by * none
access to * by * read
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Slapd:
    def __init__(self, ldif, tls=False):
        for tool in (SLAPD, SLAPADD, "/usr/bin/ldapmodify"):
            if not os.path.exists(tool):
                raise RuntimeError(f"{tool} is missing: install slapd and ldap-utils (tests/run-all does)")
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="postern-slapd-", dir="/var/tmp"))
        (self.dir / "db").mkdir()
        self.conf = self.dir / "slapd.conf"
        conf = SLAPD_CONF.format(dir=self.dir, suffix=SUFFIX, rootdn=ROOTDN, rootpw=ROOTPW)
        if tls:
            conf = self._make_certs() + conf
        self.conf.write_text(conf)
        (self.dir / "data.ldif").write_text(ldif)
        subprocess.run([SLAPADD, "-f", str(self.conf), "-l", str(self.dir / "data.ldif")],
                       check=True, capture_output=True)
        self.port = free_port()
        self.ldapi = self.dir / "ldapi"
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldapi_url = "ldapi://" + urllib.parse.quote(str(self.ldapi), safe="")
        self.proc = None
        self.log_path = self.dir / "slapd.log"

    def _make_certs(self):
        """A CA and a localhost certificate it signs (openssl), and a second CA that signs nothing:
        the slapd.conf lines that serve STARTTLS with them."""
        d = self.dir

        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True)
        for ca in ("ca", "other-ca"):
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=postern test {ca}",
                    "-keyout", str(d / f"{ca}.key"), "-out", str(d / f"{ca}.pem"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
        (d / "ext.cnf").write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.pem"))
        self.ca_cert = d / "ca.pem"
        self.other_ca_cert = d / "other-ca.pem"
        return (f"TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\n"
                f"TLSCertificateKeyFile {d}/server.key\n")

    def start(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            raise RuntimeError("slapd is already running")
        log = open(self.log_path, "ab")
        # -d 0: stay in the foreground (no detaching), logging nothing but errors
        self.proc = subprocess.Popen([SLAPD, "-d", "0", "-f", str(self.conf), "-h", f"{self.url}/ {self.ldapi_url}"],
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("slapd exited: " + self.log())
            r = subprocess.run(["ldapsearch", "-x", "-H", self.url, "-b", SUFFIX, "-s", "base", "dn"],
                               capture_output=True)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("slapd does not answer: " + self.log())
            time.sleep(0.1)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def _tool(self, tool, text):
        r = subprocess.run([tool, "-x", "-H", self.url, "-D", ROOTDN, "-w", ROOTPW], input=text.encode(),
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"{tool} failed: {r.stderr.decode()}")

    def modify(self, ldif):
        """ldapmodify with changetype records."""
        self._tool("ldapmodify", ldif)

    def add(self, ldif):
        self._tool("ldapadd", ldif)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self, keep=False):
        self.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
