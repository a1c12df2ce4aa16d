"""SMTP AUTH in postern-smtpd against a real Dovecot (the `dovecot` fixture, peers.py): PLAIN and
LOGIN with swaks and byte-exact clients, initial-response and challenge forms, cancel, bad base64,
relaying permitted only after AUTH, AUTH hidden without TLS by default, Dovecot down and
restarted, pipelining, the AUTH= MAIL parameter, the Received: header and the queue's sasl_user.
Clients connect from 127.0.0.2, outside mynetworks (127.0.0.1/32)."""

import base64
import subprocess

import pytest

from test_smtpd_helpers import raw, queue_ids, content_of

RELAY = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


PLAIN_ALICE = b64("\0alice\0secret")


def start(postern, dovecot, **extra):
    params = dict(mynetworks="127.0.0.1/32", smtpd_relay_restrictions=RELAY,
                  smtpd_sasl_auth_enable="yes", smtpd_sasl_path=str(dovecot.auth_path),
                  smtpd_tls_auth_only="no")
    params.update(extra)
    postern.configure(**params)
    postern.start("smtpd")
    if dovecot.proc:
        postern.wait_log("smtpd", r"SASL: connected to .*mechanisms: PLAIN LOGIN")


def ehlo(c):
    c.send("EHLO client.test\r\n")
    code, lines = c.reply()
    assert code == 250
    return lines


def assert_no_auth(c, reply):
    """EHLO on raw client c offers no AUTH, and AUTH PLAIN (alice's) is answered reply."""
    assert not any(l.startswith("AUTH") for l in ehlo(c))
    assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == reply


def swaks(postern, *args):
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(postern.smtp_port),
           "--local-interface", "127.0.0.2", "--helo", "client.test", "--from", "me@example.org",
           "--to", "friend@remote.test", "--timeout", "20"] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_ehlo_offers_dovecot_mechanisms(postern, dovecot):
    start(postern, dovecot, broken_sasl_auth_clients="yes")
    with raw(postern, source="127.0.0.2") as c:
        lines = ehlo(c)
        assert "AUTH PLAIN LOGIN" in lines
        assert "AUTH=PLAIN LOGIN" in lines


def test_auth_not_offered_without_tls_by_default(postern, dovecot):
    """smtpd_tls_auth_only defaults to yes in Postern: no TLS, no AUTH."""
    start(postern, dovecot, smtpd_tls_auth_only="yes")
    with raw(postern, source="127.0.0.2") as c:
        assert_no_auth(c, "503 5.5.1 Error: authentication not enabled")
    assert postern.posternctl("config", "-d", "smtpd_tls_auth_only").stdout.strip() == \
        "smtpd_tls_auth_only = yes"


def test_auth_disabled_by_default(postern):
    postern.start("smtpd")
    with raw(postern, source="127.0.0.2") as c:
        assert_no_auth(c, "503 5.5.1 Error: authentication not enabled")
        assert c.cmd("MAIL FROM:<a@example.org> AUTH=<>") == "503 5.7.4 Error: authentication disabled"


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_right_password_relays(postern, dovecot, mech):
    start(postern, dovecot)
    r = swaks(postern, "--auth", mech, "--auth-user", "alice", "--auth-password", "secret")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0 Authentication successful" in r.stdout
    assert "250 2.0.0 Ok: queued as" in r.stdout
    rows = postern.queue_rows("SELECT sasl_user FROM messages")
    assert rows == [("alice",)]
    postern.wait_log("smtpd", r": client=localhost\[127\.0\.0\.2\], sasl_method=%s, sasl_username=alice"
                     % mech)
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.2\] ehlo=1 auth=1 mail=1 rcpt=1")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_wrong_password_refused(postern, dovecot, mech):
    start(postern, dovecot)
    r = swaks(postern, "--auth", mech, "--auth-user", "alice", "--auth-password", "wrong")
    assert r.returncode != 0
    assert "535 5.7.8 Error: authentication failed:" in r.stdout, r.stdout
    postern.wait_log("smtpd", r"warning: localhost\[127\.0\.0\.2\]: SASL %s authentication failed: " % mech)
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.2\] ehlo=1 auth=0/1")
    assert queue_ids(postern) == []


def test_plain_initial_response_and_challenge_forms(postern, dovecot):
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd(b64("\0bob\0hunter2")) == "235 2.7.0 Authentication successful"
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        r = c.cmd("AUTH PLAIN =")   # an empty initial response reaches Dovecot, which refuses it
        assert r.startswith("535 5.7.8 Error: authentication failed: "), r
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("auth login") == "334 VXNlcm5hbWU6"
        assert c.cmd(b64("alice")) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64("secret")) == "235 2.7.0 Authentication successful"
        assert c.cmd("AUTH LOGIN") == "503 5.5.1 Error: already authenticated"
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH LOGIN " + b64("bob")) == "334 UGFzc3dvcmQ6"
        assert c.cmd(b64("hunter2")) == "235 2.7.0 Authentication successful"


