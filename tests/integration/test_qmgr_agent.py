"""postern-qmgr against a scripted delivery agent: the test plays postern-local on the "local"
socket (the harness's listener), injects messages straight into queue.db, and checks what qmgr
asks, records, logs, bounces and removes — independent of postern-smtpd and postern-local."""

import email
import email.policy
import json
import os
import pwd
import random
import sqlite3
import string
import subprocess
import sys
import threading
import time

import pytest

from postern_harness import FakeAgent, ipc_call, qmgr_past_startup_scan, xtext_decode


class FakeLocal(FakeAgent):
    """Accepts delivery requests on the harness's "local" listener (or another: listener=) and
    answers them with policy(rcpt) -> (action, dsn, diag), or None to hang up without an answer."""

    def __init__(self, postern, policy=None, hold=None, hold_when=None, listener="local"):
        self.policy = policy or (lambda rcpt: ("delivered", "2.0.0", "delivered to mailbox"))
        super().__init__(postern, listener, self._answer, hold, hold_when)

    def _answer(self, req):
        count = int(req.get("count", 0))
        reply = {"status": "ok", "count": count}
        for i in range(count):
            res = self.policy(req[f"rcpt.{i}"])
            if res is None:
                return None
            action, dsn, diag = res
            reply.update({f"rcpt_id.{i}": req[f"rcpt_id.{i}"], f"action.{i}": action,
                          f"dsn.{i}": dsn, f"diag.{i}": diag})
        return reply

    def rcpts(self):
        with self.lock:
            return [r[f"rcpt.{i}"] for r in self.requests for i in range(int(r["count"]))]



@pytest.fixture
def fake_local(postern):
    agents = []

    def make(**kw):
        a = FakeLocal(postern, **kw)
        agents.append(a)
        return a
    yield make
    for a in agents:
        if a.hold is not None:
            a.hold.set()
        a.stop()


# --- the queue ----------------------------------------------------------------------------

def new_queue_id():
    return "T" + "".join(random.choice(string.digits + string.ascii_uppercase) for _ in range(12))


def inject(postern, sender, rcpts, body=None, arrival=None, is_bounce=False, states=None, ret=0):
    """Inserts one message as postern-smtpd would; returns its queue id."""
    qid = new_queue_id()
    if body is None:
        body = (f"Received: by client.test\nFrom: <{sender}>\nSubject: test {qid}\n"
                f"Message-ID: <{qid}@client.test>\n\nHello {qid}.\n")
    data = body.encode()
    arrival = arrival if arrival is not None else int(time.time() * 1e6)
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    try:
        with con:
            cur = con.execute(
                "INSERT INTO messages (queue_id, sender, arrival_usec, size, protocol, ret, is_bounce)"
                " VALUES (?, ?, ?, ?, 'ESMTP', ?, ?)", (qid, sender, arrival, len(data), ret,
                                                        1 if is_bounce else 0))
            mid = cur.lastrowid
            for i, r in enumerate(rcpts):
                state = states[i] if states else 0
                con.execute("INSERT INTO recipients (message_id, address, state) VALUES (?, ?, ?)",
                            (mid, r, state))
            con.execute("INSERT INTO content (message_id, data) VALUES (?, ?)", (mid, data))
    finally:
        con.close()
    return qid


def wakeup(postern):
    return ipc_call(postern.socket_dir / "qmgr", {"request": "wakeup"})


def assert_one_request_in_flight(postern, listener, domain, start_qmgr):
    """With a destination concurrency limit of 1 (set by start_qmgr(), which starts qmgr), three
    messages for domain reach the agent on listener one request at a time (test_virtual.py,
    test_pipe.py)."""
    hold = threading.Event()
    agent = FakeLocal(postern, listener=listener, hold=hold)
    try:
        start_qmgr()
        qids = [inject(postern, "alice@example.org", [f"c{i}@{domain}"]) for i in range(3)]
        wakeup(postern)
        postern.wait_for(lambda: len(agent.requests) >= 1, what="the first request")
        time.sleep(0.5)   # absence: no second request while the first is held
        assert len(agent.requests) == 1
        hold.set()
        for qid in qids:
            postern.wait_log("qmgr", rf"{qid}: removed")
        assert len(agent.requests) == 3
    finally:
        hold.set()
        agent.stop()


