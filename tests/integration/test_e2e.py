"""End to end: a message sent with real clients (swaks, smtplib, sendmail) travels smtpd -> queue
-> qmgr -> local -> mailbox, and each role logs its Postfix-worded line for it."""

import email
import email.policy
import shutil
import subprocess

import pytest

from mailtest import queue_id


def swaks(postern, *args):
    if not shutil.which("swaks"):
        pytest.skip("swaks is not installed (tests/run-all installs it)")
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(postern.smtp_port),
                           "--helo", "client.test", *args], capture_output=True, text=True,
                          timeout=30)


def test_swaks_to_local_mbox(postern):
    postern.start()
    r = swaks(postern, "--from", "sender@example.org", "--to", "ptest1@localhost",
              "--header", "Subject: first mail", "--body", "Hello from swaks.\nFrom here on.\n")
    assert r.returncode == 0, r.stdout + r.stderr
    qid = queue_id(r.stdout)

    box = postern.wait_mailbox("ptest1", r"Hello from swaks\.")
    msg = email.message_from_string(box.split("\n", 1)[1], policy=email.policy.default)
    assert box.startswith("From sender@example.org ")
    assert msg["Return-Path"] == "<sender@example.org>"
    assert msg["Delivered-To"] == "ptest1@localhost"
    assert msg["Subject"] == "first mail"
    received = msg.get_all("Received")
    assert received and f"id {qid}" in received[0] and "(Postern)" in received[0]
    # mboxrd-style quoting of a body line starting with "From ".
    assert "\n>From here on." in box

    postern.wait_queue_empty()
    postern.wait_log("smtpd", rf"{qid}: client=\S+\[127\.0\.0\.1\]")
    postern.wait_log("smtpd", r"disconnect from \S+\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 "
                              r"quit=1 commands=5")
    postern.wait_log("qmgr", rf"{qid}: from=<sender@example\.org>, size=\d+, nrcpt=1")
    postern.wait_log("local", rf"{qid}: to=<ptest1@localhost>, relay=local, delay=[\d.]+, "
                              rf"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent")
    postern.wait_log("qmgr", rf"{qid}: removed")


def test_smtplib_multiple_recipients_and_alias(postern):
    postern.set_aliases("team: ptest1, ptest2\n")
    postern.start()
    code, text = postern.send("a@example.org", ["team@localhost", "ptest3@postern.test"],
                              b"Subject: to the team\r\n\r\nbody line\r\n")
    assert code == 250, text
    for user in ("ptest1", "ptest2", "ptest3"):
        postern.wait_mailbox(user, r"Subject: to the team")
    postern.wait_queue_empty()


def test_sendmail_local_submission_adds_headers(postern):
    postern.start()
    postern.sendmail(["-t", "-i"], user="ptest1",
                     input=b"To: ptest2@localhost\nSubject: via sendmail\n\nline one\n.\nline three\n")
    box = postern.wait_mailbox("ptest2", r"line three")
    msg = email.message_from_string(box.split("\n", 1)[1], policy=email.policy.default)
    assert msg["From"] and "ptest1@" in msg["From"]
    assert msg["Date"] and msg["Message-ID"]
    assert "from userid" in msg.get_all("Received")[0]
    # -i: the lone "." line is content, not the end of the message.
    assert "\n.\nline three" in box
    postern.wait_log("smtpd", r"[0-9A-Z]+: uid=\d+ from=<ptest1@")


def test_sendmail_f_and_recipient_arguments(postern):
    postern.start()
    postern.sendmail(["-f", "bounces@example.org", "-F", "Test Sender", "ptest3"],
                     input=b"Subject: args\n\nbody\n", user="ptest2")
    box = postern.wait_mailbox("ptest3", r"Subject: args")
    assert box.startswith("From bounces@example.org ")
    assert "Test Sender" in box


def test_unknown_local_user_is_rejected_at_rcpt(postern):
    postern.start()
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail("a@example.org")[0] == 250
        code, text = s.rcpt("nosuchuser@localhost")
    assert code == 550
    assert text.startswith(b"5.1.1")
    assert postern.queue_count() == 0
