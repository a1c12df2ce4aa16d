"""postern-smtp, the SMTP client, with qmgr routing to it: relayhost and transport_maps next
hops, delivery to Postfix's smtp-sink (content, CRLF, dot-stuffing, DSN parameters, connection
reuse), per-stage 4xx/5xx answers from aiosmtpd and a scripted server mapped to the queue and to
the sender's bounce, timeouts, SIZE, 8BITMIME (and conversion to quoted-printable), mail loops and unknown relay names."""

import email
import email.policy
import re
import time
from functools import partial

import pytest

import mailtest
from mailtest import send
from smtp_peers import Sink, free_port


msg = partial(mailtest.msg, sender="sender@example.org", subject="relay test")


def rcpt_rows(postern, qid):
    return {r[0]: r[1:] for r in postern.queue_rows(
        "SELECT r.address, r.state, r.dsn_status, r.diag FROM recipients r JOIN messages m "
        "ON m.id = r.message_id WHERE m.queue_id = ?", (qid,))}


def wait_rcpt(postern, qid, address, state, timeout=20):
    postern.wait_for(lambda: (rcpt_rows(postern, qid).get(address) or (None,))[0] == state,
                     timeout=timeout, what=f"{address} in state {state}")
    return rcpt_rows(postern, qid)[address]


@pytest.fixture
def sink(postern):
    s = Sink(postern.root / "sink")   # smtp-sink runs as nobody: not under pytest's 0700 tmp
    yield s
    s.stop()


def relay_to(postern, port, host="127.0.0.1", **extra):
    postern.configure(relayhost=f"[{host}]:{port}", **extra)
    postern.start()


def test_relay_to_sink_content_crlf_and_dot_stuffing(postern, sink):
    relay_to(postern, sink.port)
    body = ".leading dot\r\n..two dots\r\n.\r\nmiddle\r\nend\r\n"
    qid = send(postern, "sender@example.org", ["bob@remote.example", "carol@remote.example"],
               msg("relay-1@test", body=body))
    dumps = sink.wait_count(1)
    assert len(dumps) == 1
    d = dumps[0]
    assert b"Message-ID: <relay-1@test>" in d
    # smtp-sink un-stuffs and stores LF form: without dot-stuffing on the way out, the "." line
    # would have ended the message early and "middle"/"end" would be missing.
    assert b"\n.leading dot\n..two dots\n.\nmiddle\nend\n" in d
    assert b"X-Rcpt-Args: <bob@remote.example>\nX-Rcpt-Args: <carol@remote.example>" in d
    assert b"X-Helo-Args: postern.test\n" in d
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                                 rf"{sink.port}, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, "
                                 r"dsn=2\.0\.0, status=sent \((250 [^)]*)\)")
    assert "250 2.0.0" in m.group(1)
    postern.wait_log("qmgr", rf"{qid}: removed")
    postern.wait_queue_empty()


# --- aiosmtpd with scripted answers at MAIL, RCPT and end of data (conftest: aiosmtpd_server) ---

def bounce_for(postern, user, qid):
    """The text of the non-delivery notification for qid in user's mailbox."""
    postern.wait_mailbox(user, rf"Undelivered Mail Returned to Sender", timeout=20)
    return postern.mailbox(user)


def test_rcpt_5xx_bounces_one_recipient_others_delivered(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "550 5.1.1 <%s>: Recipient address rejected: no such user" % a
                              if a.startswith("nosuch") else "250 2.1.5 OK")
    relay_to(postern, port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example", "nosuch@remote.example"],
               msg("rcpt-550@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<nosuch@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, "
                                 r".*dsn=5\.1\.1, status=bounced \((.*)\)")
    assert m.group(1) == (f"host 127.0.0.1[127.0.0.1]:{port} said: 550 5.1.1 <nosuch@remote.example>: "
                          "Recipient address rejected: no such user (in reply to RCPT TO command)")
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 accepted\)")
    assert len(h.envelopes) == 1 and h.envelopes[0].rcpt_tos == ["bob@remote.example"]
    report = bounce_for(postern, "ptest1", qid)
    assert "Final-Recipient: rfc822; nosuch@remote.example" in report
    assert "Status: 5.1.1" in report
    assert "Final-Recipient: rfc822; bob@remote.example" not in report
    postern.wait_log("qmgr", rf"{qid}: removed")


def test_mail_4xx_defers_every_recipient(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(mail="451 4.3.0 try again later")
    relay_to(postern, port, minimal_backoff_time="600s")
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example", "carol@remote.example"],
               msg("mail-451@test"))
    for rcpt in ("bob@remote.example", "carol@remote.example"):
        state, dsn, diag = wait_rcpt(postern, qid, rcpt, 1)
        assert dsn == "4.3.0"
        assert diag == f"host 127.0.0.1[127.0.0.1]:{port} said: 451 4.3.0 try again later (in reply to MAIL FROM command)"
    assert h.envelopes == []
    assert postern.queue_count() == 1