def rcpt_rows(postern, qid):
    return postern.queue_rows(
        "SELECT r.address, r.state, r.attempts, r.next_attempt_usec, r.dsn_status, r.diag "
        "FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ?", (qid,))


def content_of(postern, qid):
    rows = postern.queue_rows("SELECT c.data FROM content c JOIN messages m ON m.id = c.message_id "
                              "WHERE m.queue_id = ?", (qid,))
    return rows[0][0] if rows else None


def start_qmgr(postern, **conf):
    postern.configure(**conf)
    postern.start("qmgr")   # creates queue.db (QUEUE_OPEN_CREATE)


def deferred_once(postern, fake_local):
    """qmgr (minimal_backoff_time 600s) with an agent that defers the first attempt (4.2.2 mailbox
    full) and delivers the next; one message for ptest1, whose deferral is recorded when this
    returns. Returns (agent, queue id)."""
    answers = iter([("deferred", "4.2.2", "mailbox full"), ("delivered", "2.0.0", "ok")])
    agent = fake_local(policy=lambda rcpt: next(answers))
    start_qmgr(postern, minimal_backoff_time="600s")
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    wakeup(postern)
    postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, what="deferral recorded")
    return agent, qid


# --- tests ---------------------------------------------------------------------------------

def test_delivered_message_is_removed(postern, fake_local):
    agent = fake_local()
    start_qmgr(postern, queue_run_delay="300s")
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test", "ptest2@localhost"])
    assert wakeup(postern)["status"] == "ok"
    postern.wait_log("qmgr", rf"{qid}: removed")
    log = postern.log("qmgr")
    assert f"{qid}: from=<alice@example.org>, size=" in log
    assert "nrcpt=2 (queue active)" in log
    assert postern.queue_count() == 0
    # both local recipients went in one request, with the fields docs/architecture.md lists
    reqs = [r for r in agent.requests if r["queue_id"] == qid]
    assert len(reqs) == 1
    r = reqs[0]
    assert r["request"] == "deliver" and r["sender"] == "alice@example.org"
    assert r["count"] == "2" and r["nexthop"] == "postern.test"
    assert {r["rcpt.0"], r["rcpt.1"]} == {"ptest1@postern.test", "ptest2@localhost"}
    assert int(r["active"]) >= int(r["arrival"]) > 0


def test_unknown_request_is_an_error(postern):
    start_qmgr(postern)
    reply = ipc_call(postern.socket_dir / "qmgr", {"request": "frobnicate"})
    assert reply["status"] == "error"
    assert wakeup(postern)["status"] == "ok"


def test_remote_recipient_is_deferred_with_clear_reason(postern, fake_local):
    # Remote mail goes to postern-smtp (test_smtp_client.py); a retry: route is deferred by qmgr.
    agent = fake_local()
    start_qmgr(postern, minimal_backoff_time="700s", maximal_backoff_time="4000s",
               default_transport="retry:4.3.0 remote delivery is off in this test")
    before = time.time()
    qid = inject(postern, "alice@example.org", ["bob@remote.example", "ptest1@postern.test"])
    wakeup(postern)
    m = postern.wait_log("qmgr", rf"{qid}: to=<bob@remote\.example>, relay=none, delay=[0-9.]+, "
                                 rf"delays=[0-9.]+/[0-9.]+/0/0, dsn=4\.3\.0, status=deferred \((.*)\)")
    assert m.group(1) == "remote delivery is off in this test"
    postern.wait_for(lambda: [r for r in rcpt_rows(postern, qid) if r[1] != 0 and
                              r[0] == "bob@remote.example"], what="the deferral recorded")
    rows = {r[0]: r for r in rcpt_rows(postern, qid)}
    _, state, attempts, next_attempt, dsn, diag = rows["bob@remote.example"]
    assert (state, attempts, dsn) == (1, 1, "4.3.0")
    assert before + 700 - 5 < next_attempt / 1e6 < time.time() + 700 + 5
    postern.wait_for(lambda: {r[0]: r[1] for r in rcpt_rows(postern, qid)}.get("ptest1@postern.test") == 2,
                     what="the local recipient delivered")
    assert agent.rcpts() == ["ptest1@postern.test"]   # remote never went to local
    assert f"{qid}: removed" not in postern.log("qmgr")