def test_cancel_and_retry(postern, dovecot):
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd("*") == "501 5.7.0 Authentication aborted"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd("*") == "501 5.7.0 Authentication aborted"
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"


def test_malformed_base64(postern, dovecot):
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH PLAIN AGFsaWNl!!!") == "501 5.5.2 Invalid base64 data in initial response"
        assert c.cmd("AUTH PLAIN abc") == "501 5.5.2 Invalid base64 data in initial response"
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd("not base64") == "501 5.5.2 Invalid base64 data in continued response"
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd(b"YWxp\x00Y2U=") == "501 5.5.2 Invalid base64 data in continued response"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"


def test_command_errors(postern, dovecot):
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as c:
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "503 5.5.1 Error: send HELO/EHLO first"
        ehlo(c)
        assert c.cmd("AUTH") == "501 5.5.4 Syntax: AUTH mechanism"
        assert c.cmd("AUTH PLAIN a b") == "501 5.5.4 Syntax: AUTH mechanism"
        assert c.cmd("AUTH CRAM-MD5") == "504 5.5.4 Unsupported authentication mechanism"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "503 5.5.1 Error: MAIL transaction in progress"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        # A response longer than smtpd_sasl_response_limit ends the exchange.
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        assert c.cmd("QUFB" * 4000) == "500 5.5.6 Authentication exchange line is too long"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        # A response up to the limit (longer than line_length_limit) reaches Dovecot.
        assert c.cmd("AUTH PLAIN") == "334 "
        assert c.cmd(b64("\0alice\0" + "x" * 3000)).startswith("535 5.7.8 Error: authentication failed")


def test_mail_auth_parameter(postern, dovecot):
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("MAIL FROM:<a@example.org> AUTH=<>") == "250 2.1.0 Ok"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("MAIL FROM:<a@example.org> AUTH=alice+40example.org") == "250 2.1.0 Ok"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("MAIL FROM:<a@example.org> AUTH=bad+zz") == "501 5.5.4 Syntax error in AUTH parameter"
        assert c.cmd("MAIL FROM:<a@example.org> AUTH=<> AUTH=<>") == "503 5.5.4 Error: multiple AUTH= options"


def test_relay_permitted_only_after_auth(postern, dovecot):
    start(postern, dovecot, smtpd_sasl_authenticated_header="yes")
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("MAIL FROM:<me@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<friend@remote.test>") == \
            "554 5.7.1 <friend@remote.test>: Relay access denied"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"
        assert c.cmd("MAIL FROM:<me@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<friend@remote.test>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354")
        assert c.cmd("Subject: hi\r\n\r\nrelayed\r\n.").startswith("250 2.0.0 Ok: queued as")
    [qid] = queue_ids(postern)
    content = content_of(postern, qid)
    assert "\n\t(Authenticated sender: alice)\n\tby " in content
    assert " with ESMTPA id " + qid in content
    assert postern.queue_rows("SELECT sasl_user FROM messages") == [("alice",)]


def test_no_authenticated_header_by_default(postern, dovecot):
    start(postern, dovecot)
    r = swaks(postern, "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret")
    assert r.returncode == 0, r.stdout
    [qid] = queue_ids(postern)
    content = content_of(postern, qid)
    assert "Authenticated sender" not in content
    assert " with ESMTPA id " in content


def test_noplaintext_hides_plain_and_login(postern, dovecot):
    start(postern, dovecot, smtpd_sasl_security_options="noanonymous, noplaintext")
    with raw(postern, source="127.0.0.2") as c:
        assert_no_auth(c, "504 5.5.4 Unsupported authentication mechanism")


def test_pipelined_auth(postern, dovecot):
    # EHLO followed by more commands in one write breaks RFC 2920's rules; allow it here to see
    # how AUTH behaves inside a pipelined batch.
    start(postern, dovecot, smtpd_forbid_unauth_pipelining="no")
    with raw(postern, source="127.0.0.2") as c:
        c.send("EHLO client.test\r\nAUTH PLAIN " + PLAIN_ALICE + "\r\nMAIL FROM:<me@example.org>\r\n"
               "RCPT TO:<friend@remote.test>\r\nAUTH LOGIN\r\nNOOP\r\n")
        assert c.reply()[0] == 250
        assert c.text() == "235 2.7.0 Authentication successful"
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "250 2.1.5 Ok"
        assert c.text() == "503 5.5.1 Error: already authenticated"
        assert c.text() == "250 2.0.0 Ok"
    with raw(postern, source="127.0.0.2") as c:
        c.send("EHLO client.test\r\nAUTH LOGIN\r\n" + b64("bob") + "\r\n" + b64("hunter2") +
               "\r\nMAIL FROM:<me@example.org>\r\nRCPT TO:<friend@remote.test>\r\nQUIT\r\n")
        assert c.reply()[0] == 250
        assert [c.text() for _ in range(6)] == [
            "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 2.7.0 Authentication successful",
            "250 2.1.0 Ok", "250 2.1.5 Ok", "221 2.0.0 Bye"]


