"""MTA-STS (RFC 8461) in postern-smtp: policy discovery through the _mta-sts TXT record, the HTTPS
fetch of https://mta-sts.<domain>/.well-known/mta-sts.txt (a Python http.server with TLS on
127.0.0.5:443, its certificate from a test CA given as smtp_mta_sts_CAfile), the policy cache
in $queue_directory/mta-sts.db (used while the web server is down, across a restart of
postern-smtp; a new TXT id fetches again; refreshed after half its max_age),
and enforcement per MX: enforce (MX in the patterns, certificate verified for the MX host name,
never plaintext), testing (delivered, failures logged). Refused fetches (a redirect, a policy
over the size limit, another Content-Type) and a domain without TXT record mean no policy.
Receiving servers: the Python/OpenSSL SMTP peer with STARTTLS (tls_smtp_peer.py); the policy
server is transport_security.py's."""

import re
import shutil
import sqlite3
import time

import pytest

from smtp_peers import peer_factory
from test_smtp_tls import deferred, send, sent
from test_smtpd_tls import CERTTOOL
from tls_smtp_peer import TlsSmtpServer
from transport_security import STS_MX as MX, WEB_ADDR, ecdsa_pki, web  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not CERTTOOL, reason="needs gnutls-bin (certtool)")

DOMAIN = "sts.test"


@pytest.fixture(scope="module")
def pki():
    d = ecdsa_pki("postern-mta-sts-", "Postern MTA-STS Test CA",
                  {"mx": MX, "web": f"mta-sts.{DOMAIN}", "otherweb": "www.other.test"})
    yield {"dir": d, "ca": d / "ca.crt"}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def peer(pki):
    yield from peer_factory(lambda **kw: TlsSmtpServer(pki["dir"] / "mx.crt", pki["dir"] / "mx.key", **kw))


def zone(dns_zone, txt_id="one", mx_host=MX, txt=True):
    dns_zone.reset()
    dns_zone.mx(DOMAIN, mx_host, 10)
    dns_zone.host(mx_host, "127.0.0.1")
    dns_zone.host(f"mta-sts.{DOMAIN}", WEB_ADDR)
    if txt:
        dns_zone.txt(f"_mta-sts.{DOMAIN}", f"v=STSv1; id={txt_id};")
    dns_zone.apply()


def start(postern, pki, port, **extra):
    conf = {"relayhost": f"{DOMAIN}:{port}", "smtp_mta_sts_enable": "yes", "smtp_mta_sts_CAfile": str(pki["ca"]),
            "smtp_tls_CAfile": str(pki["ca"]), "smtp_tls_loglevel": "1", "smtp_connection_cache_time_limit": "0"}
    conf.update(extra)
    postern.configure(**conf)
    postern.start()


def delivered_under_policy(postern, pki, peer, web, dns_zone, mid):
    """Starts with an enforce policy for MX (TXT id "one") and delivers mid under it over TLS, so
    that the policy is in the cache; returns the receiving peer and the policy server."""
    p = peer()
    w = web()
    w.policy("enforce", mx=[MX])
    zone(dns_zone, txt_id="one")
    start(postern, pki, p.port)
    assert "queued as TLS1T" in sent(postern, send(postern, mid)).group(1)
    return p, w


def plaintext_commands(p):
    return [c.split(" ")[0].split(":")[0].upper() for tls, c in p.commands if not tls]