def test_expired_recipient_bounces_to_sender(postern, fake_local):
    agent = fake_local()
    start_qmgr(postern, maximal_queue_lifetime="1s", minimal_backoff_time="1s",
               maximal_backoff_time="1s", queue_run_delay="1s", default_transport="retry:4.3.0 remote delivery is off in this test")
    qid = inject(postern, "ptest1@postern.test", ["bob@remote.example"])
    wakeup(postern)
    m = postern.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ([0-9A-Z]+)", timeout=15)
    bounce_id = m.group(1)
    log = postern.log("qmgr")
    assert f"{qid}: from=<ptest1@postern.test>, status=expired, returned to sender" in log
    assert f"{qid}: removed" in log
    # the notification is new mail for the sender, delivered by "local"
    postern.wait_log("qmgr", rf"{bounce_id}: removed")
    reqs = [r for r in agent.requests if r["queue_id"] == bounce_id]
    assert reqs and reqs[0]["sender"] == "" and reqs[0]["rcpt.0"] == "ptest1@postern.test"


def test_bounce_is_rfc3464_and_parses(postern, fake_local):
    hold = threading.Event()   # keep the bounce in the queue so its content can be read
    agent = fake_local(policy=lambda rcpt: ("bounced", "5.1.1", f'unknown user: "{rcpt}"')
                       if rcpt.startswith("nobody") else ("delivered", "2.0.0", "ok"),
                       hold=hold, hold_when=lambda req: req["sender"] == "")
    start_qmgr(postern)
    body = ("From: Alice <ptest1@postern.test>\nSubject: report me\nMessage-ID: <orig@x>\n\n"
            "original body\n")
    qid = inject(postern, "ptest1@postern.test", ["nobody@postern.test", "ptest2@postern.test"],
                 body=body)
    wakeup(postern)
    m = postern.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ([0-9A-Z]+)")
    bounce_id = m.group(1)
    raw = content_of(postern, bounce_id)
    hold.set()
    assert raw is not None
    rows = postern.queue_rows("SELECT sender, is_bounce FROM messages WHERE queue_id = ?", (bounce_id,))
    assert rows == [("", 1)]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "ptest1@postern.test"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "MAILER-DAEMON@postern.test" in msg["From"]
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status",
                                                     "message/rfc822"]
    assert "nobody@postern.test" in parts[0].get_content()
    assert "ptest2" not in parts[0].get_content()
    status = parts[1].get_payload()
    assert status[0]["Reporting-MTA"] == "dns; postern.test"
    assert status[1]["Final-Recipient"] == "rfc822; nobody@postern.test"
    assert status[1]["Action"] == "failed"
    assert status[1]["Status"] == "5.1.1"
    assert "unknown user" in status[1]["Diagnostic-Code"]
    orig = parts[2].get_payload()[0]
    assert orig["Message-ID"] == "<orig@x>"
    postern.wait_log("qmgr", rf"{bounce_id}: removed")


def test_bounce_of_a_bounce_goes_to_postmaster_once(postern, fake_local):
    agent = fake_local(policy=lambda rcpt: ("bounced", "5.1.1", "unknown user"))
    start_qmgr(postern)
    qid = inject(postern, "", ["nobody@postern.test"], is_bounce=True)
    wakeup(postern)
    m = postern.wait_log("qmgr", rf"{qid}: postmaster non-delivery notification: ([0-9A-Z]+)")
    postern.wait_log("qmgr", rf"{qid}: removed")
    # The postmaster notice bounces too (the fake agent bounces everything): it is dropped.
    postern.wait_log("qmgr", rf"{m.group(1)}: delivery status notification undeliverable, discarded")
    time.sleep(0.5)   # absence: a loop would show up as more notifications by now
    assert postern.log("qmgr").count("non-delivery notification") == 1
    assert postern.log("qmgr").count("discarded") == 1   # the postmaster notice only
    assert postern.queue_count() == 0
    assert [r["rcpt.0"] for r in agent.requests] == ["nobody@postern.test", "postmaster"]
    assert agent.requests[1]["sender"] == "double-bounce@postern.test"


