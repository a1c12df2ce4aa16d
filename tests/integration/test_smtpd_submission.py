"""smtpd as an admin sets it up from Postfix's master.cf examples, with per-listener overrides in
main.cf: AUTH only under TLS (smtpd_tls_auth_only, Postern's default yes), submission on 587
requiring STARTTLS and AUTH before relaying, and smtpd_sender_login_maps with
reject_sender_login_mismatch — all against a real Dovecot."""

import smtplib
import ssl

import pytest

from test_smtpd_tls import certs, tls_params   # noqa: F401 — the certificate fixture


def start(postern, dovecot, certs, **extra):
    params = tls_params(certs, mynetworks="127.0.0.1/32", smtpd_sasl_path=str(dovecot.auth_path),
                        **{"submission/smtpd_tls_security_level": "encrypt",
                           "submission/smtpd_sasl_auth_enable": "yes",
                           "submission/smtpd_relay_restrictions":
                               "permit_sasl_authenticated, reject"})
    params.update(extra)
    postern.configure(**params)
    postern.start("smtpd")


def client(postern, certs, port):
    s = smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=10)
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    ctx.check_hostname = False
    return s, ctx


def test_submission_auth_only_under_tls(postern, dovecot, certs):
    start(postern, dovecot, certs)
    s, ctx = client(postern, certs, postern.submission_port)
    s.ehlo("client.test")
    assert not s.has_extn("auth"), s.esmtp_features          # not before TLS
    assert s.has_extn("starttls")
    code, msg = s.mail("alice@example.org")
    assert code == 530 and b"Must issue a STARTTLS command first" in msg
    s.rset()
    s.starttls(context=ctx)
    s.ehlo("client.test")
    assert "PLAIN" in s.esmtp_features.get("auth", "").upper(), s.esmtp_features
    # relaying needs AUTH on 587
    assert s.mail("alice@example.org")[0] == 250
    code, msg = s.rcpt("friend@remote.test")
    assert code == 554 and b"Access denied" in msg, (code, msg)
    s.rset()
    s.login("alice", dovecot.users["alice"])
    assert s.mail("alice@example.org")[0] == 250
    assert s.rcpt("friend@remote.test")[0] == 250
    s.quit()
    postern.wait_log("smtpd", r"sasl_method=PLAIN, sasl_username=alice")


def test_port_25_offers_no_auth_and_refuses_relay(postern, dovecot, certs):
    start(postern, dovecot, certs)
    s, ctx = client(postern, certs, postern.smtp_port)
    s.ehlo("client.test")
    s.starttls(context=ctx)
    s.ehlo("client.test")
    assert not s.has_extn("auth")                            # smtpd_sasl_auth_enable = no on 25
    assert s.mail("a@example.org")[0] == 250
    code, msg = s.rcpt("friend@remote.test")
    assert code == 454 and b"Relay access denied" in msg   # defer_unauth_destination (default)
    s.quit()


def test_submissions_implicit_tls_auth(postern, dovecot, certs):
    start(postern, dovecot, certs, **{"submissions/smtpd_sasl_auth_enable": "yes",
                                      "submissions/smtpd_relay_restrictions":
                                          "permit_sasl_authenticated, reject"})
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    ctx.check_hostname = False
    s = smtplib.SMTP_SSL("127.0.0.1", postern.submissions_port, source_address=("127.0.0.2", 0),
                         timeout=10, context=ctx)
    s.ehlo("client.test")
    assert s.has_extn("auth")
    s.login("bob", dovecot.users["bob"])
    assert s.mail("bob@example.org")[0] == 250
    assert s.rcpt("friend@remote.test")[0] == 250
    s.quit()


@pytest.mark.parametrize("sender,ok", [("alice@example.org", True), ("bob@example.org", False)])
def test_sender_login_mismatch(postern, dovecot, certs, sender, ok):
    maps = postern.root / "senders"
    maps.write_text("alice@example.org alice\nbob@example.org bob\n")
    start(postern, dovecot, certs, smtpd_sender_login_maps=f"texthash:{maps}",
          **{"submission/smtpd_sender_restrictions": "reject_sender_login_mismatch"})
    s, ctx = client(postern, certs, postern.submission_port)
    s.ehlo("client.test")
    s.starttls(context=ctx)
    s.ehlo("client.test")
    s.login("alice", dovecot.users["alice"])
    assert s.mail(sender)[0] == 250            # smtpd_delay_reject: decided at RCPT
    code, msg = s.rcpt("friend@remote.test")
    if ok:
        assert code == 250, (code, msg)
    else:
        assert code == 553, (code, msg)
        assert f"<{sender}>: Sender address rejected: not owned by user alice".encode() in msg
    s.quit()
