"""postern-smtpd DATA phase: end-of-data rule and SMTP smuggling, dot-unstuffing, LF-form
content, Received: header, size and header limits, and the commit-before-250 rule."""

import concurrent.futures
import re
import smtplib
import subprocess

import pytest

from mailtest import queued_id
from test_smtpd_helpers import queue_write_locked, raw, raw_message, start_smtpd, queue_ids, content_of, open_data


def test_message_is_in_queue_when_250_arrives(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        open_data(c)
        c.send("Subject: durable\r\n\r\nbody\r\n.\r\n")
        qid = queued_id(c.text())
        # Checked at once, before anything else happens: the commit preceded the reply.
        rows = postern.queue_rows("SELECT queue_id, sender, protocol, client_address, client_name, helo "
                                  "FROM messages")
        assert rows == [(qid, "a@example.org", "ESMTP", "127.0.0.1", "localhost", "client.test")]
        assert postern.queue_rows("SELECT address, state FROM recipients") == [("ptest1@localhost", 0)]
        assert "Subject: durable" in content_of(postern, qid)
    postern.wait_log("smtpd", re.escape(qid) + r": client=localhost\[127\.0\.0\.1\]")
    postern.wait_log("smtpd", re.escape(qid) + r": from=<a@example\.org>, size=\d+, nrcpt=1")


def test_received_header_and_lf_form(postern):
    start_smtpd(postern)
    qid = queued_id(raw_message(postern, "Subject: x\r\nMessage-ID: <m1@client.test>\r\n\r\n"
                                         "line one\r\n..dotted\r\n.\r\n"))
    body = content_of(postern, qid)
    assert "\r" not in body
    lines = body.split("\n")
    assert re.fullmatch(r"Received: from client\.test \(localhost \[127\.0\.0\.1\]\)", lines[0])
    assert lines[1] == f"\tby postern.test (Postern) with ESMTP id {qid}"
    assert re.fullmatch(r"\tfor <ptest1@localhost>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}.*",
                        lines[2]), lines[2]
    assert lines[3:] == ["Subject: x", "Message-ID: <m1@client.test>", "", "line one", ".dotted", ""]
    postern.wait_log("smtpd", re.escape(qid) + r": message-id=<m1@client\.test>")


def test_received_header_without_for_and_with_helo(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        open_data(c, rcpts=("ptest1@localhost", "ptest2@localhost"), helo="HELO old.client")
        c.send("Subject: two\r\n\r\nhi\r\n.\r\n")
        qid = queued_id(c.text())
    body = content_of(postern, qid)
    assert body.startswith("Received: from old.client (localhost [127.0.0.1])\n"
                           f"\tby postern.test (Postern) with SMTP id {qid}; ")
    assert "for <" not in body.split("\n\n")[0]
    assert postern.queue_rows("SELECT protocol FROM messages") == [("SMTP",)]


def test_body_type_stored(postern):
    start_smtpd(postern)
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<a@example.org> BODY=8BITMIME") == "250 2.1.0 Ok"
        c.cmd("RCPT TO:<ptest1@localhost>")
        c.cmd("DATA")
        c.send("Subject: 8bit\r\n\r\n\xe9t\xe9\r\n.\r\n".encode("latin-1"))
        queued_id(c.text())
    assert postern.queue_rows("SELECT body_type FROM messages") == [("8BITMIME",)]


@pytest.mark.parametrize("ending", [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\n.\r\r\n"],
                         ids=["LF.LF", "CRLF.LF", "LF.CRLF", "CR.CRLF", "LF.CRCRLF"])
def test_smtp_smuggling_is_impossible(postern, ending):
    start_smtpd(postern)
    smuggled = (b"MAIL FROM:<smuggler@example.org>\r\nRCPT TO:<ptest2@localhost>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsmuggled body\r\n")
    with raw(postern) as c:
        open_data(c)
        c.send(b"Subject: outer\r\n\r\nouter body" + ending + smuggled + b".\r\n")
        qid = queued_id(c.text())
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
        assert c.is_closed()
    assert queue_ids(postern) == [qid]
    body = content_of(postern, qid)
    assert "MAIL FROM:<smuggler@example.org>" in body
    assert "Subject: smuggled" in body
    assert postern.queue_rows("SELECT address FROM recipients") == [("ptest1@localhost",)]


def test_bare_lf_lines_normalised(postern):
    start_smtpd(postern)
    qid = queued_id(raw_message(postern, b"Subject: lf\nX-Other: y\r\n\nbare\nmixed\r\n.\n.\r\nend\r\n.\r\n"))
    body = content_of(postern, qid)
    assert body.split("\n", 3)[3] == "Subject: lf\nX-Other: y\n\nbare\nmixed\n.\n.\nend\n"


def test_forbid_bare_newline_yes(postern):
    start_smtpd(postern, smtpd_forbid_bare_newline="yes", smtpd_forbid_bare_newline_exclusions="")
    with raw(postern) as c:
        open_data(c)
        c.send(b"Subject: lf\nbody\r\n.\r\n")
        assert c.text() == "521 5.5.2 postern.test Error: bare <LF> received"
        assert c.is_closed()
    assert queue_ids(postern) == []
    with raw(postern) as c:
        c.send(b"NOOP\n")
        assert c.text() == "521 5.5.2 postern.test Error: bare <LF> received"


def test_forbid_bare_newline_no_behaves_like_normalize(postern):
    """Postfix's "no" is accepted (it used to stop every daemon from starting); Postern treats
    it as normalize: bare LFs are stored as line ends and only CRLF.CRLF ends the message."""
    start_smtpd(postern, smtpd_forbid_bare_newline="no")
    with raw(postern) as c:
        open_data(c)
        c.send(b"Subject: lf\nbare\n.\nnot the end\r\n.\n.\r\nstill not\r\n.\r\n")
        qid = queued_id(c.text())
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    body = content_of(postern, qid)
    assert body.split("\n", 3)[3] == "Subject: lf\n\nbare\n.\nnot the end\n.\n.\nstill not\n"
    assert queue_ids(postern) == [qid]


def test_forbid_bare_newline_exclusions(postern):
    """With yes, clients matching smtpd_forbid_bare_newline_exclusions (default $mynetworks)
    get normalize; everyone else gets 521."""
    start_smtpd(postern, smtpd_forbid_bare_newline="yes", mynetworks="127.0.0.1/32",
                smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination")
    qid = queued_id(raw_message(postern, b"Subject: lf\nbody\r\n.\r\n", source="127.0.0.1"))
    assert content_of(postern, qid).split("\n", 3)[3] == "Subject: lf\n\nbody\n"
    with raw(postern, source="127.0.0.2") as c:
        open_data(c)
        c.send(b"Subject: lf\nbody\r\n.\r\n")
        assert c.text() == "521 5.5.2 postern.test Error: bare <LF> received"
        assert c.is_closed()
    assert queue_ids(postern) == [qid]


def test_forbid_bare_newline_exclusions_explicit(postern):
    start_smtpd(postern, smtpd_forbid_bare_newline="yes", mynetworks="127.0.0.1/32",
                smtpd_forbid_bare_newline_exclusions="127.0.0.3")
    with raw(postern, source="127.0.0.3") as c:
        c.send(b"NOOP\n")
        assert c.text() == "250 2.0.0 Ok"
    with raw(postern, source="127.0.0.1") as c:
        c.send(b"NOOP\n")
        assert c.text() == "521 5.5.2 postern.test Error: bare <LF> received"


def test_dot_first_line_ends_empty_message(postern):
    start_smtpd(postern)
    qid = queued_id(raw_message(postern, b".\r\n"))
    body = content_of(postern, qid)
    assert body.count("\n") == 3   # just our Received: header


def test_message_too_big(postern):
    start_smtpd(postern, message_size_limit="2000")
    with raw(postern) as c:
        open_data(c)
        c.send(b"Subject: big\r\n\r\n" + b"0123456789" * 100 + b"\r\n")
        c.send((b"x" * 70 + b"\r\n") * 100 + b".\r\n")
        assert c.text() == "552 5.3.4 Message size exceeds fixed limit"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        # The next transaction in the same session works.
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        c.cmd("RCPT TO:<ptest1@localhost>")
        c.cmd("DATA")
        c.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
        qid = queued_id(c.text())
    assert queue_ids(postern) == [qid]
    postern.wait_log("smtpd", r"reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 552 5\.3\.4")


def test_long_data_lines_kept_whole(postern):
    start_smtpd(postern, line_length_limit="1000")
    long_line = b"L" * 50000
    qid = queued_id(raw_message(postern, b"Subject: long\r\n\r\n" + long_line + b"\r\n.." + long_line
                                         + b"\r\nshort\r\n.\r\n"))
    body = content_of(postern, qid)
    assert ("\n" + "L" * 50000 + "\n." + "L" * 50000 + "\nshort\n") in body


def test_long_line_split_at_cr_boundary(postern):
    """A long line whose CR arrives in one segment and LF in the next is still one CRLF line."""
    start_smtpd(postern, line_length_limit="1000")
    with raw(postern) as c:
        open_data(c)
        c.send(b"Subject: cr\r\n\r\n" + b"A" * 5000 + b"\r")
        import time
        time.sleep(0.2)   # pacing: CR and LF must reach smtpd in separate reads
        c.send(b"\n.\r\n")
        qid = queued_id(c.text())
    assert content_of(postern, qid).endswith("\n" + "A" * 5000 + "\n")


def test_header_size_limit_is_not_fatal(postern):
    start_smtpd(postern, header_size_limit="1024")
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(100))
    qid = queued_id(raw_message(postern, headers + b"\r\nbody\r\n.\r\n"))
    assert "X-H99: " in content_of(postern, qid)


def test_client_disconnect_during_data_queues_nothing(postern):
    start_smtpd(postern)
    c = raw(postern)
    open_data(c)
    c.send(b"Subject: cut\r\n\r\npartial\r\n")
    c.close()
    postern.wait_log("smtpd", r"lost connection after DATA from localhost\[127\.0\.0\.1\]")
    assert queue_ids(postern) == []
    with raw(postern) as c2:
        assert c2.cmd("NOOP") == "250 2.0.0 Ok"


def test_several_messages_one_session(postern):
    start_smtpd(postern)
    ids = []
    with smtplib.SMTP("127.0.0.1", postern.smtp_port, local_hostname="client.test") as s:
        for i in range(5):
            s.sendmail("a@example.org", ["ptest1@localhost"], f"Subject: {i}\r\n\r\nbody {i}\r\n")
        s.rset()
    assert len(queue_ids(postern)) == 5


def test_swaks(postern):
    start_smtpd(postern)
    r = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(postern.smtp_port),
                        "--from", "swaks@example.org", "--to", "ptest1@localhost",
                        "--helo", "swaks.test", "--header", "Subject: via swaks",
                        "--body", "Hello from swaks."], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Z]+)", r.stdout)
    assert m, r.stdout
    body = content_of(postern, m.group(1))
    assert body.startswith("Received: from swaks.test (localhost [127.0.0.1])\n")
    assert "Subject: via swaks" in body and "Hello from swaks." in body


