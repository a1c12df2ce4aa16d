"""dkim_peer.py — Debian's opendkim as a test peer: a key generated for the run
(opendkim-genkey), KeyTable/SigningTable for one domain, opendkim in the foreground on
127.0.0.1 (signing and verifying, "sv", or verifying only, "v", with the public key given in a
file instead of DNS). Used by test_smtpd_milter_opendkim.py and tests/bench/relay --opendkim."""

import os
import pathlib
import re
import socket
import subprocess

from milter_peer import wait_for   # standard library only: importable before postern_harness


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

OPENDKIM = "/usr/sbin/opendkim"
GENKEY = "/usr/sbin/opendkim-genkey"


class OpenDkim:
    def __init__(self, root, mode="sv", domain="example.org", selector="test"):
        self.dir = pathlib.Path(root) / "opendkim"
        self.dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([GENKEY, "-b", "2048", "-D", str(self.dir), "-d", domain, "-s", selector],
                       check=True, capture_output=True)
        key = self.dir / (selector + ".private")
        os.chmod(key, 0o600)
        txt = (self.dir / (selector + ".txt")).read_text()
        # "test._domainkey IN TXT ( "v=DKIM1; h=sha256; k=rsa; " "p=MIIB..." "...")": the quoted parts
        self.dns_txt = "".join(re.findall(r'"([^"]*)"', txt)).encode()
        self.selector, self.domain = selector, domain
        (self.dir / "keytable").write_text("%s._domainkey.%s %s:%s:%s\n" % (selector, domain, domain, selector, key))
        (self.dir / "signingtable").write_text("*@%s %s._domainkey.%s\n" % (domain, selector, domain))
        self.port = free_port()
        self.spec = "inet:127.0.0.1:%d" % self.port
        conf = self.dir / "opendkim.conf"
        conf.write_text("\n".join([
            "Syslog no",
            "Background no",
            "Mode %s" % mode,
            "Socket inet:%d@127.0.0.1" % self.port,
            "PidFile %s" % (self.dir / "opendkim.pid"),
            "KeyTable file:%s" % (self.dir / "keytable"),
            "SigningTable refile:%s" % (self.dir / "signingtable"),
            "InternalHosts 127.0.0.1",
            "Canonicalization relaxed/relaxed",
            "AuthservID postern.test",
            # the key lives under /var/tmp (world-writable): opendkim would call it unsafe
            "RequireSafeKeys no",
            # verify mode looks keys up here instead of DNS
            "",
        ]))
        if mode == "v":
            (self.dir / "keyfile").write_text("%s._domainkey.%s %s\n" % (selector, domain, self.dns_txt.decode()))
            with conf.open("a") as f:
                f.write("TestPublicKeys %s\n" % (self.dir / "keyfile"))
        self.log = open(self.dir / "opendkim.log", "wb")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-l", "-x", str(conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_for(up, timeout=20), "opendkim did not start: " + (self.dir / "opendkim.log").read_text()

    def dnsfunc(self, name, timeout=5):
        if name.decode().rstrip(".") == "%s._domainkey.%s" % (self.selector, self.domain):
            return self.dns_txt
        return None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    close = stop
