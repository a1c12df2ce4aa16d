"""postern-smtpd content checks in the queueing step (Postfix's cleanup): header_checks and
body_checks actions (REJECT, DISCARD, HOLD, WARN, INFO, IGNORE, PREPEND, REPLACE, BCC, REDIRECT,
FILTER, DUNNO), folded headers, message_drop_headers, hopcount_limit,
always_add_missing_headers, and the message actions applied at commit (hold flag, discard,
recipients, filter column), checked in the queue database and in posternctl queue."""

import re

import pytest

import mailtest
from mailtest import queued_id
from test_smtpd_helpers import start_smtpd, queue_ids, content_of, send_message

SENDER = "a@example.org"
RCPT = "ptest1@localhost"


def write_table(postern, name, text):
    path = postern.root / name
    path.write_text(text)
    return f"regexp:{path}"


def start(postern, header=None, body=None, **params):
    if header is not None:
        params["header_checks"] = write_table(postern, "header_checks", header)
    if body is not None:
        params["body_checks"] = write_table(postern, "body_checks", body)
    start_smtpd(postern, **params)


def send(postern, message, rcpts=(RCPT,), sender=SENDER):
    """Sends one message with a raw client; returns the reply to the end of data."""
    return send_message(postern, message, rcpts=rcpts, sender=sender)


def headers_of(postern, qid):
    return content_of(postern, qid).split("\n\n", 1)[0]


def rcpts_of(postern, qid):
    return postern.queue_rows("SELECT r.address, r.notify FROM recipients r JOIN messages m "
                              "ON m.id = r.message_id WHERE m.queue_id = ? ORDER BY r.id", (qid,))


LOG_TAIL = r" from localhost\[127\.0\.0\.1\]; from=<a@example\.org> to=<ptest1@localhost> proto=ESMTP helo=<client\.test>"


def test_header_reject(postern):
    start(postern, header="/^Subject:.*casino/ REJECT No gambling here\n")
    reply = send(postern, "Subject: best casino\n\nbody")
    assert reply == "550 5.7.1 No gambling here"
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"[0-9A-Z]+: reject: header Subject: best casino" + LOG_TAIL +
                     r": 550 5\.7\.1 No gambling here")
    # The session goes on for the next message.
    assert queued_id(send(postern, "Subject: fine\n\nbody"))
    # mime/nested_header_checks default to $header_checks: no warning about them.
    assert "mime_header_checks" not in postern.log("smtpd")


def test_mime_header_checks_different_is_reported(postern):
    start(postern, header="/^X:/ WARN\n", mime_header_checks="")
    postern.wait_log("smtpd", r"mime_header_checks differs from header_checks; Postern does not parse "
                              r"MIME parts and ignores it")


def test_header_reject_default_text_and_folded_header(postern):
    start(postern, header="/^Subject: one\\s+two/ REJECT\n")
    # A folded header is matched as one logical line.
    reply = send(postern, "Subject: one\n\ttwo\n\nbody")
    assert reply == "550 5.7.1 Message content rejected"
    postern.wait_log("smtpd", r"reject: header Subject: one two" + LOG_TAIL)  # the tab is logged as a space
    assert queue_ids(postern) == []


def test_body_reject(postern):
    start(postern, body="/^bad line$/ REJECT body says no\n")
    assert send(postern, "Subject: x\n\ngood\nbad line\nmore") == "550 5.7.1 body says no"
    postern.wait_log("smtpd", r"reject: body bad line" + LOG_TAIL + r": 550 5\.7\.1 body says no")
    assert queue_ids(postern) == []


def test_body_checks_size_limit(postern):
    start(postern, body="/^bad line$/ REJECT\n", body_checks_size_limit=100)
    # The matching line starts beyond the first 100 bytes of body: not inspected.
    qid = queued_id(send(postern, "Subject: x\n\n" + ("x" * 60 + "\n") * 2 + "bad line"))
    assert "bad line" in content_of(postern, qid)


def test_discard_is_not_queued(postern):
    start(postern, header="/^X-Spam: yes/ DISCARD spam\n")
    reply = send(postern, "X-Spam: yes\nSubject: s\n\nbody")
    qid = queued_id(reply)   # the client is told it was queued
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", re.escape(qid) + r": discard: header X-Spam: yes" + LOG_TAIL + r": spam")


def test_hold_sets_the_queue_flag(postern):
    start(postern, header="/^Subject: review/ HOLD needs review\n")
    qid = queued_id(send(postern, "Subject: review me\n\nbody"))
    assert postern.queue_rows("SELECT hold FROM messages WHERE queue_id = ?", (qid,)) == [(1,)]
    postern.wait_log("smtpd", re.escape(qid) + r": hold: header Subject: review me" + LOG_TAIL +
                     r": needs review")
    out = postern.posternctl("queue").stdout
    assert qid + "!" in out, out