def test_dovecot_down_then_restarted(postern, dovecot):
    start(postern, dovecot)
    dovecot.stop()
    postern.wait_log("smtpd", r"warning: SASL: Connection lost to authentication server")
    with raw(postern, source="127.0.0.2") as c:
        lines = ehlo(c)
        assert "AUTH PLAIN LOGIN" in lines   # the last list Dovecot gave stays offered
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "454 4.7.0 Temporary authentication failure"
        postern.wait_log("smtpd", r"warning: localhost\[127\.0\.0\.2\]: SASL PLAIN authentication failed")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        dovecot.start()
        # The next AUTH reconnects at once.
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"
    assert postern.running("smtpd")


def test_dovecot_killed_during_exchange(postern, dovecot):
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        dovecot.stop()
        postern.wait_log("smtpd", r"SASL: Connection lost")
        assert c.cmd(b64("alice")) == "454 4.7.0 Temporary authentication failure"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert postern.running("smtpd")


def test_dovecot_absent_at_start(postern, dovecot):
    dovecot.stop()
    start(postern, dovecot)
    postern.wait_log("smtpd", r"warning: SASL: Connect to .* failed")
    with raw(postern, source="127.0.0.2") as c:
        assert_no_auth(c, "454 4.7.0 Temporary authentication failure")
    dovecot.start()
    postern.wait_log("smtpd", r"SASL: connected to .*mechanisms: PLAIN LOGIN", timeout=15)
    with raw(postern, source="127.0.0.2") as c:
        assert "AUTH PLAIN LOGIN" in ehlo(c)
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"


def test_client_gone_while_dovecot_works(postern, dovecot):
    """A client that disconnects in the middle of an exchange leaves smtpd healthy."""
    start(postern, dovecot)
    for _ in range(5):
        c = raw(postern, source="127.0.0.2")
        ehlo(c)
        c.send("AUTH PLAIN " + PLAIN_ALICE + "\r\n")
        c.close()
        c = raw(postern, source="127.0.0.2")
        ehlo(c)
        assert c.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        c.close()
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"


def test_unsupported_sasl_type_is_a_config_error(postern, dovecot):
    postern.configure(smtpd_sasl_auth_enable="yes", smtpd_sasl_type="cyrus")
    with pytest.raises(Exception):
        postern.start("smtpd", timeout=5)
    assert "smtpd_sasl_type = cyrus: unsupported SASL type; Postern supports only dovecot" in \
        postern.log("smtpd")


def test_per_listener_enable(postern, dovecot):
    """AUTH on the submission listener only (submission/smtpd_sasl_auth_enable)."""
    from test_smtpd_helpers import Raw
    postern.configure(mynetworks="127.0.0.1/32", smtpd_relay_restrictions=RELAY,
                      smtpd_tls_auth_only="no", smtpd_sasl_path=str(dovecot.auth_path),
                      **{"submission/smtpd_sasl_auth_enable": "yes"})
    postern.start("smtpd")
    postern.wait_log("smtpd", r"SASL: connected to")
    with raw(postern, source="127.0.0.2") as c:
        assert_no_auth(c, "503 5.5.1 Error: authentication not enabled")
    with Raw(port=postern.submission_port, source="127.0.0.2") as c:
        assert "AUTH PLAIN LOGIN" in ehlo(c)
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"


def test_reload_keeps_auth_working(postern, dovecot):
    """SIGHUP builds new settings with their own Dovecot connection; a session that started
    before keeps the old one until it ends."""
    start(postern, dovecot)
    with raw(postern, source="127.0.0.2") as old:
        ehlo(old)
        assert old.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
        postern.configure(smtpd_sasl_authenticated_header="yes")
        postern.reload("smtpd")
        postern.wait_log("smtpd", r"SASL: connected to .*mechanisms: PLAIN LOGIN", count=2)
        assert old.cmd(b64("alice")) == "334 UGFzc3dvcmQ6"
        assert old.cmd(b64("secret")) == "235 2.7.0 Authentication successful"
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + b64("\0bob\0hunter2")) == "235 2.7.0 Authentication successful"
