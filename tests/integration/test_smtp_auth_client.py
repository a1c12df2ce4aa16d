"""SMTP AUTH in postern-smtp (the client side: smtp_sasl_auth_enable, smtp_sasl_password_maps,
smtp_sasl_security_options / smtp_sasl_tls_security_options, smtp_sasl_mechanism_filter,
smtp_sender_dependent_authentication). The server that requires AUTH is a second Postern whose
smtpd authenticates through a private Dovecot (PLAIN, LOGIN and SCRAM-SHA-256) after STARTTLS and
relays only for authenticated clients (discarding what it accepts); the relay host is
[127.0.0.1]:<its port>. A scripted server stands in for a server that offers AUTH without TLS.
SCRAM-SHA-256-PLUS (channel binding) runs against tls_smtp_peer.py's server at TLS 1.2 with
scram_server.py's SCRAM server (tls-unique), since Dovecot 2.3 has no -PLUS."""

import re
import shutil

import pytest

import mailtest
import peers
import postern_harness
import ssl

from scram_server import ScramServer
from smtp_peers import peer_factory
from sql_peers import ScriptedMap
from tls_smtp_peer import TlsSmtpServer

from test_smtpd_tls import CERTTOOL, _ca, _leaf

pytestmark = pytest.mark.skipif(not CERTTOOL, reason="needs gnutls-bin (certtool)")


@pytest.fixture(scope="module")
def pem():
    d = _ca("postern-smtp-auth-", "Postern AUTH Test CA")
    yield _leaf(d, "relay", ["--key-type=ecdsa", "--curve=secp256r1"], ["relay.auth.test"])
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def relay(pem):
    """The provider: Postern's smtpd with Dovecot SASL, AUTH only inside TLS, relaying only for
    authenticated clients (127.0.0.1 is outside its mynetworks)."""
    dove = peers.Dovecot(users={"alice": "secret", "bob": "hunter2"},
                         mechanisms="plain login scram-sha-256")
    dove.start()
    r = postern_harness.Postern()
    r.configure(myhostname="relay.auth.test", mynetworks="127.0.0.254/32", smtpd_tls_chain_files=str(pem),
                smtpd_tls_security_level="may", smtpd_tls_auth_only="yes", smtpd_sasl_auth_enable="yes",
                smtpd_sasl_path=str(dove.auth_path), smtpd_relay_restrictions="permit_sasl_authenticated, reject",
                transport_maps="static:{discard:relayed}")
    r.start("smtpd", "qmgr")
    r.wait_log("smtpd", r"SASL: connected to .*mechanisms: .*SCRAM-SHA-256")
    yield r
    r.close()
    shutil.rmtree(r.root, ignore_errors=True)
    dove.close()


def start(postern, relayhost, passwd, mode=0o640, **extra):
    path = postern.etc_dir / "sasl_passwd"
    path.write_text("".join(f"{k} {v}\n" for k, v in passwd.items()))
    path.chmod(mode)
    conf = {"relayhost": relayhost, "smtp_sasl_auth_enable": "yes",
            "smtp_sasl_password_maps": f"hash:{path}", "smtp_tls_security_level": "encrypt"}
    conf.update(extra)
    postern.configure(**conf)
    postern.start()


def send(postern, mid, sender="ptest1@postern.test"):
    return mailtest.send(postern, sender, ["bob@remote.example"], mailtest.msg(mid, sender=sender))


def result(postern, qid, status="deferred"):
    """Waits for qid's status=<status> line from postern-smtp; returns its (dsn, text)."""
    m = postern.wait_log("smtp", rf"(?m){qid}: to=<bob@remote\.example>, relay=[^ ]+, .*dsn=([245]\.[0-9.]+), "
                                 rf"status={status} \((.*)\)$", timeout=20)
    return m.groups()


def sent(postern, qid):
    return result(postern, qid, "sent")


def relayhost(relay):
    return f"[127.0.0.1]:{relay.smtp_port}"


def authenticated(relay, mech, user):
    relay.wait_log("smtpd", rf"client=localhost\[127\.0\.0\.1\], sasl_method={mech}, sasl_username={user}")


def test_plain_over_starttls(postern, relay):
    # SASL_README's provider example: plaintext mechanisms only inside TLS.
    start(postern, relayhost(relay), {relayhost(relay): "alice:secret"}, smtp_sasl_mechanism_filter="plain",
          smtp_sasl_tls_security_options="noanonymous")
    qid = send(postern, "plain@test")
    sent(postern, qid)
    postern.wait_log("smtp", rf"{qid}: SASL authentication to 127\.0\.0\.1\[127\.0\.0\.1\]:{relay.smtp_port} "
                             r"with PLAIN succeeded")
    authenticated(relay, "PLAIN", "alice")
    assert "without TLS" not in postern.log("smtp")