def test_warn_info_and_dunno(postern):
    start(postern, header="/^X-A:/ WARN look at this\n/^X-B:/ INFO noted\n/^X-C:/ DUNNO\n/^X-D:/ OK\n")
    qid = queued_id(send(postern, "X-A: 1\nX-B: 2\nX-C: 3\nX-D: 4\n\nbody"))
    h = headers_of(postern, qid)
    for line in ("X-A: 1", "X-B: 2", "X-C: 3", "X-D: 4"):
        assert line in h.split("\n")
    postern.wait_log("smtpd", re.escape(qid) + r": warning: header X-A: 1" + LOG_TAIL + r": look at this")
    postern.wait_log("smtpd", re.escape(qid) + r": info: header X-B: 2" + LOG_TAIL + r": noted")
    assert "X-C: 3 from" not in postern.log("smtpd")


def test_ignore_replace_prepend_headers(postern):
    start(postern, header="/^X-Secret:/ IGNORE\n"
                          "/^Subject: \\[ext\\] (.*)/ REPLACE Subject: $1\n"
                          "/^X-Mailer:/ PREPEND X-Checked: yes\n")
    qid = queued_id(send(postern, "X-Secret: a\n b folded\nSubject: [ext] hello\nX-Mailer: m\n\nbody"))
    lines = headers_of(postern, qid).split("\n")
    assert not any("X-Secret" in l or "folded" in l for l in lines), lines
    assert "Subject: hello" in lines
    i = lines.index("X-Checked: yes")
    assert lines[i + 1] == "X-Mailer: m"
    assert content_of(postern, qid).endswith("\n\nbody\n")


def test_body_ignore_replace_prepend(postern):
    start(postern, body="/^drop me$/ IGNORE\n/^old (.*)$/ REPLACE new $1\n/^mark$/ PREPEND before mark\n")
    qid = queued_id(send(postern, "Subject: b\n\na\ndrop me\nold text\nmark\nz"))
    body = content_of(postern, qid).split("\n\n", 1)[1]
    assert body == "a\nnew text\nbefore mark\nmark\nz\n"


def test_bcc_and_redirect_recipients(postern):
    start(postern, header="/^X-Copy:/ BCC audit@example.net\n/^X-Copy-Again:/ BCC audit@example.net\n"
                          "/^X-Move:/ REDIRECT boss@example.net\n")
    qid = queued_id(send(postern, "X-Copy: 1\nX-Copy-Again: 1\n\nbody"))
    # One extra recipient (duplicates ignored), with NOTIFY=NEVER (1).
    assert rcpts_of(postern, qid) == [(RCPT, 0), ("audit@example.net", 1)]
    qid = queued_id(send(postern, "X-Move: 1\nX-Copy: 1\n\nbody", rcpts=(RCPT, "ptest2@localhost")))
    assert rcpts_of(postern, qid) == [("boss@example.net", 0)]
    postern.wait_log("smtpd", re.escape(qid) + r": redirect: header X-Move: 1 from .*: boss@example\.net")


def test_filter_column(postern):
    start(postern, body="/^scan me$/ FILTER scanner:[127.0.0.1]:10025\n")
    qid = queued_id(send(postern, "Subject: f\n\nscan me"))
    assert postern.queue_rows("SELECT filter FROM messages WHERE queue_id = ?", (qid,)) == \
        [("scanner:[127.0.0.1]:10025",)]
    qid = queued_id(send(postern, "Subject: f\n\nplain"))
    assert postern.queue_rows("SELECT filter FROM messages WHERE queue_id = ?", (qid,)) == [(None,)]


def test_bad_action_is_logged_and_ignored(postern):
    start(postern, header="/^Subject:/ FROBNICATE\n/^X-P:/ PREPEND not a header\n")
    qid = queued_id(send(postern, "Subject: s\nX-P: 1\n\nbody"))
    assert "Subject: s" in headers_of(postern, qid)
    postern.wait_log("smtpd", r"header_checks regexp:\S+: \"FROBNICATE\": unknown action; ignoring it")
    postern.wait_log("smtpd", r"\"PREPEND not a header\": the text is not a message header")


def test_bad_table_is_a_configuration_error(postern):
    path = postern.root / "broken"
    path.write_text("/unclosed REJECT\n")
    postern.configure(header_checks=f"regexp:{path}")
    with pytest.raises(Exception):
        postern.start("smtpd")
    assert "header_checks" in postern.log("smtpd")


