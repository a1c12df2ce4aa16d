"""postern-smtpd on SIGTERM: a message already handed to the commit thread is committed and
answered before the connection closes, so a client never finds a message queued that it was
not told about (it would send it again: a duplicate). Idle sessions get 421."""

import signal
import time

from mailtest import queued_id
from test_smtpd_helpers import queue_write_locked, raw, start_smtpd, queue_ids, open_data


def test_sigterm_answers_message_in_commit(postern):
    start_smtpd(postern)
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: first\r\n\r\nx\r\n")   # creates the db
    before = queue_ids(postern)
    # Hold the queue's write lock so the commit waits (SQLite's busy timeout is 10 s).
    with queue_write_locked(postern) as con:
        with raw(postern, timeout=30) as c, raw(postern, timeout=30) as idle:
            open_data(c)
            c.send(b"Subject: in commit\r\nMessage-ID: <sigterm@client.test>\r\n\r\nbody\r\n.\r\n")
            postern.wait_log("smtpd", r"message-id=<sigterm@client\.test>")   # in the commit path
            time.sleep(0.2)   # let the commit thread reach the locked write (not observable)
            postern.daemons["smtpd"].proc.send_signal(signal.SIGTERM)
            # not observable: smtpd logs nothing on SIGTERM and tells idle sessions only after
            # the commit, so give it time to take the signal before the lock goes
            time.sleep(0.5)
            con.execute("ROLLBACK")
            try:
                reply = c.text()
            except (EOFError, ConnectionResetError):
                reply = None
            assert postern.daemons["smtpd"].proc.wait(timeout=15) == 0
            after = queue_ids(postern)
            # Never "queued but not answered": either 250 and queued, or neither.
            if reply is None or not reply.startswith("250 "):
                assert after == before, (reply, after)
            else:
                assert queued_id(reply) in after
            # The lock was released long before the busy timeout: the commit succeeds.
            assert reply is not None and reply.startswith("250 2.0.0 Ok: queued as "), reply
            assert c.is_closed()
            assert idle.text() == "421 4.3.2 postern.test Service shutting down"
            assert idle.is_closed()


def test_sigterm_during_data_queues_nothing(postern):
    """A message still being received is not queued; its client is told 421."""
    start_smtpd(postern)
    with raw(postern, timeout=30) as c:
        open_data(c)
        c.send(b"Subject: unfinished\r\n\r\nstill typing\r\n")
        time.sleep(0.2)   # let smtpd read the partial message first; the outcome is the same if not
        postern.daemons["smtpd"].proc.send_signal(signal.SIGTERM)
        assert c.text() == "421 4.3.2 postern.test Service shutting down"
        assert c.is_closed()
    assert postern.daemons["smtpd"].proc.wait(timeout=15) == 0
    assert queue_ids(postern) == []
