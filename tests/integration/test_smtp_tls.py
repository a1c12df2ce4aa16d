"""postern-smtp TLS (client side): smtp_tls_security_level none/may/encrypt/verify/secure,
smtp_tls_policy_maps, SNI (smtp_tls_servername), smtp_tls_wrappermode, the plaintext fallback
of "may" after a failed handshake, STARTTLS injection, and connection reuse of TLS sessions
(keyed by TLS level). Peers: a Python/OpenSSL SMTP server (tls_smtp_peer.py) and gnutls-serv;
certificates from a private CA made with certtool per module."""

import re
import shutil
import subprocess
import time
from functools import partial

import pytest

import mailtest
import postern_harness

from smtp_peers import free_port, peer_factory, wait_port
from test_smtpd_tls import CERTTOOL, _ca, _certtool, _leaf
from tls_smtp_peer import TlsSmtpServer

pytestmark = pytest.mark.skipif(not CERTTOOL or not shutil.which("gnutls-serv"),
                                reason="needs gnutls-bin (certtool, gnutls-serv)")

HOST = "mail.tls.test"


@pytest.fixture(scope="module")
def pki():
    d = _ca("postern-smtp-tls-", "Postern Client Test CA")
    _leaf(d, "mail", ["--key-type=ecdsa", "--curve=secp256r1"], [HOST])
    yield {"dir": d, "ca": d / "ca.crt", "crt": d / "mail.crt", "key": d / "mail.key", "pem": d / "mail.pem"}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["crt"], pki["key"], **kw))


@pytest.fixture
def tls_host(dns_zone):
    dns_zone.host(HOST, "127.0.0.1")
    dns_zone.host("wrong.tls.test", "127.0.0.1")
    dns_zone.apply()
    return HOST


msg = partial(mailtest.msg, subject="tls test", body="Hello over TLS.\r\n")


def start(postern, pki, relayhost, **extra):
    conf = {"relayhost": relayhost, "smtp_tls_CAfile": str(pki["ca"]), "smtp_tls_loglevel": "1"}
    conf.update(extra)
    postern.configure(**conf)
    postern.start()


def send(postern, mid):
    return mailtest.send(postern, "ptest1@postern.test", ["bob@remote.example"], msg(mid))


def sent(postern, qid):
    return postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay=[^ ]+, .*dsn=2\.0\.0, "
                                    r"status=sent \(([^)]*)\)", timeout=20)


def deferred(postern, qid):
    return postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay=[^ ]+, .*dsn=(4\.[0-9.]+), "
                                    r"status=deferred \((.*)\)$", timeout=20)


def after_tls(peer):
    return [c.split(" ")[0].split(":")[0] for tls, c in peer.commands if tls]


# --- may ---------------------------------------------------------------------------------------

def test_may_uses_starttls_when_offered(postern, pki, peer):
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may")
    qid = send(postern, "may-1@test")
    m = sent(postern, qid)
    assert "queued as TLS1T" in m.group(1)
    assert p.messages[0][0] is True
    # Trusted: the chain verifies (smtp_tls_CAfile); "may" does not match names.
    postern.wait_log("smtp", rf"Trusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{p.port}: "
                             r"TLSv1\.[23] with cipher [A-Z0-9_]+ \((\d+)/\1 bits\)")
    # EHLO again inside TLS, then the transaction there only
    assert [c for tls, c in p.commands if not tls] == ["EHLO postern.test", "STARTTLS"]
    assert after_tls(p)[:4] == ["EHLO", "MAIL", "RCPT", "DATA"]


def test_large_message_over_tls(postern, pki, peer):
    """Several MB through TLS records: partial writes (GnuTLS's EAGAIN) must resume exactly."""
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt")
    line = "".join(chr(0x41 + i % 26) for i in range(76))
    body = "".join(f"{i:06d} {line}\r\n" for i in range(40000))   # ~3.3 MB
    qid = mailtest.send(postern, "ptest1@postern.test", ["bob@remote.example"],
                        msg("big-1@test").replace(b"Hello over TLS.\r\n", body.encode()))
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    got = p.messages[0][1]
    assert got.endswith(body.encode())


