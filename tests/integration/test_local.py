"""postern-local: mbox and Maildir delivery, aliases, extensions, loops, locking, crash safety.

Most tests drive postern-local directly over its IPC socket (request=deliver, as postern-qmgr
does) for messages that postern-smtpd queued while no qmgr runs, so each result can be checked
exactly. The kill -9 test runs the whole chain.
"""

import grp
import os
import pathlib
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time

import pytest

import postern_harness
from postern_harness import ipc_call

HOST = "postern.test"


# --- helpers -----------------------------------------------------------------------------------
def message(subject, body="hello\n", extra_headers=""):
    return (f"From: Sender <sender@example.org>\r\nTo: someone@{HOST}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\n{extra_headers}\r\n"
            + body.replace("\n", "\r\n")).encode()


def queue_message(p, sender, rcpts, msg):
    """Queues msg (stored in LF form, as smtpd stores it) with the real queue module, no qmgr
    running; returns (queue_id, [rcpt ids])."""
    out = subprocess.run([postern_harness.binary("daemons/local/test-local-inject"), str(p.queue_dir),
                          sender] + list(rcpts), input=msg.replace(b"\r\n", b"\n"),
                         capture_output=True, check=True).stdout.decode().split()
    os.chown(p.queue_dir / "queue.db", 0, 0)
    return out[0], [int(x) for x in out[1:]]


def deliver(p, qid, rcpts, sender="sender@example.org", socket="local"):
    """Sends request=deliver for [(address, rcpt_id)] to the socket (local, virtual) and returns
    the reply as a dict."""
    now = int(time.time() * 1e6)
    attrs = [("request", "deliver"), ("queue_id", qid), ("sender", sender),
             ("arrival", now - 1000), ("active", now - 500), ("nexthop", HOST),
             ("count", len(rcpts))]
    for i, (addr, rid) in enumerate(rcpts):
        attrs += [(f"rcpt.{i}", addr), (f"rcpt_id.{i}", rid)]
    return ipc_call(p.socket_dir / socket, attrs, timeout=60)


def results(reply):
    assert reply.get("status") == "ok", reply
    return [(reply.get(f"action.{i}"), reply.get(f"dsn.{i}"), reply.get(f"diag.{i}"))
            for i in range(int(reply["count"]))]


@pytest.fixture
def local(postern):
    """postern-local alone (no qmgr): tests queue messages and drive local themselves."""
    postern.configure(recipient_delimiter="+")
    return postern


def start(p):
    p.start("local")
    return p


def home(user):
    return pathlib.Path(pwd.getpwnam(user).pw_dir)


# --- tests -------------------------------------------------------------------------------------
def test_mbox_delivery(local):
    p = start(local)
    body = "first line\nFrom the start of a line\n>From already quoted\nlast line\n"
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("mbox one", body))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)])) == \
        [("delivered", "2.0.0", "delivered to mailbox")]

    text = p.mailbox("ptest1")
    assert re.match(r"From sender@example\.org  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n"
                    r"Return-Path: <sender@example\.org>\n"
                    rf"X-Original-To: ptest1@{re.escape(HOST)}\n"
                    rf"Delivered-To: ptest1@{re.escape(HOST)}\n", text), text[:300]
    assert "\n>From the start of a line\n" in text
    assert "\n>>From already quoted\n" not in text and "\n>From already quoted\n" in text
    assert text.endswith("last line\n\n")
    assert "\r" not in text
    st = os.stat(p.spool_dir / "ptest1")
    assert st.st_uid == pwd.getpwnam("ptest1").pw_uid
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert not (p.spool_dir / "ptest1.lock").exists()
    m = p.wait_log("local", rf"{qid}: to=<ptest1@{re.escape(HOST)}>, relay=local, delay=[\d.]+, "
                   r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(delivered to mailbox\)")
    assert "orig_to" not in m.group(0)


def test_null_sender_from_line(local):
    p = start(local)
    qid, (rid,) = queue_message(p, "", [f"ptest2@{HOST}"], message("bounce-like"))
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)], sender=""))[0][0] == "delivered"
    text = p.mailbox("ptest2")
    assert text.startswith("From MAILER-DAEMON  ")
    assert "\nReturn-Path: <>\n" in text


def test_redelivery_is_not_duplicated(local):
    """A request repeated for the same queue id and recipient (qmgr retried because the answer
    was lost) must not write a second copy."""
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("once only"))
    for _ in range(3):
        assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert p.mailbox("ptest1").count("Message-ID: <once-only@example.org>") == 1


def test_maildir_delivery(local):
    local.configure(home_mailbox="Maildir/")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest2@{HOST}"], message("maildir one"))
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)])) == \
        [("delivered", "2.0.0", "delivered to maildir")]
    md = home("ptest2") / "Maildir"

    def ours(sub):   # the test homes are shared: look only at this message's files
        return [f for f in (md / sub).iterdir() if f"Q{qid}R" in f.name]
    files = ours("new")
    assert len(files) == 1, files
    uid = pwd.getpwnam("ptest2").pw_uid
    for d in ("tmp", "new", "cur"):
        assert (md / d).stat().st_uid == uid
        assert stat.S_IMODE((md / d).stat().st_mode) == 0o700
    assert ours("tmp") == []
    f = files[0]
    assert f.stat().st_uid == uid
    assert f"Q{qid}R{rid}." in f.name
    text = f.read_text()
    assert text.startswith(f"Return-Path: <sender@example.org>\nX-Original-To: ptest2@{HOST}\n"
                           f"Delivered-To: ptest2@{HOST}\n")
    assert "Message-ID: <maildir-one@example.org>" in text
    assert not p.mailbox("ptest2")
    # A repeated request finds the earlier file (also when the user moved it to cur/).
    f.rename(md / "cur" / (f.name + ":2,S"))
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)]))[0][0] == "delivered"
    assert ours("new") == []
    p.wait_log("local", rf"{qid}: to=<ptest2@{re.escape(HOST)}>.*status=sent \(delivered to maildir\)")


