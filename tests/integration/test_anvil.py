"""postern-anvil and smtpd's client limits: connection count and rate, message and recipient
rates, exemptions, limits per client address, anvil killed and restarted, the statistics log
line, and anvil's answers to malformed requests."""

import re
import signal
import subprocess
import socket
import time

import pytest

from postern_harness import binary, format_record, ipc_call, read_record, wait_stopped
from test_smtpd_tls import certs, tls_params   # noqa: F401 — the certificate fixture

HOST = "postern.test"


class Client:
    """A raw SMTP client bound to a source address; reads one reply (all its lines) at a time."""

    def __init__(self, postern, source):
        self.sock = socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10,
                                             source_address=(source, 0))
        self.f = self.sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline().decode()
            if not line:
                break
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                break
        return "\n".join(lines)

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.f.close()
        self.sock.close()


def start(postern, anvil=True, **params):
    settings = dict(mynetworks="127.0.0.1/32", local_recipient_maps="",
                    smtpd_client_connection_count_limit=0)
    settings.update(params)
    postern.configure(**settings)
    postern.start(*(("anvil", "smtpd") if anvil else ("smtpd",)))


def greet(postern, source):
    c = Client(postern, source)
    return c, c.reply()


def test_connection_count_limit_per_client(postern):
    start(postern, smtpd_client_connection_count_limit=2)
    held = []
    for _ in range(2):
        c, banner = greet(postern, "127.0.0.2")
        assert banner.startswith("220 "), banner
        held.append(c)
    c, banner = greet(postern, "127.0.0.2")
    assert banner == f"421 4.7.0 {HOST} Error: too many connections from 127.0.0.2"
    assert c.f.readline() == b""   # closed after the 421
    c.close()
    postern.wait_log("smtpd", r"warning: Connection concurrency limit exceeded: 3 from "
                     r"localhost\[127\.0\.0\.2\] for service smtp\n")
    # another client address has its own count; mynetworks clients are exempt
    others = [greet(postern, a) for a in ("127.0.0.3", "127.0.0.1", "127.0.0.1", "127.0.0.1")]
    assert all(b.startswith("220 ") for _, b in others), [b for _, b in others]
    # a session that ends gives its place back
    held.pop().close()
    deadline = time.monotonic() + 5
    while True:
        c, banner = greet(postern, "127.0.0.2")
        held.append(c)
        if banner.startswith("220 ") or time.monotonic() > deadline:
            break
        time.sleep(0.1)   # retrying until the place is given back, with a deadline
    assert banner.startswith("220 "), banner
    for c in held + [o for o, _ in others]:
        c.close()


def test_connection_rate_limit(postern):
    start(postern, smtpd_client_connection_rate_limit=3)
    for _ in range(3):
        c, banner = greet(postern, "127.0.0.2")
        assert banner.startswith("220 "), banner
        assert c.cmd("QUIT").startswith("221 ")
        c.close()
    c, banner = greet(postern, "127.0.0.2")
    assert banner == f"421 4.7.0 {HOST} Error: too many connections from 127.0.0.2"
    c.close()
    postern.wait_log("smtpd", r"warning: Connection rate limit exceeded: 4 from "
                     r"localhost\[127\.0\.0\.2\] for service smtp\n")
    c, banner = greet(postern, "127.0.0.3")
    assert banner.startswith("220 "), banner
    c.close()
    reply = ipc_call(postern.socket_dir / "anvil",
                     {"request": "lookup", "service": "smtp", "address": "127.0.0.2"})
    assert reply["status"] == "ok" and reply["rate"] == "4", reply


def test_message_rate_limit_burst(postern):
    start(postern, smtpd_client_message_rate_limit=2)
    c, banner = greet(postern, "127.0.0.2")
    assert c.cmd("EHLO client.test").startswith("250-")
    # a pipelined burst: the third MAIL is over the limit
    c.sock.sendall(b"MAIL FROM:<a@example.org>\r\nRSET\r\n" * 3)
    replies = [c.reply() for _ in range(6)]
    assert replies[0] == "250 2.1.0 Ok" and replies[2] == "250 2.1.0 Ok", replies
    assert replies[4] == "450 4.7.1 Error: too much mail from 127.0.0.2", replies
    # no transaction after the refusal
    assert c.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"
    c.close()
    postern.wait_log("smtpd", r"warning: Message delivery request rate limit exceeded: 3 from "
                     r"localhost\[127\.0\.0\.2\] for service smtp\n")
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.2\] ehlo=1 mail=2/3 rcpt=0/1 "
                     r"rset=3 commands=6/8")
    # 127.0.0.3 has a count of its own; mynetworks (127.0.0.1) is exempt
    assert mails(postern, "127.0.0.3", 3) == ["250 2.1.0 Ok"] * 2 + [
        "450 4.7.1 Error: too much mail from 127.0.0.3"]
    assert mails(postern, "127.0.0.1", 5) == ["250 2.1.0 Ok"] * 5