def test_scram_sha_256_by_default(postern, relay):
    # Postfix's default security options (noplaintext, noanonymous) leave SCRAM-SHA-256.
    start(postern, relayhost(relay), {relayhost(relay): "bob:hunter2"})
    qid = send(postern, "scram@test")
    sent(postern, qid)
    postern.wait_log("smtp", rf"{qid}: SASL authentication to .* with SCRAM-SHA-256 succeeded")
    authenticated(relay, "SCRAM-SHA-256", "bob")


def test_login_through_mechanism_filter(postern, relay):
    start(postern, relayhost(relay), {"127.0.0.1": "alice:secret"},   # the host name key
          smtp_sasl_mechanism_filter="login", smtp_sasl_tls_security_options="noanonymous")
    sent(postern, send(postern, "login@test"))
    authenticated(relay, "LOGIN", "alice")


def test_plain_not_used_by_default_even_inside_tls(postern, relay):
    # Postfix's smtp_sasl_tls_security_options = $smtp_sasl_security_options (noplaintext).
    start(postern, relayhost(relay), {relayhost(relay): "alice:secret"}, smtp_sasl_mechanism_filter="plain, login")
    qid = send(postern, "noplain@test")
    dsn, diag = result(postern, qid)
    assert dsn == "4.7.0"
    assert diag.startswith(f"SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]:"
                           f"{relay.smtp_port}: no mechanism available (PLAIN LOGIN excluded by "
                           "smtp_sasl_tls_security_options = noplaintext, noanonymous; server offers ")