def test_chain_unknown_sender_bounces_once_then_stops(postern, fake_local):
    agent = fake_local(policy=lambda rcpt: ("bounced", "5.1.1", "unknown user"))
    start_qmgr(postern)
    qid = inject(postern, "ghost@postern.test", ["nobody@postern.test"])
    wakeup(postern)
    m = postern.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ([0-9A-Z]+)")
    postern.wait_log("qmgr", rf"{m.group(1)}: removed")
    # message -> bounce to ghost (fails) -> postmaster notice (fails, dropped): three attempts.
    postern.wait_log("qmgr", rf"{m.group(1)}: postmaster non-delivery notification: ")
    postern.wait_for(lambda: postern.queue_count() == 0)
    time.sleep(0.5)   # absence: a fourth attempt or a third notification would show by now
    assert postern.log("qmgr").count("non-delivery notification") == 2
    assert postern.queue_count() == 0
    assert len(agent.requests) == 3


def test_agent_unavailable_defers_with_backoff(postern, fake_local):
    agent = fake_local(policy=lambda rcpt: None)   # hangs up without an answer
    start_qmgr(postern, minimal_backoff_time="500s")
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    wakeup(postern)
    m = postern.wait_log("qmgr", rf"{qid}: to=<ptest1@postern\.test>, relay=none, .*dsn=4\.3\.0, "
                                 rf"status=deferred \((delivery agent unavailable[^)]*)\)")
    postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, what="deferral recorded")
    row = rcpt_rows(postern, qid)[0]
    assert row[2] == 1 and row[3] / 1e6 > time.time() + 400
    witness = inject(postern, "alice@example.org", ["ptest2@postern.test"])
    wakeup(postern)
    postern.wait_log("qmgr", rf"{witness}: to=<ptest2@postern\.test>, .*status=deferred")   # scanned
    assert agent.rcpts().count("ptest1@postern.test") == 1   # not retried before its time


def test_agent_deferral_then_flush_retries_now(postern, fake_local):
    agent, qid = deferred_once(postern, fake_local)
    row = rcpt_rows(postern, qid)[0]
    assert row[4:] == ("4.2.2", "mailbox full")
    # local logs its own deferrals; qmgr does not repeat them
    assert f"{qid}: to=<" not in postern.log("qmgr")
    assert ipc_call(postern.socket_dir / "qmgr", {"request": "flush"})["status"] == "ok"
    postern.wait_log("qmgr", rf"{qid}: removed", timeout=5)
    assert len(agent.requests) == 2


def test_wakeup_makes_delivery_fast(postern, fake_local):
    fake_local()
    start_qmgr(postern, queue_run_delay="300s")
    qmgr_past_startup_scan(postern)
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    t0 = time.monotonic()
    wakeup(postern)
    postern.wait_log("qmgr", rf"{qid}: removed", timeout=5)
    assert time.monotonic() - t0 < 2


def test_finished_but_not_removed_message_is_swept_at_start(postern):
    postern.start("qmgr")
    postern.kill("qmgr")
    qid = inject(postern, "alice@example.org", ["a@postern.test", "b@postern.test"], states=[2, 2])
    postern.restart("qmgr")
    postern.wait_log("qmgr", rf"{qid}: removed")


