"""postern-smtpd ESMTP extensions: CHUNKING/BDAT (RFC 3030), SMTPUTF8 (RFC 6531), DSN parameters
(RFC 3461) and smtpd_discard_ehlo_keywords. Raw sockets for BDAT (no client library speaks it),
smtplib for SMTPUTF8 and DSN, swaks for plain ESMTP; results are checked in the queue database
and, where delivery runs, in the mailbox."""

import re
import smtplib
import subprocess

from mailtest import queued_id
from test_smtpd_helpers import raw, start_smtpd, queue_ids, content_of, wait_until, transaction


def bdat(c, data, last=False):
    """Sends one chunk and returns its reply."""
    c.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
    return c.text()


def body_of(content):
    """The message after our Received: header."""
    assert content.startswith("Received: "), content
    return re.sub(r"\AReceived: .*?\n(?=\S)", "", content, count=1, flags=re.S)


# ---- CHUNKING / BDAT --------------------------------------------------------------------------

def test_bdat_single_chunk_is_stored_without_dot_rules(postern):
    start_smtpd(postern)
    msg = (b"Subject: bdat\r\n\r\n"
           b".leading dot stays\r\n"
           b"..two dots stay\r\n"
           b".\r\n"                       # not an end of data in BDAT
           b"bare LF line\n"
           b"bare CR\rinside\r\n"
           b"last line without end")
    with raw(postern) as c:
        transaction(c)
        qid = queued_id(bdat(c, msg, last=True))
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
    body = body_of(content_of(postern, qid))
    assert body == ("Subject: bdat\n\n.leading dot stays\n..two dots stay\n.\nbare LF line\n"
                    "bare CR\rinside\nlast line without end\n")
    assert postern.queue_rows("SELECT protocol, smtputf8 FROM messages") == [("ESMTP", 0)]
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 bdat=1 quit=1 "
                              r"commands=5")


def test_bdat_pipelined_chunks_split_lines_and_crlf(postern):
    start_smtpd(postern)
    chunks = [b"Subject: spl", b"it header\r", b"\nX-Other: y\r\n\r\nbody line one\r", b"\n", b"two", b""]
    with raw(postern) as c:
        transaction(c)
        batch = b"".join(b"BDAT %d%s\r\n" % (len(ch), b" LAST" if i == len(chunks) - 1 else b"") + ch
                         for i, ch in enumerate(chunks))
        c.send(batch)   # all chunks in one write: replies come in order
        total = 0
        for ch in chunks[:-1]:
            total += len(ch)
            assert c.text() == f"250 2.0.0 Ok: {total} bytes"
        qid = queued_id(c.text())
    body = body_of(content_of(postern, qid))
    assert body == "Subject: split header\nX-Other: y\n\nbody line one\ntwo\n"
    postern.wait_log("smtpd", r"bdat=6 ")


