"""postern-smtp speaking LMTP (RFC 2033) on its "lmtp" socket: transport_maps "lmtp:unix:/path"
and "lmtp:inet:host:port" next hops, LHLO, and one reply per accepted recipient after the message
(aiosmtpd's LMTP server, and a scripted LMTP server for temporary failures)."""

import re
from functools import partial

import pytest
from aiosmtpd.controller import UnixSocketController
from aiosmtpd.lmtp import LMTP

import mailtest
from mailtest import send
from smtp_peers import Scripted


msg = partial(mailtest.msg, to="bob@lmtp.example", subject="lmtp test",
              body="Hello over LMTP.\r\n.dot line\r\n")


class LmtpHandler:
    """Per-recipient answers after DATA: 552 for addresses starting with "full", else 250."""

    def __init__(self):
        self.envelopes = []
        self.commands = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "\r\n".join("552 5.2.2 <%s> mailbox full" % r if r.startswith("full")
                           else "250 2.0.0 <%s> delivered" % r for r in envelope.rcpt_tos)


class LmtpController(UnixSocketController):
    def factory(self):
        return LMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def lmtp_server(postern):
    path = postern.root / "lmtp.sock"
    h = LmtpHandler()
    c = LmtpController(h, unix_socket=str(path))
    c.start()
    yield h, path
    c.stop()


def test_lmtp_unix_per_recipient_replies(postern, lmtp_server):
    h, path = lmtp_server
    postern.configure(transport_maps=f"inline:{{ lmtp.example=lmtp:unix:{path} }}")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@lmtp.example", "full@lmtp.example",
                                                "carol@lmtp.example"], msg("lmtp-1@test"))
    relay = re.escape(f"localhost[{path}]")
    postern.wait_log("smtp", rf"{qid}: to=<bob@lmtp\.example>, relay={relay}, .*dsn=2\.0\.0, "
                             r"status=sent \(250 2\.0\.0 <bob@lmtp\.example> delivered\)")
    postern.wait_log("smtp", rf"{qid}: to=<carol@lmtp\.example>, relay={relay}, .*dsn=2\.0\.0, status=sent")
    m = postern.wait_log("smtp", rf"{qid}: to=<full@lmtp\.example>, relay={relay}, .*dsn=5\.2\.2, "
                                 r"status=bounced \((.*)\)")
    assert m.group(1) == (f"host localhost[{path}] said: 552 5.2.2 <full@lmtp.example> mailbox full "
                          "(in reply to end of DATA command)")
    assert len(h.envelopes) == 1
    env = h.envelopes[0]
    assert env.rcpt_tos == ["bob@lmtp.example", "full@lmtp.example", "carol@lmtp.example"]
    assert b"\r\n.dot line\r\n" in env.original_content   # un-stuffed by the server: it was stuffed
    postern.wait_mailbox("ptest1", "Undelivered Mail Returned to Sender", timeout=20)
    postern.wait_log("qmgr", rf"{qid}: removed")


def test_lmtp_inet_temporary_failure_per_recipient(postern):
    s = Scripted(lmtp=True, replies={
        "DOT": lambda accepted: ["452 4.2.2 <%s> over quota, try later" % a if a.startswith("slow")
                                 else "250 2.0.0 <%s> ok" % a for a in accepted]})
    try:
        postern.configure(transport_maps=f"inline:{{ lmtp.example=lmtp:inet:127.0.0.1:{s.port} }}",
                          minimal_backoff_time="600s")
        postern.start()
        qid = send(postern, "ptest1@postern.test", ["slow@lmtp.example", "bob@lmtp.example"],
                   msg("lmtp-2@test"))
        postern.wait_log("smtp", rf"{qid}: to=<bob@lmtp\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{s.port}, "
                                 r".*status=sent")
        m = postern.wait_log("smtp", rf"{qid}: to=<slow@lmtp\.example>.*dsn=4\.2\.2, status=deferred \((.*)\)")
        assert m.group(1).endswith("452 4.2.2 <slow@lmtp.example> over quota, try later "
                                   "(in reply to end of DATA command)")
        assert s.commands[0] == "LHLO postern.test"
        postern.wait_for(lambda: postern.queue_rows(
            "SELECT state FROM recipients WHERE address = 'slow@lmtp.example'") == [(1,)],
            what="the deferral recorded")
    finally:
        s.stop()


def test_lmtp_bad_nexthop(postern):
    postern.configure(transport_maps="inline:{ lmtp.example=lmtp:unix:relative/path }",
                      postern_lmtp_socket_directory="")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@lmtp.example"], msg("lmtp-3@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@lmtp\.example>, relay=none, .*status=deferred \((.*)\)")
    assert m.group(1) == ("bad LMTP socket path in next hop: relative/path (relative, and "
                          "postern_lmtp_socket_directory is empty)")


def test_lmtp_relative_unix_path_as_postfix_writes_it(postern):
    """virtual_transport = lmtp:unix:private/dovecot-lmtp, as Dovecot's documentation and most
    Postfix configurations write it: resolved under postern_lmtp_socket_directory (Postfix's queue
    directory /var/spool/postfix by default; a test directory here)."""
    spool = postern.root / "spool-postfix"
    (spool / "private").mkdir(parents=True)
    sock = spool / "private" / "dovecot-lmtp"
    s = Scripted(lmtp=True, unix_path=sock)
    try:
        postern.configure(postern_lmtp_socket_directory=str(spool), virtual_mailbox_domains="lmtp.example",
                          virtual_transport="lmtp:unix:private/dovecot-lmtp")
        postern.start()
        qid = send(postern, "ptest1@postern.test", ["bob@lmtp.example"], msg("lmtp-4@test"))
        relay = re.escape(f"localhost[{sock}]")
        postern.wait_log("smtp", rf"{qid}: to=<bob@lmtp\.example>, relay={relay}, .*dsn=2\.0\.0, status=sent")
        assert "RCPT TO:<bob@lmtp.example>" in s.commands
        assert any(c.startswith("LHLO ") for c in s.commands)
        assert len(s.messages) == 1 and b"Hello over LMTP." in s.messages[0]
        postern.wait_log("qmgr", rf"{qid}: removed")
    finally:
        s.stop()


def test_lmtp_relative_unix_path_missing_socket_defers_naming_it(postern):
    spool = postern.root / "spool-postfix"
    postern.configure(postern_lmtp_socket_directory=str(spool),
                      transport_maps="inline:{ lmtp.example=lmtp:unix:private/dovecot-lmtp }",
                      minimal_backoff_time="600s")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@lmtp.example"], msg("lmtp-5@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@lmtp\.example>, .*status=deferred \((.*)\)")
    assert f"{spool}/private/dovecot-lmtp" in m.group(1)