def test_may_plaintext_when_not_offered(postern, pki, peer):
    p = peer(starttls=False)
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may")
    qid = send(postern, "may-2@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    assert "STARTTLS" not in [c for _, c in p.commands]
    assert "TLS connection established" not in postern.log("smtp")


def test_may_untrusted_without_ca(postern, pki, peer):
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may", smtp_tls_CAfile="",
          smtp_tls_loglevel="2")
    qid = send(postern, "may-3@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    postern.wait_log("smtp", rf"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{p.port}")
    # the reason, in GnuTLS's words, at loglevel 2
    postern.wait_log("smtp", rf"certificate verification for 127\.0\.0\.1\[127\.0\.0\.1\]:{p.port}: .*"
                             r"(not trusted|signer|issuer)")


def test_may_falls_back_to_plaintext_when_handshake_fails(postern, pki, peer):
    p = peer(break_handshake=True)
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may")
    qid = send(postern, "may-4@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    log = postern.log("smtp")
    assert f"SSL_connect error to 127.0.0.1[127.0.0.1]:{p.port}" in log
    assert "trying again without TLS" in log
    assert p.connections == 2
    assert [c for _, c in p.commands].count("STARTTLS") == 1   # not again on the retry


def test_may_falls_back_when_handshake_times_out(postern, pki, peer):
    p = peer(stall=True)   # the first connection never answers the ClientHello
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may", smtp_starttls_timeout="1s")
    qid = send(postern, "may-6@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    assert f"SSL_connect error to 127.0.0.1[127.0.0.1]:{p.port}: handshake timeout" in postern.log("smtp")
    assert p.connections == 2


@pytest.mark.parametrize("level,param", [("may", "smtp_tls_protocols"),
                                         ("encrypt", "smtp_tls_mandatory_protocols")])
def test_protocol_settings_per_level(postern, pki, peer, level, param):
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level=level, **{param: "<=TLSv1.2"},
          smtp_tls_loglevel="2")
    qid = send(postern, f"proto-{level}@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    log = postern.log("smtp")
    assert re.search(rf"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{p.port}: TLSv1\.2 with", log)
    assert f"setting up TLS connection to 127.0.0.1[127.0.0.1]:{p.port}" in log


def test_no_tls_by_default(postern, pki, peer):
    p = peer()
    # smtp_tls_security_level empty = none
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_note_starttls_offer="yes")
    qid = send(postern, "none-1@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    assert "STARTTLS" not in [c for _, c in p.commands]
    postern.wait_log("smtp", r"Host offered STARTTLS: \[127\.0\.0\.1\]")


def test_may_continues_in_plaintext_when_starttls_refused(postern, pki, peer):
    p = peer(refuse="454 4.7.0 TLS not available due to local problem")
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may")
    qid = send(postern, "may-5@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    assert p.connections == 1


# --- encrypt -----------------------------------------------------------------------------------

def test_encrypt_not_offered_defers(postern, pki, peer):
    p = peer(starttls=False)
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt")
    qid = send(postern, "enc-1@test")
    m = deferred(postern, qid)
    assert m.group(1).startswith("4.7.")
    assert m.group(2) == f"TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]:{p.port}"
    assert p.messages == [] and "MAIL" not in " ".join(c for _, c in p.commands)


def test_encrypt_handshake_failure_defers_without_plaintext(postern, pki, peer):
    p = peer(break_handshake=True)
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt")
    qid = send(postern, "enc-2@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.5" and m.group(2) == "Cannot start TLS: handshake failure"
    assert p.connections == 1 and p.messages == []


def test_encrypt_starttls_refused_defers(postern, pki, peer):
    p = peer(refuse="554 5.7.0 no TLS for you")
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt")
    qid = send(postern, "enc-4@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.0"
    assert m.group(2) == (f"TLS is required, but host 127.0.0.1[127.0.0.1]:{p.port} refused to start TLS: "
                          "554 5.7.0 no TLS for you")
    assert p.messages == []


def test_tls_engine_unavailable(postern, pki, peer):
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt",
          smtp_tls_CAfile=str(pki["dir"] / "no-such-ca.crt"))
    qid = send(postern, "enc-5@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.5" and m.group(2) == "TLS is required, but our TLS engine is unavailable"
    assert "no-such-ca.crt" in postern.log("smtp")
    assert p.messages == []


def test_encrypt_untrusted_cert_is_enough(postern, pki, peer):
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt", smtp_tls_CAfile="")
    qid = send(postern, "enc-3@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)


# --- verify / secure ---------------------------------------------------------------------------

def test_verify_good_certificate(postern, pki, peer, tls_host):
    p = peer()
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="verify")
    qid = send(postern, "ver-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(HOST)}\[127\.0\.0\.1\]:{p.port}: "
                             r"TLSv1\.[23] with cipher")
    # relay= is unchanged by TLS
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay={re.escape(HOST)}\[127\.0\.0\.1\]:{p.port},")


def test_verify_wrong_host_name_defers(postern, pki, peer, tls_host):
    p = peer()
    start(postern, pki, f"[wrong.tls.test]:{p.port}", smtp_tls_security_level="verify")
    qid = send(postern, "ver-2@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.5" and m.group(2) == "Server certificate not verified"
    log = postern.log("smtp")
    assert f"server certificate verification failed for wrong.tls.test[127.0.0.1]:{p.port}" in log
    assert "do not match wrong.tls.test" in log
    assert p.messages == []


def test_verify_untrusted_chain_defers(postern, pki, peer, tls_host):
    p = peer()
    # a CA file that does not hold the peer's CA: the chain does not verify
    other = pki["dir"] / "other-ca.crt"
    if not other.exists():
        _certtool("--generate-privkey", "--outfile", "other-ca.key", cwd=pki["dir"])
        _certtool("--generate-self-signed", "--load-privkey", "other-ca.key", "--template", "ca.tmpl",
                  "--outfile", "other-ca.crt", cwd=pki["dir"])
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="verify", smtp_tls_CAfile=str(other))
    qid = send(postern, "ver-3@test")
    m = deferred(postern, qid)
    assert m.group(2) == "Server certificate not verified"
    assert p.messages == []


def test_secure_matches_nexthop_domain_through_mx(postern, pki, peer, dns_zone, tls_host):
    p = peer()
    dns_zone.mx("tls.test", HOST, 10)
    dns_zone.apply()
    # the next hop is tls.test; the certificate's mail.tls.test is below it (dot-nexthop)
    start(postern, pki, f"tls.test:{p.port}", smtp_tls_security_level="secure")
    qid = send(postern, "sec-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(HOST)}\[127\.0\.0\.1\]:{p.port}")


def test_secure_rejects_mx_host_outside_nexthop(postern, pki, peer, dns_zone, tls_host):
    p = peer()
    dns_zone.mx("elsewhere.test", HOST, 10)
    dns_zone.apply()
    # verify would accept (the MX host name matches); secure wants elsewhere.test or below
    start(postern, pki, f"elsewhere.test:{p.port}", smtp_tls_security_level="secure")
    qid = send(postern, "sec-2@test")
    m = deferred(postern, qid)
    assert m.group(2) == "Server certificate not verified"
    assert "do not match elsewhere.test, .elsewhere.test" in postern.log("smtp")


def test_verify_failure_moves_on_to_next_mx(postern, pki, peer, dns_zone, tls_host):
    port = free_port("127.0.0.7")
    bad = peer(host="127.0.0.7", port=port)      # its certificate names mail.tls.test, not mx1
    good = peer(host="127.0.0.1", port=port)
    dns_zone.mx("tlsmx.test", "mx1.tlsmx.test", 10)
    dns_zone.mx("tlsmx.test", HOST, 20)
    dns_zone.host("mx1.tlsmx.test", "127.0.0.7")
    dns_zone.apply()
    start(postern, pki, f"tlsmx.test:{port}", smtp_tls_security_level="verify")
    qid = send(postern, "mx-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    assert bad.tls_connections == 1 and bad.messages == []
    assert len(good.messages) == 1
    log = postern.log("smtp")
    assert f"server certificate verification failed for mx1.tlsmx.test[127.0.0.7]:{port}" in log
    assert "Server certificate not verified; trying the next address" in log


# --- policy maps -------------------------------------------------------------------------------

def test_policy_maps_override_default(postern, pki, peer, tmp_path):
    plain = peer()
    table = tmp_path / "tls_policy"
    # encrypt by default, but this destination is "none": no STARTTLS although offered
    table.write_text(f"[127.0.0.1]:{plain.port} none\n")
    start(postern, pki, f"[127.0.0.1]:{plain.port}", smtp_tls_security_level="encrypt",
          smtp_tls_policy_maps=f"texthash:{table}")
    qid = send(postern, "pol-1@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    assert "STARTTLS" not in [c for _, c in plain.commands]


def test_policy_maps_match_attribute_and_invalid_level(postern, pki, peer, tmp_path, tls_host):
    p = peer()
    table = tmp_path / "tls_policy"
    table.write_text(f"[{HOST}]:{p.port} secure match=nomatch.test:{HOST}\n"
                     f"[wrong.tls.test]:{p.port} fingerprint\n")
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_policy_maps=f"texthash:{table}",
          transport_maps=f"inline:{{ bad.example=smtp:[wrong.tls.test]:{p.port} }}")
    qid = send(postern, "pol-2@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(HOST)}")
    qid = mailtest.send(postern, "ptest1@postern.test", ["carol@bad.example"], msg("pol-3@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<carol@bad\.example>, relay=none, .*dsn=4\.7\.5, "
                                 r"status=deferred \((.*)\)$", timeout=20)
    assert m.group(1) == (f"TLS policy lookup for [wrong.tls.test]:{p.port}: "
                          "invalid TLS security level \"fingerprint\"")


# --- SNI ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting,seen", [("", None), ("hostname", HOST), ("nexthop", HOST),
                                          ("sni.example.net", "sni.example.net")])
def test_sni(postern, pki, peer, tls_host, setting, seen):
    p = peer()
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="encrypt", smtp_tls_servername=setting)
    qid = send(postern, "sni-1@test")
    sent(postern, qid)
    assert p.sni == [seen]


# --- wrappermode -------------------------------------------------------------------------------

def test_wrappermode_delivers_inside_tls(postern, pki, peer, tls_host):
    p = peer(wrapper=True, starttls=False)
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="verify", smtp_tls_wrappermode="yes")
    qid = send(postern, "wrap-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    assert all(tls for tls, _ in p.commands)
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(HOST)}")


def test_wrappermode_against_gnutls_serv(postern, pki):
    """gnutls-serv is a raw TLS peer (an echo server, not SMTP): the handshake completes, the
    SMTP greeting never comes, and the delivery times out waiting for it."""
    port = free_port()
    srv = subprocess.Popen(["gnutls-serv", "--echo", "--port", str(port), "--x509certfile", str(pki["crt"]),
                            "--x509keyfile", str(pki["key"])],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port("127.0.0.1", port)
        start(postern, pki, f"[127.0.0.1]:{port}", smtp_tls_wrappermode="yes", smtp_helo_timeout="2s")
        qid = send(postern, "wrap-2@test")
        m = deferred(postern, qid)
        assert m.group(2) == (f"conversation with 127.0.0.1[127.0.0.1]:{port} timed out while "
                              "receiving the initial server greeting")
        postern.wait_log("smtp", rf"Trusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}")
    finally:
        srv.terminate()
        srv.wait(timeout=5)


def test_wrappermode_plaintext_server_fails(postern, pki, peer):
    p = peer(starttls=False)   # a plaintext SMTP server on the "465" port
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_wrappermode="yes")
    qid = send(postern, "wrap-3@test")
    m = deferred(postern, qid)
    assert m.group(2) == "Cannot start TLS: handshake failure"
    assert p.messages == []


# --- STARTTLS injection ------------------------------------------------------------------------

def test_starttls_injection_discarded(postern, pki, peer):
    p = peer(inject=True)
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="encrypt")
    qid = send(postern, "inj-1@test")
    # Had "250 injected" been taken as the reply to the EHLO inside TLS, every later reply would
    # be off by one and the end-of-data reply would not be the server's "queued as".
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    assert f"host 127.0.0.1[127.0.0.1]:{p.port} sent 14 bytes after its reply to STARTTLS; discarded" \
        in postern.log("smtp")
    assert after_tls(p)[:4] == ["EHLO", "MAIL", "RCPT", "DATA"]


# --- connection reuse --------------------------------------------------------------------------

def test_tls_connection_reused(postern, pki, peer, tls_host):
    p = peer()
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="verify",
          smtp_connection_cache_time_limit="5s")
    for i in range(3):
        qid = send(postern, f"reuse-{i}@test")
        assert f"queued as TLS{i + 1}T" in sent(postern, qid).group(1)
    assert p.connections == 1 and p.tls_connections == 1
    postern.wait_log("smtp", rf"Verified TLS connection reused to {re.escape(HOST)}\[127\.0\.0\.1\]:"
                             rf"{p.port}: TLSv1\.[23] with cipher", count=2)
    assert postern.log("smtp").count("TLS connection established") == 1
    assert [c for _, c in p.commands].count("STARTTLS") == 1


def test_plaintext_connection_not_reused_for_tls_level(postern, pki, peer, tmp_path):
    p = peer()
    table = tmp_path / "tls_policy"
    table.write_text(f"[127.0.0.1]:{p.port} none\n")
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_policy_maps=f"texthash:{table}",
          smtp_connection_cache_time_limit="10s")
    qid = send(postern, "key-1@test")
    assert "queued as TLS1P" in sent(postern, qid).group(1)
    time.sleep(1.2)   # texthash notices changes once a second (mtime granularity): a wait
    table.write_text(f"[127.0.0.1]:{p.port} encrypt\n")
    qid = send(postern, "key-2@test")
    assert "queued as TLS2T" in sent(postern, qid).group(1)
    assert p.connections == 2


def test_tls_session_resumed_on_new_connection(postern, pki, peer, tls_host):
    p = peer()
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="verify",
          smtp_connection_cache_time_limit="0")   # no connection reuse: a new handshake each time
    for i in range(2):
        qid = send(postern, f"resume-{i}@test")
        assert f"queued as TLS{i + 1}T" in sent(postern, qid).group(1)
    assert p.connections == 2
    assert p.resumed == [False, True]


