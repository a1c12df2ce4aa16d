"""The rest of Postfix's TLS parameter names: *_exclude_ciphers and *_mandatory_exclude_ciphers
(OpenSSL class names become GnuTLS removals, a single suite is logged as not supported),
smtpd_tls_dh1024_param_file (a PEM group for the DHE suites; one that does not load is logged
and GnuTLS's RFC 7919 groups stay), the obsolete smtpd_use_tls / smtpd_enforce_tls / smtp_use_tls
(only while the security level is not set), and the OpenSSL cipher strings (tls_*_cipherlist),
which are logged as not supported. gnutls-cli forces what it offers with --priority."""

import subprocess

import pytest

import mailtest
from smtp_peers import peer_factory
from test_smtp_tls import pki  # noqa: F401 (fixture)
from test_smtpd_helpers import raw, start_smtpd
from test_smtpd_tls import CERTTOOL, certs, gnutls_cli, tls_params  # noqa: F401 (fixture)
from tls_smtp_peer import TlsSmtpServer

pytestmark = pytest.mark.skipif(not CERTTOOL, reason="needs gnutls-bin (certtool, gnutls-cli)")

CHACHA_ONLY = "--priority=NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305:-VERS-ALL:+VERS-TLS1.2"
DHE_ONLY = "--priority=NORMAL:-KX-ALL:+DHE-RSA:-VERS-ALL:+VERS-TLS1.2"


def handshake(postern, certs, *args):
    r = gnutls_cli(postern.smtp_port, certs, *args, input=b"EHLO client.test\r\nQUIT\r\n")
    return r.returncode == 0 and b"250" in r.stdout, r.stdout.decode(errors="replace")


def test_exclude_ciphers_remove_a_cipher_and_say_what_they_cannot(postern, certs):
    start_smtpd(postern, **tls_params(certs, smtpd_tls_exclude_ciphers="aNULL, RC4, CHACHA20, AES256-SHA"))
    postern.wait_log("smtpd", r'not supported: smtpd_tls_exclude_ciphers element "AES256-SHA"')
    ok, out = handshake(postern, certs, CHACHA_ONLY)
    assert not ok, out
    ok, out = handshake(postern, certs)
    assert ok, out


def test_mandatory_exclude_ciphers_only_at_encrypt(postern, certs):
    start_smtpd(postern, **tls_params(certs, smtpd_tls_mandatory_exclude_ciphers="CHACHA20"))
    ok, out = handshake(postern, certs, CHACHA_ONLY)
    assert ok, out                         # level may: the mandatory list does not apply
    postern.stop()
    start_smtpd(postern, **tls_params(certs, smtpd_tls_mandatory_exclude_ciphers="CHACHA20",
                                      smtpd_tls_security_level="encrypt"))
    ok, out = handshake(postern, certs, CHACHA_ONLY)
    assert not ok, out


def test_dh_param_file_and_one_that_does_not_load(postern, certs, tmp_path):
    dh = tmp_path / "ffdhe.pem"
    subprocess.run([CERTTOOL, "--get-dh-params", "--outfile", str(dh)], check=True, capture_output=True)
    start_smtpd(postern, **tls_params(certs, smtpd_tls_dh1024_param_file=str(dh)))
    ok, out = handshake(postern, certs, DHE_ONLY)
    assert ok, out
    assert "not load" not in postern.log("smtpd")
    postern.stop()
    start_smtpd(postern, **tls_params(certs, smtpd_tls_dh1024_param_file=str(tmp_path / "missing.pem")))
    postern.wait_log("smtpd", r"smtpd_tls_dh1024_param_file: cannot load DH parameters from .*missing\.pem: .*; "
                              r"using the RFC 7919 groups")
    ok, out = handshake(postern, certs, DHE_ONLY)   # TLS still works, with GnuTLS's groups
    assert ok, out


@pytest.mark.parametrize("conf, offered, refused", [
    ({"smtpd_use_tls": "yes"}, True, False),
    ({"smtpd_enforce_tls": "yes"}, True, True),
    ({"smtpd_use_tls": "yes", "smtpd_tls_security_level": "none"}, False, False),   # the level wins
])
def test_obsolete_smtpd_use_and_enforce_tls(postern, certs, conf, offered, refused):
    p = tls_params(certs, **conf)
    if "smtpd_tls_security_level" not in conf:
        del p["smtpd_tls_security_level"]
    start_smtpd(postern, **p)
    with raw(postern) as c:
        c.send("EHLO client.test\r\n")
        code, lines = c.reply()
        assert ("STARTTLS" in lines) == offered, lines
        reply = c.cmd("MAIL FROM:<a@postern.test>")
        assert reply.startswith("530 5.7.0") == refused, reply


def test_openssl_cipherlists_are_logged_as_not_supported(postern, certs):
    start_smtpd(postern, **tls_params(certs, tls_high_cipherlist="ECDHE-RSA-AES128-GCM-SHA256"))
    postern.wait_log("smtpd", r"not supported: tls_high_cipherlist \(an OpenSSL cipher string")


@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["crt"], pki["key"], **kw))


def test_obsolete_smtp_use_tls_means_may(postern, pki, peer):
    p = peer()
    postern.configure(relayhost=f"[127.0.0.1]:{p.port}", smtp_use_tls="yes", smtp_tls_CAfile=str(pki["ca"]))
    postern.start()
    qid = mailtest.send(postern, "ptest1@postern.test", ["bob@remote.example"],
                        mailtest.msg("use-tls", subject="use tls", body="hi\r\n"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*status=sent", timeout=20)
    assert p.tls_connections == 1 and p.messages and p.messages[0][0]
