"""postern-smtpd's submit listener (AF_UNIX, local sendmail): the peer's uid comes from
SO_PEERCRED, relay restrictions do not apply, and missing From:/Date:/Message-ID: are added."""

import pwd
import re
import subprocess
import sys

from mailtest import queue_id
from test_smtpd_helpers import queue_ids, content_of

CLIENT = r"""
import socket, sys
path, data = sys.argv[1], sys.stdin.buffer.read()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
s.settimeout(10)
s.sendall(data)
out = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
sys.stdout.buffer.write(out)
"""


def submit_as(postern, user, data):
    """Runs a client in a child process that switched to user; returns the server's replies."""
    r = subprocess.run(["/usr/bin/python3", "-c", CLIENT, str(postern.submit_path)], input=data,
                       capture_output=True, preexec_fn=postern._as_user(user), timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode(errors="replace")


def conversation(sender, rcpts, message):
    out = b"EHLO localhost\r\nMAIL FROM:<" + sender.encode() + b">\r\n"
    for r in rcpts:
        out += b"RCPT TO:<" + r.encode() + b">\r\n"
    return out + b"DATA\r\n" + message + b".\r\nQUIT\r\n"


def test_submit_adds_missing_headers(postern, local_users):
    postern.start("smtpd")
    uid = local_users["ptest1"].pw_uid
    replies = submit_as(postern, "ptest1", conversation(
        "ptest1@postern.test", ["friend@remote.test", "ptest2@localhost"],
        b"Subject: local\r\n\r\nhello from ptest1\r\n"))
    qid = queue_id(replies, whole_reply=True)
    assert replies.startswith("220 postern.test ESMTP Postern")
    body = content_of(postern, qid)
    head, _, rest = body.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == f"Received: by postern.test (Postern, from userid {uid})"
    assert re.fullmatch(rf"\tid {qid}; \w{{3}}, .*", lines[1])
    assert lines[2] == "Subject: local"
    assert 'From: "Postern Test ptest1" <ptest1@postern.test>' in lines
    assert any(re.fullmatch(r"Date: \w{3}, \d{1,2} \w{3} \d{4} .*", l) for l in lines)
    mid = [l for l in lines if l.startswith("Message-ID: ")]
    assert len(mid) == 1 and re.fullmatch(r"Message-ID: <.+@postern\.test>", mid[0])
    assert rest == "hello from ptest1\n"
    rows = postern.queue_rows("SELECT protocol, client_address, sender FROM messages")
    assert rows == [("LOCAL", None, "ptest1@postern.test")]
    assert sorted(r[0] for r in postern.queue_rows("SELECT address FROM recipients")) == \
        ["friend@remote.test", "ptest2@localhost"]
    postern.wait_log("smtpd", rf"{qid}: uid={uid} from=<ptest1@postern\.test>")
    postern.wait_log("smtpd", rf"{qid}: message-id=<.+@postern\.test>")
    assert f"{qid}: client=" not in postern.log("smtpd")


def test_submit_keeps_existing_headers(postern, local_users):
    postern.start("smtpd")
    replies = submit_as(postern, "ptest2", conversation(
        "ptest2@postern.test", ["ptest1@localhost"],
        b"From: Someone <ptest2@postern.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <given@x>\r\n\r\nbody\r\n"))
    qid = queue_id(replies)
    head = content_of(postern, qid).partition("\n\n")[0]
    assert head.count("From:") == 1 and "From: Someone <ptest2@postern.test>" in head
    assert head.count("Date:") == 1 and head.count("Message-ID:") == 1


def test_submit_headerless_body_gets_separator(postern, local_users):
    postern.start("smtpd")
    replies = submit_as(postern, "ptest3", conversation(
        "ptest3@postern.test", ["ptest1@localhost"], b"just a body line\r\nand another\r\n"))
    qid = queue_id(replies)
    body = content_of(postern, qid)
    head, sep, rest = body.partition("\n\n")
    assert sep and rest == "just a body line\nand another\n"
    assert "From: " in head and "Date: " in head and "Message-ID: " in head


def test_submit_as_root_logs_uid_zero(postern):
    postern.start("smtpd")
    replies = submit_as(postern, None, conversation("root@postern.test", ["ptest1@localhost"],
                                                    b"Subject: r\r\n\r\nx\r\n"))
    qid = queue_id(replies)
    postern.wait_log("smtpd", rf"{qid}: uid=0 from=<root@postern\.test>")
    assert "Received: by postern.test (Postern, from userid 0)" in content_of(postern, qid)