def test_reload_keeps_cached_tls_connection_usable(postern, pki, peer, tls_host):
    p = peer()
    start(postern, pki, f"[{HOST}]:{p.port}", smtp_tls_security_level="verify",
          smtp_connection_cache_time_limit="10s")
    sent(postern, send(postern, "hup-1@test"))
    postern.reload("smtp")   # new TLS settings snapshot; the cached connection keeps its own
    postern.wait_log("smtp", r"reload -- configuration")
    sent(postern, send(postern, "hup-2@test"))
    assert p.connections == 1 and len(p.messages) == 2
    postern.wait_log("smtp", r"Verified TLS connection reused to ")


@pytest.fixture
def receiver(pki):
    """A second Postern whose smtpd offers STARTTLS with the mail.tls.test certificate and
    discards what it accepts: GnuTLS client against GnuTLS server, both Postern's."""
    r = postern_harness.Postern()
    r.configure(myhostname="sink.tls.test", mynetworks="127.0.0.0/8", smtpd_tls_chain_files=str(pki["pem"]),
                smtpd_tls_security_level="may", smtpd_tls_loglevel="1", transport_maps="static:{discard:tls sink}")
    r.start("smtpd", "qmgr")
    yield r
    r.close()
    shutil.rmtree(r.root, ignore_errors=True)


