"""postern-smtp's LMTP side reads the lmtp_* parameters (Postfix's lmtp(8)), its SMTP side the
smtp_* ones, in the same process and the same run: lmtp_lhlo_name (seen by Dovecot's LMTP and a
scripted LMTP server while an SMTP server sees smtp_helo_name), lmtp_data_done_timeout and
lmtp_lhlo_timeout against stalling servers, lmtp_tls_security_level = encrypt against a plaintext
server and = verify with Dovecot's STARTTLS (lmtp_tls_CAfile), lmtp_tcp_port for "inet:host" without a port, SIGHUP reloading both
sides, and invalid lmtp_* values refused at start naming the parameter."""

import re
import time
from functools import partial

import pytest

import mailtest
from mailtest import send
from smtp_peers import free_port
from test_lmtp_dovecot import maildir_messages, start_dovecot_lmtp
from test_smtp_tls import HOST, pki, tls_host   # noqa: F401 (fixtures: a private CA, mail.tls.test)
from test_smtpd_tls import CERTTOOL


msg = partial(mailtest.msg, to="alice@mail.example", subject="lmtp params")


def rcpt_row(postern, qid, address):
    rows = postern.queue_rows(
        "SELECT r.state, r.dsn_status, r.diag FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.queue_id = ? AND r.address = ?", (qid, address))
    return rows[0] if rows else None


def wait_deferred(postern, qid, address, timeout=20):
    postern.wait_for(lambda: (rcpt_row(postern, qid, address) or (None,))[0] == 1, timeout=timeout,
                     what=f"{address} deferred")
    return rcpt_row(postern, qid, address)


@pytest.fixture
def dovecot_lmtp():
    d = start_dovecot_lmtp()
    yield d
    d.close()


def routes(lmtp_nexthop, smtp_port):
    """mail.example over LMTP to lmtp_nexthop, relay.example over SMTP to 127.0.0.1:smtp_port."""
    return {"transport_maps": f"inline:{{ mail.example=lmtp:{lmtp_nexthop}, "
                              f"relay.example=smtp:[127.0.0.1]:{smtp_port} }}"}


def test_lhlo_name_and_bind_address_differ_from_smtp_ones(postern, dovecot_lmtp, scripted):
    """Dovecot records the LHLO name and the client address in its Received: header; a scripted
    LMTP server sees them too, the SMTP server smtp_helo_name and smtp_bind_address."""
    d = dovecot_lmtp
    smtp = scripted()
    lmtp = scripted(lmtp=True)
    postern.configure(transport_maps=f"inline:{{ mail.example=lmtp:inet:[127.0.0.1]:{d.lmtp_port}, "
                                     f"scripted.example=lmtp:inet:[127.0.0.1]:{lmtp.port}, "
                                     f"relay.example=smtp:[127.0.0.1]:{smtp.port} }}",
                      smtp_helo_name="smtp-side.postern.test", lmtp_lhlo_name="lmtp-side.postern.test",
                      smtp_bind_address="127.0.0.2", lmtp_bind_address="127.0.0.3")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@relay.example",
                                                "carol@scripted.example"], msg("lhlo-1@test"))
    for rcpt in ("alice@mail.example", "bob@relay.example", "carol@scripted.example"):
        postern.wait_log("smtp", rf"{qid}: to=<{re.escape(rcpt)}>, .*status=sent", timeout=20)
    got = maildir_messages(d, "alice")
    assert len(got) == 1
    received = got[0].split(b"\n\n", 1)[0].replace(b"\n\t", b" ")
    assert re.search(rb"Received: from lmtp-side\.postern\.test \(\[127\.0\.0\.3\]\)", received), received
    assert "LHLO lmtp-side.postern.test" in lmtp.commands
    assert not any(c.startswith(("EHLO", "HELO")) for c in lmtp.commands)
    assert "EHLO smtp-side.postern.test" in smtp.commands
    assert not any("lmtp-side" in c for c in smtp.commands)
    assert (lmtp.peers, smtp.peers) == (["127.0.0.3"], ["127.0.0.2"])


