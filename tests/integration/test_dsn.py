"""Delivery status notifications end to end: mail goes in through postern-smtpd with RET=,
ENVID=, NOTIFY= and ORCPT=, is delivered to local mailboxes or relayed to smtp-sink (offers DSN)
and aiosmtpd (does not), and every notice qmgr sends back is read from the sender's mailbox and
parsed with Python's email package: success notices (delivered / relayed, Remote-MTA), delay
warnings (once, Will-Retry-Until, confirm_delay_cleared), failure notices, notices about
undeliverable notifications to the postmaster (never looping), soft_bounce and the delivery
status filters."""

import email
import email.policy
import mailbox
import re
import time
from functools import partial

import pytest

import mailtest
from smtp_peers import Scripted, Sink

HOST = "postern.test"
SENDER = f"ptest1@{HOST}"


msg = partial(mailtest.msg, sender=SENDER, subject="dsn test", body="Body of the message.\r\n")


def send(postern, rcpts, data, mail_opts=(), sender=SENDER):
    """rcpts: [(address, [rcpt options])]. Returns the queue id."""
    return mailtest.send(postern, sender, rcpts, data, mail_options=mail_opts, extension="dsn")


def notices(postern, user):
    """Every multipart/report in user's mailbox, parsed."""
    path = postern.spool_dir / user
    if not path.exists():
        return []
    box = mailbox.mbox(str(path), create=False)
    out = []
    for key in box.keys():
        m = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        if m.get_content_type() == "multipart/report":
            out.append(m)
    return out


def wait_notices(postern, user, subject, count=1, timeout=30):
    postern.wait_for(lambda: len([m for m in notices(postern, user) if m["Subject"] == subject]) >= count,
                     timeout, f"{count} '{subject}' in {user}'s mailbox")
    return [m for m in notices(postern, user) if m["Subject"] == subject]


def report(m):
    """(per-message fields, [per-recipient fields], third part) of a multipart/report."""
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    assert m["From"].startswith("MAILER-DAEMON@")
    parts = m.get_payload()
    assert len(parts) == 3
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = parts[1].get_payload()
    return blocks[0], blocks[1:], parts[2]


def by_rcpt(rcpts):
    return {r["Final-Recipient"].split(";", 1)[1].strip(): r for r in rcpts}


@pytest.fixture
def sink(postern):
    s = Sink(postern.root / "sink")
    yield s
    s.stop()


def start(postern, **params):
    postern.configure(local_recipient_maps="", **params)
    postern.start()


# --- success ---------------------------------------------------------------------------------

def test_success_notice_local(postern, local_users):
    start(postern)
    qid = send(postern, [(f"ptest2@{HOST}", ["NOTIFY=SUCCESS", "ORCPT=rfc822;Second@Example.Org"]),
                         (f"ptest3@{HOST}", [])],
               msg("success-local@test", to=f"ptest2@{HOST}"), ["RET=HDRS", "ENVID=env-success-1"])
    (n,) = wait_notices(postern, "ptest1", "Successful Mail Delivery Report")
    assert n["To"] == SENDER
    assert n["Auto-Submitted"] == "auto-replied"
    fields, rcpts, attached = report(n)
    assert fields["Original-Envelope-Id"] == "env-success-1"
    assert fields["Reporting-MTA"] == f"dns; {HOST}"
    assert fields["X-Postern-Queue-ID"] == qid
    assert fields["Arrival-Date"]
    # ptest3 gave no NOTIFY: no success notice for it (RFC 3461 default is FAILURE,DELAY).
    assert list(by_rcpt(rcpts)) == [f"ptest2@{HOST}"]
    r = rcpts[0]
    assert r["Action"] == "delivered"
    assert r["Status"].startswith("2.")
    assert r["Original-Recipient"] == "rfc822; Second@Example.Org"
    assert r["Last-Attempt-Date"]
    assert "Remote-MTA" not in r
    assert attached.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <success-local@test>" in attached.get_content()
    assert "Body of the message" not in attached.get_content()
    postern.wait_log("qmgr", rf"{qid}: sender delivery status notification: [0-9A-Z]+")
    postern.wait_queue_empty()
    assert "Message-ID: <success-local@test>" in postern.mailbox("ptest2")


