"""posternctl flush/hold/release/delete/requeue against the real postern-qmgr (and postern-local
for the deliveries): what the queue, the mailboxes and qmgr's log show afterwards, who may run
what, and the messages and exit codes when something is wrong."""

import random
import re
import shutil
import sqlite3
import string
import subprocess
import time

import pytest

import postern_harness
from postern_harness import ipc_call, qmgr_past_startup_scan

EX_USAGE, EX_UNAVAILABLE, EX_NOPERM = 64, 69, 77


def inject(postern, sender, rcpts, subject="posternctl test"):
    """Inserts one message into queue.db as postern-smtpd would; returns its queue id."""
    qid = "P" + "".join(random.choice(string.digits + "ABCDEFGHIJKLMNOPQRSTUV") for _ in range(12))
    body = (f"Received: by client.test\nFrom: <{sender}>\nSubject: {subject}\n"
            f"Message-ID: <{qid}@client.test>\n\nHello {qid}.\n").encode()
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    try:
        with con:
            mid = con.execute("INSERT INTO messages (queue_id, sender, arrival_usec, size, protocol)"
                              " VALUES (?, ?, ?, ?, 'ESMTP')",
                              (qid, sender, int(time.time() * 1e6), len(body))).lastrowid
            for r in rcpts:
                con.execute("INSERT INTO recipients (message_id, address) VALUES (?, ?)", (mid, r))
            con.execute("INSERT INTO content (message_id, data) VALUES (?, ?)", (mid, body))
    finally:
        con.close()
    return qid


def attempts(postern, qid):
    rows = postern.queue_rows("SELECT r.attempts FROM recipients r JOIN messages m"
                              " ON m.id = r.message_id WHERE m.queue_id = ?", (qid,))
    return rows[0][0] if rows else None


def start(postern, **conf):
    """qmgr and local, with scans only on request: injected mail waits for a wake-up. Remote
    mail is deferred by qmgr itself (a retry: route; postern-smtp is not started here)."""
    conf.setdefault("default_transport", "retry:4.3.0 remote delivery is off in this test")
    postern.configure(queue_run_delay="300s", minimal_backoff_time="600s", **conf)
    postern.start("qmgr", "local")
    qmgr_past_startup_scan(postern)


def ctl(postern, *args, user=None):
    return postern.posternctl(*args, user=user)


def test_hold_shows_bang_and_keeps_the_message_release_delivers_it(postern):
    start(postern)
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    r = ctl(postern, "hold", qid)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "posternctl: Placed on hold: 1 message\n"
    postern.wait_log("qmgr", rf"{qid}: placed on hold")

    assert ctl(postern, "flush").returncode == 0   # a scan: held mail must stay
    postern.wait_log("qmgr", r"flush requested")
    time.sleep(0.5)   # absence: the scan the flush asked for leaves held mail alone
    assert postern.queue_rows("SELECT hold FROM messages WHERE queue_id = ?", (qid,)) == [(1,)]
    assert f"{qid}: from=<" not in postern.log("qmgr")
    assert postern.mailbox("ptest1") == ""
    q = ctl(postern, "queue")
    assert re.search(rf"^{qid}!\s+\d+ ", q.stdout, re.M), q.stdout

    # the id as posternctl queue shows it, "!" included, is accepted
    r = ctl(postern, "release", qid + "!")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "posternctl: Released from hold: 1 message\n"
    postern.wait_log("qmgr", rf"{qid}: released from hold")
    postern.wait_log("qmgr", rf"{qid}: removed")
    assert f"Message-ID: <{qid}@client.test>" in postern.mailbox("ptest1")
    assert ctl(postern, "queue").stdout == "Mail queue is empty\n"


def test_hold_all_and_release_all(postern):
    start(postern)
    ids = [inject(postern, "alice@example.org", ["ptest2@postern.test"]) for _ in range(3)]
    r = ctl(postern, "hold", "ALL")
    assert (r.returncode, r.stdout) == (0, "posternctl: Placed on hold: 3 messages\n"), r.stderr
    q = ctl(postern, "queue").stdout
    for qid in ids:
        assert f"{qid}!" in q
    r = ctl(postern, "release", "ALL")
    assert (r.returncode, r.stdout) == (0, "posternctl: Released from hold: 3 messages\n")
    postern.wait_queue_empty()
    box = postern.mailbox("ptest2")
    for qid in ids:
        assert box.count(f"Message-ID: <{qid}@client.test>") == 1


