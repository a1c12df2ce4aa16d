"""postern-qmgr's scheduler with postern-smtp and real SMTP peers: slow start and the
per-destination concurrency limit, the recipient limit (Postfix's smtp-sink counts the
transactions), dead destinations (nothing listening, 421 greeting) suspended without further
connections while other destinations keep receiving, revival by a probe, fairness towards a fast
destination while a slow one is saturated, the per-transport process limit, and
qmgr_message_active_limit with a queue twenty times larger; all remote deliveries in flight share
one multiplexed connection to the agent, and an agent that hangs up defers exactly them."""

import socket
import threading
import time

import pytest

from postern_harness import FakeAgent, ipc_call
from smtp_peers import Sink, free_port, peer_factory, read_data
from test_qmgr_agent import control, inject, rcpt_rows, wakeup


class Stats:
    """Counters shared by the listeners of one CountingServer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.connections = 0
        self.current = 0            # transactions between MAIL and the reply to end of data
        self.max = 0
        self.max_before_first_done = 0
        self.done = 0
        self.rcpt_counts = []       # recipients per completed transaction
        self.data_waiting = 0       # DATA commands held before their 354 (hold_data)
        self.replies_held = 0       # messages received whose 250 is held (hold_reply)
        self.starts = []            # time.monotonic() of each MAIL


class CountingServer:
    """A threaded SMTP server on one or more 127.0.0.x addresses that counts connections and
    transactions in progress. `delay` holds each end-of-data reply back; `hold_data` (an Event)
    holds each 354 until it is set, `hold_reply` each reply to the final "."; `greeting` may be a 4xx reply, after which the server hangs
    up (and can be changed while it runs)."""

    def __init__(self, hosts=("127.0.0.1",), delay=0.0, greeting="220 counting ESMTP", hold_data=None,
                 hold_reply=None):
        self.delay = delay
        self.hold_data = hold_data
        self.hold_reply = hold_reply
        self.greeting = greeting
        self.stats = Stats()
        self.socks = []
        self.ports = []
        self.stopped = False
        for h in hosts:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((h, 0))
            s.listen(200)
            self.socks.append(s)
            self.ports.append(s.getsockname()[1])
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    @property
    def port(self):
        return self.ports[0]

    def _accept(self, s):
        while not self.stopped:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with self.stats.lock:
                self.stats.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _end_txn(self, completed, rcpts=0):
        st = self.stats
        with st.lock:
            st.current -= 1
            if completed:
                st.done += 1
                st.rcpt_counts.append(rcpts)

    def _session(self, conn):
        f = conn.makefile("rb")
        in_txn = False
        rcpts = 0
        try:
            greeting = self.greeting
            conn.sendall(greeting.encode() + b"\r\n")
            if not greeting.startswith("220"):
                return
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250 counting\r\n")
                elif verb == b"MAIL":
                    with self.stats.lock:
                        st = self.stats
                        st.current += 1
                        st.max = max(st.max, st.current)
                        st.starts.append(time.monotonic())
                        if st.done == 0:
                            st.max_before_first_done = max(st.max_before_first_done, st.current)
                    in_txn, rcpts = True, 0
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    rcpts += 1
                    conn.sendall(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    if self.hold_data is not None:
                        with self.stats.lock:
                            self.stats.data_waiting += 1
                        self.hold_data.wait(30)
                    conn.sendall(b"354 go ahead\r\n")
                    if read_data(f) is None:
                        return
                    if self.delay:
                        time.sleep(self.delay)   # a slow server, by design
                    if self.hold_reply is not None:
                        with self.stats.lock:
                            self.stats.replies_held += 1
                        self.hold_reply.wait(30)
                    in_txn = False
                    self._end_txn(True, rcpts)
                    conn.sendall(b"250 2.0.0 Ok: queued\r\n")
                elif verb == b"RSET":
                    if in_txn:
                        in_txn = False
                        self._end_txn(False)
                    conn.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except OSError:
            return
        finally:
            if in_txn:
                self._end_txn(False)
            conn.close()

    def stop(self):
        self.stopped = True
        for s in self.socks:
            s.close()


@pytest.fixture
def servers():
    yield from peer_factory(CountingServer)


class FakeSmtp(FakeAgent):
    """Plays postern-smtp on the harness's "smtp" listener: answers each delivery request with
    reply(request) -> a dict of reply attributes (status, count, action.N, ...)."""

    def __init__(self, postern, reply, hold=None):
        super().__init__(postern, "smtp", reply, hold)


def agent_reply(req, action, dsn, diag):
    n = int(req["count"])
    r = {"status": "ok", "count": str(n)}
    for i in range(n):
        r.update({f"rcpt_id.{i}": req[f"rcpt_id.{i}"], f"action.{i}": action, f"dsn.{i}": dsn,
                  f"diag.{i}": diag})
    return r


def start(postern, routes, daemons=("qmgr", "smtp"), **conf):
    """qmgr and smtp only; routes maps a domain to an smtp next hop."""
    maps = ", ".join(f"{d}=smtp:{hop}" for d, hop in routes.items())
    postern.configure(transport_maps=f"inline:{{ {maps} }}", queue_run_delay="300s", **conf)
    postern.start(*daemons)


def inject_many(postern, rcpts_per_msg):
    ids = [inject(postern, "alice@example.org", r) for r in rcpts_per_msg]
    wakeup(postern)
    return ids


def queue_size(postern):
    return postern.queue_rows("SELECT COUNT(*) FROM messages")[0][0]


def test_slow_start_then_concurrency_limit(postern, servers):
    s = servers(delay=0.4)
    start(postern, {"slow.test": f"[127.0.0.1]:{s.port}"}, initial_destination_concurrency="2",
          smtp_destination_concurrency_limit="4")
    inject_many(postern, [[f"u{i}@slow.test"] for i in range(24)])
    postern.wait_for(lambda: s.stats.done == 24, timeout=30, what="24 deliveries")
    # Before the first delivery finished only the initial window was open; successes opened it
    # up to the limit, never beyond.
    assert s.stats.max_before_first_done == 2
    assert s.stats.max == 4
    postern.wait_queue_empty()


@pytest.mark.parametrize("limit_conf,n,expect", [
    ({}, 120, [50, 50, 20]),
    ({"smtp_destination_recipient_limit": "7"}, 20, [7, 7, 6]),
    ({"default_destination_recipient_limit": "30"}, 40, [30, 10]),
])
def test_recipient_limit_splits_transactions(postern, limit_conf, n, expect):
    sink = Sink(postern.root / "sink")   # Postfix's smtp-sink dumps each transaction
    try:
        start(postern, {"split.test": f"[127.0.0.1]:{sink.port}"}, **limit_conf)
        qid, = inject_many(postern, [[f"r{i}@split.test" for i in range(n)]])
        dumps = sink.wait_count(len(expect))
        postern.wait_log("qmgr", rf"{qid}: removed", timeout=20)
        time.sleep(0.3)   # absence: no extra transaction reaches the sink after the removal
        dumps = sink.messages()
        assert sorted((d.count(b"X-Rcpt-Args: ") for d in dumps), reverse=True) == expect
        got = sorted(a.decode() for d in dumps for a in
                     [l.split(b"<", 1)[1].rstrip(b">") for l in d.split(b"\n")
                      if l.startswith(b"X-Rcpt-Args: ")])
        assert got == sorted(f"r{i}@split.test" for i in range(n))   # each exactly once
    finally:
        sink.stop()


@pytest.mark.parametrize("kind", ["refused", "421"])
def test_dead_destination_is_suspended_while_others_receive(postern, servers, kind):
    good = servers()
    if kind == "421":
        dead = servers(greeting="421 4.3.2 try again later")
        dead_port = dead.port
        reason = (rf"host 127\.0\.0\.1\[127\.0\.0\.1\]:{dead_port} refused to talk to me: "
                  r"421 4\.3\.2 try again later")
        dsn = r"4\.3\.2"
    else:
        dead, dead_port = None, free_port()
        reason = rf"connect to 127\.0\.0\.1\[127\.0\.0\.1\]:{dead_port}: Connection refused"
        dsn = r"4\.4\.1"
    start(postern, {"dead.test": f"[127.0.0.1]:{dead_port}", "good.test": f"[127.0.0.1]:{good.port}"},
          minimal_backoff_time="120s", maximal_backoff_time="240s")
    # Six messages: five go out at once (the initial window); failures shrink the window to 1
    # and a pseudo-cohort of failures kills the destination; the sixth is deferred unsent.
    first = inject_many(postern, [[f"x{i}@dead.test"] for i in range(6)])
    postern.wait_log("qmgr", rf"smtp: delivery to \[127\.0\.0\.1\]:{dead_port} suspended for 120 s: {reason}")
    for qid in first:
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what=f"{qid} deferred")
    conns = dead.stats.connections if dead else None
    if dead:
        assert 4 <= conns <= 5

    later = inject_many(postern, [[f"y{i}@dead.test"] for i in range(3)] +
                        [[f"g{i}@good.test"] for i in range(3)])
    postern.wait_for(lambda: good.stats.done == 3, timeout=10, what="good.test deliveries")
    for qid in later[:3]:
        postern.wait_log("qmgr", rf"{qid}: to=<y\d@dead\.test>, relay=none, delay=[0-9.]+, "
                                 rf"delays=[0-9./]+, dsn={dsn}, status=deferred "
                                 rf"\(delivery temporarily suspended: {reason}\)")
        row = rcpt_rows(postern, qid)[0]
        assert row[1] == 1 and row[5].startswith("delivery temporarily suspended: ")
    if dead:
        time.sleep(0.5)   # absence: no connection to the suspended destination
        assert dead.stats.connections == conns   # no connection while suspended
    postern.wait_log("qmgr", rf"{later[5]}: removed")


def test_dead_destination_is_probed_after_backoff_and_revives(postern, servers):
    s = servers(greeting="421 4.3.2 not yet")
    start(postern, {"back.test": f"[127.0.0.1]:{s.port}"}, initial_destination_concurrency="1",
          minimal_backoff_time="3s", maximal_backoff_time="3s")
    ids = inject_many(postern, [[f"z{i}@back.test"] for i in range(4)])
    postern.wait_log("qmgr", r"suspended for 3 s")
    assert s.stats.connections == 1        # window 1: one failure is a whole pseudo-cohort
    for qid in ids:
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what="deferred")
    s.greeting = "220 counting ESMTP"
    # After the backoff the deferred mail comes back; one probe goes first, then the rest.
    postern.wait_for(lambda: s.stats.done == 4, timeout=20, what="all four delivered")
    assert s.stats.max_before_first_done == 1
    postern.wait_queue_empty()


def dead_destination_with_deferred_mail(postern, servers, prefix, n, **conf):
    """A destination answering 421, suspended for 300 s (far beyond any test deadline), with n
    messages deferred to it; returns the server (greeting not changed yet) and the queue ids."""
    s = servers(greeting="421 4.3.2 down for now")
    start(postern, {"back.test": f"[127.0.0.1]:{s.port}"}, initial_destination_concurrency="1",
          minimal_backoff_time="300s", maximal_backoff_time="600s", **conf)
    ids = inject_many(postern, [[f"{prefix}{i}@back.test"] for i in range(n)])
    postern.wait_log("qmgr", r"smtp: delivery to \[127\.0\.0\.1\]:\d+ suspended for 300 s")
    for qid in ids:
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what=f"{qid} deferred")
    return s, ids


def test_flush_revives_a_dead_destination_at_once(postern, servers):
    # Postfix's postqueue -f: a flush retries deferred mail now, to destinations marked dead too.
    s, _ = dead_destination_with_deferred_mail(postern, servers, "f", 5)
    s.greeting = "220 counting ESMTP"
    assert ipc_call(postern.socket_dir / "qmgr", {"request": "flush"}) == {"status": "ok"}
    postern.wait_log("qmgr", r"flush: 1 suspended destination\(s\) may be tried again")
    postern.wait_for(lambda: s.stats.done == 5, timeout=15, what="all five delivered after the flush")
    postern.wait_queue_empty()


def test_flush_of_a_backlog_larger_than_the_active_set(postern, servers):
    # The flush goes on through the whole deferred backlog, qmgr_message_active_limit messages
    # at a time. It used to be forgotten by the first scan that found the active set full, and
    # the rest of the backlog waited for its retry time (tests/bench/backlog --curve 100000
    # drained 20,000 of 100,000).
    s, _ = dead_destination_with_deferred_mail(postern, servers, "b", 40, qmgr_message_active_limit="10")
    s.greeting = "220 counting ESMTP"
    s.delay = 0.1   # deliveries outlast qmgr's next scans, so they find the active set full
    assert ipc_call(postern.socket_dir / "qmgr", {"request": "flush"}) == {"status": "ok"}
    postern.wait_for(lambda: s.stats.done == 40, timeout=30, what="all 40 delivered after the flush")
    postern.wait_queue_empty()


def test_reload_revives_a_dead_destination(postern, servers):
    # A reload forgets suspensions (Postfix's reload starts a new qmgr): new mail goes out at once.
    s, _ = dead_destination_with_deferred_mail(postern, servers, "r", 1)
    s.greeting = "220 counting ESMTP"
    postern.reload("qmgr")
    postern.wait_log("qmgr", r"reload: 1 suspended destination\(s\) may be tried again")
    later = inject_many(postern, [["r1@back.test"]])[0]
    postern.wait_log("qmgr", rf"{later}: removed")
    assert s.stats.done == 1


@pytest.mark.parametrize("dsn,recorded", [("4.4.1", "4.4.1"), ("4.4.2x<junk>", "4.4.1"),
                                          ("4.4.2222222222222222222", "4.4.1")])
def test_failure_feedback_from_the_agent(postern, dsn, recorded):
    """Deterministic: the agent reports every attempt as a connection failure. From the initial
    window of 5, four failures make a pseudo-cohort at concurrency 1: five requests at most,
    the rest deferred by qmgr itself, with a well-formed status whatever the agent sent."""
    agent = FakeSmtp(postern, lambda req: (time.sleep(0.2),   # a slow agent, by design
                                           agent_reply(req, "deferred", dsn, "connect to mx.test[192.0.2.1]:25: Connection refused"))[1])
    start(postern, {"fail.test": "mx.test"}, daemons=("qmgr",), minimal_backoff_time="100s",
          maximal_backoff_time="200s")
    ids = inject_many(postern, [[f"f{i}@fail.test"] for i in range(8)])
    postern.wait_log("qmgr", r"smtp: delivery to mx\.test suspended for 100 s: connect to mx\.test")
    for qid in ids:
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what=f"{qid} deferred")
    assert len(agent.requests) == 5
    suspended = [rcpt_rows(postern, q)[0] for q in ids]
    suspended = [r for r in suspended if r[5].startswith("delivery temporarily suspended: ")]
    assert len(suspended) == 3
    assert all(r[4] == recorded and r[5] == "delivery temporarily suspended: connect to "
               "mx.test[192.0.2.1]:25: Connection refused" for r in suspended)


def test_malformed_agent_replies_give_no_feedback(postern):
    """Replies without results, or with results qmgr cannot match, defer the recipients
    ("the agent returned no result") without counting as a connection failure or crashing."""
    replies = iter([{"status": "ok"}, {"status": "ok", "count": "x"},
                    {"status": "ok", "count": "1", "rcpt_id.0": "nope"},
                    {"status": "error", "reason": "malformed request"}] * 3)
    agent = FakeSmtp(postern, lambda req: next(replies))
    start(postern, {"odd.test": "mx.odd.test"}, daemons=("qmgr",), minimal_backoff_time="100s",
          maximal_backoff_time="200s")
    ids = inject_many(postern, [[f"o{i}@odd.test"] for i in range(8)])
    for qid in ids:
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what=f"{qid} deferred")
    assert len(agent.requests) == 8      # nothing suspended: every message was tried
    assert "suspended" not in postern.log("qmgr")
    diags = {rcpt_rows(postern, q)[0][5] for q in ids}
    assert diags == {"delivery agent unavailable: the agent returned no result for this recipient",
                     "delivery agent unavailable: postern-smtp refused the request: malformed request"}
    assert postern.daemons["qmgr"].proc.poll() is None


def test_slow_destination_does_not_delay_a_fast_one(postern, servers):
    slow = servers(delay=4.0)
    fast = servers()
    start(postern, {"slow.test": f"[127.0.0.1]:{slow.port}", "fast.test": f"[127.0.0.1]:{fast.port}"},
          smtp_destination_concurrency_limit="2", initial_destination_concurrency="2")
    inject_many(postern, [[f"s{i}@slow.test"] for i in range(20)])
    postern.wait_for(lambda: slow.stats.current == 2, timeout=10, what="slow.test saturated")
    t0 = time.monotonic()
    inject_many(postern, [[f"f{i}@fast.test"] for i in range(10)])
    # Waiting behind the slow destination's 20 jobs would take 40 s.
    postern.wait_for(lambda: fast.stats.done == 10, timeout=10, what="fast deliveries")
    assert time.monotonic() - t0 < 6.0
    assert slow.stats.done <= 4
    assert slow.stats.max == 2


def test_delete_drops_jobs_waiting_for_a_destination(postern, servers):
    s = servers(delay=1.5)
    start(postern, {"busy.test": f"[127.0.0.1]:{s.port}"}, smtp_destination_concurrency_limit="1")
    first, second = inject_many(postern, [["a@busy.test"], [f"b{i}@busy.test" for i in range(3)]])
    postern.wait_for(lambda: s.stats.current == 1, timeout=10, what="the first delivery")
    assert control(postern, "delete", second)["status"] == "ok"
    postern.wait_log("qmgr", rf"{second}: removed")
    postern.wait_log("qmgr", rf"{first}: removed")
    time.sleep(0.3)   # absence: the deleted message is never delivered
    assert s.stats.done == 1 and s.stats.rcpt_counts == [1]
    assert queue_size(postern) == 0


def test_reload_raises_the_concurrency_limit(postern, servers):
    s = servers(delay=0.3)
    start(postern, {"grow.test": f"[127.0.0.1]:{s.port}"}, smtp_destination_concurrency_limit="1")
    inject_many(postern, [[f"g{i}@grow.test"] for i in range(30)])
    postern.wait_for(lambda: s.stats.done >= 3, timeout=10, what="three deliveries")
    assert s.stats.max == 1
    postern.configure(smtp_destination_concurrency_limit="3")
    postern.reload("qmgr")
    postern.wait_for(lambda: s.stats.done == 30, timeout=30, what="30 deliveries")
    assert s.stats.max == 3            # the window grew to the new limit, not beyond


def test_rate_delay_spaces_deliveries(postern, servers):
    s = servers()
    start(postern, {"paced.test": f"[127.0.0.1]:{s.port}"}, smtp_destination_rate_delay="1s")
    inject_many(postern, [[f"r{i}@paced.test"] for i in range(4)])
    postern.wait_for(lambda: s.stats.done == 4, timeout=20, what="four deliveries")
    gaps = [b - a for a, b in zip(s.stats.starts, s.stats.starts[1:])]
    assert s.stats.max == 1
    assert all(0.9 <= g < 3.0 for g in gaps), gaps
    postern.wait_queue_empty()


def test_transport_process_limit(postern, servers):
    s = servers(hosts=("127.0.0.1", "127.0.0.2", "127.0.0.3"), delay=0.3)
    start(postern, {f"d{k}.test": f"[127.0.0.{k + 1}]:{s.ports[k]}" for k in range(3)},
          smtp_process_limit="3")
    inject_many(postern, [[f"p{i}@d{i % 3}.test"] for i in range(30)])
    postern.wait_for(lambda: s.stats.done == 30, timeout=30, what="30 deliveries")
    assert s.stats.max == 3            # over all three destinations together
    postern.wait_queue_empty()


def test_active_limit_holds_with_a_large_queue(postern, servers):
    s = servers(delay=0.05)
    start(postern, {"many.test": f"[127.0.0.1]:{s.port}"}, qmgr_message_active_limit="10",
          initial_destination_concurrency="50", smtp_destination_concurrency_limit="50")
    inject_many(postern, [[f"m{i}@many.test"] for i in range(200)])
    postern.wait_for(lambda: s.stats.done == 200, timeout=60, what="200 deliveries")
    # At most 10 messages are active, so at most 10 transactions ever ran at once.
    assert s.stats.max <= 10
    assert s.stats.max >= 5
    postern.wait_queue_empty(timeout=20)
    assert queue_size(postern) == 0


def test_deliveries_in_flight_share_one_agent_connection(postern):
    """qmgr multiplexes its remote delivery requests over one connection: postern-smtp spends a
    descriptor per outbound session, not two."""
    hold = threading.Event()
    agent = FakeSmtp(postern, lambda req: agent_reply(req, "delivered", "2.0.0", "250 ok"), hold=hold)
    try:
        start(postern, {f"d{i}.test": f"[127.0.0.1]:{2500 + i}" for i in range(12)}, daemons=("qmgr",))
        ids = inject_many(postern, [[f"u@d{i}.test"] for i in range(12)])
        postern.wait_for(lambda: len(agent.requests) == 12, timeout=10, what="12 requests in flight")
        assert agent.connections == 1
        assert sorted(r["id"] for r in agent.requests) == sorted({r["id"] for r in agent.requests})
    finally:
        hold.set()
    for qid in ids:
        postern.wait_log("qmgr", rf"{qid}: removed")
    assert agent.connections == 1


def test_agent_hangup_defers_the_deliveries_on_its_connection(postern):
    """When the agent's connection breaks, every delivery in flight on it is deferred with the
    reason, nothing is lost, and the next queue run reconnects and delivers."""
    all_in, release = threading.Event(), threading.Event()
    hang_up = [True]

    def answer(req):
        if not hang_up[0]:
            return agent_reply(req, "delivered", "2.0.0", "250 ok")
        if req["nexthop"] == "[127.0.0.1]:2600":
            all_in.wait(10)
            return None             # hangs up the connection the five requests share
        release.wait(10)            # the others are still being worked on
        return agent_reply(req, "delivered", "2.0.0", "250 ok")

    agent = FakeSmtp(postern, answer)
    try:
        start(postern, {f"h{i}.test": f"[127.0.0.1]:{2600 + i}" for i in range(5)}, daemons=("qmgr",),
              minimal_backoff_time="100s", maximal_backoff_time="200s")
        ids = inject_many(postern, [[f"u@h{i}.test"] for i in range(5)])
        postern.wait_for(lambda: len(agent.requests) == 5, timeout=10, what="5 requests in flight")
        all_in.set()
        for qid in ids:
            postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what=f"{qid} deferred")
        diags = {rcpt_rows(postern, q)[0][5] for q in ids}
        assert diags == {"delivery agent unavailable: postern-smtp: Connection reset by peer"}
        assert agent.connections == 1
    finally:
        release.set()

    hang_up[0] = False
    for qid in ids:
        assert control(postern, "requeue", qid)["status"] == "ok"
    for qid in ids:
        postern.wait_log("qmgr", rf"{qid}: removed")
    assert agent.connections == 2
    assert postern.daemons["qmgr"].proc.poll() is None


def test_kill9_of_qmgr_before_the_message_is_sent_delivers_it_once(postern, servers):
    """qmgr killed while postern-smtp waits for the server's 354: the agent does not send the
    message qmgr will deliver again (the duplicate window of a broken qmgr connection), and after
    qmgr is back the message goes out exactly once."""
    release = threading.Event()
    s = servers(hold_data=release)
    start(postern, {"once.test": f"[127.0.0.1]:{s.port}"}, minimal_backoff_time="100s",
          maximal_backoff_time="200s")
    qid = inject_many(postern, [["o@once.test"]])[0]
    postern.wait_for(lambda: s.stats.data_waiting == 1, timeout=15, what="DATA held before 354")
    postern.kill("qmgr")
    release.set()
    postern.wait_log("smtp", rf"{qid}: delivery to \S+ abandoned before the message was sent: the "
                             r"queue manager went away")
    postern.wait_for(lambda: s.stats.current == 0, timeout=10, what="the held transaction ended")
    assert s.stats.done == 0
    postern.restart("qmgr")
    postern.wait_log("qmgr", rf"{qid}: removed", timeout=20)
    assert s.stats.done == 1


def test_kill9_of_qmgr_after_the_message_was_sent_delivers_it_once(postern, servers):
    """qmgr killed while the server holds its reply to the message's final ".", and postern-smtp
    killed too once it has that 250 and could not report it: the restarted agent remembers the
    result (smtp-results in queue_directory) and answers the restarted qmgr's repeated request
    from it, so the server gets the message once."""
    release = threading.Event()
    s = servers(hold_reply=release)
    start(postern, {"once.test": f"[127.0.0.1]:{s.port}"}, minimal_backoff_time="100s",
          maximal_backoff_time="200s")
    qid = inject_many(postern, [["o@once.test"]])[0]
    postern.wait_for(lambda: s.stats.replies_held == 1, timeout=15, what="the 250 held")
    postern.kill("qmgr")
    release.set()
    postern.wait_log("smtp", rf"{qid}: to=<o@once.test>, .*status=sent")
    postern.kill("smtp")
    postern.restart("smtp")
    postern.restart("qmgr")
    postern.wait_log("smtp", rf"{qid}: to=<o@once.test>: not sent again: the queue manager asked "
                             r"again for a result already reported \(dsn=2\.0\.0, 250 2\.0\.0 Ok: queued\)")
    postern.wait_log("qmgr", rf"{qid}: removed", timeout=20)
    assert s.stats.done == 1
    assert s.stats.connections == 1


def test_kill9_of_postern_smtp_defers_what_was_in_flight_and_loses_nothing(postern, servers):
    """postern-smtp killed with ten deliveries waiting for the server's end-of-data reply: qmgr
    sees the shared connection break, defers all ten with the reason, and after the agent is
    back and the queue is run again every message goes out."""
    s = servers(delay=20)   # holds the reply to each message's final "."
    start(postern, {"held.test": f"[127.0.0.1]:{s.port}"}, initial_destination_concurrency="10",
          minimal_backoff_time="100s", maximal_backoff_time="200s")
    ids = inject_many(postern, [[f"k{i}@held.test"] for i in range(10)])
    postern.wait_for(lambda: s.stats.current == 10, timeout=15, what="10 transactions in progress")
    postern.kill("smtp")
    for qid in ids:
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=10, what=f"{qid} deferred")
    assert {rcpt_rows(postern, q)[0][5] for q in ids} == {
        "delivery agent unavailable: postern-smtp: Connection reset by peer"}
    assert s.stats.done == 0

    s.delay = 0
    postern.restart("smtp")
    for qid in ids:
        assert control(postern, "requeue", qid)["status"] == "ok"
    for qid in ids:
        postern.wait_log("qmgr", rf"{qid}: removed", timeout=20)
    assert s.stats.done >= 10
    assert postern.daemons["qmgr"].proc.poll() is None