def test_message_drop_headers(postern):
    start(postern)
    qid = queued_id(send(postern, "Bcc: hidden@example.net\nReturn-Path: <x@y>\nContent-Length: 5\n"
                               "Resent-Bcc: r@example.net\nSubject: kept\n\nbody"))
    h = headers_of(postern, qid)
    for name in ("Bcc:", "Return-Path:", "Content-Length:", "Resent-Bcc:"):
        assert name not in h, h
    assert "Subject: kept" in h


def test_message_drop_headers_configurable(postern):
    start(postern, message_drop_headers="x-internal")
    qid = queued_id(send(postern, "X-Internal: 1\nBcc: b@example.net\n\nbody"))
    h = headers_of(postern, qid)
    assert "X-Internal" not in h and "Bcc: b@example.net" in h


def test_hopcount_limit(postern):
    start(postern, hopcount_limit=5)
    # Four Received: headers plus ours make five: refused.
    hops = "".join(f"Received: from h{i}.example by x; Sat, 1 Jan 2000 00:00:00 +0000\n" for i in range(4))
    assert send(postern, hops + "Subject: loop\n\nbody") == "554 5.4.0 Error: too many hops"
    postern.wait_log("smtpd", r"[0-9A-Z]+: message rejected: hopcount exceeded")
    assert queue_ids(postern) == []
    # One fewer passes.
    assert queued_id(send(postern, hops.split("\n", 1)[1] + "Subject: ok\n\nbody"))


def test_always_add_missing_headers(postern):
    start(postern)
    qid = queued_id(send(postern, "Subject: bare\n\nbody"))
    h = headers_of(postern, qid)
    assert "From:" not in h and "Date:" not in h and "Message-ID:" not in h and "To:" not in h
    postern.stop()


def test_always_add_missing_headers_yes(postern):
    start(postern, always_add_missing_headers="yes")
    qid = queued_id(send(postern, "Subject: bare\n\nbody"))
    lines = headers_of(postern, qid).split("\n")
    assert "From: a@example.org" in lines
    assert "To: undisclosed-recipients:;" in lines
    assert any(re.fullmatch(r"Date: \w{3}, .*", l) for l in lines), lines
    assert any(re.fullmatch(r"Message-ID: <.+@postern\.test>", l) for l in lines), lines
    # The null sender gives MAILER-DAEMON@$myorigin.
    qid = queued_id(send(postern, "Subject: bounce\n\nbody", sender=""))
    assert "From: MAILER-DAEMON@postern.test" in headers_of(postern, qid).split("\n")
    # Present headers are not added twice; Cc: counts as a recipient header.
    qid = queued_id(send(postern, "From: me@x\nCc: c@x\nDate: Sat, 1 Jan 2000 00:00:00 +0000\n"
                               "Message-ID: <1@x>\n\nbody"))
    lines = headers_of(postern, qid).split("\n")
    assert [l.split(":")[0] for l in lines[3:]] == ["From", "Cc", "Date", "Message-ID"], lines


def test_undisclosed_recipients_header_setting(postern):
    start(postern, always_add_missing_headers="yes", undisclosed_recipients_header="To: list:;")
    qid = queued_id(send(postern, "Subject: s\n\nbody"))
    assert "To: list:;" in headers_of(postern, qid).split("\n")


def test_drop_header_after_prepend(postern):
    # message_drop_headers apply after header_checks, to the original header only.
    start(postern, header="/^Bcc:/ PREPEND X-Had-Bcc: yes\n")
    qid = queued_id(send(postern, "Bcc: hidden@example.net\nSubject: s\n\nbody"))
    lines = headers_of(postern, qid).split("\n")
    assert "X-Had-Bcc: yes" in lines and "Subject: s" in lines
    assert not any(l.startswith("Bcc:") for l in lines), lines


def test_smtplib_client_and_local_submission(postern, local_users):
    # A real client library, and a local submission through sendmail: both pass the checks.
    start(postern, header="/^Subject: hold me/ HOLD\n/^X-Copy:/ BCC ptest2@localhost\n")
    qid = mailtest.send(postern, SENDER, [RCPT], b"Subject: hold me\r\nX-Copy: 1\r\n\r\nbody\r\n")
    assert postern.queue_rows("SELECT hold FROM messages WHERE queue_id = ?", (qid,)) == [(1,)]
    assert [r[0] for r in rcpts_of(postern, qid)] == [RCPT, "ptest2@localhost"]

    r = postern.sendmail(["-t"], input=b"To: ptest1@localhost\nSubject: hold me too\n\nbody\n", user="ptest1")
    assert r.returncode == 0, r.stderr
    postern.wait_log("smtpd", r"[0-9A-Z]+: hold: header Subject: hold me too from local\[uid=\d+\]; "
                              r"from=<ptest1@\S+> to=<ptest1@localhost> proto=LOCAL")
    assert postern.queue_rows("SELECT count(*) FROM messages WHERE hold = 1") == [(2,)]