def test_success_relayed_without_dsn_and_delivered_with_dsn(postern, local_users, aiosmtpd_server, sink):
    h, port = aiosmtpd_server()
    postern.configure(transport_maps=f"inline:{{ nodsn.example=smtp:[127.0.0.1]:{port}, "
                                     f"withdsn.example=smtp:[127.0.0.1]:{sink.port} }}")
    start(postern)
    qid = send(postern, [("bob@nodsn.example", ["NOTIFY=SUCCESS,FAILURE"]),
                         ("carol@withdsn.example", ["NOTIFY=SUCCESS", "ORCPT=rfc822;carol@withdsn.example"])],
               msg("relayed@test"), ["RET=FULL", "ENVID=env-relay"])
    (n,) = wait_notices(postern, "ptest1", "Successful Mail Delivery Report")
    fields, rcpts, attached = report(n)
    assert fields["Original-Envelope-Id"] == "env-relay"
    r = by_rcpt(rcpts)
    assert r["bob@nodsn.example"]["Action"] == "relayed"
    assert r["bob@nodsn.example"]["Remote-MTA"] == "dns; 127.0.0.1"
    assert r["bob@nodsn.example"]["Diagnostic-Code"].startswith("smtp;")
    assert r["carol@withdsn.example"]["Action"] == "delivered"
    assert r["carol@withdsn.example"]["Remote-MTA"] == "dns; 127.0.0.1"
    # RET=FULL: a success notice returns the whole message.
    assert attached.get_content_type() == "message/rfc822"
    assert "Body of the message" in attached.as_string()
    # smtp-sink got the DSN parameters, aiosmtpd (no DSN) got none and the message anyway.
    assert b"NOTIFY=SUCCESS" in sink.wait_count(1)[0]
    assert len(h.envelopes) == 1
    postern.wait_queue_empty()


# --- failure, Remote-MTA, ENVID ---------------------------------------------------------------

def test_failure_notice_remote(postern, local_users, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "550 5.1.1 no such user here" if a.startswith("bad") else None)
    postern.configure(relayhost=f"[127.0.0.1]:{port}")
    start(postern)
    qid = send(postern, [("bad@remote.example", ["ORCPT=rfc822;Bad@Remote.Example"]),
                         ("good@remote.example", ["NOTIFY=NEVER"])],
               msg("fail@test"), ["ENVID=env-fail"])
    (n,) = wait_notices(postern, "ptest1", "Undelivered Mail Returned to Sender")
    fields, rcpts, attached = report(n)
    assert fields["Original-Envelope-Id"] == "env-fail"
    assert list(by_rcpt(rcpts)) == ["bad@remote.example"]
    r = rcpts[0]
    assert (r["Action"], r["Status"]) == ("failed", "5.1.1")
    assert r["Remote-MTA"] == "dns; 127.0.0.1"
    assert r["Original-Recipient"] == "rfc822; Bad@Remote.Example"
    assert "no such user here" in r["Diagnostic-Code"]
    assert attached.get_content_type() == "message/rfc822"
    postern.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ")
    postern.wait_queue_empty()
    assert not [m for m in notices(postern, "ptest1") if m["Subject"] != "Undelivered Mail Returned to Sender"]


# --- delay warnings ---------------------------------------------------------------------------

