"""A real milter: Debian's opendkim behind smtpd_milters and non_smtpd_milters. It signs mail from
mynetworks (SMTP) and from the submit socket (postern-sendmail) with a key generated here
(KeyTable/SigningTable); the message is relayed by postern-smtp to an aiosmtpd sink that keeps
the bytes, and python3-dkim verifies the signature with the public key handed to it directly (no
DNS). In verify mode an inbound signed message gets opendkim's Authentication-Results header.
opendkim runs in the foreground on 127.0.0.1 (README "Milters and filters" shows the same setup)."""

import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest

from milter_peer import wait_for
from test_smtpd_helpers import content_of, free_port, queue_ids

OPENDKIM = "/usr/sbin/opendkim"
GENKEY = "/usr/sbin/opendkim-genkey"

pytestmark = pytest.mark.skipif(not (os.path.exists(OPENDKIM) and os.path.exists(GENKEY)),
                                reason="opendkim / opendkim-tools are not installed")

try:
    import dkim
except ImportError:   # python3-dkim
    dkim = None


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
        import socket
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


@pytest.fixture
def opendkim(postern):
    started = []

    def make(**kw):
        o = OpenDkim(postern.root, **kw)
        started.append(o)
        return o
    yield make
    for o in started:
        o.stop()


def relayed(handler, count):
    assert wait_for(lambda: len(handler.envelopes) >= count, timeout=30), "nothing reached the sink"
    return [e.original_content for e in handler.envelopes]


@pytest.mark.skipif(dkim is None, reason="python3-dkim is not installed")
def test_opendkim_signs_smtp_and_submit_mail_verified_after_relay(postern, opendkim, aiosmtpd_server):
    o = opendkim()
    h, port = aiosmtpd_server()
    postern.configure(relayhost="[127.0.0.1]:%d" % port, smtpd_milters=o.spec,
                      non_smtpd_milters="$smtpd_milters", milter_default_action="tempfail")
    postern.start()
    msg = (b"From: Alice <alice@example.org>\r\nTo: bob@remote.example\r\nSubject: signed over SMTP\r\n"
           b"Message-ID: <dkim-1@example.org>\r\nDate: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\n"
           b"Hello Bob,\r\nthis message is signed.\r\n")
    with postern.smtp() as s:      # 127.0.0.1: mynetworks and opendkim's InternalHosts
        s.ehlo("client.test")
        s.sendmail("alice@example.org", ["bob@remote.example"], msg)
    postern.sendmail(["-f", "alice@example.org", "carol@remote.example"],
                     input=b"From: alice@example.org\nTo: carol@remote.example\nSubject: signed locally\n\n"
                           b"Local mail,\nalso signed.\n", user="ptest1")
    got = relayed(h, 2)
    for raw in got:
        assert b"DKIM-Signature:" in raw
        assert dkim.verify(raw, dnsfunc=o.dnsfunc), raw.decode(errors="replace")
        # a changed body no longer verifies: the check is real
        assert not dkim.verify(raw.replace(b"signed", b"changed"), dnsfunc=o.dnsfunc)
    assert any(b"Subject: signed locally" in r for r in got)
    assert postern.running("smtpd")


@pytest.mark.skipif(dkim is None, reason="python3-dkim is not installed")
def test_opendkim_verify_mode_adds_authentication_results(postern, opendkim):
    verifier = opendkim(mode="v")
    key = (verifier.dir / "test.private").read_bytes()
    msg = (b"From: alice@example.org\r\nTo: ptest1@localhost\r\nSubject: verify me\r\n"
           b"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n\r\nbody\r\n")
    signed = dkim.sign(msg, b"test", b"example.org", key, include_headers=[b"From", b"To", b"Subject"]) + msg
    postern.configure(smtpd_milters=verifier.spec)
    postern.start("smtpd")
    for m in (signed, signed.replace(b"body", b"tampered")):
        with postern.smtp(source_address="127.0.0.2") as s:    # not an internal host: verified
            s.ehlo("client.test")
            s.sendmail("alice@example.org", ["ptest1@localhost"], m)
    good, bad = [content_of(postern, q) for q in queue_ids(postern)]
    assert re.search(r"Authentication-Results: postern\.test;\s+dkim=pass", good), good
    assert re.search(r"Authentication-Results: postern\.test;\s+dkim=fail", bad), bad