def test_concurrent_sessions_group_commit(postern):
    start_smtpd(postern)

    def one(i):
        with smtplib.SMTP("127.0.0.1", postern.smtp_port, local_hostname="c.test", timeout=30) as s:
            s.sendmail(f"s{i}@example.org", ["ptest1@localhost"], f"Subject: {i}\r\n\r\nbody\r\n")
        return i

    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as ex:
        assert sorted(ex.map(one, range(200))) == list(range(200))
    assert len(queue_ids(postern)) == 200


def test_wakeup_sent_to_qmgr(postern):
    """After a commit smtpd sends request=wakeup to the qmgr socket (here the harness's listener,
    since qmgr is not running)."""
    import socket
    import time
    start_smtpd(postern)
    qmgr_sock = dict(postern.listeners["qmgr"])["qmgr"]
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: wake\r\n\r\nx\r\n")
    qmgr_sock.settimeout(5)
    conn, _ = qmgr_sock.accept()
    conn.settimeout(5)
    data = b""
    deadline = time.monotonic() + 5
    while b"\n\n" not in data and time.monotonic() < deadline:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.close()
    assert data.startswith(b"request=wakeup\n")


def test_commit_failure_answers_451_and_loop_keeps_running(postern):
    """While the queue is locked by someone else the commit waits (other sessions are served
    meanwhile); when it finally fails the client gets 451 4.3.0, never 250."""
    import time
    start_smtpd(postern)
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: first\r\n\r\nx\r\n")   # creates the db
    with queue_write_locked(postern):
        with raw(postern, timeout=60) as c:
            open_data(c)
            c.send(b"Subject: blocked\r\nMessage-ID: <blocked@client.test>\r\n\r\nx\r\n.\r\n")
            postern.wait_log("smtpd", r"message-id=<blocked@client\.test>")   # in the commit path
            with raw(postern) as other:
                assert other.cmd("NOOP") == "250 2.0.0 Ok"
            reply = c.text()
            assert reply == "451 4.3.0 Error: queue file write error", reply
            assert c.cmd("NOOP") == "250 2.0.0 Ok"
    assert len(queue_ids(postern)) == 1
    postern.wait_log("smtpd", r"queue write failed|Group commit failed")