def inject_finished(postern, n, sender="alice@example.org"):
    """Inserts n messages whose recipients are all delivered (as after a crash between the last
    result and the removal), in one transaction; returns their queue ids."""
    ids = []
    now = int(time.time() * 1e6)
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    try:
        with con:
            for i in range(n):
                qid = new_queue_id()
                cur = con.execute("INSERT INTO messages (queue_id, sender, arrival_usec, size, protocol)"
                                  " VALUES (?, ?, ?, 5, 'ESMTP')", (qid, sender, now + i))
                mid = cur.lastrowid
                for r in ("a@postern.test", "b@postern.test"):
                    con.execute("INSERT INTO recipients (message_id, address, state, dsn_status)"
                                " VALUES (?, ?, 2, '2.0.0')", (mid, r))
                con.execute("INSERT INTO content (message_id, data) VALUES (?, ?)", (mid, b"hello"))
                ids.append(qid)
    finally:
        con.close()
    return ids


def finished_count(postern):
    return postern.queue_rows(
        "SELECT count(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM recipients r"
        " WHERE r.message_id = m.id AND r.state IN (0, 1))")[0][0]


def test_startup_sweep_of_a_large_backlog_keeps_answering(postern, fake_local):
    """The sweep for finished messages runs in batches: requests are answered while it goes on
    (a sweep of the whole queue inside one event would starve them and the watchdog), and each
    finished message still goes through the completion (bounce if a recipient bounced)."""
    agent = fake_local()
    postern.start("qmgr")
    postern.kill("qmgr")
    n = 3000
    ids = inject_finished(postern, n)
    bounced = inject(postern, "ptest1@postern.test", ["gone@postern.test", "ok@postern.test"],
                     states=[3, 2])
    pending = inject(postern, "alice@example.org", ["ptest2@postern.test"])
    postern.restart("qmgr")
    t0 = time.monotonic()
    reply = wakeup(postern)
    latency = time.monotonic() - t0
    left = finished_count(postern)
    assert reply["status"] == "ok"
    assert left > 0, "the request was answered only after the whole sweep"
    assert latency < 2, latency
    postern.wait_for(lambda: finished_count(postern) == 0, timeout=120, what="the sweep to finish")
    postern.wait_log("qmgr", rf"{bounced}: sender non-delivery notification: [0-9A-Z]+")
    postern.wait_log("qmgr", rf"{pending}: removed")
    postern.wait_log("qmgr", rf"sweep: {n + 1} finished messages found")
    log = postern.log("qmgr")
    for qid in ids[:: n // 30]:
        assert f"{qid}: removed" in log
    assert log.count(": removed") >= n + 2
    assert "ptest2@postern.test" in agent.rcpts()


def test_sweep_skips_messages_whose_completion_fails(postern, fake_local):
    """A finished message that cannot be completed (here: its bounce cannot be built, the content
    is gone) must not stop the sweep from reaching the messages after it."""
    fake_local()
    postern.start("qmgr")
    postern.kill("qmgr")
    broken = inject(postern, "ptest1@postern.test", ["gone@postern.test"], states=[3])
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    with con:
        con.execute("DELETE FROM content WHERE message_id = (SELECT id FROM messages WHERE queue_id = ?)",
                    (broken,))
    con.close()
    ids = inject_finished(postern, 120)
    postern.restart("qmgr")
    postern.wait_for(lambda: finished_count(postern) == 1, timeout=30, what="the others swept")
    assert postern.queue_rows("SELECT queue_id FROM messages") == [(broken,)]

    def all_logged():   # the rows go first, the log lines follow
        text = postern.log("qmgr")
        return all(f"{qid}: removed" in text for qid in ids)
    postern.wait_for(all_logged, timeout=10, what="a 'removed' line for each swept message")


def test_many_recipients_are_split_into_requests(postern, fake_local):
    agent = fake_local()
    start_qmgr(postern)
    rcpts = [f"user{i}@postern.test" for i in range(120)]
    qid = inject(postern, "alice@example.org", rcpts)
    wakeup(postern)
    postern.wait_log("qmgr", rf"{qid}: removed")
    counts = sorted(int(r["count"]) for r in agent.requests)
    assert counts == [20, 50, 50]
    assert sorted(agent.rcpts()) == sorted(rcpts)


def test_kill9_with_requests_in_flight_loses_nothing(postern, fake_local):
    """Results recorded before the kill are never asked for again; requests without a recorded
    result are asked again after the restart (the agent must then deliver idempotently)."""
    hold = threading.Event()
    answered = []

    def policy(rcpt):
        answered.append(rcpt)
        return ("delivered", "2.0.0", "ok")
    agent = fake_local(policy=policy)
    start_qmgr(postern, default_process_limit="1")
    first = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    wakeup(postern)
    postern.wait_log("qmgr", rf"{first}: removed")
    agent.hold = hold   # the next requests hang in the "agent"
    ids = [inject(postern, "alice@example.org", [f"u{i}@postern.test"]) for i in range(5)]
    wakeup(postern)
    postern.wait_for(lambda: len(agent.requests) >= 2, what="a request in flight")
    postern.kill("qmgr")
    hold.set()
    postern.restart("qmgr")
    for qid in ids:
        postern.wait_log("qmgr", rf"{qid}: removed")
    assert agent.rcpts().count("ptest1@postern.test") == 1
    for i in range(5):
        assert agent.rcpts().count(f"u{i}@postern.test") >= 1
    # only the one request in flight at the kill (default_process_limit=1) may be asked twice
    assert len(agent.rcpts()) <= 1 + 5 + 1


def test_reload_applies_new_parameters(postern, fake_local):
    fake_local(policy=lambda rcpt: ("deferred", "4.2.2", "mailbox full"))
    start_qmgr(postern, minimal_backoff_time="600s")
    postern.configure(minimal_backoff_time="1000s")
    postern.reload("qmgr")
    postern.wait_log("qmgr", r"reload")
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    wakeup(postern)
    postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, what="deferral recorded")
    assert rcpt_rows(postern, qid)[0][3] / 1e6 > time.time() + 900


