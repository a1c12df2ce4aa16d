"""postern-smtpd's global budget for buffered message content: remote clients cannot make smtpd
buffer without bound. Over budget a message is read to its end, answered 452 4.3.1 and not
queued; smtpd keeps serving. The budget comes from POSTERN_SMTPD_DATA_BUDGET here (tests only;
in production it is derived from the cgroup's memory.max, see daemons/smtpd/README.md)."""

from mailtest import queued_id, send
from postern_harness import measure_live_memory, settled_peak_kib, status_kib
from test_smtpd_helpers import queue_write_locked, raw, start_smtpd, queue_ids, open_data

MIB = 1024 * 1024
NO_STORAGE = "452 4.3.1 Insufficient system storage"


def with_budget(postern, monkeypatch, budget):
    monkeypatch.setenv("POSTERN_SMTPD_DATA_BUDGET", str(budget))
    measure_live_memory(postern)


def test_sessions_without_final_dot_stay_within_budget(postern, monkeypatch):
    budget = 8 * MIB
    with_budget(postern, monkeypatch, budget)
    start_smtpd(postern, message_size_limit="0")   # unlimited: only the budget protects smtpd
    pid = postern.pid("smtpd")
    base = status_kib(pid, "VmRSS")
    sessions = [raw(postern, timeout=30) for _ in range(4)]
    try:
        for c in sessions:
            open_data(c)
            c.send(b"Subject: big\r\n\r\n")
        line = b"x" * 1022 + b"\r\n"
        chunk = line * 64                          # 64 KiB
        for _ in range(12 * 16):                   # 12 MiB per session, interleaved
            for c in sessions:
                c.send(chunk)
        # Let smtpd read what is in flight: until the peak RSS stops moving for a second.
        peak = settled_peak_kib(pid)
        grown = (peak - base) * 1024
        print(f"smtpd peak RSS grew by {grown // MIB} MiB for 48 MiB sent; budget {budget // MIB} MiB")
        assert grown < budget + 24 * MIB, f"peak RSS grew by {grown} bytes"
        # Every session ran over the (shared) budget and was logged once.
        postern.wait_log("smtpd", r"message data budget of \d+ bytes exhausted", count=4, timeout=20)
        for c in sessions:
            c.send(b".\r\n")
            assert c.text() == NO_STORAGE
            assert c.cmd("NOOP") == "250 2.0.0 Ok"
    finally:
        for c in sessions:
            c.close()
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: 452 4\.3\.1 "
                     r"Insufficient system storage")
    # The budget was given back: a normal message is queued.
    send(postern, "a@example.org", ["ptest1@localhost"], b"Subject: after\r\n\r\nok\r\n")


def test_tiny_budget_answers_452_and_keeps_serving(postern, monkeypatch):
    with_budget(postern, monkeypatch, 4096)
    start_smtpd(postern)
    with raw(postern) as c:
        open_data(c)
        c.send(b"Subject: too big for the budget\r\n\r\n" + (b"y" * 100 + b"\r\n") * 100 + b".\r\n")
        assert c.text() == NO_STORAGE
        assert queue_ids(postern) == []
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        # The same session goes on; a message that fits is queued.
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("DATA").startswith("354 ")
        c.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
        qid = queued_id(c.text())
    assert queue_ids(postern) == [qid]


def test_budget_counts_messages_waiting_for_commit(postern, monkeypatch):
    """Content handed to the commit thread still holds its share of the budget until the
    commit finished: a second message meanwhile finds the budget used up."""
    with_budget(postern, monkeypatch, 4096)
    start_smtpd(postern)
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: first\r\n\r\nx\r\n")   # creates the db
    with queue_write_locked(postern) as con:
        with raw(postern, timeout=30) as a:
            open_data(a)
            # About 1.5 KiB of content: a 2 KiB allocation waits for the commit.
            a.send(b"Subject: waiting\r\nMessage-ID: <waiting@client.test>\r\n\r\n" + b"w" * 1400 + b"\r\n.\r\n")
            postern.wait_log("smtpd", r"message-id=<waiting@client\.test>")
            with raw(postern) as b:
                open_data(b)
                b.send(b"Subject: second\r\n\r\n" + b"z" * 2500 + b"\r\n.\r\n")
                assert b.text() == NO_STORAGE
            con.execute("ROLLBACK")
            qid = queued_id(a.text())
    assert len(queue_ids(postern)) == 2 and qid in queue_ids(postern)


def test_large_message_is_not_copied_before_commit(postern, monkeypatch):
    """The headers Postern adds (and the empty line before a body that starts without one) are
    put in place when the header section ends: the content is never copied whole. Measured
    while the commit waits for the queue lock (SQLite builds its own record from the content
    in the commit thread; that copy is outside smtpd's control)."""
    with_budget(postern, monkeypatch, 1 << 30)
    start_smtpd(postern, message_size_limit="0")
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: first\r\n\r\nx\r\n")   # creates the db
    pid = postern.pid("smtpd")
    base = status_kib(pid, "VmHWM") * 1024
    size = 48 * MIB
    with queue_write_locked(postern) as con:
        with raw(postern, timeout=60) as c:
            open_data(c)
            c.send(b"Subject: big\r\nMessage-ID: <big@client.test>\r\nno blank line before this body\r\n")
            chunk = (b"x" * 1022 + b"\r\n") * 1024   # 1 MiB
            for _ in range(size // MIB):
                c.send(chunk)
            c.send(b".\r\n")
            postern.wait_log("smtpd", r"message-id=<big@client\.test>")   # handed to the commit
            grown = status_kib(pid, "VmHWM") * 1024 - base
            con.execute("ROLLBACK")
            qid = queued_id(c.text())
    print(f"smtpd peak RSS grew by {grown // MIB} MiB for a {size // MIB} MiB message before its commit")
    # One 48 MiB content (in a 64 MiB allocation, touched as far as used) plus slack; a second
    # whole copy would add another 48 MiB.
    assert grown < size + 32 * MIB, f"peak RSS grew by {grown // MIB} MiB"
    assert qid in queue_ids(postern)