def test_lmtp_data_done_timeout_not_smtp_one(postern, scripted):
    """Both servers stall after the message: LMTP gives up after lmtp_data_done_timeout (1s) while
    the SMTP delivery, under smtp_data_done_timeout (600s), is still waiting."""
    lmtp = scripted(lmtp=True, replies={"DOT": None})
    smtp = scripted(replies={"DOT": None})
    postern.configure(**routes(f"inet:[127.0.0.1]:{lmtp.port}", smtp.port), lmtp_data_done_timeout="1s")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@relay.example"],
               msg("dot-timeout@test"))
    st, dsn, diag = wait_deferred(postern, qid, "alice@mail.example", timeout=15)
    assert dsn == "4.4.2"
    assert diag == (f"conversation with 127.0.0.1[127.0.0.1]:{lmtp.port} timed out while sending end of "
                    "data -- message may be sent more than once")
    postern.wait_for(lambda: len(smtp.messages) == 1, timeout=10, what="the SMTP server's message")
    time.sleep(1.5)   # absence: a 1 s data-done timeout on the SMTP side would have fired by now
    assert len(smtp.messages) == 1      # the SMTP server has the message and still says nothing
    assert not re.search(rf"{qid}: to=<bob@relay\.example>", postern.log("smtp"))


def test_lmtp_lhlo_timeout_not_smtp_one(postern, scripted):
    """Two silent servers: the LMTP one times out after lmtp_lhlo_timeout (1s), the SMTP one
    after smtp_helo_timeout (3s)."""
    lmtp = scripted(lmtp=True, replies={"greeting": None})
    smtp = scripted(replies={"greeting": None})
    postern.configure(**routes(f"inet:[127.0.0.1]:{lmtp.port}", smtp.port), lmtp_lhlo_timeout="1s",
                      smtp_helo_timeout="3s")
    postern.start()
    start = time.monotonic()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@relay.example"],
               msg("lhlo-timeout@test"))
    st, dsn, diag = wait_deferred(postern, qid, "alice@mail.example", timeout=15)
    lmtp_after = time.monotonic() - start
    assert diag == (f"conversation with 127.0.0.1[127.0.0.1]:{lmtp.port} timed out while receiving the "
                    "initial server greeting")
    st, dsn, diag = wait_deferred(postern, qid, "bob@relay.example", timeout=15)
    smtp_after = time.monotonic() - start
    assert diag.endswith("timed out while receiving the initial server greeting")
    assert lmtp_after < 2.9 <= smtp_after, (lmtp_after, smtp_after)


def test_lmtp_tls_encrypt_defers_lmtp_while_smtp_goes_out(postern, dovecot_lmtp, scripted):
    """lmtp_tls_security_level = encrypt against Dovecot's plaintext LMTP: deferred with the TLS
    reason; the SMTP delivery of the same message (smtp_tls_security_level = may, plaintext
    server) goes out."""
    d = dovecot_lmtp
    smtp = scripted()
    postern.configure(**routes(f"inet:[127.0.0.1]:{d.lmtp_port}", smtp.port),
                      lmtp_tls_security_level="encrypt", smtp_tls_security_level="may")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@relay.example"],
               msg("lmtp-tls@test"))
    st, dsn, diag = wait_deferred(postern, qid, "alice@mail.example")
    assert dsn == "4.7.4"
    assert diag == f"TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]:{d.lmtp_port}"
    postern.wait_log("smtp", rf"{qid}: to=<bob@relay\.example>, .*status=sent", timeout=20)
    assert len(smtp.messages) == 1
    assert maildir_messages(d, "alice") == []


@pytest.fixture
def dovecot_lmtp_tls(pki):
    d = start_dovecot_lmtp(ssl_config=f"ssl = yes\nssl_cert = <{pki['crt']}\nssl_key = <{pki['key']}\n")
    yield d
    d.close()


@pytest.mark.skipif(not CERTTOOL, reason="needs gnutls-bin (certtool)")
def test_lmtp_tls_verify_with_dovecot_starttls(postern, dovecot_lmtp_tls, pki, tls_host, scripted):
    """lmtp_tls_security_level = verify with lmtp_tls_CAfile: STARTTLS with Dovecot's LMTP, the
    certificate verified for the next hop's host name, delivered; the SMTP side (no smtp_tls_*
    set) stays plaintext."""
    d = dovecot_lmtp_tls
    smtp = scripted()
    postern.configure(transport_maps=f"inline:{{ mail.example=lmtp:inet:{tls_host}:{d.lmtp_port}, "
                                     f"relay.example=smtp:[127.0.0.1]:{smtp.port} }}",
                      lmtp_tls_security_level="verify", lmtp_tls_CAfile=pki["ca"], lmtp_tls_loglevel=1)
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@relay.example"],
               msg("lmtp-starttls@test"))
    relay = rf"{re.escape(HOST)}\[127\.0\.0\.1\]:{d.lmtp_port}"
    postern.wait_log("smtp", rf"Verified TLS connection established to {relay}: TLSv1\.[23] with cipher ")
    postern.wait_log("smtp", rf"{qid}: to=<alice@mail\.example>, relay={relay}, .*status=sent", timeout=20)
    postern.wait_log("smtp", rf"{qid}: to=<bob@relay\.example>, .*status=sent", timeout=20)
    assert len(maildir_messages(d, "alice")) == 1
    assert "STARTTLS" not in smtp.commands
    assert len(re.findall(r"TLS connection established", postern.log("smtp"))) == 1