def test_delete_removes_and_logs(postern):
    start(postern)
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    keep = inject(postern, "alice@example.org", ["carol@remote.example"])
    assert ctl(postern, "flush").returncode == 0
    postern.wait_for(lambda: attempts(postern, qid) == 1, what="the first deferral")
    r = ctl(postern, "delete", qid)
    assert (r.returncode, r.stdout) == (0, "posternctl: Deleted: 1 message\n"), r.stderr
    postern.wait_log("qmgr", rf"{qid}: removed")
    assert postern.queue_rows("SELECT queue_id FROM messages") == [(keep,)]
    assert "non-delivery" not in postern.log("qmgr")
    assert qid not in ctl(postern, "queue").stdout

    # gone already: said so, exit 1, and the summary counts nothing
    r = ctl(postern, "delete", qid)
    assert r.returncode == 1
    assert f"posternctl delete {qid}: no such message in the queue" in r.stderr
    assert r.stdout == "posternctl: Deleted: 0 messages\n"

    r = ctl(postern, "delete", "ALL")
    assert (r.returncode, r.stdout) == (0, "posternctl: Deleted: 1 message\n")
    postern.wait_log("qmgr", rf"{keep}: removed")
    assert postern.queue_count() == 0


def insert_messages(postern, n, held):
    """n one-recipient messages written straight into the queue (held or not), arrived now."""
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    with con:
        for i in range(n):
            mid = con.execute("INSERT INTO messages (queue_id, sender, arrival_usec, size, protocol, hold)"
                              " VALUES (?, 'alice@example.org', ?, 1, 'ESMTP', ?)",
                              (f"PALL{i:08d}", int(time.time() * 1e6), held)).lastrowid
            con.execute("INSERT INTO recipients (message_id, address) VALUES (?, 'bob@remote.example')", (mid,))
            con.execute("INSERT INTO content (message_id, data) VALUES (?, 'x')", (mid,))
    con.close()


@pytest.mark.skipif(not shutil.which("strace"), reason="needs strace")
@pytest.mark.parametrize("verb", ["hold", "delete"])
def test_all_commits_in_chunks(postern, verb):
    """ALL changes messages a thousand per transaction: one commit (one sync of the WAL) each,
    not one per message — a million were a million syncs (a quarter of an hour or more) with
    qmgr's loop blocked, far beyond its 30 s watchdog. Counted with strace on qmgr."""
    start(postern)
    n = 1500
    # held already when deleted (out of delivery's way), or not yet when held
    insert_messages(postern, n, verb == "delete")
    trace = postern.root / "strace.out"
    st = subprocess.Popen(["strace", "-f", "-e", "trace=fsync,fdatasync", "-o", str(trace), "-p",
                           str(postern.pid("qmgr"))], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)   # strace attaches
        r = ctl(postern, verb, "ALL")
        want = {"hold": "Placed on hold", "delete": "Deleted"}[verb]
        assert (r.returncode, r.stdout) == (0, f"posternctl: {want}: {n} messages\n"), r.stderr
    finally:
        st.terminate()
        st.wait(timeout=10)
    syncs = len(re.findall(r"\b(fsync|fdatasync)\(", trace.read_text()))
    assert syncs <= 10, f"{syncs} syncs for {verb} ALL of {n} messages"
    if verb == "delete":
        assert postern.queue_count() == 0
    else:
        assert postern.queue_rows("SELECT COUNT(*) FROM messages WHERE hold = 1") == [(n,)]