def test_sigterm_exits_cleanly(postern):
    postern.start("qmgr")
    assert postern.stop()["qmgr"] == 0


def test_per_recipient_concurrency_limit(postern, fake_local):
    hold = threading.Event()
    agent = fake_local(hold=hold)
    start_qmgr(postern, local_destination_concurrency_limit="2", default_process_limit="10")
    same = [inject(postern, "alice@example.org", ["ptest1@postern.test"]) for _ in range(5)]
    other = inject(postern, "alice@example.org", ["ptest2@postern.test"])
    wakeup(postern)
    # two requests for ptest1 (the limit) and the one for ptest2, which is not held up behind them
    postern.wait_for(lambda: len(agent.requests) >= 3, what="three requests")
    time.sleep(0.5)   # absence: no request beyond the limit while the first ones are held
    assert sorted(agent.rcpts()) == ["ptest1@postern.test"] * 2 + ["ptest2@postern.test"]
    hold.set()
    for qid in same + [other]:
        postern.wait_log("qmgr", rf"{qid}: removed")
    assert agent.rcpts().count("ptest1@postern.test") == 5


def test_waiting_messages_for_one_recipient_share_a_request(postern, fake_local):
    """Messages for one local recipient that wait behind local_destination_concurrency_limit go
    to postern-local together: one request (still one delivery for the limit) with each message's
    own queue_id.N, sender.N, arrival.N and active.N, answered and recorded recipient by recipient."""
    hold = threading.Event()
    agent = fake_local(hold=hold)
    start_qmgr(postern, local_destination_concurrency_limit="2", default_process_limit="10")
    same = [inject(postern, f"s{i}@example.org", ["ptest1@postern.test"]) for i in range(6)]
    wakeup(postern)
    postern.wait_for(lambda: len(agent.requests) >= 2, what="two requests")
    time.sleep(0.5)
    assert len(agent.requests) == 2   # the limit holds; the other four wait
    hold.set()
    for qid in same:
        postern.wait_log("qmgr", rf"{qid}: removed")
    reqs = agent.requests
    assert [int(r["count"]) for r in reqs] == [1, 1, 4], reqs
    batch = reqs[2]
    qids = [batch["queue_id"]] + [batch[f"queue_id.{i}"] for i in range(1, 4)]
    assert "queue_id.0" not in batch
    assert sorted(qids + [reqs[0]["queue_id"], reqs[1]["queue_id"]]) == sorted(same)
    for i in range(1, 4):
        n = same.index(batch[f"queue_id.{i}"])
        assert batch[f"sender.{i}"] == f"s{n}@example.org"
        assert int(batch[f"arrival.{i}"]) > 0 and int(batch[f"active.{i}"]) > 0
        assert batch[f"rcpt.{i}"] == "ptest1@postern.test"
    assert postern.queue_rows("SELECT count(*) FROM messages") == [(0,)]   # recorded, removed