def test_bdat_refusals_discard_the_chunk(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.send("EHLO client.test\r\n")
        c.reply()
        # Without a transaction the chunk is read and thrown away; its bytes are no commands.
        assert bdat(c, b"QUIT\r\n", last=True) == "503 5.5.1 Error: need RCPT command"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert bdat(c, b"RSET\r\n") == "503 5.5.1 Error: need RCPT command"
        # A refused BDAT ends the transaction (RFC 3030: the client must not go on with it).
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<nosuchuser@localhost>").startswith("550 5.1.1 ")
        assert bdat(c, b"x") == "554 5.5.1 Error: no valid recipients"
        transaction(c)
        assert bdat(c, b"") == "551 5.7.1 Null BDAT request"
        transaction(c)
        c.send(b"BDAT 4 BOGUS\r\nNOOP")
        assert c.text() == "501 5.5.4 Syntax: BDAT count [LAST]"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        assert queue_ids(postern) == []
        # A count that cannot be read leaves no way to find the next command: 521 and close.
        assert c.cmd("BDAT lots") == "521 5.5.4 Syntax: BDAT count [LAST]"
        assert c.is_closed()


def test_bdat_zero_last_ends_message(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        transaction(c)
        assert bdat(c, b"Subject: zero\r\n\r\nbody\r\n") == "250 2.0.0 Ok: 23 bytes"
        qid = queued_id(bdat(c, b"", last=True))
    assert body_of(content_of(postern, qid)) == "Subject: zero\n\nbody\n"


def test_bdat_and_data_do_not_mix(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        transaction(c)
        assert bdat(c, b"Subject: x\r\n") == "250 2.0.0 Ok: 12 bytes"
        assert c.cmd("DATA") == "503 5.5.1 Error: DATA after BDAT"
        assert c.cmd("MAIL FROM:<b@example.org>") == "503 5.5.1 Error: MAIL after BDAT"
        assert c.cmd("RCPT TO:<ptest2@localhost>") == "503 5.5.1 Error: RCPT after BDAT"
        qid = queued_id(bdat(c, b"\r\nbody\r\n", last=True))
        assert postern.queue_rows("SELECT address FROM recipients") == [("ptest1@localhost",)]
        # RSET abandons a BDAT transaction; DATA works again afterwards.
        transaction(c)
        assert bdat(c, b"Subject: y\r\n") == "250 2.0.0 Ok: 12 bytes"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        transaction(c)
        assert c.cmd("DATA").startswith("354 ")
        c.send("Subject: z\r\n\r\nvia data\r\n.\r\n")
        queued_id(c.text())
    assert len(queue_ids(postern)) == 2
    assert qid in queue_ids(postern)


def test_bdat_size_limit(postern):
    start_smtpd(postern, message_size_limit="1000")
    with raw(postern) as c:
        transaction(c)
        assert bdat(c, b"a" * 600 + b"\r\n") == "250 2.0.0 Ok: 602 bytes"
        # The chunk that crosses the limit is read to its end and refused; the rest of the
        # session goes on normally.
        assert bdat(c, b"b" * 5000 + b"\r\nQUIT\r\n", last=True) == "552 5.3.4 Chunk exceeds message size limit"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        transaction(c)
        queued_id(bdat(c, b"Subject: small\r\n\r\nok\r\n", last=True))
    assert len(queue_ids(postern)) == 1
    postern.wait_log("smtpd", r"reject: BDAT from localhost\[127\.0\.0\.1\]: 552 5\.3\.4 Chunk exceeds message "
                              r"size limit")


def test_bdat_huge_chunk_beyond_data_budget(postern, monkeypatch):
    # The data budget (tests only: $POSTERN_SMTPD_DATA_BUDGET) bounds what all sessions buffer; a
    # chunk far larger than it is streamed through, not buffered, and answered 452 4.3.1.
    monkeypatch.setenv("POSTERN_SMTPD_DATA_BUDGET", str(256 * 1024))
    start_smtpd(postern, message_size_limit="0")
    line = b"x" * 998 + b"\r\n"
    size = 8 * 1024 * 1024
    with raw(postern, timeout=60) as c:
        transaction(c)
        c.send(b"BDAT %d LAST\r\nSubject: big\r\n\r\n" % (size + 16))
        for _ in range(size // len(line)):
            c.send(line)
        c.send(b"y" * (size % len(line)))
        assert c.text() == "452 4.3.1 Insufficient system storage"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert queue_ids(postern) == []


def test_bdat_is_delivered(postern):
    postern.start()
    with raw(postern) as c:
        transaction(c)
        assert bdat(c, b"Subject: chunked delivery\r\n") == "250 2.0.0 Ok: 27 bytes"
        queued_id(bdat(c, b"\r\nhello from BDAT\r\n", last=True))
    assert wait_until(lambda: "hello from BDAT" in postern.mailbox("ptest1"), timeout=20)
    box = postern.mailbox("ptest1")
    assert "Subject: chunked delivery\n\nhello from BDAT\n" in box


# ---- SMTPUTF8 ---------------------------------------------------------------------------------

UTF8_SENDER = "j\u00f6rg@b\u00fccher.example"


def test_smtputf8_message_is_flagged_and_delivered(postern):
    postern.start()
    msg = ("From: J\u00f6rg <" + UTF8_SENDER + ">\r\nSubject: Gr\u00fc\u00dfe \u2603\r\n\r\n"
           "K\u00f6rper\r\n").encode()
    with smtplib.SMTP("127.0.0.1", postern.smtp_port) as s:
        s.ehlo("client.test")
        assert s.has_extn("smtputf8")
        s.sendmail(UTF8_SENDER, ["ptest1@localhost"], msg, mail_options=["SMTPUTF8"])
    # The domain is kept in its A-label form; the local part stays UTF-8.
    assert postern.queue_rows("SELECT sender, smtputf8 FROM messages") == \
        [("j\u00f6rg@xn--bcher-kva.example", 1)]
    assert wait_until(lambda: "K\u00f6rper" in postern.mailbox("ptest1"), timeout=20)
    assert "Subject: Gr\u00fc\u00dfe \u2603" in postern.mailbox("ptest1")


def test_sendmail_utf8_sender_is_flagged(postern):
    # The local sendmail sees SMTPUTF8 on the submit socket and declares it for a UTF-8 sender.
    start_smtpd(postern)
    postern.sendmail(["-f", UTF8_SENDER, "ptest1"], input="Subject: s\n\nK\u00f6rper\n".encode())
    assert postern.queue_rows("SELECT sender, smtputf8, protocol FROM messages") == \
        [("j\u00f6rg@xn--bcher-kva.example", 1, "LOCAL")]


def test_unicode_address_needs_smtputf8(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd(f"MAIL FROM:<{UTF8_SENDER}>".encode()) == \
            "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@b\u00fccher.example>".encode()) == \
            "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd(f"MAIL FROM:<{UTF8_SENDER}> SMTPUTF8".encode()) == "250 2.1.0 Ok"


def test_malformed_utf8_is_refused_everywhere(postern):
    start_smtpd(postern)
    bad = {
        "overlong": b"\xc0\xaf",
        "surrogate": b"\xed\xa0\x80",
        "continuation": b"\x80",
        "truncated": b"\xc3",
        "above U+10FFFF": b"\xf4\x90\x80\x80",
    }
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        for what, b in bad.items():
            assert c.cmd(b"MAIL FROM:<j" + b + b"@example.org> SMTPUTF8") == \
                "500 5.5.2 Error: bad UTF-8 syntax", what
        assert c.cmd("MAIL FROM:<a@example.org> SMTPUTF8") == "250 2.1.0 Ok"
        for what, b in bad.items():
            assert c.cmd(b"RCPT TO:<ptest1" + b + b"@localhost>") == "500 5.5.2 Error: bad UTF-8 syntax", what
        assert c.cmd(b"HELO \xc0\xaf") == "500 5.5.2 Error: bad UTF-8 syntax"
    assert queue_ids(postern) == []


def test_malformed_utf8_header_in_smtputf8_message(postern):
    # RFC 6532: an SMTPUTF8 message's header section is UTF-8. Without SMTPUTF8, 8-bit header
    # bytes (legacy charsets) are accepted and stored unchanged, as Postfix does.
    start_smtpd(postern)
    for via_bdat in (False, True):
        with raw(postern) as c:
            transaction(c, mail_params=" SMTPUTF8")
            msg = b"Subject: ok \xc3\xa9\r\nX-Bad: \xed\xa0\x80\r\n\r\nbody \xff is not checked\r\n"
            if via_bdat:
                reply = bdat(c, msg, last=True)
            else:
                assert c.cmd("DATA").startswith("354 ")
                c.send(msg + b".\r\n")
                reply = c.text()
            assert reply == "554 5.6.0 Malformed UTF-8 in message header"
            assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert queue_ids(postern) == []
    with raw(postern) as c:
        transaction(c, mail_params=" SMTPUTF8")
        qid = queued_id(bdat(c, b"Subject: caf\xc3\xa9\r\n\r\nbody \xff\r\n", last=True))
        transaction(c)
        qid2 = queued_id(bdat(c, b"Subject: latin-1 caf\xe9\r\n\r\nx\r\n", last=True))
    rows = dict(postern.queue_rows("SELECT queue_id, smtputf8 FROM messages"))
    assert rows == {qid: 1, qid2: 0}
    # RFC 6531 §3.7.3: the Received: header names the protocol UTF8SMTP
    assert "\tby postern.test (Postern) with UTF8SMTP id " + qid in content_of(postern, qid)
    assert "\tby postern.test (Postern) with ESMTP id " + qid2 in content_of(postern, qid2)
    data = postern.queue_rows("SELECT c.data FROM content c JOIN messages m ON m.id = c.message_id "
                              "WHERE m.queue_id = ?", (qid2,))[0][0]
    data = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    assert b"Subject: latin-1 caf\xe9\n" in data


def test_ulabel_and_alabel_match_mydestination(postern):
    # mydestination written with a U-label matches the A-label and the U-label in RCPT TO.
    start_smtpd(postern, mydestination="localhost, b\u00fccher.example")
    with smtplib.SMTP("127.0.0.1", postern.smtp_port) as s:
        s.ehlo("client.test")
        s.sendmail("a@example.org", ["ptest1@xn--bcher-kva.example", "ptest2@b\u00fccher.example"],
                   b"Subject: idn\r\n\r\nx\r\n", mail_options=["SMTPUTF8"])
        # The domain is local in both spellings: unknown users are refused (not relayed).
        s.ehlo("client.test")
        s.mail("a@example.org", ["SMTPUTF8"])
        for domain in ("xn--bcher-kva.example", "b\u00fccher.example", "B\u00dcCHER.example"):
            code, text = s.rcpt("nosuchuser@" + domain)
            assert code == 550 and b"User unknown in local recipient table" in text, (domain, code, text)
    assert sorted(postern.queue_rows("SELECT address FROM recipients")) == \
        [("ptest1@xn--bcher-kva.example",), ("ptest2@xn--bcher-kva.example",)]


def test_smtputf8_disabled(postern):
    start_smtpd(postern, smtputf8_enable="no")
    with raw(postern) as c:
        c.send("EHLO client.test\r\n")
        code, lines = c.reply()
        assert "SMTPUTF8" not in lines
        assert c.cmd("MAIL FROM:<a@example.org> SMTPUTF8") == "555 5.5.4 Unsupported option: SMTPUTF8"
        assert c.cmd(f"MAIL FROM:<{UTF8_SENDER}>".encode()).startswith(
            "501 5.1.7 Bad sender address syntax: Non-ASCII address requires SMTPUTF8")


# ---- DSN --------------------------------------------------------------------------------------

def test_dsn_parameters_are_stored(postern):
    start_smtpd(postern)
    with smtplib.SMTP("127.0.0.1", postern.smtp_port) as s:
        s.ehlo("client.test")
        assert s.has_extn("dsn")
        s.sendmail("a@example.org", ["ptest1@localhost"], b"Subject: dsn\r\n\r\nx\r\n",
                   mail_options=["RET=HDRS", "ENVID=QQ+2B314+3Dx"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Bob+2Bx+40example.org"])
        s.sendmail("b@example.org", ["ptest2@localhost", "ptest3@localhost"], b"Subject: dsn2\r\n\r\nx\r\n",
                   mail_options=["RET=FULL"], rcpt_options=["NOTIFY=NEVER"])
    assert postern.queue_rows("SELECT sender, ret, envid FROM messages ORDER BY id") == \
        [("a@example.org", 2, "QQ+314=x"), ("b@example.org", 1, None)]
    assert postern.queue_rows("SELECT address, notify, orcpt FROM recipients ORDER BY id") == [
        ("ptest1@localhost", 2 | 4, "rfc822;Bob+x@example.org"),
        ("ptest2@localhost", 1, None),
        ("ptest3@localhost", 1, None),
    ]


def test_utf8_orcpt_in_smtputf8_transaction(postern):
    # RFC 6533: ORCPT=utf-8;... carries UTF-8 as is; only in an SMTPUTF8 transaction.
    start_smtpd(postern)
    with raw(postern) as c:
        transaction(c, rcpts=(), mail_params=" SMTPUTF8")
        assert c.cmd("RCPT TO:<ptest1@localhost> ORCPT=utf-8;j\u00f6rg@b\u00fccher.example".encode()) == \
            "250 2.1.5 Ok"
        assert c.cmd(b"RCPT TO:<ptest2@localhost> ORCPT=utf-8;j\xc0\xafrg@x") == "500 5.5.2 Error: bad UTF-8 syntax"
        queued_id(bdat(c, b"Subject: o\r\n\r\nx\r\n", last=True))
    assert postern.queue_rows("SELECT orcpt FROM recipients") == [("utf-8;j\u00f6rg@b\u00fccher.example",)]


def test_dsn_parameter_errors(postern):
    start_smtpd(postern, smtpd_hard_error_limit="100")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        for params, reply in [
            ("RET=FOO", "501 5.5.4 Bad RET parameter syntax"),
            ("RET=FULL RET=HDRS", "501 5.5.4 Duplicate RET parameter"),
            ("ENVID=", "501 5.5.4 Bad ENVID parameter syntax"),
            ("ENVID=ab+zz", "501 5.5.4 Bad ENVID parameter syntax"),
            ("ENVID=ab+0A", "501 5.5.4 Bad ENVID parameter syntax"),      # decodes to a control char
            ("ENVID=" + "x" * 101, "501 5.5.4 Bad ENVID parameter syntax"),
            ("ENVID=a ENVID=b", "501 5.5.4 Duplicate ENVID parameter"),
        ]:
            assert c.cmd(f"MAIL FROM:<a@example.org> {params}") == reply, params
        assert c.cmd("MAIL FROM:<a@example.org> RET=hdrs ENVID=" + "x" * 100) == "250 2.1.0 Ok"
        for params, reply in [
            ("NOTIFY=", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("NOTIFY=SUCCESS,", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("NOTIFY=SOMETIMES", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
            ("NOTIFY=DELAY NOTIFY=FAILURE", "501 5.5.4 Error: Duplicate NOTIFY parameter"),
            ("ORCPT=rfc822", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("ORCPT=;a@b", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("ORCPT=rfc822;", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("ORCPT=rfc822;a+G0b", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
            ("ORCPT=rfc822;a+00b", "501 5.5.4 Error: Bad ORCPT parameter syntax"),   # NUL
            ("ORCPT=utf-8;j\\x{F6}rg@x", "501 5.5.4 Error: Bad ORCPT parameter syntax"),   # needs SMTPUTF8
            ("ORCPT=rfc822;a@b ORCPT=rfc822;c@d", "501 5.5.4 Error: Duplicate ORCPT parameter"),
        ]:
            assert c.cmd(f"RCPT TO:<ptest1@localhost> {params}") == reply, params
        assert c.cmd("RCPT TO:<ptest1@localhost> notify=delay,failure orcpt=RFC822;ptest1@localhost") == \
            "250 2.1.5 Ok"


# ---- smtpd_discard_ehlo_keywords --------------------------------------------------------------

def ehlo_keywords(c):
    c.send("EHLO client.test\r\n")
    code, lines = c.reply()
    assert code == 250
    return [l.split()[0] for l in lines[1:]]


def test_discarded_keywords_are_hidden_and_refused(postern):
    start_smtpd(postern, smtpd_discard_ehlo_keywords="chunking, dsn, smtputf8, size, vrfy, etrn",
                disable_vrfy_command="no")
    with raw(postern) as c:
        assert ehlo_keywords(c) == ["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"]
        assert c.cmd("MAIL FROM:<a@example.org> RET=FULL") == "501 5.7.1 DSN support is disabled"
        assert c.cmd("MAIL FROM:<a@example.org> ENVID=x") == "501 5.7.1 DSN support is disabled"
        assert c.cmd("MAIL FROM:<a@example.org> SMTPUTF8") == "555 5.5.4 Unsupported option: SMTPUTF8"
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=10") == "555 5.5.4 Unsupported option: SIZE=10"
        assert c.cmd("VRFY ptest1") == "502 5.5.1 VRFY command is disabled"
        assert c.cmd("ETRN example.org") == "502 5.5.1 Error: command not implemented"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost> NOTIFY=NEVER") == "501 5.7.1 DSN support is disabled"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        # BDAT is refused, and its chunk still read so that its bytes are not taken for commands.
        assert bdat(c, b"QUIT\r\n", last=True) == "502 5.5.1 Error: command not implemented"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    postern.wait_log("smtpd", r"discarding EHLO keywords: SIZE VRFY ETRN DSN SMTPUTF8 CHUNKING")


def test_enhancedstatuscodes_hidden_strips_codes_and_silent_discard(postern):
    start_smtpd(postern, smtpd_discard_ehlo_keywords="enhancedstatuscodes, silent-discard")
    with raw(postern) as c:
        assert "ENHANCEDSTATUSCODES" not in ehlo_keywords(c)
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 Ok"
        assert c.cmd("RCPT TO:<nosuchuser@localhost>").startswith("550 <nosuchuser@localhost>: ")
        assert c.cmd("FROB") == "500 Error: command not recognized"
    assert "discarding EHLO keywords" not in postern.log("smtpd")


def test_discard_keyword_address_maps(postern):
    # The table's value replaces smtpd_discard_ehlo_keywords for the matching client.
    start_smtpd(postern, smtpd_discard_ehlo_keywords="dsn",
                smtpd_discard_ehlo_keyword_address_maps="inline:{ {127.0.0.2 = chunking, pipelining} }")
    with raw(postern) as c:
        kws = ehlo_keywords(c)
        assert "DSN" not in kws and "CHUNKING" in kws
    with raw(postern, source="127.0.0.2") as c:
        kws = ehlo_keywords(c)
        assert "DSN" in kws and "CHUNKING" not in kws and "PIPELINING" not in kws


def test_command_filter_replaces_command_lines(postern):
    rules = postern.etc_dir / "command_filter"
    rules.write_text("/^(MAIL FROM:<[^>]*>) XYZZY=\\S+$/ $1\n"   # a broken client's MAIL parameter
                     "/^NOOP please$/ NOOP\n")
    start_smtpd(postern, smtpd_command_filter=f"regexp:{rules}")
    with raw(postern) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("NOOP please").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org> XYZZY=1") == "250 2.1.0 Ok"
        assert c.cmd("RSET").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org> FROB=1").startswith("555")   # no rule: as sent
    postern.wait_log("smtpd", r"localhost\[127\.0\.0\.1\]: replacing command \"MAIL FROM:<a@example\.org> XYZZY=1\" "
                     r"with \"MAIL FROM:<a@example\.org>\"")


def test_swaks_esmtp_with_discarded_chunking(postern):
    postern.start()
    postern.stop()
    postern.configure(smtpd_discard_ehlo_keywords="chunking")
    postern.start()
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{postern.smtp_port}", "--protocol", "ESMTP",
                        "--helo", "client.test", "--from", "a@example.org", "--to", "ptest1@localhost",
                        "--data", "Subject: via swaks\n\nswaks body\n"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "CHUNKING" not in r.stdout and "250-DSN" in r.stdout
    assert wait_until(lambda: "swaks body" in postern.mailbox("ptest1"), timeout=20)