def test_qmgr_serves_other_requests_while_an_all_pass_runs(postern):
    """delete ALL on 30,000 messages runs a thousand per turn of qmgr's event loop at idle
    priority: wake-ups sent one after the other while it runs are answered with part of the
    queue deleted and part still there (before, qmgr's loop was blocked until the whole pass was
    done: every answer came before it started or after it ended), and the pass still removes
    every message and answers with the count."""
    start(postern)
    n = 30000
    insert_messages(postern, n, True)
    everything = subprocess.Popen([postern_harness.binary("tools/posternctl/posternctl"), "delete", "ALL"],
                                  env=postern.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []   # messages left when each wake-up was answered
    try:
        while everything.poll() is None:
            reply = ipc_call(postern.socket_dir / "qmgr", [("request", "wakeup")], timeout=30)
            assert reply.get("status") == "ok", reply
            seen.append(postern.queue_count())
        out, err = everything.communicate(timeout=120)
    finally:
        everything.kill()
    assert any(0 < left < n for left in seen), f"no wake-up answered during the pass: {seen}"
    assert (everything.returncode, out) == (0, f"posternctl: Deleted: {n} messages\n"), err
    assert postern.queue_count() == 0
    postern.wait_log("qmgr", rf"delete ALL: {n} message\(s\)")


def test_requeue_and_flush_retry_deferred_mail_now(postern):
    start(postern)
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    assert ctl(postern, "flush").returncode == 0
    postern.wait_for(lambda: attempts(postern, qid) == 1, what="the first deferral")
    # next attempt in 600 s: only requeue or flush bring it back now
    r = ctl(postern, "requeue", qid)
    assert (r.returncode, r.stdout) == (0, "posternctl: Requeued: 1 message\n"), r.stderr
    postern.wait_log("qmgr", rf"{qid}: requeued")
    postern.wait_for(lambda: attempts(postern, qid) == 2, timeout=5, what="the requeued attempt")
    r = ctl(postern, "flush")
    assert r.returncode == 0 and "flush requested" in r.stdout
    postern.wait_for(lambda: attempts(postern, qid) == 3, timeout=5, what="the flushed attempt")
    # the queue row and the log line are written one after the other: wait for the line too
    postern.wait_log("qmgr", rf"{qid}: to=<bob@remote\.example>.*status=deferred", count=3)
    assert len(re.findall(rf"{qid}: to=<bob@remote\.example>.*status=deferred", postern.log("qmgr"))) == 3


def test_ordinary_user_may_flush_but_not_delete(postern, local_users):
    start(postern)
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    r = ctl(postern, "flush", user="ptest1")
    assert r.returncode == 0, r.stderr
    postern.wait_for(lambda: attempts(postern, qid) == 1, what="the flushed attempt")
    postern.wait_log("qmgr", rf"flush requested by uid {local_users['ptest1'].pw_uid}")

    for verb in ("delete", "hold", "release", "requeue"):
        r = ctl(postern, verb, qid, user="ptest1")
        assert r.returncode == EX_NOPERM, (verb, r.stderr)
        assert r.stderr == (f"posternctl {verb} {qid}: permission denied: only root or postern "
                            f"may {verb} queued mail\n")
    assert postern.queue_rows("SELECT hold FROM messages WHERE queue_id = ?", (qid,)) == [(0,)]
    assert f"{qid}: removed" not in postern.log("qmgr")


def test_qmgr_not_running_and_usage_errors(postern):
    (postern.socket_dir / "qmgr").unlink()   # no listener at all, as when the unit is stopped
    path = postern.socket_dir / "qmgr"
    for args in (("flush",), ("hold", "ALL"), ("delete", "ABCDEF123")):
        r = ctl(postern, *args)
        assert r.returncode == EX_UNAVAILABLE, (args, r.stderr)
        assert r.stderr == (f"posternctl: qmgr is not running (connect {path}: "
                            "No such file or directory)\n")

    r = ctl(postern, "hold")
    assert r.returncode == EX_USAGE and "expected a queue id or ALL" in r.stderr
    r = ctl(postern, "release", "ALL", "ABC")
    assert r.returncode == EX_USAGE and "ALL stands alone" in r.stderr
    r = ctl(postern, "flush", "a.example", "b.example")
    assert r.returncode == EX_USAGE
    r = ctl(postern, "delete", "not/an-id")
    assert r.returncode == 1 and '"not/an-id" is not a queue id' in r.stderr
    r = ctl(postern, "help")
    for verb in ("flush", "hold", "release", "delete", "requeue"):
        assert re.search(rf"^  {verb} ", r.stdout, re.M), r.stdout