def test_end_of_data_5xx_bounces_all(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(data="554 5.7.1 content rejected")
    relay_to(postern, port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example", "carol@remote.example"],
               msg("dot-554@test"))
    for rcpt in ("bob@remote.example", "carol@remote.example"):
        m = postern.wait_log("smtp", rf"{qid}: to=<{re.escape(rcpt)}>.*dsn=5\.7\.1, status=bounced \((.*)\)")
        assert m.group(1).endswith("said: 554 5.7.1 content rejected (in reply to end of DATA command)")
    report = bounce_for(postern, "ptest1", qid)
    assert report.count("Status: 5.7.1") == 2


def test_end_of_data_4xx_defers(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(data="452 4.3.1 insufficient system storage")
    relay_to(postern, port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("dot-452@test"))
    state, dsn, diag = wait_rcpt(postern, qid, "bob@remote.example", 1)
    assert dsn == "4.3.1" and diag.endswith("(in reply to end of DATA command)")


# --- a scripted server for the greeting, EHLO, DATA and silence (conftest: scripted) -----------

@pytest.mark.parametrize("stage,reply,state,dsn,suffix", [
    ("greeting", "554 5.7.1 go away", 1, "4.7.1", "refused to talk to me: 554 5.7.1 go away"),
    ("greeting", "421 4.3.2 busy", 1, "4.3.2", "refused to talk to me: 421 4.3.2 busy"),
    ("EHLO", "421 4.3.2 shutting down", 1, "4.3.2", "said: 421 4.3.2 shutting down (in reply to EHLO command)"),
    ("DATA", "451 4.3.0 no data now", 1, "4.3.0", "said: 451 4.3.0 no data now (in reply to DATA command)"),
    ("DATA", "554 5.5.1 no valid recipients", 3, "5.5.1",
     "said: 554 5.5.1 no valid recipients (in reply to DATA command)"),
    ("MAIL", "553 5.1.8 sender rejected", 3, "5.1.8",
     "said: 553 5.1.8 sender rejected (in reply to MAIL FROM command)"),
])
def test_stage_failures(postern, scripted, stage, reply, state, dsn, suffix):
    s = scripted(replies={stage: reply})
    relay_to(postern, s.port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg(f"stage-{stage}@test"))
    status = {1: "deferred", 3: "bounced"}[state]
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*dsn=([0-9.]+), status={status} \((.*)\)")
    got_dsn, diag = m.group(1), m.group(2)
    assert got_dsn == dsn
    assert diag == f"host 127.0.0.1[127.0.0.1]:{s.port} " + suffix
    assert s.messages == []


def test_ehlo_5xx_falls_back_to_helo(postern, scripted):
    s = scripted(replies={"EHLO": "502 5.5.2 EHLO not implemented"})
    relay_to(postern, s.port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("helo@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert s.commands[:2] == ["EHLO postern.test", "HELO postern.test"]
    assert s.commands[2] == "MAIL FROM:<ptest1@postern.test>"   # no ESMTP parameters after HELO


def test_pipelining_sends_mail_rcpt_data_together(postern, scripted):
    s = scripted()
    relay_to(postern, s.port)
    qid = send(postern, "ptest1@postern.test", ["a@remote.example", "b@remote.example"], msg("pipe@test"))
    postern.wait_log("smtp", rf"{qid}: to=<b@remote\.example>.*status=sent")
    assert s.commands[1].startswith("MAIL FROM:<ptest1@postern.test> SIZE=")
    assert s.commands[2:5] == ["RCPT TO:<a@remote.example>", "RCPT TO:<b@remote.example>", "DATA"]


def test_greeting_timeout(postern, scripted):
    s = scripted(replies={"greeting": None})
    relay_to(postern, s.port, smtp_helo_timeout="1s")
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("timeout-1@test"))
    st, dsn, diag = wait_rcpt(postern, qid, "bob@remote.example", 1)
    assert dsn == "4.4.2"
    assert diag == (f"conversation with 127.0.0.1[127.0.0.1]:{s.port} timed out while receiving "
                    "the initial server greeting")


def test_end_of_data_timeout(postern, scripted):
    s = scripted(replies={"DOT": None})
    relay_to(postern, s.port, smtp_data_done_timeout="1s")
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("timeout-2@test"))
    st, dsn, diag = wait_rcpt(postern, qid, "bob@remote.example", 1)
    assert dsn == "4.4.2"
    assert diag.endswith("timed out while sending end of data -- message may be sent more than once")


def test_connection_refused(postern):
    port = free_port()
    relay_to(postern, port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("refused@test"))
    st, dsn, diag = wait_rcpt(postern, qid, "bob@remote.example", 1)
    assert dsn == "4.4.1"
    assert diag == f"connect to 127.0.0.1[127.0.0.1]:{port}: Connection refused"


def test_message_larger_than_server_size_bounces(postern, scripted):
    s = scripted(size=1000)
    relay_to(postern, s.port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"],
               msg("size@test", body="x" * 70 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 30))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*dsn=5\.3\.4, status=bounced \((.*)\)")
    assert re.fullmatch(rf"message size \d+ exceeds size limit 1000 of server 127\.0\.0\.1\[127\.0\.0\.1\]:{s.port}",
                        m.group(1))
    assert not any(c.startswith("MAIL") for c in s.commands)
    assert "Status: 5.3.4" in bounce_for(postern, "ptest1", qid)


def test_mail_loop_is_detected(postern, scripted):
    s = scripted(replies={"greeting": "220 postern.test ESMTP"})
    relay_to(postern, s.port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("loop@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*dsn=5\.4\.6, status=bounced \((.*)\)")
    assert m.group(1) == f"mail for [127.0.0.1]:{s.port} loops back to myself"


def test_8bit_body_to_server_without_8bitmime_is_converted(postern):
    # smtp-sink -8 does not announce 8BITMIME: the 8-bit part becomes quoted-printable (RFC 6152
    # 3), the ASCII part and the MIME structure stay, and the decoded text is what was sent.
    sink = Sink(postern.root / "sink8", extra=("-8",))
    try:
        relay_to(postern, sink.port)
        text_part = "Grüße aus Köln = 100 % échte Umlaute \r\n" + "ä" * 120 + "\r\n"
        m = ("From: <a@b>\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n"
             "--xyz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
             + text_part +
             "--xyz\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--xyz--\r\n")
        qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], m.encode())
        got = sink.wait_count(1)[0]
        postern.wait_log("smtp", rf"{qid}: converted 8-bit content to quoted-printable for 127\.0\.0\.1")
        postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
        body = got.split(b"\n\n", 1)[1] if got.startswith(b"X-") else got
        assert max(body) < 0x80, "8-bit bytes reached a server without 8BITMIME"
        assert all(len(line) <= 76 for line in got.split(b"\n") if not line.startswith(b"X-"))
        parsed = email.message_from_bytes(got[got.index(b"From: <a@b>"):], policy=email.policy.default)
        parts = list(parsed.iter_parts())
        assert parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
        # (the line break before a delimiter belongs to the delimiter, RFC 2046 5.1.1)
        assert parts[0].get_content() == text_part.replace("\r\n", "\n")[:-1]
        assert parts[1].get_content() == "ascii part"
        assert "Content-Transfer-Encoding" not in parts[1]
    finally:
        sink.stop()


def test_8bit_body_with_8bitmime_is_declared(postern, scripted):
    s = scripted()
    relay_to(postern, s.port)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"],
               "From: <a@b>\r\nSubject: 8bit\r\n\r\nGr\u00fc\u00dfe\r\n".encode())
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert " BODY=8BITMIME" in s.commands[1]
    assert "Grüße".encode() in s.messages[0]