def test_lmtp_tcp_port_for_inet_host_without_port(postern, dovecot_lmtp):
    d = dovecot_lmtp
    postern.configure(transport_maps="inline:{ mail.example=lmtp:inet:127.0.0.1 }",
                      lmtp_tcp_port=d.lmtp_port, smtp_tcp_port=free_port())
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example"], msg("tcp-port@test"))
    postern.wait_log("smtp", rf"{qid}: to=<alice@mail\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                             rf"{d.lmtp_port}, .*status=sent", timeout=20)
    assert len(maildir_messages(d, "alice")) == 1


def test_lmtp_tcp_port_default_is_24(postern):
    """Without lmtp_tcp_port, "inet:127.0.0.1" goes to port 24 (nothing listens there in the
    test's network namespace), not to smtp_tcp_port."""
    postern.configure(transport_maps="inline:{ mail.example=lmtp:inet:127.0.0.1 }")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example"], msg("port-24@test"))
    st, dsn, diag = wait_deferred(postern, qid, "alice@mail.example")
    assert diag == "connect to 127.0.0.1[127.0.0.1]:24: Connection refused"


def test_sighup_reloads_both_sides(postern, scripted):
    """SIGHUP: an invalid lmtp_ value keeps the old settings of both sides; a valid change of
    lmtp_lhlo_name and smtp_helo_name applies to each side's next connection."""
    lmtp = scripted(lmtp=True)
    smtp = scripted()
    postern.configure(**routes(f"inet:[127.0.0.1]:{lmtp.port}", smtp.port),
                      lmtp_lhlo_name="before.lmtp.test", smtp_helo_name="before.smtp.test",
                      lmtp_connection_cache_time_limit="0s", smtp_connection_cache_time_limit="0s")
    postern.start()

    def deliver(mid):
        qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@relay.example"], msg(mid))
        for rcpt in (r"alice@mail\.example", r"bob@relay\.example"):
            postern.wait_log("smtp", rf"{qid}: to=<{rcpt}>, .*status=sent", timeout=20)

    deliver("reload-1@test")
    postern.configure(lmtp_lhlo_name="after.lmtp.test", smtp_helo_name="after.smtp.test",
                      lmtp_bind_address="not-an-address")
    postern.reload("smtp")
    postern.wait_log("smtp", r"lmtp_bind_address = not-an-address: not a numeric IPv4 or IPv6 address")
    postern.wait_log("smtp", r"Applying the new configuration failed, keeping the old one")
    deliver("reload-2@test")
    postern.configure(lmtp_bind_address="")
    postern.reload("smtp")
    postern.wait_log("smtp", r"reload -- configuration")
    deliver("reload-3@test")
    assert [c for c in lmtp.commands if c.startswith("LHLO")] == [
        "LHLO before.lmtp.test", "LHLO before.lmtp.test", "LHLO after.lmtp.test"]
    assert [c for c in smtp.commands if c.startswith("EHLO")] == [
        "EHLO before.smtp.test", "EHLO before.smtp.test", "EHLO after.smtp.test"]


@pytest.mark.parametrize("param,value,error", [
    ("lmtp_bind_address", "mail.example.org",
     r"lmtp_bind_address = mail\.example\.org: not a numeric IPv4 or IPv6 address"),
    ("lmtp_address_verify_target", "helo", r"lmtp_address_verify_target = helo: expected rcpt or data"),
    ("lmtp_dns_support_level", "dane",
     r"lmtp_dns_support_level = dane: expected disabled, enabled or dnssec \(or empty\)"),
    ("lmtp_tcp_port", "0", r"lmtp_tcp_port"),
    ("lmtp_lhlo_timeout", "soon", r"lmtp_lhlo_timeout"),
    ("lmtp_tls_security_level", "fingerprint", r"lmtp_tls_security_level"),   # dane is valid (DANE for LMTP)
])
def test_bad_lmtp_value_refused_at_start(postern, param, value, error):
    postern.configure(**{param: value})
    with pytest.raises(RuntimeError, match=error):
        postern.start("smtp")
