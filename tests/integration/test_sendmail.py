"""test_sendmail_cli.py — postern-sendmail, postern-mailq and `posternctl queue` against the real
daemons (started by tests/integration/postern_harness.py with passed sockets, as root).

Covers what a user of the command line sees: -t with display names, groups and Bcc:, -bs,
-bv, -q, -bi, the sysexits codes of every refusal (nothing is dropped silently), and the mailq
listing of a deferred message in text and --json form. Run by `meson test --suite integration`.
"""

import json
import pathlib
import re
import subprocess

import pytest

import postern_harness as h
from mailtest import queue_id


EX_USAGE, EX_DATAERR, EX_TEMPFAIL = 64, 65, 75


@pytest.fixture
def postern(postern):
    postern.configure(message_size_limit="20000")
    return postern


def test_t_extracts_lists_and_removes_bcc(postern):
    postern.start()
    msg = (b'To: "Doe, Jane" <ptest1@localhost>, friends: ptest2 (second);\n'
           b"Bcc: Hidden <ptest3@localhost>\nSubject: lists\n\nhello lists\n")
    r = postern.sendmail(["-t", "-v"], input=msg, user="ptest1")
    assert queue_id(r.stderr)
    for user in ("ptest1", "ptest2", "ptest3"):
        box = postern.wait_mailbox(user, r"hello lists")
        assert not re.search(r"(?mi)^Bcc:", box)
        assert '"Doe, Jane" <ptest1@localhost>' in box


def test_grouped_flags_as_getopt_reads_them(postern):
    """-ti is -t -i (scripts write it so): a line holding only "." does not end the message, and the
    recipient comes from To:. -tf SENDER takes the value from the next argument, -Am its own."""
    postern.start()
    msg = b"To: ptest1@localhost\nSubject: grouped\n\nbefore the dot\n.\nafter the dot\n"
    postern.sendmail(["-ti", "-Am"], input=msg, user="ptest1")
    box = postern.wait_mailbox("ptest1", r"after the dot")
    assert "before the dot\n.\nafter the dot" in box.replace("\r\n", "\n")
    postern.sendmail(["-tif", "owner@example.org"], input=msg.replace(b"grouped", b"grouped-f"), user="ptest1")
    box = postern.wait_mailbox("ptest1", r"Subject: grouped-f")
    assert "Return-Path: <owner@example.org>" in box
    r = postern.sendmail(["-tz"], input=msg, user="ptest1", check=False)
    assert r.returncode == EX_USAGE and b"unknown option -z" in r.stderr


def test_myorigin_from_a_file_as_debian_sets_it(postern):
    """Debian's main.cf says myorigin = /etc/mailname: the name in that file is the domain of
    local submissions (taken literally it made every sender "ptest1@/etc/mailname" and every
    submission fail with 501 5.1.7)."""
    mailname = postern.etc_dir / "mailname"   # readable by everyone, as /etc/mailname
    mailname.write_text("origin.example\n")
    mailname.chmod(0o644)
    postern.configure(myorigin=str(mailname), mydestination="localhost, $myhostname, origin.example")
    postern.start()
    r = postern.sendmail(["ptest2"], input=b"Subject: mailname\n\nvia myorigin file\n", user="ptest1")
    assert r.returncode == 0, r.stderr
    box = postern.wait_mailbox("ptest2", r"via myorigin file")
    assert "Return-Path: <ptest1@origin.example>" in box
    assert "Delivered-To: ptest2@origin.example" in box


def test_bs_relays_smtp(postern):
    postern.start()
    r = postern.sendmail(["-bs"], user="ptest2", input=(
        b"EHLO me\r\nMAIL FROM:<ptest2@localhost>\r\nRCPT TO:<ptest1@localhost>\r\nDATA\r\n"
        b"Subject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n"))
    out = r.stdout.decode()
    assert out.startswith("220 ") and "queued as" in out and "221 " in out
    postern.wait_mailbox("ptest1", r"via -bs")


def test_bv_reports_each_address(postern):
    postern.start()
    r = postern.sendmail(["-bv", "ptest1", "ptest2@localhost"], user="ptest1")
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2 and all("deliverable" in l for l in lines)
    assert postern.queue_count() == 0


def test_refusals_have_sysexits_codes_and_say_not_sent(postern):
    postern.start()
    big = b"Subject: big\n\n" + b"x" * 30000 + b"\n"
    cases = [
        (["ptest1"], big, EX_DATAERR),
        ([], b"Subject: none\n\nx\n", EX_USAGE),
        (["-t"], b"Subject: no header recipients\n\nx\n", EX_USAGE),
        (["bad@@address"], b"Subject: x\n\nx\n", EX_DATAERR),
        (["-f"], b"", EX_USAGE),
    ]
    for args, data, code in cases:
        r = postern.sendmail(args, input=data, user="ptest1", check=False)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert r.stderr, args
    assert postern.queue_count() == 0


def test_no_server_is_a_temporary_failure(postern, tmp_path):
    cf = tmp_path / "main.cf"
    cf.write_text(f"postern_socket_directory = {tmp_path}/nothing-here\n")
    r = subprocess.run([h.binary("tools/sendmail/postern-sendmail"), "ptest1"], input=b"x\n",
                       env=dict(postern.env(), POSTERN_CONFIG=str(cf)), capture_output=True)
    assert r.returncode == EX_TEMPFAIL
    assert b"not sent" in r.stderr


def test_flush_and_newaliases(postern):
    postern.start()
    assert postern.sendmail(["-q"]).returncode == 0
    r = postern.sendmail(["-bi"])
    assert b"alias_maps" in r.stdout


def test_mailq_lists_a_deferred_message(postern):
    postern.start()
    # remote.slow.test times out in the test DNS zone: deferred, it stays in the queue with a reason.
    postern.sendmail(["someone@remote.slow.test"], input=b"Subject: wait\n\nx\n", user="ptest1")
    postern.wait_for(lambda: postern.queue_rows(
        "SELECT COUNT(*) FROM recipients WHERE state = 1")[0][0] == 1, 20, "a deferred recipient")
    ctl = h.binary("tools/posternctl/posternctl")
    mailq = pathlib.Path(postern.root) / "postern-mailq"
    mailq.symlink_to(h.binary("tools/sendmail/postern-sendmail"))
    env = dict(postern.env(), POSTERN_POSTERNCTL=ctl)
    text = subprocess.run([str(mailq)], env=env, capture_output=True, text=True, check=True).stdout
    assert text.startswith("-Queue ID-")
    assert re.search(r"(?m)^\s+\(.+\)$", text)               # the deferral reason
    assert re.search(r"(?m)^\s+someone@remote\.slow\.test$", text)
    assert re.search(r"(?m)^-- \d+ Kbytes in 1 Request\.$", text)
    js = subprocess.run([str(mailq), "--json"], env=env, capture_output=True, text=True,
                        check=True).stdout.splitlines()
    m = json.loads(js[0])
    assert m["sender"].startswith("ptest1@") and m["recipients"][0]["state"] == "deferred"
    assert m["recipients"][0]["reason"]
