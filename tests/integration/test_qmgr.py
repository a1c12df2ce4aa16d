"""postern-qmgr with the real postern-smtpd and postern-local: delivery and removal, deferral of
remote recipients deferred (a timing-out DNS zone), expiry and the RFC 3464 bounce, no bounce of a bounce, kill -9, wake-ups."""

import email
import email.policy
import mailbox
import re
import time

import mailtest
from mailtest import send
from postern_harness import qmgr_past_startup_scan


def msg(mid, subject="qmgr test"):
    return mailtest.msg(mid, to="ptest2@postern.test", subject=subject, body=f"Hello from {mid}.\r\n")


def mbox_messages(postern, user):
    path = postern.spool_dir / user
    if not path.exists():
        return []
    box = mailbox.mbox(str(path), create=False)
    try:
        return [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default)
                for k in box.keys()]
    finally:
        box.close()


def rcpt_row(postern, qid, address):
    rows = postern.queue_rows(
        "SELECT r.state, r.attempts, r.next_attempt_usec, r.dsn_status, r.diag FROM recipients r "
        "JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ? AND r.address = ?",
        (qid, address))
    return rows[0] if rows else None


def test_local_delivery_then_removed(postern):
    postern.start()
    qid = send(postern, "sender@example.org", ["ptest1@postern.test"], msg("local-1@test"))
    postern.wait_log("qmgr", rf"{qid}: from=<sender@example\.org>, size=\d+, nrcpt=1 \(queue active\)")
    postern.wait_log("qmgr", rf"{qid}: removed")
    postern.wait_queue_empty()
    assert "Message-ID: <local-1@test>" in postern.mailbox("ptest1")


def test_remote_recipient_deferred_with_backoff(postern):
    postern.configure(minimal_backoff_time="900s")
    postern.start()
    before = time.time()
    qid = send(postern, "ptest1@postern.test", ["someone@remote.slow.test"], msg("remote-1@test"))
    # remote.slow.test times out in the test DNS zone: postern-smtp defers with 4.4.3.
    m = postern.wait_log("smtp", rf"{qid}: to=<someone@remote\.slow\.test>, relay=none, delay=[0-9.]+, "
                                 rf"delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, dsn=(4\.\d\.\d), "
                                 rf"status=deferred \((.+)\)")
    assert m.group(1) == "4.4.3"
    assert "try again" in m.group(2)
    postern.wait_for(lambda: (rcpt_row(postern, qid, "someone@remote.slow.test") or (0,))[0] == 1,
                     what="the deferral in the queue")
    state, attempts, next_attempt, dsn, diag = rcpt_row(postern, qid, "someone@remote.slow.test")
    assert (attempts, dsn) == (1, "4.4.3")
    assert before + 900 - 5 < next_attempt / 1e6 < time.time() + 900 + 5
    assert "try again" in diag
    assert postern.queue_count() == 1


def test_expired_recipient_bounces_to_local_sender(postern):
    postern.configure(maximal_queue_lifetime="1s", minimal_backoff_time="1s",
                      maximal_backoff_time="1s", queue_run_delay="1s")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["someone@remote.slow.test"],
               msg("expire-1@test", "will expire"))
    m = postern.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ([0-9A-Z]+)", timeout=20)
    bounce_id = m.group(1)
    postern.wait_log("qmgr", rf"{qid}: removed")
    postern.wait_log("qmgr", rf"{bounce_id}: removed", timeout=20)
    postern.wait_queue_empty()

    bounces = [b for b in mbox_messages(postern, "ptest1")
               if b["Subject"] == "Undelivered Mail Returned to Sender"]
    assert len(bounces) == 1
    b = bounces[0]
    assert b.get_content_type() == "multipart/report"
    assert b.get_param("report-type") == "delivery-status"
    assert b["Auto-Submitted"] == "auto-replied"
    parts = list(b.iter_parts())
    types = [p.get_content_type() for p in parts]
    assert types[:2] == ["text/plain", "message/delivery-status"]
    assert "someone@remote.slow.test" in parts[0].get_content()
    per_msg, per_rcpt = parts[1].get_payload()[0], parts[1].get_payload()[1]
    assert per_msg["Reporting-MTA"] == "dns; postern.test"
    assert per_rcpt["Final-Recipient"] == "rfc822; someone@remote.slow.test"
    assert per_rcpt["Action"] == "failed"
    assert re.fullmatch(r"4\.4\.3", per_rcpt["Status"])   # an expired recipient keeps its 4.x.x
    assert "try again" in per_rcpt["Diagnostic-Code"]
    assert types[2] in ("message/rfc822", "text/rfc822-headers")
    assert "expire-1@test" in parts[2].as_string()
    # the bounce came with the null sender
    assert "Return-Path: <>" in postern.mailbox("ptest1")