def test_wrong_password_defers_without_retry_storm(postern, relay):
    start(postern, relayhost(relay), {relayhost(relay): "alice:wrong"})
    qids = [send(postern, f"wrong-{i}@test") for i in range(8)]
    dsn, diag = result(postern, qids[0])
    assert dsn == "4.7.8"   # 535 5.7.8 with smtp_sasl_auth_soft_bounce = yes
    postern.wait_log("smtp", rf"{qids[0]}: to=<bob@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                             rf"{relay.smtp_port}, ")
    assert re.match(rf"SASL authentication failed; server 127\.0\.0\.1\[127\.0\.0\.1\]:{relay.smtp_port} said: "
                    r"535 5\.7\.8 Error: authentication failed", diag), diag
    postern.wait_log("qmgr", rf"smtp: delivery to \[127\.0\.0\.1\]:{relay.smtp_port} suspended for [0-9]+ s: "
                             r"SASL authentication failed; ")

    def all_deferred():
        text = postern.log("smtp") + postern.log("qmgr")
        return all(re.search(rf"{q}: to=<bob@remote\.example>, .*status=deferred", text) for q in qids)
    postern.wait_for(all_deferred, timeout=30, what="all 8 messages deferred")
    # The destination was suspended after the failures: fewer logins than messages (at most the
    # initial concurrency window of 5 ran before the suspension).
    attempts = len(re.findall(r"SASL SCRAM-SHA-256 authentication failed", relay.log("smtpd")))
    assert 1 <= attempts <= 5, relay.log("smtpd")[-3000:]
    assert "Error: authentication failed" in postern.log("qmgr")


def test_bounce_with_soft_bounce_off(postern, relay):
    start(postern, relayhost(relay), {relayhost(relay): "alice:wrong"}, smtp_sasl_auth_soft_bounce="no")
    dsn, diag = result(postern, send(postern, "bounce@test"), "bounced")
    assert dsn == "5.7.8" and re.match(r"SASL authentication failed; server .* said: 535 5\.7\.8 ", diag), diag


def test_no_tls_and_noplaintext_sends_nothing(postern, scripted):
    s = scripted(ehlo="250-scripted\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME")
    hop = f"[127.0.0.1]:{s.port}"
    start(postern, hop, {hop: "alice:secret"}, smtp_tls_security_level="may")
    qid = send(postern, "notls@test")
    dsn, diag = result(postern, qid)
    assert dsn == "4.7.0"
    assert diag == (f"SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]:{s.port}: "
                    "no mechanism available (PLAIN LOGIN excluded by smtp_sasl_security_options = noplaintext, "
                    "noanonymous (no TLS); server offers PLAIN LOGIN)")
    assert not any(c.upper().startswith(("AUTH", "MAIL")) for c in s.commands), s.commands


def test_plaintext_allowed_without_tls_when_told(postern, scripted):
    s = scripted(ehlo="250-scripted\r\n250-AUTH PLAIN\r\n250 8BITMIME",
                 replies={"AUTH": "235 2.7.0 Authentication successful"})
    hop = f"[127.0.0.1]:{s.port}"
    start(postern, hop, {hop: "alice:secret"}, smtp_tls_security_level="none",
          smtp_sasl_security_options="noanonymous")
    qid = send(postern, "cleartext@test")
    sent(postern, qid)
    assert "AUTH PLAIN AGFsaWNlAHNlY3JldA==" in s.commands
    postern.wait_log("smtp", rf"{qid}: sending a PLAIN password to .* without TLS")


def test_no_entry_means_no_auth(postern, scripted):
    s = scripted(ehlo="250-scripted\r\n250-AUTH PLAIN\r\n250 8BITMIME")
    start(postern, f"[127.0.0.1]:{s.port}", {"[other.example]:587": "alice:secret"}, mode=0o644,
          smtp_tls_security_level="none")
    sent(postern, send(postern, "noentry@test"))
    assert not any(c.upper().startswith("AUTH") for c in s.commands)
    # a password file every local user can read is worth a warning at start
    postern.wait_log("smtp", r"smtp_sasl_password_maps: .*/sasl_passwd is readable by every user of this host, "
                             r"and it holds passwords")


def test_sender_dependent_authentication(postern, relay):
    start(postern, relayhost(relay), {"alice@postern.test": "alice:secret", "@example.org": "bob:hunter2",
                                      relayhost(relay): "bob:wrong"},
          smtp_sender_dependent_authentication="yes")
    sent(postern, send(postern, "sda-1@test", sender="alice@postern.test"))
    authenticated(relay, "SCRAM-SHA-256", "alice")
    sent(postern, send(postern, "sda-2@test", sender="carol@example.org"))
    authenticated(relay, "SCRAM-SHA-256", "bob")
    qid = send(postern, "sda-3@test", sender="dave@postern.test")   # falls back to the relay host's
    dsn, diag = result(postern, qid)
    assert "said: 535 5.7.8" in diag


def test_sender_password_from_a_server_table(postern, scripted):
    # a socketmap table: looked up on postern-smtp's lookup workers (smtp-lookup.c)
    s = scripted(ehlo="250-scripted\r\n250-AUTH PLAIN\r\n250 8BITMIME",
                 replies={"AUTH": "235 2.7.0 Authentication successful"})
    hop = f"[127.0.0.1]:{s.port}"
    m = ScriptedMap("socketmap", {"alice@postern.test": "alice:secret"})
    running = True
    try:
        start(postern, hop, {}, smtp_tls_security_level="none", smtp_sasl_security_options="noanonymous",
              smtp_sender_dependent_authentication="yes",
              smtp_sasl_password_maps=f"socketmap:inet:127.0.0.1:{m.port}:virtual")
        sent(postern, send(postern, "sda-map@test", sender="alice@postern.test"))
        assert "AUTH PLAIN AGFsaWNlAHNlY3JldA==" in s.commands
        assert m.requests[0] == "alice@postern.test"
        m.stop()   # the server is gone: the next delivery is deferred, never sent without the login
        running = False
        n = len(s.commands)
        dsn, diag = result(postern, send(postern, "sda-down@test", sender="alice@postern.test"))
        assert dsn == "4.3.0" and 'smtp_sasl_password_maps lookup error for "alice@postern.test"' in diag, diag
        assert not any(c.upper().startswith("MAIL") for c in s.commands[n:]), s.commands
    finally:
        if running:
            m.stop()


def test_table_failure_defers(postern, relay):
    # an sqlite: table whose database is not one: every lookup fails
    (postern.etc_dir / "notadb").write_text("this is not an SQLite database\n" * 100)
    cf = postern.etc_dir / "sasl.cf"
    cf.write_text(f"dbpath = {postern.etc_dir}/notadb\nquery = SELECT v FROM t WHERE k = '%s'\n")
    start(postern, relayhost(relay), {}, smtp_sasl_password_maps=f"sqlite:{cf}")
    qid = send(postern, "tablefail@test")
    dsn, diag = result(postern, qid)
    assert dsn == "4.3.0" and "smtp_sasl_password_maps lookup error" in diag
    assert "SASL authentication failed" not in relay.log("smtpd")


def test_posternctl_check_reports(postern):
    # posternctl check loads postern-smtp's settings for a master.cf with smtp transports (Debian's)
    (postern.etc_dir / "master.cf").write_text("smtp      unix  -       -       y       -       -       smtp\n"
                                               "relay     unix  -       -       y       -       -       smtp\n")
    path = postern.etc_dir / "sasl_passwd"
    path.write_text("[smtp.example.net]:587 user:pw\n")
    path.chmod(0o644)
    postern.configure(relayhost="[smtp.example.net]:587", smtp_sasl_auth_enable="yes",
                      smtp_sasl_password_maps=f"hash:{path}", smtp_sasl_auth_cache_name="btree:/tmp/cache")
    out = postern.posternctl("check")
    text = out.stdout + out.stderr
    assert "not supported: smtp_sasl_auth_cache_name (Postern keeps no cache of rejected logins" in text, text
    assert f"smtp_sasl_password_maps: {path} is readable by every user of this host" in text, text
    postern.configure(smtp_sasl_security_options="noplaintext, sometimes")
    out = postern.posternctl("check")
    assert out.returncode != 0
    assert 'smtp_sasl_security_options: unknown security option "sometimes"' in out.stdout + out.stderr


@pytest.fixture
def scram_peer(pem):
    """A TLS 1.2 SMTP server whose AUTH is SCRAM-SHA-256 (plus=False) or also -PLUS (tls-unique)."""
    def make(plus, tls_max=ssl.TLSVersion.TLSv1_2):
        auth = ScramServer("carol", "s3cret,pw", plus=plus)
        p = TlsSmtpServer(pem.with_suffix(".crt"), pem.with_suffix(".key"), auth=auth, tls_max=tls_max)
        p.scram = auth
        return p
    yield from peer_factory(make)


@pytest.mark.parametrize("case", ["plus", "no-plus-offered", "plus-filtered-out"])
def test_scram_sha_256_plus_channel_binding(postern, scram_peer, case):
    p = scram_peer(plus=case != "no-plus-offered")
    hop = f"[127.0.0.1]:{p.port}"
    extra = {"smtp_sasl_mechanism_filter": "scram-sha-256"} if case == "plus-filtered-out" else {}
    start(postern, hop, {hop: "carol:s3cret,pw"}, **extra)
    qid = send(postern, f"scram-{case}@test")
    sent(postern, qid)
    assert len(p.messages) == 1 and p.messages[0][0]             # delivered, inside TLS
    [(mech, gs2, cbind, ok)] = p.scram.results
    assert ok
    if case == "plus":
        # bound to the TLS 1.2 session: c= carried "p=tls-unique,," and the Finished the server saw
        assert (mech, gs2) == ("SCRAM-SHA-256-PLUS", "p=tls-unique,,") and len(cbind) == 12 + len(gs2)
    elif case == "no-plus-offered":
        assert (mech, gs2, cbind) == ("SCRAM-SHA-256", "y,,", b"y,,")    # could bind, server did not offer it
    else:
        assert (mech, gs2, cbind) == ("SCRAM-SHA-256", "n,,", b"n,,")    # -PLUS offered but not allowed: no "y"
    postern.wait_log("smtp", rf"{qid}: SASL authentication to .* with {re.escape(mech)} succeeded")


def test_scram_sha_256_plus_on_a_resumed_session(postern, scram_peer):
    # tls-unique of an abbreviated handshake is the server's Finished, not the client's
    p = scram_peer(plus=True)
    hop = f"[127.0.0.1]:{p.port}"
    start(postern, hop, {hop: "carol:s3cret,pw"}, smtp_connection_cache_time_limit="0")
    for i in range(2):
        sent(postern, send(postern, f"scram-resume-{i}@test"))
    assert p.resumed == [False, True]
    assert [(mech, gs2, ok) for mech, gs2, _, ok in p.scram.results] == [("SCRAM-SHA-256-PLUS", "p=tls-unique,,", True)] * 2


def test_scram_y_flag_on_tls13(postern, scram_peer):
    # on TLS 1.3 the client has tls-exporter data (Python's ssl cannot check -PLUS there, so the
    # server offers plain SCRAM): "y,," shows the client could have bound the channel
    p = scram_peer(plus=False, tls_max=None)
    hop = f"[127.0.0.1]:{p.port}"
    start(postern, hop, {hop: "carol:s3cret,pw"}, smtp_tls_loglevel="1")
    sent(postern, send(postern, "scram-tls13@test"))
    assert [(mech, gs2, ok) for mech, gs2, _, ok in p.scram.results] == [("SCRAM-SHA-256", "y,,", True)]
    postern.wait_log("smtp", r"TLS connection established to .*: TLSv1\.3")