def test_unknown_relay_name_bounces(postern):
    postern.configure(relayhost="relay.example:2525")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("noresolver@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay=none, .*dsn=5\.4\.4, status=bounced \((.*)\)")
    assert m.group(1) == "Host or domain name not found. Name service error for name=relay.example type=MX: Host not found"


# --- DSN parameters ----------------------------------------------------------------------------

def test_dsn_parameters_passed_on(postern, sink):
    postern.configure(relayhost=f"[127.0.0.1]:{sink.port}")
    postern.start("smtpd")   # queue first, set the DSN fields, then deliver
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example", "carol@remote.example"],
               msg("dsn@test"))
    import sqlite3
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    with con:
        con.execute("UPDATE messages SET ret = 2, envid = 'env+id 1' WHERE queue_id = ?", (qid,))
        con.execute("UPDATE recipients SET notify = 6, orcpt = 'rfc822;Bob@Remote.Example' "
                    "WHERE address = 'bob@remote.example'")
        con.execute("UPDATE recipients SET notify = 1 WHERE address = 'carol@remote.example'")
    con.close()
    postern.start("qmgr", "local", "smtp")
    d = sink.wait_count(1)[0].decode()
    assert "X-Mail-Args: <ptest1@postern.test> RET=HDRS ENVID=env+2Bid+201\n" in d
    assert "X-Rcpt-Args: <bob@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob@Remote.Example\n" in d
    assert "X-Rcpt-Args: <carol@remote.example> NOTIFY=NEVER\n" in d