def control(postern, verb, qid):
    return ipc_call(postern.socket_dir / "qmgr", {"request": verb, "queue_id": qid})


def test_hold_and_release(postern, fake_local):
    agent = fake_local()
    start_qmgr(postern, queue_run_delay="300s")
    qmgr_past_startup_scan(postern)
    qid = inject(postern, "alice@example.org", ["ptest1@postern.test"])
    assert control(postern, "hold", qid) == {"status": "ok", "count": "1"}
    witness = inject(postern, "alice@example.org", ["ptest2@postern.test"])
    wakeup(postern)
    postern.wait_log("qmgr", rf"{witness}: removed")   # the scan after the hold has run
    assert agent.rcpts() == ["ptest2@postern.test"]
    assert postern.queue_rows("SELECT hold FROM messages WHERE queue_id = ?", (qid,)) == [(1,)]
    assert control(postern, "release", qid)["status"] == "ok"
    postern.wait_log("qmgr", rf"{qid}: removed")
    log = postern.log("qmgr")
    assert f"{qid}: placed on hold" in log and f"{qid}: released from hold" in log


def test_delete_all_removes_without_bounce(postern, fake_local):
    fake_local()
    start_qmgr(postern, default_transport="retry:4.3.0 remote delivery is off in this test")
    ids = [inject(postern, "alice@example.org", ["bob@remote.example"]) for _ in range(3)]
    wakeup(postern)
    for qid in ids:
        postern.wait_log("qmgr", rf"{qid}: to=<bob@remote\.example>.*status=deferred")
    assert control(postern, "delete", "ALL") == {"status": "ok", "count": "3"}
    assert postern.queue_count() == 0
    for qid in ids:
        assert f"{qid}: removed" in postern.log("qmgr")
    assert "non-delivery" not in postern.log("qmgr")


def test_requeue_retries_now_and_unknown_id_is_an_error(postern, fake_local):
    agent, qid = deferred_once(postern, fake_local)
    assert control(postern, "requeue", qid) == {"status": "ok", "count": "1"}
    postern.wait_log("qmgr", rf"{qid}: removed", timeout=5)
    assert len(agent.requests) == 2
    reply = control(postern, "requeue", "NOSUCHID")
    assert reply["status"] == "error" and "no such message" in reply["reason"]


def test_delete_during_delivery_drops_unstarted_requests(postern, fake_local):
    hold = threading.Event()
    agent = fake_local(hold=hold)
    start_qmgr(postern, default_process_limit="1")
    qid = inject(postern, "alice@example.org", [f"user{i}@postern.test" for i in range(120)])
    wakeup(postern)
    postern.wait_for(lambda: len(agent.requests) == 1, what="the first request")
    assert control(postern, "delete", qid)["status"] == "ok"
    hold.set()
    postern.wait_log("qmgr", rf"{qid}: removed")
    time.sleep(0.3)   # absence: no dropped request reaches the agent late
    assert len(agent.requests) == 1
    assert postern.queue_count() == 0
    assert "non-delivery" not in postern.log("qmgr")


def test_sigterm_with_requests_in_flight(postern, fake_local):
    hold = threading.Event()
    agent = fake_local(hold=hold)
    start_qmgr(postern)
    ids = [inject(postern, "alice@example.org", [f"u{i}@postern.test", "bob@remote.example"])
           for i in range(4)]
    wakeup(postern)
    postern.wait_for(lambda: len(agent.requests) == 4, what="four requests in flight")
    assert postern.stop()["qmgr"] == 0
    hold.set()
    # nothing was recorded for them: they are all still queued, to be delivered after a restart
    assert postern.queue_count() == 4