def test_enforce_matching_mx_verified(postern, pki, peer, web, dns_zone):
    p = peer()
    w = web()
    w.policy("enforce", mx=[MX, "*.backup.test"])
    zone(dns_zone)
    start(postern, pki, p.port)   # smtp_tls_security_level empty (none): MTA-STS raises it
    qid = send(postern, "enf-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    postern.wait_log("smtp", rf"Verified TLS connection established to {re.escape(MX)}\[127\.0\.0\.1\]:{p.port}")
    log = postern.log("smtp")
    assert f"MTA-STS policy for {DOMAIN}: mode=enforce, id=one, max_age=86400" in log
    assert w.requests == [("/.well-known/mta-sts.txt", f"mta-sts.{DOMAIN}")]
    assert plaintext_commands(p) == ["EHLO", "STARTTLS"]


def test_enforce_mx_not_in_policy_deferred(postern, pki, peer, web, dns_zone):
    p = peer()
    web().policy("enforce", mx=["mail.elsewhere.test", "*.sts.example"])
    zone(dns_zone)
    start(postern, pki, p.port)
    qid = send(postern, "enf-2@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.5"
    assert f"MTA-STS policy for {DOMAIN}: MX host {MX} does not match the policy's mx patterns" in m.group(2)
    assert p.connections == 0 and p.messages == []
    assert re.search(rf"MTA-STS policy for {DOMAIN} \(mode=enforce\): MX {re.escape(MX)}\[127\.0\.0\.1\]:{p.port}: "
                     r"MX host does not match the policy's mx patterns", postern.log("smtp"))


def test_enforce_wrong_certificate_name_deferred_never_plaintext(postern, pki, peer, web, dns_zone):
    p = peer()   # its certificate names mx.sts.test
    web().policy("enforce", mx=["*.sts.test"])
    zone(dns_zone, mx_host="wrongmx.sts.test")
    start(postern, pki, p.port)
    qid = send(postern, "enf-3@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.5" and m.group(2) == "Server certificate not verified"
    assert p.messages == []
    assert plaintext_commands(p) == ["EHLO", "STARTTLS"]   # no MAIL in the clear, no retry without TLS
    assert re.search(r"MTA-STS policy for sts\.test \(mode=enforce\): MX wrongmx\.sts\.test\[127\.0\.0\.1\]:\d+: "
                     r"certificate not verified", postern.log("smtp"))


def test_enforce_starttls_not_offered_deferred(postern, pki, peer, web, dns_zone):
    p = peer(starttls=False)
    web().policy("enforce")
    zone(dns_zone)
    start(postern, pki, p.port)
    qid = send(postern, "enf-4@test")
    m = deferred(postern, qid)
    assert m.group(1) == "4.7.4"
    assert p.messages == []
    assert "STARTTLS not offered" in postern.log("smtp")


def test_testing_delivers_and_logs_failure(postern, pki, peer, web, dns_zone):
    p = peer()
    web().policy("testing", mx=["*.sts.test"])
    zone(dns_zone, mx_host="wrongmx.sts.test")
    start(postern, pki, p.port)
    qid = send(postern, "tst-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)   # inside TLS, though not verified
    log = postern.log("smtp")
    assert f"MTA-STS policy for {DOMAIN}: mode=testing, id=one" in log
    assert re.search(r"MTA-STS policy for sts\.test \(mode=testing\): MX wrongmx\.sts\.test\[127\.0\.0\.1\]:\d+: "
                     r"certificate not verified.*; delivering anyway \(testing\)", log)


def test_cached_policy_enforced_while_server_down_and_new_id_refetches(postern, pki, peer, web, dns_zone):
    p, w = delivered_under_policy(postern, pki, peer, web, dns_zone, "cache-1@test")
    assert len(w.requests) == 1
    assert (postern.queue_dir / "mta-sts.db").exists()

    # The web server is gone, postern-smtp restarted (the cache is its SQLite file) and the MX
    # now names a host outside the policy: the cached policy (same TXT id) still rules it out.
    w.stop()
    postern.restart("smtp")
    zone(dns_zone, txt_id="one", mx_host="evil.sts.test")
    qid = send(postern, "cache-2@test")
    m = deferred(postern, qid)
    assert "MX host evil.sts.test does not match the policy's mx patterns" in m.group(2)
    assert len(p.messages) == 1

    # A new id: fetched again (a new server, a policy that now lists evil.sts.test... in testing mode).
    w2 = web()
    w2.policy("testing", mx=["evil.sts.test"], max_age=3600)
    zone(dns_zone, txt_id="two", mx_host="evil.sts.test")
    qid = send(postern, "cache-3@test")
    sent(postern, qid)
    assert len(w2.requests) == 1
    assert f"MTA-STS policy for {DOMAIN} (refreshed): mode=testing, id=two, max_age=3600" in postern.log("smtp")


def test_fetch_failure_keeps_cached_policy(postern, pki, peer, web, dns_zone):
    p, w = delivered_under_policy(postern, pki, peer, web, dns_zone, "keep-1@test")
    # a new id, but the server now answers 404: the cached policy (mx.sts.test only) stays
    w.reply = (404, {"Content-Type": "text/plain"}, b"gone\n")
    zone(dns_zone, txt_id="two", mx_host="evil.sts.test")
    qid = send(postern, "keep-2@test")
    m = deferred(postern, qid)
    assert "does not match the policy's mx patterns" in m.group(2)
    assert f"MTA-STS policy for {DOMAIN}: fetch failed: HTTP status 404; using the cached policy (id=one)" \
        in postern.log("smtp")


@pytest.mark.parametrize("case", ["redirect", "oversized", "content-type", "untrusted", "no-txt"])
def test_no_policy(postern, pki, peer, web, dns_zone, case):
    """Each of these means "no policy": the MX (outside the served policy's patterns) gets the mail."""
    p = peer()
    w = web(cert="otherweb") if case == "untrusted" else web()
    w.policy("enforce", mx=["mail.elsewhere.test"], extra="x: " + "a" * 2000 + "\n" if case == "oversized" else "")
    if case == "redirect":
        w.reply = (301, {"Location": "https://www.sts.test/policy.txt", "Content-Type": "text/html"}, b"moved\n")
    elif case == "content-type":
        w.reply = (200, {"Content-Type": "text/html"}, w.reply[2])
    zone(dns_zone, txt=case != "no-txt")
    start(postern, pki, p.port, smtp_mta_sts_max_policy_size="1024")
    qid = send(postern, f"none-{case}@test")
    sent(postern, qid)
    assert len(p.messages) == 1
    log = postern.log("smtp")
    assert "MTA-STS policy for sts.test: mode=" not in log
    want = {
        "redirect": "fetch failed: redirect (HTTP 301 to https://www.sts.test/policy.txt) refused; no policy",
        "oversized": "fetch failed: policy larger than 1024 bytes; no policy",
        "content-type": "fetch failed: Content-Type text/html is not text/plain; no policy",
        "untrusted": "fetch failed: certificate of mta-sts.sts.test not verified",
    }.get(case)
    if want:
        assert f"MTA-STS policy for {DOMAIN}: {want}" in log
        assert len(w.requests) == (0 if case == "untrusted" else 1)
    else:
        assert w.requests == [] and "MTA-STS" not in log


def test_policy_maps_entry_takes_precedence(postern, pki, peer, web, dns_zone):
    p = peer()
    w = web()
    w.policy("enforce", mx=["mail.elsewhere.test"])
    zone(dns_zone)
    start(postern, pki, p.port, smtp_tls_policy_maps=f"inline:{{ {DOMAIN}=may }}")
    qid = send(postern, "maps-1@test")
    sent(postern, qid)
    assert w.requests == [] and len(p.messages) == 1


def test_disabled_by_default(postern, pki, peer, web, dns_zone):
    p = peer()
    w = web()
    w.policy("enforce", mx=["mail.elsewhere.test"])
    zone(dns_zone)
    start(postern, pki, p.port, smtp_mta_sts_enable="no")
    qid = send(postern, "off-1@test")
    sent(postern, qid)
    assert w.requests == [] and len(p.messages) == 1


def test_enforce_sts_mx_patterns_no_matches_certificate_against_patterns(postern, pki, peer, web, dns_zone):
    """smtp_tls_enforce_sts_mx_patterns = no (Postfix's older behaviour): any MX host is tried and
    the certificate must match a policy pattern; mx.sts.test matches *.sts.test though the MX
    host is wrongmx.sts.test (with yes this is deferred: test above)."""
    p = peer()
    web().policy("enforce", mx=["*.sts.test"])
    zone(dns_zone, mx_host="wrongmx.sts.test")
    start(postern, pki, p.port, smtp_tls_enforce_sts_mx_patterns="no")
    qid = send(postern, "pat-1@test")
    assert "queued as TLS1T" in sent(postern, qid).group(1)
    postern.wait_log("smtp", r"Verified TLS connection established to wrongmx\.sts\.test\[127\.0\.0\.1\]")


def test_policy_refreshed_before_it_expires(postern, pki, peer, web, dns_zone):
    """A cached policy past half its max_age (at most a day) is fetched again in the background
    while the delivery goes on with it. The cache row is aged by hand (sqlite3) instead of waiting."""
    p, w = delivered_under_policy(postern, pki, peer, web, dns_zone, "refresh-1@test")   # max_age=86400
    db = sqlite3.connect(postern.queue_dir / "mta-sts.db", timeout=10)
    with db:
        db.execute("UPDATE sts_policy SET fetched = ? WHERE domain = ?", (int(time.time()) - 50000, DOMAIN))
    db.close()
    w.policy("enforce", mx=[MX], max_age=604800)
    sent(postern, send(postern, "refresh-2@test"))
    postern.wait_log("smtp", rf"MTA-STS policy for {DOMAIN} \(refreshed\): mode=enforce, id=one, max_age=604800")
    assert len(w.requests) == 2


def test_one_fetch_for_concurrent_deliveries(postern, pki, peer, web, dns_zone):
    """Deliveries that find the same new id while its policy is being fetched wait for that fetch."""
    p = peer()
    w = web()
    w.policy("enforce", mx=[MX])
    w.delay = 2
    zone(dns_zone)
    start(postern, pki, p.port)
    qids = [send(postern, f"burst-{i}@test") for i in range(3)]
    for qid in qids:
        assert "queued as TLS" in sent(postern, qid).group(1)
    assert len(w.requests) == 1 and len(p.messages) == 3
    assert postern.log("smtp").count("MTA-STS policy for sts.test: mode=enforce") == 1


@pytest.mark.parametrize("mode", ["enforce", "testing"])
def test_requiretls_counts_enforce_mode_as_verified(postern, pki, peer, web, dns_zone, mode):
    # RFC 8689 4.2.1: an MTA-STS policy in enforce mode authenticates the MX (its names come from
    # the HTTPS-fetched policy, not from DNS); testing mode does not.
    from test_requiretls import send_requiretls
    p = peer(requiretls=True)
    web().policy(mode)
    zone(dns_zone)
    start(postern, pki, p.port, smtpd_tls_chain_files=str(pki["dir"] / "mx.pem"), smtpd_tls_security_level="may",
          smtpd_forbid_unauth_pipelining="no", mynetworks="127.0.0.0/8")
    qid = send_requiretls(postern)
    if mode == "enforce":
        postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*status=sent", timeout=20)
        mails = [(tls, c) for tls, c in p.commands if c.startswith("MAIL")]
        assert len(mails) == 1 and mails[0][0] and mails[0][1].endswith(" REQUIRETLS"), mails
    else:
        postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*dsn=5\.7\.30, status=bounced \(REQUIRETLS "
                                 r"support required: the server certificate was not verified", timeout=20)
        assert p.messages == []


def test_tls_required_no_header_ignores_the_policy(postern, pki, peer, web, dns_zone):
    # RFC 8689 5: "TLS-Required: No" asks to deliver even where the recipient's policy would not.
    import mailtest
    p = peer()
    web().policy("enforce", mx=["mail.elsewhere.test"])   # the MX is not in the policy
    zone(dns_zone)
    start(postern, pki, p.port)
    held = send(postern, "trn-0@test")
    assert deferred(postern, held).group(1) == "4.7.5"
    qid = mailtest.send(postern, "ptest1@postern.test", ["bob@remote.example"],
                        mailtest.msg("trn-1@test", extra="TLS-Required: No\r\n"))
    sent(postern, qid)
    assert f"{qid}: TLS-Required: No: the MTA-STS policy of {DOMAIN} is not applied" in postern.log("smtp")
    [(tls, data)] = p.messages
    assert b"TLS-Required: No" in (data if isinstance(data, bytes) else data.encode())