def test_recipient_rate_limit_and_exceptions(postern):
    # the burst of RCPTs below is sent without EHLO's PIPELINING: allow it for this test
    start(postern, smtpd_client_recipient_rate_limit=3,
          smtpd_client_event_limit_exceptions="127.0.0.3", smtpd_forbid_unauth_pipelining="no")
    c, _ = greet(postern, "127.0.0.2")
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    c.sock.sendall(b"".join(b"RCPT TO:<ptest%d@localhost>\r\n" % (i % 3 + 1) for i in range(4)))
    replies = [c.reply() for _ in range(4)]
    assert replies[:3] == ["250 2.1.5 Ok"] * 3, replies
    assert replies[3] == "452 4.7.1 Error: too many recipients from 127.0.0.2", replies
    # the accepted recipients still make a message
    assert c.cmd("DATA").startswith("354")
    assert c.cmd("Subject: t\r\n\r\nbody\r\n.").startswith("250 2.0.0 Ok: queued as ")
    c.close()
    postern.wait_log("smtpd", r"warning: Recipient address rate limit exceeded: 4 from "
                     r"localhost\[127\.0\.0\.2\] for service smtp\n")
    # 127.0.0.3 is in smtpd_client_event_limit_exceptions, 127.0.0.1 no longer is (the list
    # replaces the $mynetworks default)
    c, _ = greet(postern, "127.0.0.3")
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    for i in range(6):
        assert c.cmd(f"RCPT TO:<ptest1+{i}@localhost>") == "250 2.1.5 Ok"
    c.close()
    c, _ = greet(postern, "127.0.0.1")
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    replies = [c.cmd(f"RCPT TO:<ptest1+{i}@localhost>") for i in range(4)]
    assert replies[3] == "452 4.7.1 Error: too many recipients from 127.0.0.1", replies
    c.close()


def mails(postern, source, n):
    c, banner = greet(postern, source)
    assert banner.startswith("220 "), banner
    out = []
    for _ in range(n):
        out.append(c.cmd("MAIL FROM:<a@example.org>"))
        c.cmd("RSET")
    c.close()
    return out


def mails_until_limited(postern, source, timeout=10):
    """Two MAIL commands from source, again and again until the second is refused (anvil's limits
    apply again) or timeout seconds passed; returns the last two replies."""
    deadline = time.monotonic() + timeout
    while True:
        got = mails(postern, source, 2)
        if got[1].startswith("450") or time.monotonic() > deadline:
            return got
        time.sleep(0.3)   # retrying until the limits apply again, with a deadline


WARNING = r"warning: problem talking to server \S+/anvil: "


def test_anvil_killed_and_restarted(postern):
    start(postern, smtpd_client_message_rate_limit=1)
    assert mails(postern, "127.0.0.2", 2) == ["250 2.1.0 Ok",
                                              "450 4.7.1 Error: too much mail from 127.0.0.2"]
    postern.kill("anvil")
    # smtpd keeps serving, without limits, and says so once
    for _ in range(3):
        assert mails(postern, "127.0.0.2", 3) == ["250 2.1.0 Ok"] * 3
    time.sleep(1.2)   # past smtpd's retry delay: it tries (the socket is there, nobody answers)
    assert mails(postern, "127.0.0.2", 2) == ["250 2.1.0 Ok"] * 2
    assert len(re.findall(WARNING, postern.log("smtpd"))) == 1, postern.log("smtpd")
    postern.restart("anvil")
    got = mails_until_limited(postern, "127.0.0.2")
    assert got[1] == "450 4.7.1 Error: too much mail from 127.0.0.2", got
    postern.wait_log("smtpd", r"server \S+/anvil answers again; client rate limits apply")
    assert len(re.findall(WARNING, postern.log("smtpd"))) == 1
    assert postern.running("smtpd")


def test_without_anvil_one_warning(postern):
    start(postern, anvil=False, smtpd_client_connection_count_limit=1,
          smtpd_client_message_rate_limit=1)
    held = []
    for _ in range(3):
        c, banner = greet(postern, "127.0.0.2")
        assert banner.startswith("220 "), banner
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        held.append(c)
    for c in held:
        c.close()
    postern.wait_log("smtpd", WARNING + "No such file or directory")
    assert len(re.findall(WARNING, postern.log("smtpd"))) == 1
    assert "error" not in postern.log("smtpd").lower()


