"""STARTTLS in the screening stage's SMTP engine (Postfix's postscreen_tls_security_level): the
engine offers STARTTLS when smtpd has TLS credentials, runs smtpd's own handshake and goes on with
its deep tests inside TLS; level encrypt refuses MAIL before STARTTLS; commands pipelined behind
STARTTLS are discarded (STARTTLS injection). Real clients: Python's smtplib/ssl (OpenSSL) and
gnutls-cli. Keys and certificates come from test_smtpd_tls.py's certtool fixture."""

import smtplib
import ssl

import pytest

from test_smtpd_helpers import Raw
from test_smtpd_helpers import connect_from as connect
from test_smtpd_screen_deep import start, all_deep, entry, ehlo
from test_smtpd_tls import certs, tls_params, gnutls_cli, tls_wrap, raw_on, pytestmark  # noqa: F401


def tls_conf(certs, **conf):
    c = tls_params(certs)
    c.update(conf)
    return c


def smtp_from(postern, source):
    return smtplib.SMTP("127.0.0.1", postern.smtp_port, source_address=(source, 0), timeout=20)


def test_engine_starttls_then_tests_pass_inside_tls(postern, certs):
    start(postern, **tls_conf(certs, **all_deep()))
    s = smtp_from(postern, "127.0.0.61")
    s.ehlo("client.test")
    assert s.has_extn("starttls") and not s.has_extn("pipelining")
    code, _ = s.starttls(context=ssl.create_default_context(cafile=str(certs["ca"])))
    assert code == 220
    s.ehlo("client.test")
    assert not s.has_extn("starttls")   # inside TLS: offered no more
    assert s.mail("a@example.org")[0] == 250
    code, msg = s.rcpt("ptest1@localhost")
    assert (code, msg) == (450, b"4.3.2 Service currently unavailable")
    s.quit()
    postern.wait_log("smtpd", r"TLS connection established from \S*\[127\.0\.0\.61\]: TLSv1\.[23]")
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.61\]:\d+")
    e = entry(postern, "127.0.0.61")
    assert e is not None and all(e[t] > 0 for t in ("pipelining", "non_smtp", "bare_newline"))
    # the next connection goes straight to the SMTP session, which offers STARTTLS itself
    with smtp_from(postern, "127.0.0.61") as s2:
        s2.ehlo("client.test")
        assert s2.has_extn("pipelining") and s2.has_extn("starttls")
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.61\]:\d+")


def test_encrypt_level_refuses_mail_before_starttls(postern, certs):
    start(postern, **tls_conf(certs, postscreen_tls_security_level="encrypt",
                              postscreen_bare_newline_enable="yes"))
    with Raw(sock=connect(postern, "127.0.0.62")) as c:
        assert ehlo(c)[0] == 250
        assert c.cmd("MAIL FROM:<a@example.org>") == "530 5.7.0 Must issue a STARTTLS command first"
        assert c.cmd("STARTTLS") == "220 2.0.0 Ready to start TLS"
        t = raw_on(tls_wrap(c.s, certs))
        # RFC 3207: the EHLO before TLS is forgotten; the engine's tests go on inside TLS
        t.send("EHLO client.test\r\n")
        code, lines = t.reply()
        assert code == 250 and "STARTTLS" not in lines
        assert t.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert t.cmd("RCPT TO:<ptest1@localhost>") == "450 4.3.2 Service currently unavailable"
        assert t.cmd("QUIT") == "221 2.0.0 Bye"
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.62\]:\d+")


def test_commands_pipelined_behind_starttls_are_discarded(postern, certs):
    """STARTTLS injection (CVE-2011-0411): a MAIL sent in plaintext with STARTTLS must not be run
    inside TLS."""
    start(postern, **tls_conf(certs, postscreen_bare_newline_enable="yes"))
    with Raw(sock=connect(postern, "127.0.0.63")) as c:
        assert ehlo(c)[0] == 250
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
        assert c.text() == "220 2.0.0 Ready to start TLS"
        assert c.buf == b""
        t = raw_on(tls_wrap(c.s, certs))
        assert t.cmd("EHLO client.test").startswith("250")
        # had the injected MAIL run inside TLS, its 250 would come first and RCPT would get 450
        assert t.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"
        assert t.cmd("QUIT") == "221 2.0.0 Bye"
    postern.wait_log("smtpd", r"improper command pipelining after STARTTLS from \[127\.0\.0\.63\]:\d+")
    assert "injected@example.org" not in postern.log("smtpd")


def test_starttls_hidden_or_off(postern, certs):
    start(postern, **tls_conf(certs, postscreen_bare_newline_enable="yes",
                              postscreen_discard_ehlo_keywords="silent-discard, starttls"))
    with Raw(sock=connect(postern, "127.0.0.64")) as c:
        code, lines = ehlo(c)
        assert code == 250 and not any(l.startswith("STARTTLS") for l in lines)
        assert c.cmd("STARTTLS") == "502 5.5.1 Error: command not implemented"


def test_postscreen_level_none_turns_starttls_off(postern, certs):
    start(postern, **tls_conf(certs, postscreen_bare_newline_enable="yes", postscreen_tls_security_level="none"))
    with Raw(sock=connect(postern, "127.0.0.65")) as c:
        code, lines = ehlo(c)
        assert code == 250 and not any(l.startswith("STARTTLS") for l in lines)
        assert c.cmd("STARTTLS") == "502 5.5.1 Error: command not implemented"
    assert "not supported: postscreen_tls_security_level" not in postern.log("smtpd")


def test_gnutls_cli_handshake_with_the_engine(postern, certs):
    start(postern, **tls_conf(certs, postscreen_bare_newline_enable="yes", postscreen_access_list=""))
    r = gnutls_cli(postern.smtp_port, certs, input=b"EHLO client.test\r\nQUIT\r\n")
    assert b"221 2.0.0 Bye" in r.stdout, (r.stdout, r.stderr)
    postern.wait_log("smtpd", r"TLS connection established from \S*\[127\.0\.0\.1\]")
    # the client never reached the SMTP session (127.0.0.1 is not on postscreen_access_list)
    assert "connect from localhost[127.0.0.1]" not in postern.log("smtpd")
