"""REQUIRETLS (RFC 8689). postern-smtpd offers it only inside TLS and keeps it with the message
(the queue's requiretls column); postern-smtp sends such a message on only over TLS verified in a
way DNS cannot subvert (level secure, or verify towards a [host] next hop) to a server that offers
REQUIRETLS, passing the parameter on, and otherwise returns it with 5.7.30 — the notice with the
header section only. requiretls_enable = no turns both sides off. Peers: Python's ssl SMTP server
of tls_smtp_peer.py with certificates from a private CA."""

import re
import smtplib
import ssl

import pytest

from smtp_peers import peer_factory
from test_smtp_tls import CERTTOOL, HOST, pki, tls_host  # noqa: F401 (fixtures)
from test_smtpd_helpers import raw
from tls_smtp_peer import TlsSmtpServer

pytestmark = pytest.mark.skipif(not CERTTOOL, reason="needs gnutls-bin (certtool)")


@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["crt"], pki["key"], **kw))


def start(postern, pki, **conf):
    settings = {"smtpd_tls_chain_files": str(pki["pem"]), "smtpd_tls_security_level": "may",
                "smtp_tls_CAfile": str(pki["ca"]), "smtp_tls_loglevel": "1",
                "smtpd_forbid_unauth_pipelining": "no", "mynetworks": "127.0.0.0/8"}
    settings.update(conf)
    postern.configure(**settings)
    postern.start()


def send_requiretls(postern, subject="secret", rcpt="bob@remote.example", sender="ptest1@postern.test"):
    """One message over STARTTLS with MAIL ... REQUIRETLS; returns its queue id."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    before = len(re.findall(r"\w+: from=<", postern.log("smtpd")))
    with smtplib.SMTP("127.0.0.1", postern.smtp_port, timeout=20) as s:
        s.ehlo("client.test")
        assert not s.has_extn("requiretls")         # never offered in plaintext
        s.starttls(context=ctx)
        s.ehlo("client.test")
        assert s.has_extn("requiretls")
        msg = f"From: {sender}\r\nSubject: {subject}\r\n\r\nthe body stays private\r\n"
        s.sendmail(sender, [rcpt], msg, mail_options=["REQUIRETLS"])
    m = postern.wait_log("smtpd", r"(\w+): from=<", count=before + 1)
    return m.group(1)


def test_smtpd_offers_requiretls_only_inside_tls_and_keeps_it(postern, pki):
    postern.configure(smtpd_tls_chain_files=str(pki["pem"]), smtpd_tls_security_level="may",
                      smtpd_forbid_unauth_pipelining="no", mynetworks="127.0.0.0/8")
    postern.start("smtpd")
    with raw(postern) as c:
        c.send("EHLO client.test\r\n")
        code, lines = c.reply()
        assert code == 250 and "REQUIRETLS" not in lines
        assert c.cmd("MAIL FROM:<a@postern.test> REQUIRETLS") == "555 5.5.4 Unsupported option: REQUIRETLS"
    qid = send_requiretls(postern, rcpt="ptest1@postern.test")
    assert postern.queue_rows("SELECT requiretls FROM messages WHERE queue_id = ?", (qid,)) == [(1,)]


def test_requiretls_enable_no_offers_nothing(postern, pki):
    postern.configure(smtpd_tls_chain_files=str(pki["pem"]), smtpd_tls_security_level="may",
                      requiretls_enable="no")
    postern.start("smtpd")
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", postern.smtp_port, timeout=20) as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        assert not s.has_extn("requiretls")
        assert s.mail("a@postern.test", ["REQUIRETLS"])[0] == 555


def test_unverified_tls_returns_the_message_with_5_7_30_headers_only(postern, pki, peer):
    p = peer(requiretls=True)
    start(postern, pki, relayhost=f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt")
    qid = send_requiretls(postern)
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*dsn=5\.7\.30, status=bounced \(REQUIRETLS "
                             r"support required: the server certificate was not verified at TLS security level "
                             r"secure", timeout=20)
    assert p.messages == []
    # the notice (to ptest1, a local user) returns the header section only
    box = postern.wait_mailbox("ptest1", r"text/rfc822-headers", timeout=30)
    assert "Subject: secret" in box and "the body stays private" not in box
    assert "REQUIRETLS support required" in box


def test_verified_server_without_requiretls_returns_the_message(postern, pki, peer, tls_host):
    p = peer(requiretls=False)
    start(postern, pki, relayhost=f"[{HOST}]:{p.port}", smtp_tls_security_level="verify")
    qid = send_requiretls(postern)
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*dsn=5\.7\.30, status=bounced \(REQUIRETLS "
                             r"support required: the server does not offer REQUIRETLS", timeout=20)
    assert p.messages == []


def test_verified_server_with_requiretls_gets_it_passed_on(postern, pki, peer, tls_host):
    p = peer(requiretls=True)
    start(postern, pki, relayhost=f"[{HOST}]:{p.port}", smtp_tls_security_level="verify")
    qid = send_requiretls(postern)
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*status=sent", timeout=20)
    mails = [(tls, c) for tls, c in p.commands if c.startswith("MAIL")]
    assert len(mails) == 1 and mails[0][0] and mails[0][1].endswith(" REQUIRETLS"), mails


def test_requiretls_enable_no_on_a_client_transport_delivers_without_enforcing(postern, pki, peer):
    p = peer(requiretls=False)
    (postern.etc_dir / "master.cf").write_text(
        "smtp      inet  n       -       n       -       -       smtpd\n"
        "inside    unix  -       -       n       -       -       smtp\n"
        "  -o requiretls_enable=no\n")
    start(postern, pki, relayhost=f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may",
          default_transport="inside")
    qid = send_requiretls(postern)
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*status=sent", timeout=20)
    mails = [c for tls, c in p.commands if c.startswith("MAIL")]
    assert len(mails) == 1 and "REQUIRETLS" not in mails[0]