# --- who may do what on the qmgr socket ------------------------------------------------------

CALL_AS_SCRIPT = """
import json, socket, sys
path, rec = sys.argv[1], json.loads(sys.argv[2])
def enc(v):
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else "+%02X" % ord(c) for c in v)
with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
    s.settimeout(5)
    try:
        s.connect(path)
    except OSError as e:
        print(json.dumps({"connect_error": e.strerror}))
        sys.exit(0)
    s.sendall(("".join(f"{k}={enc(str(v))}\\n" for k, v in rec.items()) + "\\n").encode())
    f = s.makefile("rb")
    out = {}
    for line in f:
        line = line.rstrip(b"\\n").decode()
        if not line:
            break
        k, _, v = line.partition("=")
        out[k] = v
print(json.dumps(out))
"""


def call_as(postern, user, rec):
    """Sends one request to qmgr from a process running as user; returns the reply (values
    still xtext-encoded; fine for the words checked here)."""
    pw = pwd.getpwnam(user)

    def drop():
        os.setgroups([])
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    r = subprocess.run([sys.executable, "-c", CALL_AS_SCRIPT, str(postern.socket_dir / "qmgr"),
                        json.dumps(rec)], capture_output=True, text=True, preexec_fn=drop,
                       timeout=30, check=True)
    reply = json.loads(r.stdout)
    return {k: xtext_decode(v) for k, v in reply.items()}


def test_ordinary_user_may_flush_but_not_administer(postern, fake_local, local_users):
    agent, qid = deferred_once(postern, fake_local)
    uid = local_users["ptest1"].pw_uid

    for verb in ("delete", "hold", "release", "requeue"):
        reply = call_as(postern, "ptest1", {"request": verb, "queue_id": qid})
        assert reply.get("status") == "error", (verb, reply)
        assert reply["reason"] == f"permission denied: only root or postern may {verb} queued mail"
        postern.wait_log("qmgr", rf"refused {verb} {qid} from uid {uid}: permission denied")
    reply = call_as(postern, "ptest1", {"request": "delete", "queue_id": "ALL"})
    assert reply["status"] == "error"
    assert postern.queue_rows("SELECT hold FROM messages WHERE queue_id = ?", (qid,)) == [(0,)]
    assert len(agent.requests) == 1
    assert f"{qid}: removed" not in postern.log("qmgr")

    # wakeup and flush are for anyone (sendmail -q, postqueue -f)
    assert call_as(postern, "ptest1", {"request": "wakeup"}) == {"status": "ok"}
    assert call_as(postern, "ptest1", {"request": "flush"}) == {"status": "ok"}
    postern.wait_log("qmgr", rf"flush requested by uid {uid}")
    postern.wait_log("qmgr", rf"{qid}: removed", timeout=5)
    assert len(agent.requests) == 2


def test_mail_owner_may_administer(postern, fake_local, local_users):
    fake_local()
    start_qmgr(postern, mail_owner="ptest2", queue_run_delay="300s")
    qmgr_past_startup_scan(postern)
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    assert call_as(postern, "ptest2", {"request": "hold", "queue_id": qid}) == {"status": "ok",
                                                                                "count": "1"}
    reply = call_as(postern, "ptest1", {"request": "delete", "queue_id": qid})
    assert reply["reason"] == "permission denied: only root or ptest2 may delete queued mail"
    assert call_as(postern, "ptest2", {"request": "delete", "queue_id": qid})["status"] == "ok"
    postern.wait_log("qmgr", rf"{qid}: removed")
    assert postern.queue_count() == 0


def test_unknown_mail_owner_leaves_root_only(postern, fake_local, local_users):
    fake_local()
    start_qmgr(postern, mail_owner="no-such-postern-user", queue_run_delay="300s")
    assert "mail_owner no-such-postern-user: no such user" in postern.log("qmgr")
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    assert call_as(postern, "ptest1", {"request": "hold", "queue_id": qid})["status"] == "error"
    assert control(postern, "hold", qid) == {"status": "ok", "count": "1"}
