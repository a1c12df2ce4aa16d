"""A real milter: Debian's opendkim behind smtpd_milters and non_smtpd_milters. It signs mail from
mynetworks (SMTP) and from the submit socket (postern-sendmail) with a key generated here
(KeyTable/SigningTable); the message is relayed by postern-smtp to an aiosmtpd sink that keeps
the bytes, and python3-dkim verifies the signature with the public key handed to it directly (no
DNS). In verify mode an inbound signed message gets opendkim's Authentication-Results header.
opendkim runs in the foreground on 127.0.0.1 (README "Milters and filters" shows the same setup)."""

import os
import re

import pytest

from dkim_peer import GENKEY, OPENDKIM, OpenDkim
from milter_peer import wait_for
from test_smtpd_helpers import content_of, queue_ids

pytestmark = pytest.mark.skipif(not (os.path.exists(OPENDKIM) and os.path.exists(GENKEY)),
                                reason="opendkim / opendkim-tools are not installed")

try:
    import dkim
except ImportError:   # python3-dkim
    dkim = None


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