def test_no_dsn_parameters_without_dsn_extension(postern, scripted):
    s = scripted(ehlo="250-scripted\r\n250-8BITMIME\r\n250 PIPELINING")
    postern.configure(relayhost=f"[127.0.0.1]:{s.port}")
    postern.start("smtpd")
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("nodsn@test"))
    import sqlite3
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    with con:
        con.execute("UPDATE messages SET ret = 1, envid = 'x' WHERE queue_id = ?", (qid,))
        con.execute("UPDATE recipients SET notify = 2, orcpt = 'rfc822;x@y'")
    con.close()
    postern.start("qmgr", "local", "smtp")
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert s.commands[1] == "MAIL FROM:<ptest1@postern.test>"
    assert s.commands[2] == "RCPT TO:<bob@remote.example>"


# --- connection reuse --------------------------------------------------------------------------

def test_connection_reused_for_next_message(postern, scripted):
    s = scripted()
    relay_to(postern, s.port, smtp_connection_cache_time_limit="5s")
    for i in range(3):
        qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg(f"reuse-{i}@test"))
        postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert s.connections == 1
    assert s.commands.count("EHLO postern.test") == 1
    assert s.commands.count("RSET") == 2
    assert len(s.messages) == 3


def test_no_reuse_when_cache_time_is_zero_or_count_reached(postern, scripted):
    s = scripted()
    relay_to(postern, s.port, smtp_connection_cache_time_limit="5s", smtp_connection_reuse_count_limit="2")
    for i in range(3):
        qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg(f"reuse-{i}@test"))
        postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert s.connections == 2   # two transactions on the first, then a new one


def test_idle_connection_closed_after_cache_time(postern, scripted):
    s = scripted()
    relay_to(postern, s.port, smtp_connection_cache_time_limit="1s")
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("idle-1@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    postern.wait_for(lambda: "QUIT" in s.commands, timeout=10, what="QUIT after the idle time")
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("idle-2@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert s.connections == 2


def test_dead_cached_connection_is_retried_on_a_new_one(postern, scripted):
    s = scripted(replies={"RSET": "421 4.4.2 idle too long, closing"})
    relay_to(postern, s.port, smtp_connection_cache_time_limit="5s")
    for i in range(2):
        qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg(f"retry-{i}@test"))
        postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert s.connections == 2
    assert len(s.messages) == 2
    assert "retrying on a new connection" in postern.log("smtp")


def test_many_messages_to_sink_arrive_once(postern, sink):
    relay_to(postern, sink.port)
    n = 40
    with postern.smtp() as c:
        for i in range(n):
            c.sendmail("ptest1@postern.test", [f"u{i}@remote.example"], msg(f"many-{i}@test"))
    dumps = sink.wait_count(n)
    postern.wait_queue_empty()
    time.sleep(0.5)   # absence: no duplicate reaches the sink once the queue is empty
    assert len(sink.messages()) == n
    ids = sorted(re.search(rb"Message-ID: <(many-\d+)@test>", d).group(1) for d in dumps)
    assert ids == sorted(f"many-{i}".encode() for i in range(n))


# --- transport_maps ----------------------------------------------------------------------------

def test_transport_maps_routes(postern, sink):
    postern.configure(transport_maps=(
        f"inline:{{ sink.example=smtp:[127.0.0.1]:{sink.port}, "
        "{ gone.example=error:5.1.2 this domain is gone }, "
        "{ drop.example=discard:dropped by policy }, "
        "ptest2@other.example=local: }"))
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["a@sink.example", "b@gone.example", "c@drop.example",
                                                "ptest2@other.example"], msg("tmaps@test"))
    sink.wait_count(1)
    m = postern.wait_log("qmgr", rf"{qid}: to=<b@gone\.example>, relay=none, .*dsn=5\.1\.2, status=bounced \((.*)\)")
    assert m.group(1) == "this domain is gone"
    postern.wait_log("qmgr", rf"{qid}: to=<c@drop\.example>, relay=none, .*dsn=2\.0\.0, status=sent \(dropped by policy\)")
    postern.wait_mailbox("ptest2", "tmaps@test")
    postern.wait_log("qmgr", rf"{qid}: removed")
    assert "Final-Recipient: rfc822; b@gone.example" in bounce_for(postern, "ptest1", qid)


@pytest.mark.parametrize("bind", ["127.0.0.3", ""])
def test_smtp_bind_address(postern, aiosmtpd_server, bind):
    h, port = aiosmtpd_server()
    relay_to(postern, port, smtp_bind_address=bind)
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("bind@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>.*status=sent")
    assert h.peers == [bind or "127.0.0.1"]


def test_smtp_bind_address_must_be_numeric(postern):
    postern.configure(smtp_bind_address="mail.example.org")
    with pytest.raises(RuntimeError, match=r"smtp_bind_address = mail\.example\.org: not a numeric IPv4 or IPv6 address"):
        postern.start("smtp")