def test_bounce_to_unknown_user_is_not_bounced_again(postern):
    postern.configure(maximal_queue_lifetime="1s", minimal_backoff_time="1s",
                      maximal_backoff_time="1s", queue_run_delay="1s")
    postern.start()
    # the sender does not exist here: its bounce fails in postern-local with 5.1.1
    qid = send(postern, "no-such-user@postern.test", ["someone@remote.slow.test"],
               msg("loop-1@test"))
    m = postern.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ([0-9A-Z]+)", timeout=20)
    bounce_id = m.group(1)
    postern.wait_log("qmgr", rf"{bounce_id}: removed", timeout=20)
    # The undeliverable bounce goes to the postmaster once (2bounce_notice_recipient; there is
    # no such user here either), and that notice, from double_bounce_sender, is dropped.
    m = postern.wait_log("qmgr", rf"{bounce_id}: postmaster non-delivery notification: ([0-9A-Z]+)",
                         timeout=20)
    postern.wait_log("qmgr", rf"{m.group(1)}: delivery status notification undeliverable, discarded",
                     timeout=20)
    time.sleep(2.5)   # a loop would show up as more notifications by now
    assert postern.log("qmgr").count("non-delivery notification") == 2
    assert postern.queue_count() == 0


def test_kill9_while_queued_delivers_each_message_once(postern):
    postern.start()
    postern.kill("qmgr")
    ids = [f"kill9-{i}@test" for i in range(10)]
    for mid in ids:
        send(postern, "sender@example.org", ["ptest1@postern.test"], msg(mid))
    assert postern.queue_count() == 10
    postern.restart("qmgr")
    # and once more while the first deliveries are running
    time.sleep(0.05)   # chaos timing: kill at some point during the deliveries, any point will do
    postern.kill("qmgr")
    postern.restart("qmgr")
    postern.wait_queue_empty(timeout=30)
    box = postern.mailbox("ptest1")
    counts = {mid: box.count(f"Message-ID: <{mid}>") for mid in ids}
    assert all(n == 1 for n in counts.values()), counts


def test_kill9_with_nothing_in_flight_duplicates_nothing(postern):
    postern.start()
    postern.kill("qmgr")
    ids = [f"once-{i}@test" for i in range(10)]
    for mid in ids:
        assert postern.send("sender@example.org", ["ptest1@postern.test"], msg(mid))[0] == 250
    postern.restart("qmgr")
    postern.wait_queue_empty(timeout=30)
    box = postern.mailbox("ptest1")
    for mid in ids:
        assert box.count(f"Message-ID: <{mid}>") == 1, mid


def test_wakeup_makes_delivery_fast(postern):
    postern.configure(queue_run_delay="300s")
    postern.start()
    qmgr_past_startup_scan(postern)   # only a wake-up can bring the next message
    t0 = time.monotonic()
    qid = send(postern, "sender@example.org", ["ptest2@postern.test"], msg("fast-1@test"))
    postern.wait_mailbox("ptest2", r"fast-1@test", timeout=5)
    assert time.monotonic() - t0 < 2
    postern.wait_log("qmgr", rf"{qid}: removed")