def test_delay_warning_once_then_cleared(postern, local_users, aiosmtpd_server):
    state = {"accept": False}
    h, port = aiosmtpd_server(rcpt=lambda a: None if state["accept"] else "450 4.2.0 try again later")
    postern.configure(relayhost=f"[127.0.0.1]:{port}", delay_warning_time="2s",
                      minimal_backoff_time="1s", maximal_backoff_time="1s", queue_run_delay="1s",
                      confirm_delay_cleared="yes")
    start(postern)
    qid = send(postern, [("late@remote.example", ["ORCPT=rfc822;Late@Remote.Example"]),
                         ("quiet@remote.example", ["NOTIFY=NEVER"]),
                         ("failonly@remote.example", ["NOTIFY=FAILURE"])],
               msg("delay@test"), ["RET=FULL", "ENVID=env-delay"])
    (n,) = wait_notices(postern, "ptest1", "Delayed Mail (still being retried)")
    fields, rcpts, attached = report(n)
    assert fields["Original-Envelope-Id"] == "env-delay"
    # Only the recipient that wants delay notices (NOTIFY not given) is named.
    assert list(by_rcpt(rcpts)) == ["late@remote.example"]
    r = rcpts[0]
    assert r["Action"] == "delayed"
    assert r["Status"] == "4.2.0"
    assert r["Will-Retry-Until"]
    assert r["Remote-MTA"] == "dns; 127.0.0.1"
    assert r["Original-Recipient"] == "rfc822; Late@Remote.Example"
    # Delay warnings return the headers only, whatever RET says.
    assert attached.get_content_type() == "text/rfc822-headers"
    postern.wait_log("qmgr", rf"{qid}: sender delay notification: ")
    assert postern.queue_rows("SELECT delay_warned FROM messages WHERE queue_id = ?", (qid,)) == [(1,)]

    # More attempts, still deferred, and a qmgr killed and restarted in between: the warning is
    # recorded in the queue, so there is no second one.
    postern.kill("qmgr")
    postern.restart("qmgr")
    attempts = lambda: postern.queue_rows(
        "SELECT max(r.attempts) FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.queue_id = ?", (qid,))[0][0]
    seen = attempts()
    postern.wait_for(lambda: attempts() >= seen + 2, 20, "two more attempts")
    assert len([m for m in notices(postern, "ptest1")
                if m["Subject"] == "Delayed Mail (still being retried)"]) == 1

    # The delay clears: confirm_delay_cleared tells the sender about the warned recipient only.
    state["accept"] = True
    (ok,) = wait_notices(postern, "ptest1", "Successful Mail Delivery Report")
    _, rcpts, _ = report(ok)
    assert list(by_rcpt(rcpts)) == ["late@remote.example"]
    # "relayed" is for recipients that asked for SUCCESS (as Postfix's smtp client decides it).
    assert rcpts[0]["Action"] == "delivered"
    postern.wait_queue_empty()


def test_no_delay_warning_when_off_or_young(postern, local_users, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "450 4.2.0 try again later")
    postern.configure(relayhost=f"[127.0.0.1]:{port}", minimal_backoff_time="1s",
                      maximal_backoff_time="1s", queue_run_delay="1s")   # delay_warning_time = 0h
    start(postern)
    qid = send(postern, [("late@remote.example", ["NOTIFY=DELAY"])], msg("nodelay@test"))
    postern.wait_for(lambda: postern.queue_rows(
        "SELECT max(r.attempts) FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.queue_id = ?", (qid,))[0][0] >= 3, 20, "three attempts")
    assert notices(postern, "ptest1") == []
    assert postern.queue_rows("SELECT delay_warned FROM messages WHERE queue_id = ?", (qid,)) == [(0,)]


# --- notifications that cannot be delivered ----------------------------------------------------

def test_undeliverable_bounce_goes_to_postmaster_once(postern, local_users):
    postern.set_aliases("postmaster: ptest3\n")
    start(postern)
    # The sender does not exist: its bounce is undeliverable and goes to the postmaster.
    qid = send(postern, [(f"nobody-a@{HOST}", [])], msg("loop@test", to=f"nobody-a@{HOST}"),
               sender=f"nobody-b@{HOST}")
    (n,) = wait_notices(postern, "ptest3", "Undeliverable Delivery Status Notification")
    assert n["To"] == "postmaster"
    fields, rcpts, attached = report(n)
    r = by_rcpt(rcpts)[f"nobody-b@{HOST}"]
    assert (r["Action"], r["Status"]) == ("failed", "5.1.1")
    # The attached message is the undeliverable bounce, which names the first failure.
    assert attached.get_content_type() == "message/rfc822"
    inner = attached.get_payload()[0]
    assert inner["Subject"] == "Undelivered Mail Returned to Sender"
    postern.wait_log("qmgr", r"postmaster non-delivery notification: ")
    postern.wait_queue_empty()
    time.sleep(1)   # absence: a second notice would show by now
    assert len(notices(postern, "ptest3")) == 1
    m = postern.wait_log("qmgr", r"postmaster non-delivery notification: ([0-9A-Z]+)")
    # The postmaster notice came from double_bounce_sender.
    assert f"double-bounce@{HOST}" in postern.mailbox("ptest3").split("\n", 1)[0]