def test_statistics_log(postern):
    start(postern, anvil_status_update_time="1s", smtpd_client_message_rate_limit=10)
    assert mails(postern, "127.0.0.2", 2) == ["250 2.1.0 Ok"] * 2
    stamp = r"at [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
    postern.wait_log("anvil", r"statistics: max connection rate 1/60s for \(smtp:127\.0\.0\.2\) " + stamp)
    postern.wait_log("anvil", r"statistics: max connection count 1 for \(smtp:127\.0\.0\.2\) " + stamp)
    postern.wait_log("anvil", r"statistics: max message rate 2/60s for \(smtp:127\.0\.0\.2\) " + stamp)
    postern.wait_log("anvil", r"statistics: max cache size 1 " + stamp)


def call(path, rec):
    return ipc_call(path, rec, timeout=5)


def test_protocol_and_malformed_requests(postern):
    postern.configure(anvil_rate_time_unit="60s")
    postern.start("anvil")
    path = postern.socket_dir / "anvil"
    ok = {"service": "smtp", "address": "192.0.2.1"}
    for verb in ("message", "recipient", "newtls", "auth"):
        r = call(path, {"request": verb, **ok})
        assert r == {"status": "ok", "count": "0", "rate": "1"}, (verb, r)
    # newtls_status (before STARTTLS) reports without counting
    for _ in range(2):
        assert call(path, {"request": "newtls_status", **ok}) == {"status": "ok", "count": "0", "rate": "1"}
    r = call(path, {"request": "lookup", **ok})
    assert r == {"status": "ok", "count": "0", "rate": "0", "message_rate": "1",
                 "recipient_rate": "1", "newtls_rate": "1", "auth_rate": "1"}, r

    bad = [
        ({"service": "smtp", "address": "192.0.2.1"}, "missing request"),
        ({"request": "connect", "address": "192.0.2.1"}, "missing service"),
        ({"request": "connect", "service": "smtp"}, "missing address"),
        ({"request": "connect", "service": "smtp", "address": ""}, "address must be 1 to 64 characters"),
        ({"request": "connect", "service": "smtp", "address": "x" * 65}, "address must be 1 to 64 characters"),
        ({"request": "connect", "service": "sm tp", "address": "192.0.2.1"}, "invalid character in service"),
        ({"request": "connect", "service": "smtp", "address": "1.2.3.4\nx=y"}, "invalid character in address"),
        ({"request": "explode", **ok}, "unknown request"),
    ]
    for rec, reason in bad:
        assert call(path, rec) == {"status": "error", "reason": reason}, rec

    # broken framing: answered with status=error, then the connection is closed
    for raw in (b"no equals sign\n\n", b"request=connect\nservice=+zz\n\n",
                b"request=connect\nx=" + b"a" * (1024 * 1024 + 10) + b"\n\n"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(path))
            try:
                s.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass
            f = s.makefile("rb")
            # The error record comes first; closing with our unread bytes still queued makes
            # the kernel reset the connection, which for the oversized request may also
            # discard the record.
            try:
                rec = read_record(f)
            except ConnectionResetError:
                assert len(raw) > 1024 * 1024, raw
                rec = {"status": "error"}
            assert rec and rec["status"] == "error", (raw[:40], rec)
            try:
                assert read_record(f) is None   # closed after the error
            except ConnectionResetError:
                pass
            f.close()

    # counts are held per anvil connection: they go when it closes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(path))
        f = s.makefile("rb")
        for n in (1, 2, 3):
            s.sendall(format_record({"request": "connect", **ok}).encode())
            assert read_record(f) == {"status": "ok", "count": str(n), "rate": str(n)}
        s.sendall(format_record({"request": "disconnect", **ok}).encode())
        assert read_record(f) == {"status": "ok", "count": "2"}
        # another connection cannot disconnect what this one holds
        assert call(path, {"request": "disconnect", **ok}) == {"status": "ok", "count": "2"}
        assert call(path, {"request": "lookup", **ok})["count"] == "2"
        f.close()
    postern.wait_for(lambda: call(path, {"request": "lookup", **ok})["count"] == "0", timeout=5,
                     what="anvil dropping the counts of a closed connection")
    assert postern.running("anvil")
    assert "statistics: max" not in postern.log("anvil")   # nothing logged before the interval