def test_home_mailbox_file(local):
    local.configure(home_mailbox="Mailbox")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest3@{HOST}"], message("home mbox"))
    assert results(deliver(p, qid, [(f"ptest3@{HOST}", rid)]))[0][0] == "delivered"
    text = (home("ptest3") / "Mailbox").read_text()
    assert text.startswith("From sender@example.org  ")
    assert (home("ptest3") / "Mailbox").stat().st_uid == pwd.getpwnam("ptest3").pw_uid


def test_alias_to_user(local):
    local.set_aliases("team: ptest2\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("alias user"))
    assert results(deliver(p, qid, [(f"team@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    text = p.mailbox("ptest2")
    assert f"\nDelivered-To: ptest2@{HOST}\n" in text
    assert not p.mailbox("ptest1")
    p.wait_log("local", rf"{qid}: to=<ptest2@{re.escape(HOST)}>, orig_to=<team@{re.escape(HOST)}>, "
               r"relay=local, .*status=sent \(delivered to mailbox\)")


def test_alias_to_list(local):
    local.set_aliases("# the team\nall: ptest1, ptest2,\n  ptest3, ptest1\nself: self, ptest1\n"
                      "ptest3: ptest3\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("alias list"))
    assert results(deliver(p, qid, [(f"all@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    for u in ("ptest1", "ptest2", "ptest3"):
        # ptest1 is listed twice: one copy. ptest3 aliases to itself: its own mailbox.
        assert p.mailbox(u).count("Message-ID: <alias-list@example.org>") == 1, u


def test_alias_to_unknown_name_and_self(local):
    local.set_aliases("ptest1: ptest1, nosuchuser\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("alias self"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert (action, dsn) == ("bounced", "5.1.1"), diag
    assert 'unknown user: "nosuchuser"' in diag
    assert p.mailbox("ptest1").count("Message-ID: <alias-self@example.org>") == 1


def test_alias_forward_to_remote(local):
    local.set_aliases("fwd: ptest1, friend@remote.example\nowner-fwd: ptest2\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("forward me"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"fwd@{HOST}", rid)]))
    assert (action, dsn) == ("delivered", "2.0.0"), diag
    assert "Message-ID: <forward-me@example.org>" in p.mailbox("ptest1")
    rows = p.queue_rows("SELECT m.queue_id, m.sender, r.address FROM messages m "
                        "JOIN recipients r ON r.message_id = m.id WHERE m.queue_id != ?", (qid,))
    assert len(rows) == 1, rows
    new_id, new_sender, new_rcpt = rows[0]
    assert new_rcpt == "friend@remote.example"
    assert new_sender == f"owner-fwd@{HOST}"
    content = p.queue_rows("SELECT c.data FROM content c JOIN messages m ON m.id = c.message_id "
                           "WHERE m.queue_id = ?", (new_id,))[0][0]
    content = bytes(content).decode() if not isinstance(content, str) else content
    assert content.startswith(f"Delivered-To: fwd@{HOST}\n")
    assert "Message-ID: <forward-me@example.org>" in content
    p.wait_log("local", rf"{qid}: to=<friend@remote\.example>, orig_to=<fwd@{re.escape(HOST)}>.*"
               rf"status=sent \(forwarded as {new_id}\)")
    # Asked again (answer lost), the forward is not queued twice.
    results(deliver(p, qid, [(f"fwd@{HOST}", rid)]))
    assert p.queue_rows("SELECT COUNT(*) FROM messages")[0][0] == 2


def test_unknown_user_bounces(local):
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("unknown"))
    assert results(deliver(p, qid, [(f"NoSuchUser@{HOST}", rid)])) == \
        [("bounced", "5.1.1", 'unknown user: "nosuchuser"')]
    p.wait_log("local", rf"{qid}: to=<nosuchuser@{re.escape(HOST)}>, .*dsn=5\.1\.1, "
               r"status=bounced \(unknown user: \"nosuchuser\"\)")


def test_two_recipients_same_indexes(local):
    p = start(local)
    qid, ids = queue_message(p, "sender@example.org", [f"ptest1@{HOST}", f"ptest2@{HOST}"],
                             message("two rcpts"))
    r = deliver(p, qid, [(f"ptest1@{HOST}", ids[0]), ("nobody-here@" + HOST, 999999),
                         (f"ptest2@{HOST}", ids[1])])
    assert [x[0] for x in results(r)] == ["delivered", "bounced", "delivered"]
    assert [r[f"rcpt_id.{i}"] for i in range(3)] == [str(ids[0]), "999999", str(ids[1])]


def test_delivered_to_loop(local):
    p = start(local)
    msg = message("looping", extra_headers=f"Delivered-To: PTest1@{HOST}\r\n")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], msg)
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)])) == \
        [("bounced", "5.4.6", f"mail forwarding loop for ptest1@{HOST}")]
    assert p.mailbox("ptest1") == ""


def test_extension_address(local):
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1+lists@{HOST}"], message("ext"))
    assert results(deliver(p, qid, [(f"ptest1+Lists@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert f"\nDelivered-To: ptest1+lists@{HOST}\n" in p.mailbox("ptest1")


def test_extension_alias(local):
    local.set_aliases("team: ptest3\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("ext alias"))
    assert results(deliver(p, qid, [(f"team+x@{HOST}", rid)]))[0][0] == "delivered"
    assert "Message-ID: <ext-alias@example.org>" in p.mailbox("ptest3")


def test_alias_commands_and_files(local):
    drop = local.root / "drop"
    drop.mkdir()
    os.chmod(drop, 0o1777)
    local.set_aliases(f'cmd: "|/bin/cat > {drop}/cmd.out; id -un > {drop}/cmd.user"\n'
                      f"file: {drop}/file.mbox\n"
                      'tempfail: "|exit 75"\nnouser: "|exit 67"\nweird: "|echo oops; exit 3"\n'
                      'include: :include:/etc/nothing\n')
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"],
                                message("cmd", "From here\nbody\n"))
    r = results(deliver(p, qid, [(f"cmd@{HOST}", rid), (f"file@{HOST}", rid + 1),
                                 (f"tempfail@{HOST}", rid + 2), (f"nouser@{HOST}", rid + 3),
                                 (f"weird@{HOST}", rid + 4), (f"include@{HOST}", rid + 5)]))
    assert r[0] == ("delivered", "2.0.0", f"delivered to command: /bin/cat > {drop}/cmd.out; "
                                          f"id -un > {drop}/cmd.user"), r
    assert r[1] == ("delivered", "2.0.0", f"delivered to file: {drop}/file.mbox"), r
    assert r[2][:2] == ("deferred", "4.3.0"), r
    assert r[3][:2] == ("bounced", "5.1.1"), r
    assert r[4][:2] == ("bounced", "5.3.0") and "oops" in r[4][2], r
    # a missing :include: file (test_local_forward.py has the rest of :include:)
    assert r[5] == ("bounced", "5.3.5", "mail system configuration error"), r
    out = (drop / "cmd.out").read_text()
    assert out.startswith("From sender@example.org  ")
    assert f"\nDelivered-To: cmd@{HOST}\n" in out and "\nFrom here\n" in out
    assert (drop / "cmd.user").read_text().strip() == "nobody"
    mbox = (drop / "file.mbox").read_text()
    assert "\n>From here\n" in mbox and mbox.endswith("\n\n")
    assert (drop / "file.mbox").stat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_alias_commands_restricted(local):
    local.configure(allow_mail_to_commands="forward", allow_mail_to_files="forward")
    local.set_aliases('cmd: "|/bin/true"\nfile: /tmp/postern-should-not-exist\n')
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("restricted"))
    r = results(deliver(p, qid, [(f"cmd@{HOST}", rid), (f"file@{HOST}", rid + 1)]))
    assert [x[:2] for x in r] == [("bounced", "5.7.1"), ("bounced", "5.7.1")], r
    assert not os.path.exists("/tmp/postern-should-not-exist")


def test_missing_message(local):
    p = start(local)
    # Before any queue exists: a temporary failure for every recipient.
    (action, dsn, _), = results(deliver(p, "4QF2K1C0X7ABZ", [(f"ptest1@{HOST}", 1)]))
    assert (action, dsn) == ("deferred", "4.3.0")
    queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("other"))
    r = deliver(p, "4QF2K1C0X7ABZ", [(f"ptest1@{HOST}", 1)])
    assert r.get("status") == "error", r
    assert "no such message" in r.get("reason", "")
    bad = ipc_call(p.socket_dir / "local", [("request", "deliver"), ("queue_id", "x y")])
    assert bad.get("status") == "error"
    # Still serving.
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("after"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"


def test_mailbox_size_limit(local):
    local.configure(mailbox_size_limit=20000)
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("small"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"
    size = os.path.getsize(p.spool_dir / "ptest1")
    qid2, (rid2,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"],
                                  message("too big", ("y" * 70 + "\n") * 300))
    (action, dsn, diag), = results(deliver(p, qid2, [(f"ptest1@{HOST}", rid2)]))
    assert (action, dsn) == ("bounced", "5.2.2"), diag
    # Nothing partial left behind.
    assert os.path.getsize(p.spool_dir / "ptest1") == size


def test_concurrent_deliveries_not_interleaved(local):
    local.configure(message_size_limit=50000000)
    p = start(local)
    n = 6
    queued = []
    for i in range(n):
        body = "".join(f"message {i} line {j:06d} " + "z" * 60 + "\n" for j in range(20000))
        queued.append(queue_message(p, "sender@example.org", [f"ptest1@{HOST}"],
                                    message(f"conc {i}", body)))
    replies = [None] * n

    def run(i):
        qid, (rid,) = queued[i]
        replies[i] = deliver(p, qid, [(f"ptest1@{HOST}", rid)])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(results(r)[0][0] == "delivered" for r in replies), replies
    text = p.mailbox("ptest1")
    msgs = re.split(r"(?m)^From sender@example\.org  ", text)[1:]
    assert len(msgs) == n
    for m in msgs:
        i = int(re.search(r"Subject: conc (\d+)", m).group(1))
        lines = [ln for ln in m.split("\n") if ln.startswith("message ")]
        assert len(lines) == 20000
        assert all(ln.startswith(f"message {i} line ") for ln in lines)
        assert lines == sorted(lines)


def deliver_batch(p, items, socket="local"):
    """One request=deliver for recipients of several messages, as postern-qmgr sends the messages
    that queued up for one recipient: items are (queue id, address, rcpt id, sender); the first
    message's envelope is request-wide, the others' are queue_id.N, sender.N, arrival.N, active.N."""
    now = int(time.time() * 1e6)
    qid0, _, _, sender0 = items[0]
    attrs = [("request", "deliver"), ("queue_id", qid0), ("sender", sender0),
             ("arrival", now - 1000), ("active", now - 500), ("nexthop", HOST),
             ("count", len(items))]
    for i, (qid, addr, rid, sender) in enumerate(items):
        attrs += [(f"rcpt.{i}", addr), (f"rcpt_id.{i}", rid)]
        if i > 0:
            attrs += [(f"queue_id.{i}", qid), (f"sender.{i}", sender),
                      (f"arrival.{i}", now - 2000 * i), (f"active.{i}", now - 500)]
    return ipc_call(p.socket_dir / socket, attrs, timeout=120)


def queue_batch(p, n, subject, body="hello\n"):
    """n messages for ptest1, each from its own sender; returns deliver_batch() items."""
    items = []
    for i in range(n):
        sender = f"s{i}@example.org"
        qid, (rid,) = queue_message(p, sender, [f"ptest1@{HOST}"], message(f"{subject} {i}", body))
        items.append((qid, f"ptest1@{HOST}", rid, sender))
    return items


def test_batch_of_messages_for_one_mailbox(local):
    """Several messages for one recipient in one request: one entry per message in the mbox, each
    with its own From_ line, Return-Path: and content, one status=sent line per message (with its
    own queue id), and a repeated request writes nothing again."""
    p = start(local)
    items = queue_batch(p, 5, "batch")
    assert results(deliver_batch(p, items)) == [("delivered", "2.0.0", "delivered to mailbox")] * 5
    text = p.mailbox("ptest1")
    entries = re.split(r"(?m)^(?=From s\d@example\.org  )", text)[1:]
    assert len(entries) == 5, text[:2000]
    for i, e in enumerate(entries):
        assert e.startswith(f"From s{i}@example.org  "), e[:200]
        assert f"\nReturn-Path: <s{i}@example.org>\nX-Original-To: ptest1@{HOST}\n" \
               f"Delivered-To: ptest1@{HOST}\n" in e
        assert f"Message-ID: <batch-{i}@example.org>" in e
        assert e.count("Message-ID:") == 1 and e.endswith("hello\n\n")
    for qid, _, _, _ in items:
        p.wait_log("local", rf"{qid}: to=<ptest1@{re.escape(HOST)}>, relay=local, delay=[\d.]+, "
                   r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(delivered to mailbox\)")
    for qid, _, rid, _ in items:
        marker = (marker_dir(p) / f"{qid}.{rid}").read_text()
        assert marker.endswith("/ptest1\n") and marker.count("\n") == 1, marker
    # qmgr lost the answer: the same batch again is recognised message by message
    assert [r[0] for r in results(deliver_batch(p, items))] == ["delivered"] * 5
    assert p.mailbox("ptest1") == text


def test_batch_one_message_fails_the_others_go_in(local):
    """Within a batch each message has its own outcome: one over mailbox_size_limit bounces and
    leaves nothing behind, the ones before and after it are delivered; a message no longer in the
    queue is deferred on its own."""
    local.configure(mailbox_size_limit=20000)
    p = start(local)
    items = queue_batch(p, 1, "fits")
    big = queue_batch(p, 1, "too big", ("y" * 70 + "\n") * 300)
    after = queue_batch(p, 1, "fits after")
    gone = [("4QF2K1C0X7ABZ", f"ptest1@{HOST}", 999999, "gone@example.org")]
    res = results(deliver_batch(p, items + big + gone + after))
    assert [r[:2] for r in res] == [("delivered", "2.0.0"), ("bounced", "5.2.2"),
                                    ("deferred", "4.3.0"), ("delivered", "2.0.0")], res
    text = p.mailbox("ptest1")
    assert "Subject: fits 0" in text and "Subject: fits after 0" in text
    assert "too big" not in text and "yyyy" not in text
    assert re.fullmatch(r"(From s0@example\.org  [^\n]*\n(?:(?!From )[^\n]*\n)*){2}", text), text


def kill_local_while_writing(p, items, writing, socket="local"):
    """Sends items in one request, kills postern-local with SIGKILL once writing() is true, waits
    for the orphaned child to finish and record every message in its marker, restarts
    postern-local and repeats the request (as qmgr does): every message is answered delivered."""
    t = threading.Thread(target=lambda: deliver_batch(p, items, socket), daemon=True)
    t.start()
    p.wait_for(writing, 60, "the delivery child writing")
    p.kill("local")
    p.wait_for(lambda: all((marker_dir(p) / f"{q}.{r}").exists() and
                           (marker_dir(p) / f"{q}.{r}").stat().st_size > 0 for q, _, r, _ in items),
               120, "the markers of every message")
    p.restart("local")
    assert [r[0] for r in results(deliver_batch(p, items, socket))] == ["delivered"] * len(items)


def test_kill9_mid_batch_exactly_once(local):
    """postern-local is killed with SIGKILL while a batch child writes: the child finishes alone,
    and the request repeated after the restart (as qmgr does) delivers each message exactly once."""
    local.configure(message_size_limit=50000000)
    p = start(local)
    body = "".join(f"line {j:06d} " + "q" * 80 + "\n" for j in range(40000))
    items = queue_batch(p, 8, "k9 batch", body)
    mbox = p.spool_dir / "ptest1"
    kill_local_while_writing(p, items, lambda: mbox.exists() and mbox.stat().st_size > 0)
    text = p.mailbox("ptest1")
    ids = re.findall(r"Message-ID: <(k9-batch-\d)@example\.org>", text)
    assert sorted(ids) == [f"k9-batch-{i}" for i in range(8)], ids
    assert text.count("line 039999 ") == 8


def maildir_files(user, qids):
    """The files in user's Maildir/new of the messages qids (the test homes are shared)."""
    new = home(user) / "Maildir" / "new"
    return [f for f in new.iterdir() if any(f"Q{q}R" in f.name for q in qids)] if new.exists() else []


def queue_for_users(p, users, per_user, subject, body="hello\n"):
    """per_user messages for each of users, one recipient each; returns deliver_batch() items."""
    items = []
    for i in range(per_user):
        for u in users:
            qid, (rid,) = queue_message(p, f"{u}-s{i}@example.org", [f"{u}@{HOST}"],
                                        message(f"{subject} {u} {i}", body))
            items.append((qid, f"{u}@{HOST}", rid, f"{u}-s{i}@example.org"))
    return items


def test_maildir_deliveries_of_several_users_share_a_child(local):
    """Maildir deliveries to several users (here in one request) are written by one child that
    switches to each user in turn: every file belongs to its user, in that user's Maildir, named
    with the one child's pid; each message has its own result, marker and log line, and the
    repeated request writes nothing again."""
    local.configure(home_mailbox="Maildir/")
    p = start(local)
    users = ("ptest1", "ptest2", "ptest3")
    items = queue_for_users(p, users, 2, "shared")
    assert results(deliver_batch(p, items)) == [("delivered", "2.0.0", "delivered to maildir")] * 6
    pids = set()
    for u in users:
        qids = [q for q, addr, _, _ in items if addr.startswith(u + "@")]
        files = maildir_files(u, qids)
        assert len(files) == 2, files
        for f in files:
            assert f.stat().st_uid == pwd.getpwnam(u).pw_uid
            assert f"Delivered-To: {u}@{HOST}\n" in f.read_text()
            pids.add(re.search(r"P(\d+)Q", f.name).group(1))
    assert len(pids) == 1, pids
    for qid, addr, rid, _ in items:
        p.wait_log("local", rf"{qid}: to=<{re.escape(addr)}>.*status=sent \(delivered to maildir\)")
        assert (marker_dir(p) / f"{qid}.{rid}").read_text().endswith("/Maildir/\n")
    assert [r[0] for r in results(deliver_batch(p, items))] == ["delivered"] * 6
    for u in users:
        assert len(maildir_files(u, [q for q, _, _, _ in items])) == 2


def test_many_maildir_deliveries_are_spread_over_one_child_per_cpu(local):
    """24 Maildir deliveries that arrive together (one request) are not all written by one child:
    a child mostly waits for the disk, so they go to one child per CPU (each at least
    LOCAL_MAILDIR_SHARE_MIN = 8 of them), and every message still arrives once."""
    local.configure(home_mailbox="Maildir/")
    p = start(local)
    users = ("ptest1", "ptest2", "ptest3")
    items = queue_for_users(p, users, 8, "spread")
    assert results(deliver_batch(p, items)) == [("delivered", "2.0.0", "delivered to maildir")] * 24
    pids = []
    for u in users:
        files = maildir_files(u, [q for q, addr, _, _ in items if addr.startswith(u + "@")])
        assert len(files) == 8, files
        pids += [re.search(r"P(\d+)Q", f.name).group(1) for f in files]
    per = max(8, 24 // os.sysconf("SC_NPROCESSORS_ONLN") + 1)   # as maildir_flush() computes it
    assert len(set(pids)) == -(-24 // per), sorted(set(pids))


def test_kill9_mid_shared_maildir_child_exactly_once(local):
    """postern-local is killed with SIGKILL while a child writes the Maildirs of several users:
    the child finishes alone, and the request repeated after the restart delivers each message
    exactly once."""
    local.configure(home_mailbox="Maildir/", message_size_limit=50000000)
    p = start(local)
    users = ("ptest1", "ptest2", "ptest3")
    body = "".join(f"line {j:06d} " + "m" * 80 + "\n" for j in range(40000))
    items = queue_for_users(p, users, 3, "k9 shared", body)
    qids = [q for q, _, _, _ in items]
    kill_local_while_writing(p, items, lambda: maildir_files("ptest1", qids))
    for u in users:
        files = maildir_files(u, qids)
        assert len(files) == 3, files
        assert all(f.read_text().count("line 039999 ") == 1 for f in files)


def test_local_forks_its_children_from_a_single_thread(local):
    """postern-local forks delivery children, so no other thread may be running when it does: a
    thread holding a lock at the fork (an allocator lock under ASan, which is not fork-safe)
    leaves the child hanging at its next allocation. The host name lookup at start, which once
    left glibc's getaddrinfo_a() helper thread behind for seconds, is over and joined before the
    first delivery."""
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("one thread", "x\n"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"
    tasks = sorted(os.listdir(f"/proc/{p.pid('local')}/task"))
    assert tasks == [str(p.pid("local"))], f"postern-local runs {len(tasks)} threads"


def test_overlapping_requests_in_opposite_orders_do_not_wait_on_each_other(local):
    """The same recipients in two requests at once, in opposite orders (a dead qmgr's request
    still queued on the socket while the new qmgr asks again): the two children lock the markers
    in one order, so one waits for the other and finds the messages delivered, instead of each
    holding one marker and retrying the other's until deliver_lock_attempts run out."""
    local.configure(home_mailbox="Maildir/", deliver_lock_attempts=4, deliver_lock_delay="2s",
                    message_size_limit=50000000)
    p = start(local)
    body = "".join(f"line {j:06d} " + "o" * 80 + "\n" for j in range(20000))
    items = queue_for_users(p, ("ptest1", "ptest2"), 3, "opposite", body)
    replies = [None, None]

    def run(i, batch):
        replies[i] = deliver_batch(p, batch)

    threads = [threading.Thread(target=run, args=(0, items)),
               threading.Thread(target=run, args=(1, items[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in replies:
        assert [x[:2] for x in results(r)] == [("delivered", "2.0.0")] * len(items), r
    qids = [q for q, _, _, _ in items]
    for u in ("ptest1", "ptest2"):
        assert len(maildir_files(u, qids)) == 3


def children_in_state(pid, states):
    """PIDs of pid's children whose /proc state letter is in states."""
    found = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] in states:
            found.append(int(d.name))
    return found


def test_a_hanging_maildir_holds_up_other_users_only_briefly(local):
    """One user's Maildir hangs: the child writing it, which also has another user's delivery,
    is stopped at its mkdir() there (strace injects SIGSTOP and goes away, leaving it stopped as a
    dead NFS server would). After LOCAL_SHARED_CHILD_TIMEOUT_SEC (10 s), not daemon_timeout
    (100 s), the child is killed and the deliveries go on one user per child: both arrive, once."""
    local.configure(home_mailbox="Maildir/", daemon_timeout="100s")
    p = start(local)
    hung = home("ptest2") / "Maildir" / "tmp"
    strace = subprocess.Popen(["strace", "-f", "-qq", "-o", "/dev/null", "-p", str(p.pid("local")),
                               "-e", "trace=mkdir", "-P", str(hung), "-e", "inject=mkdir:signal=SIGSTOP"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1)   # strace attaches asynchronously and has no ready signal
        assert strace.poll() is None, strace.stderr.read()
        items = queue_for_users(p, ("ptest2", "ptest3"), 1, "hang")
        t0 = time.monotonic()
        reply = []
        t = threading.Thread(target=lambda: reply.append(deliver_batch(p, items)), daemon=True)
        t.start()
        p.wait_for(lambda: children_in_state(p.pid("local"), "tT"), 30, "the child stopped at mkdir")
    finally:
        strace.terminate()   # detaches; the stopped child stays stopped
        strace.wait()
    t.join(60)
    assert [r[:2] for r in results(reply[0])] == [("delivered", "2.0.0")] * 2, reply
    assert time.monotonic() - t0 < 60
    p.wait_log("local", r"delivery process \d+ for 2 recipients of several users still running "
                        r"after 10s; killing it, its deliveries go on one user per process")
    for (qid, addr, _, _), user in zip(items, ("ptest2", "ptest3")):
        assert len(maildir_files(user, [qid])) == 1
        assert len(re.findall(rf"{qid}: to=<{re.escape(addr)}>.*status=sent", p.log("local"))) == 1


def test_concurrent_requests_for_one_mbox_do_not_sleep_on_our_own_lock(local):
    """Requests for one mbox that arrive together are written one child after the other: a child
    never meets another postern-local child's lock and sleeps deliver_lock_delay on it."""
    local.configure(deliver_lock_delay="20s", message_size_limit=50000000)
    p = start(local)
    body = "".join(f"line {j:06d} " + "s" * 80 + "\n" for j in range(30000))
    queued = [queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message(f"nosleep {i}", body))
              for i in range(4)]
    replies = [None] * 4

    def run(i):
        qid, (rid,) = queued[i]
        replies[i] = deliver(p, qid, [(f"ptest1@{HOST}", rid)])

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - t0
    assert all(results(r)[0][0] == "delivered" for r in replies), replies
    assert elapsed < 15, f"{elapsed:.1f}s: a child slept on the lock of another"
    assert p.mailbox("ptest1").count("line 029999 ") == 4


def test_dotlock_respected(local):
    """A dotlock held by someone else (a mail reader) delays the delivery; it is not ignored."""
    local.configure(deliver_lock_attempts=3, deliver_lock_delay="1s")
    p = start(local)
    lock = p.spool_dir / "ptest1.lock"
    lock.write_text("12345\n")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("locked"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert action == "deferred" and dsn.startswith("4."), (action, dsn, diag)
    assert "lock" in diag
    assert p.mailbox("ptest1") == ""
    lock.unlink()
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"


def test_debian_style_spool(local):
    """/var/mail as Debian has it (2775 root:mail): mailbox created for the user, dotlock made
    with the directory's group, file mode 0600."""
    spool = local.spool_dir
    os.chown(spool, 0, grp.getgrnam("mail").gr_gid)
    os.chmod(spool, 0o2775)
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest3@{HOST}"], message("debian"))
    assert results(deliver(p, qid, [(f"ptest3@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    st = os.stat(spool / "ptest3")
    assert st.st_uid == pwd.getpwnam("ptest3").pw_uid and stat.S_IMODE(st.st_mode) == 0o600


def test_root_owned_spool(local):
    """A spool only root may write to: the mailbox is created for the user, fcntl locks only."""
    os.chmod(local.spool_dir, 0o755)
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest2@{HOST}"], message("rootspool"))
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    st = os.stat(local.spool_dir / "ptest2")
    assert st.st_uid == pwd.getpwnam("ptest2").pw_uid and stat.S_IMODE(st.st_mode) == 0o600


def test_mailbox_symlink_refused(local):
    p = start(local)
    victim = local.root / "victim"
    victim.write_text("untouched\n")
    os.symlink(victim, p.spool_dir / "ptest3")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest3@{HOST}"], message("symlink"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest3@{HOST}", rid)]))
    assert (action, dsn) == ("deferred", "4.2.0"), diag
    assert "symbolic link" in diag
    assert victim.read_text() == "untouched\n"


def test_reload_switches_to_maildir(local):
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest3@{HOST}"], message("before reload"))
    assert results(deliver(p, qid, [(f"ptest3@{HOST}", rid)]))[0][2] == "delivered to mailbox"
    local.configure(home_mailbox="Maildir/")
    p.reload("local")
    p.wait_log("local", r"reload -- configuration")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest3@{HOST}"], message("after reload"))
    assert results(deliver(p, qid, [(f"ptest3@{HOST}", rid)]))[0][2] == "delivered to maildir"
    assert [f for f in (home("ptest3") / "Maildir" / "new").iterdir() if f"Q{qid}R" in f.name]


def delivered_text(p, user, maildir):
    if not maildir:
        return p.mailbox(user)
    texts = []
    for sub in ("new", "cur"):
        d = home(user) / "Maildir" / sub
        if d.is_dir():
            for f in d.iterdir():
                try:
                    texts.append(f.read_text(errors="replace"))
                except FileNotFoundError:
                    pass
    return "".join(texts)


@pytest.mark.parametrize("maildir", [False, True], ids=["mbox", "maildir"])
def test_kill9_exactly_once(postern, maildir):
    """The whole chain: postern-local is killed with SIGKILL (three times) while mail flows; after
    the restarts every message is in the mailbox exactly once."""
    p = postern
    # Deliveries cut by the kill are deferred; retry them quickly.
    p.configure(minimal_backoff_time="1s", maximal_backoff_time="2s", queue_run_delay="1s",
                home_mailbox="Maildir/" if maildir else "")
    p.start()
    n = 40
    big = ("w" * 70 + "\n") * 3000

    def send_all():
        for i in range(n):
            p.send("sender@example.org", [f"ptest1@{HOST}"], message(f"k9 {i}", big))

    t = threading.Thread(target=send_all)
    t.start()
    for seen in (5, 15, 25):
        p.wait_for(lambda: delivered_text(p, "ptest1", maildir).count("Message-ID: <k9-") >= seen,
                   60, f"{seen} deliveries")
        p.kill("local")
        time.sleep(0.3)   # chaos timing: local stays down a moment while qmgr keeps sending
        p.restart("local")
    t.join(120)
    p.wait_queue_empty(timeout=120)
    text = delivered_text(p, "ptest1", maildir)
    ids = re.findall(r"Message-ID: <(k9-\d+)@example\.org>", text)
    assert sorted(ids) == sorted(f"k9-{i}" for i in range(n)), \
        [x for x in set(ids) if ids.count(x) > 1]
    if not maildir:
        assert text.count("\nFrom sender@example.org  ") + text.startswith("From sender@") == n


# --- review fixes: root and the files it touches, markers, forwards ---------------------------
def marker_dir(p):
    return p.queue_dir / "local-delivered"


def test_home_mailbox_symlink_not_followed_as_root(local):
    """home_mailbox = Mail/inbox with ~/Mail a symlink to a directory only root may write: root
    creates nothing there (it creates files only in mail_spool_directory); the delivery, made as
    the user, is deferred with the reason."""
    target = pathlib.Path(tempfile.mkdtemp(prefix="postern-it-target-", dir="/var/tmp"))
    try:
        os.chmod(target, 0o755)
        local.configure(home_mailbox="Mail/inbox")
        link = home("ptest1") / "Mail"
        os.symlink(target, link)
        os.lchown(link, pwd.getpwnam("ptest1").pw_uid, pwd.getpwnam("ptest1").pw_gid)
        p = start(local)
        qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("symlinked home"))
        (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
        assert action == "deferred" and dsn.startswith("4."), (action, dsn, diag)
        assert f"{link}/inbox" in diag and "Permission denied" in diag, diag
        assert list(target.iterdir()) == []
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_spool_directory_symlink_resolved(local):
    """mail_spool_directory may itself be a symlink (the admin's choice): a root-only spool behind
    it still gets the user's mailbox created."""
    real = local.root / "realspool"
    real.mkdir()
    os.chmod(real, 0o755)
    link = local.root / "spoollink"
    os.symlink(real, link)
    local.configure(mail_spool_directory=str(link))
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest2@{HOST}"], message("spool link"))
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    st = os.stat(real / "ptest2")
    assert st.st_uid == pwd.getpwnam("ptest2").pw_uid and stat.S_IMODE(st.st_mode) == 0o600
    assert "Message-ID: <spool-link@example.org>" in (real / "ptest2").read_text()


def test_untrusted_marker_directory_replaced(local):
    """A marker directory someone else made (the queue directory is postern's) is not used: its
    planted "already delivered" marker must not swallow the mail."""
    qid, (rid,) = queue_message(local, "sender@example.org", [f"ptest1@{HOST}"], message("planted"))
    md = marker_dir(local)
    md.mkdir(mode=0o700)
    (md / f"{qid}.{rid}").write_text(f"{local.spool_dir}/ptest1\n")
    uid = pwd.getpwnam("ptest1").pw_uid
    os.chown(md / f"{qid}.{rid}", uid, uid)
    os.chown(md, uid, uid)
    p = start(local)
    p.wait_log("local", r"local-delivered is not owned by root; refusing to use it: moved it to "
                        r"local-delivered\.untrusted-\d+")
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert p.mailbox("ptest1").count("Message-ID: <planted@example.org>") == 1
    st = os.stat(md, follow_symlinks=False)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert [d for d in p.queue_dir.iterdir() if d.name.startswith("local-delivered.untrusted-")]


@pytest.mark.parametrize("kind", ["symlink", "mode0755"])
def test_marker_directory_symlink_or_wrong_mode_replaced(local, kind):
    elsewhere = local.root / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if kind == "symlink":
        os.symlink(elsewhere, marker_dir(local))
        why = "is a symbolic link or not a directory"
    else:
        marker_dir(local).mkdir()
        os.chmod(marker_dir(local), 0o755)
        why = "does not have mode 0700"
    p = start(local)
    p.wait_log("local", rf"local-delivered {why}; refusing to use it")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("md link"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"
    assert list(elsewhere.iterdir()) == []
    st = os.stat(marker_dir(p), follow_symlinks=False)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert (marker_dir(p) / f"{qid}.{rid}").exists()


def test_marker_hardlink_or_symlink_refused(local):
    """A marker that is a hard link or a symlink is never read or appended to: the delivery is
    deferred (nothing written, the linked file untouched)."""
    local.set_aliases("fwd: friend@remote.example\n")
    p = start(local)
    q1, (r1,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("hardlinked"))
    q2, (r2,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("symlinked"))
    q3, (r3,) = queue_message(p, "sender@example.org", [f"fwd@{HOST}"], message("fwd symlinked"))
    victim = p.root / "victim"
    victim.write_text(f"{p.spool_dir}/ptest1\nforward:friend@remote.example\n")
    os.chmod(victim, 0o600)
    os.link(victim, marker_dir(p) / f"{q1}.{r1}")
    os.symlink(victim, marker_dir(p) / f"{q2}.{r2}")
    os.symlink(victim, marker_dir(p) / f"{q3}.{r3}")
    (a1, d1, g1), = results(deliver(p, q1, [(f"ptest1@{HOST}", r1)]))
    assert (a1, d1) == ("deferred", "4.3.0") and "more than one hard link" in g1, g1
    (a2, d2, g2), = results(deliver(p, q2, [(f"ptest1@{HOST}", r2)]))
    assert (a2, d2) == ("deferred", "4.3.0") and "symbolic link" in g2, g2
    (a3, d3, g3), = results(deliver(p, q3, [(f"fwd@{HOST}", r3)]))
    assert (a3, d3) == ("deferred", "4.3.0") and "symbolic link" in g3, g3
    assert p.mailbox("ptest1") == ""
    assert victim.read_text() == f"{p.spool_dir}/ptest1\nforward:friend@remote.example\n"
    assert p.queue_rows("SELECT COUNT(*) FROM messages")[0][0] == 3


def test_forward_not_repeated_when_marker_lost(local):
    """kill -9 between the forwarded copy's commit and its marker line: the retry must not queue a
    second copy (the copy's queue id is derived from the original, so the insert finds it)."""
    local.set_aliases("fwd: ptest1, friend@remote.example, other@remote.example\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"fwd@{HOST}"], message("fwd once"))
    r = results(deliver(p, qid, [(f"fwd@{HOST}", rid)]))
    assert r[0][:2] == ("delivered", "2.0.0"), r
    rows = p.queue_rows("SELECT queue_id FROM messages WHERE queue_id != ?", (qid,))
    assert len(rows) == 1, rows
    new_id = rows[0][0]
    assert re.fullmatch(r"[0-9A-V]{16}", new_id)
    marker = marker_dir(p) / f"{qid}.{rid}"
    for _ in range(2):
        # As if the process died after the commit, before the marker line.
        lines = marker.read_text().splitlines(keepends=True)
        assert [ln for ln in lines if ln.startswith("forward:")], lines
        marker.write_text("".join(ln for ln in lines if not ln.startswith("forward:")))
        r = results(deliver(p, qid, [(f"fwd@{HOST}", rid)]))
        assert r[0][:2] == ("delivered", "2.0.0"), r
        assert p.queue_rows("SELECT COUNT(*) FROM messages")[0][0] == 2
    p.wait_log("local", rf"{qid}: to=<friend@remote\.example>.*status=sent \(forwarded as {new_id} "
                        r"\(queued by an earlier attempt\)\)")
    assert p.queue_rows("SELECT COUNT(*) FROM recipients r JOIN messages m ON m.id = r.message_id "
                        "WHERE m.queue_id = ?", (new_id,))[0][0] == 2
    assert p.mailbox("ptest1").count("Message-ID: <fwd-once@example.org>") == 1


def test_marker_sweep_only_for_messages_gone(local):
    """Markers stay as long as their message is queued (however old); those of messages that
    left the queue go, each message looked up once."""
    p = start(local)
    qid, rids = queue_message(p, "sender@example.org", [f"ptest1@{HOST}", f"ptest2@{HOST}"],
                              message("old marker"))
    r = deliver(p, qid, [(f"ptest1@{HOST}", rids[0]), (f"ptest2@{HOST}", rids[1])])
    assert [x[0] for x in results(r)] == ["delivered", "delivered"]
    old = time.time() - 30 * 24 * 3600
    for i in rids:
        os.utime(marker_dir(p) / f"{qid}.{i}", (old, old))
    gone = [marker_dir(p) / "0000GONE0000000.7", marker_dir(p) / "0000GONE0000000.8"]
    for g in gone:
        g.write_text("/nowhere\n")
        os.chmod(g, 0o600)
        os.utime(g, (time.time() - 7200,) * 2)
    fresh = marker_dir(p) / "0000GONE0000001.1"   # too young to judge
    fresh.write_text("/nowhere\n")
    p.restart("local")   # sweeps a second after start
    p.wait_log("local", r"removed 2 delivery markers of messages that left the queue")
    assert not any(g.exists() for g in gone)
    assert fresh.exists()
    assert all((marker_dir(p) / f"{qid}.{i}").exists() for i in rids)
    # The retry of a month-old message still finds its marker.
    r = deliver(p, qid, [(f"ptest1@{HOST}", rids[0]), (f"ptest2@{HOST}", rids[1])])
    assert [x[0] for x in results(r)] == ["delivered", "delivered"]
    for u in ("ptest1", "ptest2"):
        assert p.mailbox(u).count("Message-ID: <old-marker@example.org>") == 1


def test_maildir_trusts_marker_not_directory_scan(local):
    """Maildir redelivery is decided by the marker: a file in cur/ that merely carries the queue
    id and recipient id (the user can name files as they like) does not swallow the message."""
    local.configure(home_mailbox="Maildir/")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest2@{HOST}"], message("no scan"))
    pw = pwd.getpwnam("ptest2")
    md = home("ptest2") / "Maildir"
    for d in (md, md / "tmp", md / "new", md / "cur"):
        d.mkdir(mode=0o700)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    planted = md / "cur" / f"1.M1P1Q{qid}R{rid}.elsewhere:2,S"
    planted.write_text("not this message\n")
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)]))[0] == \
        ("delivered", "2.0.0", "delivered to maildir")
    files = [f for f in (md / "new").iterdir() if f"Q{qid}R{rid}." in f.name]
    assert len(files) == 1 and "Message-ID: <no-scan@example.org>" in files[0].read_text()


def test_parameter_registry_defaults(local):
    """Parameters not set in main.cf take the registry's defaults (mydestination includes
    localhost.$mydomain), not local's own copies."""
    del local.settings["mydestination"]
    local.configure()
    local.set_aliases("team: ptest2@localhost.test\n")
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"team@{HOST}"], message("registry"))
    assert results(deliver(p, qid, [(f"team@{HOST}", rid)]))[0] == \
        ("delivered", "2.0.0", "delivered to mailbox")
    assert "Message-ID: <registry@example.org>" in p.mailbox("ptest2")
    assert p.queue_rows("SELECT COUNT(*) FROM messages")[0][0] == 1