def test_undeliverable_postmaster_notice_is_discarded(postern, local_users):
    postern.configure(**{"2bounce_notice_recipient": f"nobody-pm@{HOST}"})
    start(postern)
    send(postern, [(f"nobody-a@{HOST}", [])], msg("loop2@test", to=f"nobody-a@{HOST}"),
         sender=f"nobody-b@{HOST}")
    # message -> bounce to nobody-b (fails) -> postmaster notice to nobody-pm (fails) -> dropped.
    postern.wait_log("qmgr", r"postmaster non-delivery notification: ")
    postern.wait_log("qmgr", r"delivery status notification undeliverable, discarded")
    postern.wait_queue_empty()
    time.sleep(1)   # absence: a notification loop would refill the queue by now
    assert postern.queue_count() == 0
    assert len(re.findall(r"non-delivery notification: ", postern.log("qmgr"))) == 2


# --- soft_bounce and delivery status filters ----------------------------------------------------

def test_soft_bounce(postern, local_users, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "550 5.1.1 no such user here")
    postern.configure(relayhost=f"[127.0.0.1]:{port}", soft_bounce="yes",
                      transport_maps="inline:{ {err.example=error:5.7.1 refused by policy} }")
    start(postern)
    qid = send(postern, [("bad@remote.example", []), ("x@err.example", [])], msg("soft@test"))
    rows = lambda: dict(postern.queue_rows(
        "SELECT r.address, r.state || ' ' || r.dsn_status FROM recipients r JOIN messages m "
        "ON m.id = r.message_id WHERE m.queue_id = ?", (qid,)))
    postern.wait_for(lambda: rows() == {"bad@remote.example": "1 4.1.1", "x@err.example": "1 4.7.1"},
                     20, "both recipients deferred with class 4")
    time.sleep(1)   # absence: no notice is sent for the deferrals
    assert notices(postern, "ptest1") == []


def test_delivery_status_filter(postern, local_users, aiosmtpd_server, tmp_path):
    rules = postern.etc_dir / "smtp_dsn_filter"
    rules.write_text("/^5(\\.1\\.1 .*mailbox is full.*)/ 4$1\n"
                     "/^2\\.0\\.0 (.*)accepted$/ 2.0.0 $1taken\n"
                     "/^5\\.7\\.1 .*/ 2.0.0 pretend success\n")
    answers = {"full": "550 5.1.1 mailbox is full", "deny": "550 5.7.1 denied"}
    h, port = aiosmtpd_server(rcpt=lambda a: answers.get(a.split("@")[0]))
    postern.configure(relayhost=f"[127.0.0.1]:{port}",
                      smtp_delivery_status_filter=f"regexp:{rules}")
    start(postern)
    qid = send(postern, [("full@remote.example", []), ("deny@remote.example", []),
                         ("ok@remote.example", ["NOTIFY=SUCCESS"])], msg("filter@test"))
    rows = lambda: {a: (s, d, t) for a, s, d, t in postern.queue_rows(
        "SELECT r.address, r.state, r.dsn_status, r.diag FROM recipients r JOIN messages m "
        "ON m.id = r.message_id WHERE m.queue_id = ?", (qid,))}
    postern.wait_for(lambda: rows().get("full@remote.example", (0,))[0] == 1 and
                     rows().get("ok@remote.example", (0,))[0] == 2, 20, "results recorded")
    full = rows()["full@remote.example"]
    assert full[1] == "4.1.1" and "mailbox is full" in full[2]
    # A filter cannot turn a failure into a success: deny bounced as 5.7.1 (its notice waits for
    # the message to complete, i.e. for the deferred recipient).
    assert rows()["deny@remote.example"][:2] == (3, "5.7.1")
    postern.wait_log("qmgr", r"cannot change success into failure or back; ignored")
    # The success text was rewritten by the filter; the notice waits for the full recipient.
    ok = rows()["ok@remote.example"]
    assert ok[1] == "2.0.0" and ok[2].endswith("2.0.0 taken"), ok