def test_anvil_stopped_times_out(postern):
    """An anvil that does not answer (SIGSTOP) costs a session at most smtpd's short timeout."""
    start(postern, smtpd_client_message_rate_limit=1)
    assert mails(postern, "127.0.0.2", 1) == ["250 2.1.0 Ok"]
    postern.kill("anvil", signal.SIGSTOP)
    wait_stopped(postern.daemons["anvil"].proc.pid)
    try:
        t0 = time.monotonic()
        assert mails(postern, "127.0.0.2", 3) == ["250 2.1.0 Ok"] * 3
        assert time.monotonic() - t0 < 3
        postern.wait_log("smtpd", WARNING + "timeout")
    finally:
        postern.kill("anvil", signal.SIGCONT)
    got = mails_until_limited(postern, "127.0.0.2")
    assert got[1] == "450 4.7.1 Error: too much mail from 127.0.0.2", got
    assert len(re.findall(WARNING, postern.log("smtpd"))) == 1


def test_tls_and_auth_hooks(postern):
    """smtpd_anvil_check() with the auth, newtls_status and newtls events (the STARTTLS and AUTH
    code's calls) on a real session against a real anvil: daemons/smtpd/test-smtpd-anvil.c does
    the SMTP side."""
    postern.start("anvil")
    run = subprocess.run([binary("daemons/smtpd/test-smtpd-anvil"), str(postern.socket_dir)],
                         capture_output=True, text=True, timeout=60, env=postern.env())
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning: AUTH command rate limit exceeded: 3 from localhost[127.0.0.2] for service smtp" \
        in run.stderr
    assert "warning: New TLS session rate limit exceeded: 1 from localhost[127.0.0.2] for service smtp" \
        in run.stderr
    r = call(postern.socket_dir / "anvil", {"request": "lookup", "service": "smtp", "address": "127.0.0.2"})
    assert (r["auth_rate"], r["newtls_rate"], r["rate"]) == ("3", "2", "1"), r
    postern.wait_for(lambda: call(postern.socket_dir / "anvil", {"request": "lookup", "service": "smtp",
                                                              "address": "127.0.0.2"})["count"] == "0",
                     timeout=5, what="the session's count dropped")


def test_new_tls_session_rate_limit(postern, certs):
    """Full TLS handshakes are counted; once a client has had the limit, STARTTLS is refused with
    454 4.7.0 and the session goes on in plaintext."""
    import smtplib
    import ssl
    start(postern, smtpd_client_new_tls_session_rate_limit=2, **tls_params(certs))
    ctx = ssl.create_default_context(cafile=str(certs["ca"]))
    ctx.check_hostname = False
    for i in range(3):
        s = smtplib.SMTP("127.0.0.1", postern.smtp_port, source_address=("127.0.0.2", 0), timeout=10)
        s.ehlo("client.test")
        if i < 2:
            code, _ = s.starttls(context=ctx)
            assert code == 220
            s.ehlo("client.test")
            assert s.noop()[0] == 250
        else:
            with pytest.raises(smtplib.SMTPResponseException) as e:
                s.starttls(context=ctx)
            assert e.value.smtp_code == 454
            assert b"too many new TLS sessions from 127.0.0.2" in e.value.smtp_error
            assert s.noop()[0] == 250   # still served, in plaintext
        s.quit()
    postern.wait_log("smtpd", r"warning: New TLS session rate limit exceeded: 2 from "
                     r"localhost\[127\.0\.0\.2\] for service smtp")
    # another client is not limited
    s = smtplib.SMTP("127.0.0.1", postern.smtp_port, source_address=("127.0.0.3", 0), timeout=10)
    s.ehlo("client.test")
    assert s.starttls(context=ctx)[0] == 220
    s.quit()


def test_auth_rate_limit(postern, dovecot):
    """AUTH commands are counted before any SASL step: over the limit, 450 4.7.1."""
    start(postern, smtpd_client_auth_rate_limit=2, smtpd_sasl_auth_enable="yes",
          smtpd_sasl_path=str(dovecot.auth_path), smtpd_tls_auth_only="no")
    postern.wait_log("smtpd", r"SASL: connected to .*mechanisms: PLAIN LOGIN")
    bad = "AUTH PLAIN AGFsaWNlAHdyb25n"   # \0alice\0wrong
    replies = []
    for _ in range(3):
        c, _ = greet(postern, "127.0.0.2")
        c.cmd("EHLO client.test")
        replies.append(c.cmd(bad).split(" ", 2)[:2])
        c.close()
    assert replies[0][0] == replies[1][0] == "535", replies
    assert replies[2] == ["450", "4.7.1"], replies
    postern.wait_log("smtpd", r"warning: AUTH command rate limit exceeded: 3 from "
                     r"localhost\[127\.0\.0\.2\] for service smtp")
