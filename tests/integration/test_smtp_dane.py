"""postern-smtp DANE (RFC 7672): smtp_tls_security_level = dane / dane-only with
smtp_dns_support_level = dnssec, against a real validating resolver.

Each test writes its zones, signs dane.test with ldns-signzone (NSEC3, an ECDSA key made by
ldns-keygen) and serves it from an unbound that also validates it (auth-zone with for-upstream,
the zone's DS as its only trust anchor); insecure.test is served unsigned from the same unbound
(no trust anchor: answers without the AD bit). /etc/resolv.conf of the run's mount namespace is
covered by one naming that unbound for the test's duration — without "options trust-ad", which
postern-smtp does not need (it sets RES_TRUSTAD itself). The receiving
server is the Python/OpenSSL SMTP server of the TLS tests (tls_smtp_peer.py) on 127.0.0.7, and
gnutls-serv for a GnuTLS peer (SMTPS, since it does not speak SMTP); the
TLSA association data are computed with openssl and hashlib. The unbound and the digests are in
transport_security.py (shared with test_smtp_dane_sts.py)."""

import os
import shutil
import subprocess

import pytest

from smtp_peers import free_port, peer_factory, wait_port
from test_smtp_tls import deferred, send, sent
from test_smtpd_tls import CERTTOOL, _ca, _leaf
from tls_smtp_peer import TlsSmtpServer
from transport_security import HAVE_DNSSEC_TOOLS, MX_ADDR, der, sha256, spki, unbound  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not (CERTTOOL and HAVE_DNSSEC_TOOLS),
                                reason="needs unbound, ldnsutils, gnutls-bin (certtool) and openssl")


@pytest.fixture(scope="module")
def pki():
    d = _ca("postern-smtp-dane-", "Postern DANE Test CA")
    _leaf(d, "mx", ["--key-type=ecdsa", "--curve=secp256r1"], ["mx.dane.test"])
    # what the server sends: its certificate, then the CA's (DANE-TA needs the anchor in the chain)
    (d / "chain.crt").write_text((d / "mx.crt").read_text() + (d / "ca.crt").read_text())
    yield {"dir": d, "chain": d / "chain.crt", "key": d / "mx.key", "crt": d / "mx.crt", "ca": d / "ca.crt"}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["chain"], pki["key"], host=MX_ADDR,
                                                       **kw))


def start(postern, nexthop, level="dane", **extra):
    conf = {"relayhost": nexthop, "smtp_dns_support_level": "dnssec", "smtp_tls_security_level": level,
            "smtp_tls_loglevel": "1"}
    conf.update(extra)
    postern.configure(**conf)
    postern.start()


def mx_zone(port, *tlsa, host="mx"):
    return ["@ IN MX 10 %s" % host, "%s IN A %s" % (host, MX_ADDR)] + \
           ["_%d._tcp.%s IN TLSA %s" % (port, host, t) for t in tlsa]


def test_dane_ee_spki_sha256_verified(postern, pki, peer, unbound):
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + sha256(spki(pki["crt"]))))
    start(postern, f"dane.test:{p.port}")
    qid = send(postern, "ee-1@test")
    sent(postern, qid)
    assert len(p.messages) == 1 and p.messages[0][0] is True
    postern.wait_log("smtp", rf"Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}: "
                             r"TLSv1\.[23] with cipher [A-Z0-9_]+ \((\d+)/\1 bits\)")
    postern.wait_log("smtp", rf"matched the DANE TLSA records of _{p.port}\._tcp\.mx\.dane\.test")
    assert p.sni == ["mx.dane.test"]   # RFC 7672 8.1: SNI names the TLSA base domain


def test_dane_ee_full_certificate_verified(postern, pki, peer, unbound):
    p = peer()
    unbound.serve(mx_zone(p.port, "3 0 0 " + der(pki["crt"]).hex()))
    start(postern, f"dane.test:{p.port}")
    sent(postern, send(postern, "ee-2@test"))
    postern.wait_log("smtp", rf"Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}")