def test_no_delay_warning_for_null_sender_or_notify_never(postern, local_users, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "450 4.2.0 try again later")
    postern.configure(relayhost=f"[127.0.0.1]:{port}", delay_warning_time="1s",
                      minimal_backoff_time="1s", maximal_backoff_time="1s", queue_run_delay="1s")
    start(postern)
    null = send(postern, [("late@remote.example", [])], msg("null@test"), sender="")
    never = send(postern, [("late@remote.example", ["NOTIFY=NEVER"])], msg("never@test"))
    attempts = lambda qid: postern.queue_rows(
        "SELECT max(r.attempts) FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.queue_id = ?", (qid,))[0][0]
    postern.wait_for(lambda: attempts(null) >= 3 and attempts(never) >= 3, 20, "three attempts each")
    assert "delay notification" not in postern.log("qmgr")
    assert postern.queue_count() == 2
    assert notices(postern, "ptest1") == []
    # The NOTIFY=NEVER message was looked at (nothing to say) and is not looked at again.
    assert postern.queue_rows("SELECT delay_warned FROM messages WHERE queue_id = ?", (never,)) == [(1,)]


def test_lmtp_per_recipient_relayed_and_filtered(postern, local_users):
    """LMTP without DSN: per-recipient end-of-data replies; the one that asked for SUCCESS is
    reported relayed; lmtp_delivery_status_filter turns a 5.2.2 quota reply into a deferral."""
    rules = postern.etc_dir / "lmtp_dsn_filter"
    rules.write_text("/^5(\\.2\\.2 .*over quota.*)/ 4$1\n")
    s = Scripted(lmtp=True, ehlo="250-scripted\r\n250-PIPELINING\r\n250 8BITMIME", replies={
        "DOT": lambda accepted: ["552 5.2.2 <%s> over quota" % a if a.startswith("full")
                                 else "250 2.0.0 <%s> ok" % a for a in accepted]})
    try:
        postern.configure(transport_maps=f"inline:{{ lmtp.example=lmtp:inet:127.0.0.1:{s.port} }}",
                          lmtp_delivery_status_filter=f"regexp:{rules}", minimal_backoff_time="600s")
        start(postern)
        qid = send(postern, [("ok@lmtp.example", ["NOTIFY=SUCCESS"]), ("plain@lmtp.example", []),
                             ("full@lmtp.example", [])], msg("lmtp-dsn@test"))
        rows = lambda: {a: (st, d) for a, st, d in postern.queue_rows(
            "SELECT r.address, r.state, r.dsn_status FROM recipients r JOIN messages m "
            "ON m.id = r.message_id WHERE m.queue_id = ?", (qid,))}
        postern.wait_for(lambda: rows().get("full@lmtp.example", (0,))[0] == 1, 20, "full deferred")
        assert rows() == {"ok@lmtp.example": (2, "2.0.0"), "plain@lmtp.example": (2, "2.0.0"),
                          "full@lmtp.example": (1, "4.2.2")}
        assert not any("NOTIFY=" in c for c in s.commands)   # the server offered no DSN
        # The message is not finished (full waits 600 s): no notice yet; the relayed flag waits
        # in the queue for the success notice.
        flags = dict(postern.queue_rows("SELECT address, flags FROM recipients"))
        assert flags["ok@lmtp.example"] & 1 and not flags["plain@lmtp.example"] & 1
        assert notices(postern, "ptest1") == []
        # The quota clears; a flush retries now and the finished message sends its notice,
        # naming the one recipient that asked, as relayed (from the flag kept in the queue).
        s.replies["DOT"] = lambda accepted: ["250 2.0.0 <%s> ok" % a for a in accepted]
        assert postern.posternctl("flush").returncode == 0
        (n,) = wait_notices(postern, "ptest1", "Successful Mail Delivery Report")
        _, rcpts, _ = report(n)
        assert list(by_rcpt(rcpts)) == ["ok@lmtp.example"]
        assert rcpts[0]["Action"] == "relayed"
        assert rcpts[0]["Remote-MTA"] == "dns; 127.0.0.1"
        postern.wait_queue_empty()
    finally:
        s.stop()