def test_postern_to_postern_verified(postern, pki, receiver, tls_host):
    start(postern, pki, f"[{HOST}]:{receiver.smtp_port}", smtp_tls_security_level="verify",
          smtp_tls_servername="hostname")
    qid = send(postern, "p2p-1@test")
    sent(postern, qid)
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(HOST)}\[127\.0\.0\.1\]:"
                             rf"{receiver.smtp_port}: TLSv1\.3 with cipher")
    receiver.wait_log("smtpd", r"Anonymous TLS connection established from .*: TLSv1\.3 with cipher")
    receiver.wait_log("qmgr", r": removed", timeout=20)


def test_tls_handshakes_are_counted_for_metrics(postern, pki, peer):
    """postfix_smtp_tls_connections_total{protocol,cipher}: one per handshake, with the protocol
    and cipher the log line names (postfix_exporter's metric for smtp's "TLS connection
    established to" lines)."""
    p = peer()
    start(postern, pki, f"[127.0.0.1]:{p.port}", smtp_tls_security_level="may")
    for i in (1, 2):
        sent(postern, send(postern, f"metrics-{i}@test"))
    # a reused connection (smtp_connection_cache_time_limit) is no new handshake: count the lines
    protocols = re.findall(r"TLS connection established to \S+: (TLSv1\.[23]) with cipher ([A-Z0-9_-]+) ",
                           postern.log("smtp"))
    assert len(protocols) >= 1 and len(set(protocols)) == 1, protocols
    protocol, cipher = protocols[0]
    n = len(protocols)
    postern.start("metrics")
    key = f'postfix_smtp_tls_connections_total{{protocol="{protocol}",cipher="{cipher}"}}'
    postern.wait_for(lambda: postern.metric_values().get(key) == n, timeout=20, what=f"{key} == {n}")
    tls = {k: v for k, v in postern.metric_values().items() if k.startswith("postfix_smtp_tls_connections_total")}
    assert tls == {key: n}
    # smtpd's own family (incoming) saw none of these
    assert not any(k.startswith("postfix_smtpd_tls_connections_total{") for k in postern.metric_values())