def test_dane_mismatch_defers_and_sends_nothing(postern, pki, peer, unbound):
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + "00" * 32))
    start(postern, f"dane.test:{p.port}")
    qid = send(postern, "mismatch@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.5" and "Server certificate not verified" in m.group(2)
    assert p.tls_connections == 1 and p.messages == []
    assert "MAIL" not in [c.split(" ")[0].split(":")[0] for _, c in p.commands]
    postern.wait_log("smtp", rf"server certificate verification failed for mx\.dane\.test\[127\.0\.0\.7\]:{p.port}: "
                             r"no TLSA record matches")


@pytest.mark.parametrize("host, ok", [("mx", True), ("other", False)])
def test_dane_ta_checks_chain_and_name(postern, pki, peer, unbound, host, ok):
    """DANE-TA 2 0 1 of the test CA: the chain verifies up to it, and the certificate must name
    the MX host (it names mx.dane.test, not other.dane.test)."""
    p = peer()
    unbound.serve(mx_zone(p.port, "2 0 1 " + sha256(der(pki["ca"])), host=host))
    start(postern, f"dane.test:{p.port}")
    qid = send(postern, f"ta-{host}@test")
    if ok:
        sent(postern, qid)
        postern.wait_log("smtp", rf"Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}")
    else:
        assert "Server certificate not verified" in deferred(postern, qid).group(2)
        assert p.messages == []
        postern.wait_log("smtp", r"verification failed for other\.dane\.test.*do not match other\.dane\.test")


def test_unusable_tlsa_means_encrypt(postern, pki, peer, unbound):
    """Only PKIX-EE (1 1 1): unusable for SMTP; TLS is still required, unauthenticated."""
    p = peer()
    unbound.serve(mx_zone(p.port, "1 1 1 " + sha256(spki(pki["crt"]))))
    start(postern, f"dane.test:{p.port}")
    sent(postern, send(postern, "unusable@test"))
    assert p.messages[0][0] is True
    postern.wait_log("smtp", rf"Untrusted TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}")


@pytest.mark.parametrize("usage", ["3", "1"])
def test_starttls_missing_with_tlsa_defers(postern, pki, peer, unbound, usage):
    """Usable (3 1 1) or only unusable (1 1 1) TLSA records: TLS is a must either way."""
    p = peer(starttls=False)
    unbound.serve(mx_zone(p.port, usage + " 1 1 " + sha256(spki(pki["crt"]))))
    start(postern, f"dane.test:{p.port}")
    m = deferred(postern, send(postern, f"nostarttls-{usage}@test"))
    assert m.group(1) == "4.7.4" and "TLS is required, but was not offered by host mx.dane.test" in m.group(2)
    assert p.messages == []


def test_no_tlsa_is_opportunistic(postern, pki, peer, unbound):
    p = peer(starttls=False)
    unbound.serve(mx_zone(p.port))
    start(postern, f"dane.test:{p.port}")
    sent(postern, send(postern, "notlsa@test"))
    assert p.messages[0][0] is False   # level may: plaintext when STARTTLS is not offered


def test_dane_only_without_tlsa_defers(postern, pki, peer, unbound):
    p = peer()
    unbound.serve(mx_zone(p.port))
    start(postern, f"dane.test:{p.port}", level="dane-only")
    m = deferred(postern, send(postern, "daneonly@test"))
    assert m.group(1) == "4.7.5" and f"no TLSA records for _{p.port}._tcp.mx.dane.test" in m.group(2)
    assert p.commands == []   # never connected


def test_bogus_tlsa_is_a_lookup_error(postern, pki, peer, unbound):
    """A TLSA RRset whose signature fails: unbound answers SERVFAIL; deferred, no plaintext."""
    p = peer(starttls=False)
    good = sha256(spki(pki["crt"]))
    unbound.serve(mx_zone(p.port, "3 1 1 " + good), corrupt=(good[:8], "deadbeef"))
    start(postern, f"dane.test:{p.port}")
    m = deferred(postern, send(postern, "bogus@test"))
    assert m.group(1) == "4.7.5" and f"TLSA lookup error for _{p.port}._tcp.mx.dane.test" in m.group(2)
    assert p.commands == []


def test_unsigned_zone_ignores_tlsa(postern, pki, peer, unbound):
    """insecure.test is not signed: its (mismatching) TLSA record does not count."""
    p = peer()
    unbound.serve([], unsigned=mx_zone(p.port, "3 1 1 " + "00" * 32))
    start(postern, f"insecure.test:{p.port}")
    sent(postern, send(postern, "unsigned@test"))
    assert p.messages[0][0] is True
    postern.wait_log("smtp", rf"Untrusted TLS connection established to mx\.insecure\.test\[127\.0\.0\.7\]:{p.port}")
    assert "DANE TLSA" not in postern.log("smtp")


@pytest.mark.parametrize("policy, trusted", [("dane", True), ("may", False)])
def test_insecure_mx_policy(postern, pki, peer, unbound, policy, trusted):
    """An MX from the unsigned zone naming a host of the signed one (with TLSA records):
    smtp_tls_dane_insecure_mx_policy = dane uses them but logs Trusted, may ignores them."""
    p = peer()
    unbound.serve(["mx IN A " + MX_ADDR, f"_{p.port}._tcp.mx IN TLSA 3 1 1 " + sha256(spki(pki["crt"]))],
                  unsigned=["@ IN MX 10 mx.dane.test."])
    start(postern, f"insecure.test:{p.port}", smtp_tls_dane_insecure_mx_policy=policy)
    sent(postern, send(postern, f"insecure-mx-{policy}@test"))
    word = "Trusted" if trusted else "Untrusted"
    postern.wait_log("smtp", rf"{word} TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}")
    assert ("matched the DANE TLSA records" in postern.log("smtp")) == trusted


def test_policy_maps_dane_per_destination(postern, pki, peer, unbound, tmp_path):
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + "00" * 32))
    table = tmp_path / "tls_policy"
    table.write_text("dane.test dane-only\n")
    os.chmod(tmp_path, 0o755)
    start(postern, f"dane.test:{p.port}", level="may", smtp_tls_policy_maps=f"texthash:{table}")
    m = deferred(postern, send(postern, "policy@test"))
    assert "Server certificate not verified" in m.group(2)
    assert p.messages == []


