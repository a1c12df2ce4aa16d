"""DANE and MTA-STS on the same domain: per MX host, DANE takes precedence (RFC 8461 2;
smtp_tls_target_level() in smtp-tls.c decides). dane.test is signed and validated by the unbound
of transport_security.py and carries both a TLSA record for its MX host and an MTA-STS policy
(_mta-sts TXT, mta-sts.dane.test served by transport_security.PolicyServer) in mode enforce whose
mx patterns do NOT name the MX host:

  usable TLSA that matches → delivered, DANE-verified; the policy does not rule the host out
  usable TLSA that does not match → deferred: the policy (even one naming the host) does not
     rescue a DANE failure
  no TLSA → the host falls to the MTA-STS rule: deferred, the MX is not in the policy"""

import re
import shutil

import pytest

from smtp_peers import peer_factory
from test_smtp_tls import deferred, send, sent
from test_smtpd_tls import CERTTOOL
from tls_smtp_peer import TlsSmtpServer
from transport_security import (HAVE_DNSSEC_TOOLS, MX_ADDR, WEB_ADDR, ecdsa_pki, sha256, spki,  # noqa: F401
                                unbound, web)

pytestmark = pytest.mark.skipif(not (CERTTOOL and HAVE_DNSSEC_TOOLS),
                                reason="needs unbound, ldnsutils, gnutls-bin (certtool) and openssl")

DOMAIN = "dane.test"
MX = "mx.dane.test"


@pytest.fixture(scope="module")
def pki():
    d = ecdsa_pki("postern-dane-sts-", "Postern DANE+STS Test CA", {"mx": MX, "web": f"mta-sts.{DOMAIN}"})
    yield {"dir": d, "ca": d / "ca.crt", "crt": d / "mx.crt", "key": d / "mx.key"}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["crt"], pki["key"], host=MX_ADDR, **kw))


def serve(unbound, port, tlsa=None):
    """The signed zone: MX, its address, the MTA-STS TXT and web address, and a TLSA record."""
    unbound.serve(["@ IN MX 10 mx", f"mx IN A {MX_ADDR}", '_mta-sts IN TXT "v=STSv1; id=one;"',
                   f"mta-sts IN A {WEB_ADDR}"] + ([f"_{port}._tcp.mx IN TLSA {tlsa}"] if tlsa else []))


def start(postern, pki, port, **extra):
    conf = {"relayhost": f"{DOMAIN}:{port}", "smtp_dns_support_level": "dnssec", "smtp_tls_security_level": "dane",
            "smtp_mta_sts_enable": "yes", "smtp_mta_sts_CAfile": str(pki["ca"]), "smtp_tls_CAfile": str(pki["ca"]),
            "smtp_tls_loglevel": "1"}
    conf.update(extra)
    postern.configure(**conf)
    postern.start()


def test_dane_verified_host_is_not_ruled_out_by_the_policy(postern, pki, peer, web, unbound):
    p = peer()
    w = web()
    w.policy("enforce", mx=["mail.elsewhere.test"])
    serve(unbound, p.port, "3 1 1 " + sha256(spki(pki["crt"])))
    start(postern, pki, p.port)
    sent(postern, send(postern, "both-1@test"))
    assert len(p.messages) == 1 and p.messages[0][0] is True
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(MX)}\[{MX_ADDR}\]:{p.port}")
    postern.wait_log("smtp", rf"matched the DANE TLSA records of _{p.port}\._tcp\.{re.escape(MX)}")
    log = postern.log("smtp")
    assert f"MTA-STS policy for {DOMAIN}: mode=enforce, id=one" in log   # the policy was found ...
    assert "does not match the policy's mx patterns" not in log          # ... and did not apply
    assert len(w.requests) == 1


def test_dane_failure_is_not_rescued_by_the_policy(postern, pki, peer, web, unbound):
    p = peer()
    web().policy("enforce", mx=[MX])   # the policy names the host, its certificate verifies (WebPKI)
    serve(unbound, p.port, "3 1 1 " + "00" * 32)
    start(postern, pki, p.port)
    m = deferred(postern, send(postern, "both-2@test"))
    assert m.group(1) == "4.7.5" and "Server certificate not verified" in m.group(2)
    assert p.messages == []
    postern.wait_log("smtp", rf"verification failed for {re.escape(MX)}\[{MX_ADDR}\]:{p.port}: no TLSA record matches")


def test_host_without_tlsa_falls_to_the_policy(postern, pki, peer, web, unbound):
    p = peer()
    web().policy("enforce", mx=["mail.elsewhere.test"])
    serve(unbound, p.port)
    start(postern, pki, p.port)
    m = deferred(postern, send(postern, "both-3@test"))
    assert m.group(1) == "4.7.5"
    assert f"MTA-STS policy for {DOMAIN}: MX host {MX} does not match the policy's mx patterns" in m.group(2)
    assert p.connections == 0 and p.messages == []
