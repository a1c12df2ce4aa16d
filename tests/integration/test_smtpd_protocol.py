"""postern-smtpd: the SMTP command set, reply codes, limits and bad input (RFC 5321, Postfix
wording). Only smtpd runs; messages stay in the queue."""

import os
import re
import socket
import time

from test_smtpd_helpers import Raw, raw, start_smtpd, queue_ids


def test_greeting_and_ehlo_keywords(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        assert c.greeting == (220, ["postern.test ESMTP Postern"])
        code, lines = (c.send("EHLO client.test\r\n"), c.reply())[1]
        assert code == 250
        assert lines[0] == "postern.test"
        kws = [l.split()[0] for l in lines[1:]]
        assert kws == ["PIPELINING", "SIZE", "ETRN", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8",
                       "CHUNKING"]
        assert "SIZE 10240000" in lines
        for absent in ("VRFY", "STARTTLS", "AUTH"):
            assert absent not in kws
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
        assert c.is_closed()


def test_helo_and_ehlo_syntax(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        assert c.cmd("HELO client.test") == "250 postern.test"
        assert c.cmd("EHLO") == "501 5.5.4 Syntax: EHLO hostname"
        assert c.cmd("HELO   ") == "501 5.5.4 Syntax: HELO hostname"
        c.send("ehlo lower.case\r\n")
        assert c.reply()[0] == 250


def test_commands_are_case_insensitive(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.send("eHlO client.test\r\n")
        assert c.reply()[0] == 250
        assert c.cmd("mAiL fRoM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("rcpt to:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("rSeT") == "250 2.0.0 Ok"
        assert c.cmd("noop") == "250 2.0.0 Ok"
        assert c.cmd("quit") == "221 2.0.0 Bye"


def test_sequencing_errors(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("DATA") == "503 5.5.1 Error: need RCPT command"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("MAIL FROM:<a@example.org>") == "503 5.5.1 Error: nested MAIL command"
        assert c.cmd("DATA") == "503 5.5.1 Error: need RCPT command"
        assert c.cmd("RCPT TO:<nosuchuser@localhost>").startswith("550 5.1.1 ")
        assert c.cmd("DATA") == "554 5.5.1 Error: no valid recipients"
        assert c.cmd("DATA extra") == "501 5.5.4 Syntax: DATA"
        # EHLO resets the transaction.
        c.cmd("EHLO again.test")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"


def test_helo_required(postern):
    start_smtpd(postern, smtpd_helo_required="yes")
    with raw(postern) as c:
        assert c.cmd("MAIL FROM:<a@example.org>") == "503 5.5.1 Error: send HELO/EHLO first"
        c.cmd("HELO client.test")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"


def test_unknown_and_empty_commands(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        assert c.cmd("FROB nicate") == "500 5.5.2 Error: command not recognized"
        assert c.cmd("") == "500 5.5.2 Error: bad syntax"
        assert c.cmd("   ") == "500 5.5.2 Error: bad syntax"
        assert c.cmd("\x01\x02 garbage".encode("latin-1")) == "500 5.5.2 Error: command not recognized"
        # smtputf8_enable = yes: malformed UTF-8 is refused before the verb is looked at (Postfix).
        assert c.cmd("\x01\x02\xff garbage".encode("latin-1")) == "500 5.5.2 Error: bad UTF-8 syntax"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_not_offered_extensions(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("STARTTLS") == "502 5.5.1 Error: command not implemented"
        assert c.cmd("AUTH PLAIN AGFAYg==") == "503 5.5.1 Error: authentication not enabled"
        # ETRN is offered (as by Postfix); example.org is not in fast_flush_domains ($relay_domains)
        assert c.cmd("ETRN example.org") == "459 4.3.0 <example.org>: service unavailable"
        assert c.cmd("HELP").startswith("214 2.0.0 ")


def test_mail_parameters(postern):
    start_smtpd(postern, message_size_limit="100000")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=100001") == "552 5.3.4 Message size exceeds fixed limit"
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=12x") == "501 5.5.4 Bad message size syntax"
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=99999999999999999999999") == \
            "501 5.5.4 Bad message size syntax"
        assert c.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME").startswith("501 5.5.4 ")
        assert c.cmd("MAIL FROM:<a@example.org> FOO=bar") == "555 5.5.4 Unsupported option: FOO=bar"
        assert c.cmd("MAIL FROM:<a@example.org> SMTPUTF8=yes") == "555 5.5.4 Unsupported option: SMTPUTF8=yes"
        assert c.cmd("MAIL FROM:<a@example.org> SIZE=100000 BODY=8bitmime") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost> FOO=NEVER") == \
            "555 5.5.4 Unsupported option: FOO=NEVER"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("MAIL FROM:<>") == "250 2.1.0 Ok"


def test_address_syntax_errors(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM <a@example.org>") == "501 5.5.4 Syntax: MAIL FROM:<address>"
        assert c.cmd("MAIL").startswith("501 5.5.4 Syntax: MAIL FROM:<address>")
        r = c.cmd("MAIL FROM:<a@example.org")
        assert r.startswith("501 5.1.7 Bad sender address syntax"), r
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT <ptest1@localhost>") == "501 5.5.4 Syntax: RCPT TO:<address>"
        for bad in ("<>", "<a b@localhost>", "<user@@localhost>", "<user@dom@localhost>",
                    "<@>", "<" + "x" * 70 + "@localhost>", "<user@" + "d" * 300 + ".test>",
                    "<user@-bad-.test>", "<user@[300.1.1.1]>"):
            r = c.cmd("RCPT TO:" + bad)
            assert r.startswith("501 5.1.3 Bad recipient address syntax"), (bad, r)
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_rset_and_noop(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RSET now") == "501 5.5.4 Syntax: RSET"
        assert c.cmd("RSET") == "250 2.0.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "503 5.5.1 Error: need MAIL command"
        assert c.cmd("NOOP whatever") == "250 2.0.0 Ok"


def test_vrfy_disabled_by_default(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        assert c.cmd("VRFY ptest1") == "502 5.5.1 VRFY command is disabled"


def test_vrfy_enabled(postern):
    start_smtpd(postern, disable_vrfy_command="no")
    with raw(postern) as c:
        c.send("EHLO client.test\r\n")
        code, lines = c.reply()
        assert "VRFY" in lines
        assert c.cmd("VRFY ptest1@localhost") == "252 2.0.0 <ptest1@localhost>"
        assert c.cmd("VRFY <ptest2@postern.test>") == "252 2.0.0 <ptest2@postern.test>"
        assert c.cmd("VRFY nosuchuser@localhost").startswith("550 5.1.1 <nosuchuser@localhost>: ")
        assert c.cmd("VRFY") == "501 5.5.4 Syntax: VRFY address"


def test_unknown_local_user(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RCPT TO:<nosuchuser@localhost>") == (
            "550 5.1.1 <nosuchuser@localhost>: Recipient address rejected: "
            "User unknown in local recipient table")
        assert c.cmd("RCPT TO:<PTEST1@LOCALHOST>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest2@postern.test>") == "250 2.1.5 Ok"
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.1\.1 "
                     r"<nosuchuser@localhost>: Recipient address rejected: User unknown in local "
                     r"recipient table; from=<a@example.org> to=<nosuchuser@localhost> "
                     r"proto=ESMTP helo=<client.test>")


def test_unknown_local_user_reject_code_and_aliases(postern):
    postern.set_aliases("postmaster: ptest1\nlist: ptest1, ptest2\n")
    start_smtpd(postern, unknown_local_recipient_reject_code="450", recipient_delimiter="+")
    with raw(postern) as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RCPT TO:<nosuchuser@localhost>").startswith("450 4.1.1 <nosuchuser@localhost>: ")
        assert c.cmd("RCPT TO:<list@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest1+tag@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<Postmaster>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<nosuch+ptest1@localhost>").startswith("450 4.1.1 ")


def test_empty_local_recipient_maps_disables_check(postern):
    start_smtpd(postern, local_recipient_maps="")
    with raw(postern) as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RCPT TO:<whoever@localhost>") == "250 2.1.5 Ok"


def test_too_many_recipients(postern):
    start_smtpd(postern, smtpd_recipient_limit="3")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        for i in range(3):
            assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest2@localhost>") == "452 4.5.3 Error: too many recipients"


def test_hard_error_limit(postern):
    start_smtpd(postern, smtpd_hard_error_limit="3")
    with raw(postern) as c:
        for _ in range(3):
            assert c.cmd("BOGUS").startswith("500 5.5.2")
        assert c.cmd("NOOP") == "421 4.7.0 postern.test Error: too many errors"
        assert c.is_closed()
    postern.wait_log("smtpd", r"too many errors after .* from localhost\[127\.0\.0\.1\]")
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.1\] unknown=0/3 commands=0/3")


def test_timeout(postern):
    start_smtpd(postern, smtpd_timeout="1s")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        t0 = time.monotonic()
        assert c.text() == "421 4.4.2 postern.test Error: timeout exceeded"
        assert 0.5 < time.monotonic() - t0 < 5
        assert c.is_closed()
    postern.wait_log("smtpd", r"timeout after EHLO from localhost\[127\.0\.0\.1\]")


def test_timeout_during_data(postern):
    start_smtpd(postern, smtpd_timeout="1s")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<ptest1@localhost>")
        assert c.cmd("DATA").startswith("354 ")
        c.send("Subject: half a message\r\n")
        assert c.text() == "421 4.4.2 postern.test Error: timeout exceeded"
        assert c.is_closed()
    assert queue_ids(postern) == []


def test_overlong_command_line(postern):
    start_smtpd(postern, line_length_limit="1000")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<" + "a" * 3000 + "@example.org>") == "500 5.5.0 Error: line too long"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        # A huge line without any newline, sent in pieces, then the newline.
        for _ in range(20):
            c.send(b"X" * 10000)
        assert c.cmd("") == "500 5.5.0 Error: line too long"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_nul_bytes_in_commands(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        assert c.cmd(b"EHLO cli\x00ent.test").startswith("500 5.5.2 ")
        assert c.cmd(b"\x00\x00\x00").startswith("500 5.5.2 ")
        c.cmd("EHLO client.test")
        assert c.cmd(b"MAIL FROM:<a\x00@example.org>").startswith("500 5.5.2 ")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"


def test_random_garbage_does_not_hurt(postern):
    start_smtpd(postern, smtpd_hard_error_limit="1000", smtpd_junk_command_limit="1000")
    for seed in range(5):
        junk = os.urandom(20000)
        try:
            with raw(postern) as c:
                c.send(junk + b"\r\nQUIT\r\n")
                c.is_closed(timeout=3)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            pass
    with raw(postern) as c:
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert postern.running("smtpd")


def test_pipelining_replies_in_order(postern):
    start_smtpd(postern, smtpd_forbid_unauth_pipelining="no")   # EHLO, DATA pipelined on purpose
    with raw(postern) as c:
        c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\n"
               "RCPT TO:<nosuchuser@localhost>\r\nRCPT TO:<ptest2@localhost>\r\nDATA\r\n")
        assert c.reply()[0] == 250
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "250 2.1.5 Ok"
        assert c.text().startswith("550 5.1.1 ")
        assert c.text() == "250 2.1.5 Ok"
        assert c.text().startswith("354 ")
        c.send("Subject: pipelined\r\n\r\nhello\r\n.\r\nMAIL FROM:<b@example.org>\r\n"
               "RCPT TO:<ptest3@localhost>\r\nDATA\r\nSubject: second\r\n\r\nagain\r\n.\r\nQUIT\r\n")
        r1 = c.text()
        assert r1.startswith("250 2.0.0 Ok: queued as "), r1
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "250 2.1.5 Ok"
        assert c.text().startswith("354 ")
        r2 = c.text()
        assert r2.startswith("250 2.0.0 Ok: queued as "), r2
        assert c.text() == "221 2.0.0 Bye"
        assert c.is_closed()
    assert len(queue_ids(postern)) == 2
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=2 rcpt=3/4 "
                     r"data=2 quit=1 commands=9/10")


def test_fingerprint_all_rejected(postern):
    postern.configure(mynetworks="127.0.0.1/32",
                      smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination",
                      smtpd_forbid_unauth_pipelining="no")   # EHLO, DATA pipelined on purpose
    postern.start("smtpd")
    with raw(postern, source="127.0.0.2") as c:
        c.send("EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@remote.test>\r\n"
               "DATA\r\nRSET\r\nQUIT\r\n")
        replies = [c.text() for _ in range(6)]
        assert replies[2] == "554 5.7.1 <x@remote.test>: Relay access denied"
        assert replies[3] == "554 5.5.1 Error: no valid recipients"
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.2\] ehlo=1 mail=1 rcpt=0/1 "
                     r"data=0/1 rset=1 quit=1 commands=4/6")


def test_connect_and_lost_connection_logged(postern):
    start_smtpd(postern)
    c = raw(postern)
    c.cmd("EHLO client.test")
    c.close()
    postern.wait_log("smtpd", r"connect from localhost\[127\.0\.0\.1\]")
    postern.wait_log("smtpd", r"lost connection after EHLO from localhost\[127\.0\.0\.1\]")
    postern.wait_log("smtpd", r"disconnect from localhost\[127\.0\.0\.1\] ehlo=1 commands=1")


def test_client_that_does_not_read_replies(postern):
    """A client that pipelines a flood and never reads must not make smtpd buffer without bound
    or block other sessions."""
    start_smtpd(postern, smtpd_junk_command_limit="100000000", smtpd_forbid_unauth_pipelining="no")
    flood = socket.create_connection(("127.0.0.1", postern.smtp_port))
    flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flood.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            sent += flood.send(b"NOOP\r\n" * 10000)
        except BlockingIOError:
            time.sleep(0.05)   # pacing: the flood's socket buffer is full
    with raw(postern) as c:
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    flood.close()


def test_reload_applies_to_new_sessions(postern):
    start_smtpd(postern, smtpd_recipient_limit="2")
    old = raw(postern)
    old.cmd("HELO client.test")
    postern.configure(smtpd_recipient_limit="1")
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"reload")
    with raw(postern) as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest2@localhost>") == "452 4.5.3 Error: too many recipients"
    # The session that started before the reload keeps its settings.
    old.cmd("MAIL FROM:<a@example.org>")
    assert old.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert old.cmd("RCPT TO:<ptest2@localhost>") == "250 2.1.5 Ok"
    old.close()


def test_many_concurrent_sessions(postern):
    start_smtpd(postern)
    conns = [raw(postern) for _ in range(300)]
    for c in conns:
        c.send("EHLO client.test\r\n")
    for c in conns:
        assert c.reply()[0] == 250
    for c in conns:
        c.close()
    with raw(postern) as c:
        assert c.cmd("NOOP") == "250 2.0.0 Ok"


def test_large_pipelined_batch(postern):
    """More replies than the output high-water mark: all arrive, in order."""
    start_smtpd(postern, smtpd_junk_command_limit="1000000", smtpd_forbid_unauth_pipelining="no")
    n = 20000
    with raw(postern, timeout=30) as c:
        c.send(b"NOOP\r\n" * n + b"QUIT\r\n")
        for _ in range(n):
            assert c.text() == "250 2.0.0 Ok"
        assert c.text() == "221 2.0.0 Bye"


def test_local_recipient_table_failure_is_temporary(postern):
    start_smtpd(postern, local_recipient_maps=f"texthash:{postern.root}/missing-table")
    with raw(postern) as c:
        c.cmd("HELO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "451 4.3.0 <ptest1@localhost>: Temporary lookup failure"
        # Remote recipients (relayed for mynetworks) do not depend on the table.
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