def test_dane_without_dnssec_support_level_is_may(postern, pki, peer, unbound):
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + "00" * 32))
    start(postern, f"dane.test:{p.port}", smtp_dns_support_level="enabled")
    sent(postern, send(postern, "nodnssec@test"))
    log = postern.log("smtp")
    assert "smtp_tls_security_level = dane needs smtp_dns_support_level = dnssec; using may" in log


def test_resumed_session_still_verified(postern, pki, peer, unbound):
    """A new connection resumes the TLS session (ticket): the certificate is checked again."""
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + sha256(spki(pki["crt"]))))
    start(postern, f"dane.test:{p.port}", smtp_connection_cache_time_limit="0")
    for i in range(2):
        sent(postern, send(postern, f"resume-{i}@test"))
    assert p.resumed == [False, True]
    postern.wait_log("smtp", rf"Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}",
                     count=2)
    assert len(p.messages) == 2


@pytest.mark.parametrize("match", [True, False])
def test_against_gnutls_serv(postern, pki, unbound, match):
    """gnutls-serv (a raw TLS echo server, so SMTPS: smtp_tls_wrappermode) sends the chain: with
    DANE-TA 2 0 1 of the CA the handshake verifies and the SMTP greeting then never comes; with a
    wrong digest the certificate is refused."""
    port = free_port(MX_ADDR)
    srv = subprocess.Popen(["gnutls-serv", "--echo", "--port", str(port), "--x509certfile", str(pki["chain"]),
                            "--x509keyfile", str(pki["key"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(MX_ADDR, port)
        unbound.serve(mx_zone(port, "2 0 1 " + (sha256(der(pki["ca"])) if match else "11" * 32)))
        start(postern, f"dane.test:{port}", smtp_tls_wrappermode="yes", smtp_helo_timeout="2s")
        m = deferred(postern, send(postern, f"gnutls-serv-{match}@test"))
        if match:
            postern.wait_log("smtp", rf"Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{port}")
            assert "timed out while receiving the initial server greeting" in m.group(2)
        else:
            assert m.group(1) == "4.7.5" and "Server certificate not verified" in m.group(2)
    finally:
        srv.terminate()
        srv.wait(timeout=5)


@pytest.mark.parametrize("level", ["dane", "dane-only"])
def test_tls_required_no_header_ignores_dane(postern, pki, peer, unbound, level):
    """RFC 8689 5: "TLS-Required: No" asks that the recipient's DANE policy be ignored: the
    mismatching TLSA record that defers other mail (test_dane_mismatch_defers_and_sends_nothing)
    does not count, the message goes with opportunistic TLS."""
    import mailtest
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + "00" * 32))
    start(postern, f"dane.test:{p.port}", level=level)
    qid = mailtest.send(postern, "ptest1@postern.test", ["bob@remote.example"],
                        mailtest.msg(f"trn-{level}@test", extra="TLS-Required: No\r\n"))
    sent(postern, qid)
    assert len(p.messages) == 1 and p.messages[0][0] is True   # still inside TLS when offered
    log = postern.log("smtp")
    assert f"{qid}: TLS-Required: No: DANE (TLS security level {level}) is not applied to dane.test:{p.port}; " \
           "TLS security level may (RFC 8689 5)" in log
    postern.wait_log("smtp", rf"Untrusted TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}")
    assert "DANE TLSA" not in log


@pytest.mark.parametrize("case", ["match", "mismatch", "name", "bogus", "dane-only"])
def test_tlsrpt_counts_dane_sessions(postern, pki, peer, unbound, case):
    """With smtp_tlsrpt_enable, DANE's results are policy type "tlsa" (RFC 8460 4.4) under the
    next-hop domain, the host's TLSA records as policy-string: successes, and the failures
    tlsa-invalid (no record matches), certificate-host-mismatch (DANE-TA matched, the name did
    not), dnssec-invalid (the TLSA lookup failed: a bogus signature), dane-required (dane-only,
    no TLSA records). MTA-STS is off: nothing else is counted."""
    import datetime
    from test_tlsrpt import show
    p = peer()
    good = sha256(spki(pki["crt"]))
    tlsa = {"match": "3 1 1 " + good, "mismatch": "3 1 1 " + "00" * 32, "bogus": "3 1 1 " + good,
            "name": "2 0 1 " + sha256(der(pki["ca"])), "dane-only": None}[case]
    host = "other" if case == "name" else "mx"
    unbound.serve(mx_zone(p.port, *([tlsa] if tlsa else []), host=host),
                  corrupt=(good[:8], "deadbeef") if case == "bogus" else None)
    start(postern, f"dane.test:{p.port}", level="dane-only" if case == "dane-only" else "dane",
          smtp_tlsrpt_enable="yes", smtp_connection_cache_time_limit="0")   # a session per message
    for i in range(2):
        qid = send(postern, f"rpt-{case}-{i}@test")
        sent(postern, qid) if case == "match" else deferred(postern, qid)
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    [report] = show(postern, day)
    [pol] = report["policies"]
    want_string = [] if case in ("bogus", "dane-only") else [tlsa]
    assert pol["policy"] == dict({"policy-type": "tlsa", "policy-domain": "dane.test",
                                  "mx-host": [f"{host}.dane.test"]},
                                 **({"policy-string": want_string} if want_string else {}))
    if case == "match":
        assert pol["summary"] == {"total-successful-session-count": 2, "total-failure-session-count": 0}
        assert "failure-details" not in pol
    else:
        result = {"mismatch": "tlsa-invalid", "name": "certificate-host-mismatch", "bogus": "dnssec-invalid",
                  "dane-only": "dane-required"}[case]
        assert pol["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 2}
        assert pol["failure-details"] == [{"result-type": result, "receiving-ip": MX_ADDR,
                                           "receiving-mx-hostname": f"{host}.dane.test", "failed-session-count": 2}]


@pytest.mark.parametrize("match", [True, False])
def test_lmtp_dane(postern, pki, peer, unbound, match):
    """lmtp_tls_security_level = dane with lmtp_dns_support_level = dnssec: an inet:host next hop
    (no MX lookup; its validated address) is checked against _port._tcp.host like an SMTP MX host."""
    p = peer()
    unbound.serve(mx_zone(p.port, "3 1 1 " + (sha256(spki(pki["crt"])) if match else "00" * 32)))
    postern.configure(transport_maps=f"inline:{{ remote.example=lmtp:inet:mx.dane.test:{p.port} }}",
                      lmtp_dns_support_level="dnssec", lmtp_tls_security_level="dane", lmtp_tls_loglevel="1")
    postern.start()
    qid = send(postern, f"lmtp-dane-{match}@test")
    if match:
        sent(postern, qid)
        assert [c.split(" ")[0] for _, c in p.commands][:2] == ["LHLO", "STARTTLS"]
        assert len(p.messages) == 1 and p.messages[0][0] is True
        postern.wait_log("smtp", rf"Verified TLS connection established to mx\.dane\.test\[127\.0\.0\.7\]:{p.port}")
        postern.wait_log("smtp", rf"matched the DANE TLSA records of _{p.port}\._tcp\.mx\.dane\.test")
    else:
        m = deferred(postern, qid)
        assert m.group(1) == "4.7.5" and "Server certificate not verified" in m.group(2)
        assert p.messages == []
