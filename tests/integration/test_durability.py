"""Nothing answered with 250 is lost, and nothing is delivered twice, when postern-smtpd,
postern-qmgr or postern-local are killed with SIGKILL at arbitrary moments and restarted with the
same sockets (as systemd does with Restart=)."""

import pathlib
import pwd
import random
import re
import smtplib
import threading
import time

from mailtest import send


def maildir_message_ids(user):
    home = postern_home(user)
    ids = []
    for sub in ("new", "cur"):
        d = home / "Maildir" / sub
        if d.is_dir():
            for f in d.iterdir():
                m = re.search(r"^Message-ID: <([^>]+)>", f.read_text(errors="replace"), re.M | re.I)
                if m:
                    ids.append(m.group(1))
    return ids


def postern_home(user):
    return pathlib.Path(pwd.getpwnam(user).pw_dir)


def sender_thread(postern, accepted, stop, limit=1000000):
    """Sends messages one at a time until stop is set, recording the Message-IDs answered 250."""
    for i in range(limit):
        if stop.is_set():
            return
        for attempt in range(50):
            # A fresh Message-ID per attempt: when smtpd dies between its commit and the 250, the
            # client's retry is a second message (RFC 1047), and must not count as a duplicate.
            mid = f"durability-{i}.{attempt}@client.test"
            msg = f"Message-ID: <{mid}>\r\nSubject: durability {i}\r\n\r\nbody {i}\r\n".encode()
            try:
                with postern.smtp(timeout=10) as s:
                    s.ehlo()
                    s.mail("sender@example.org")
                    s.rcpt("ptest1@localhost")
                    code, _ = s.data(msg)
                if code == 250:
                    accepted.append(mid)
                break
            except (smtplib.SMTPException, OSError):
                time.sleep(0.05)  # the daemon was killed mid-session; try again like a client would


def test_kill9_of_every_daemon_loses_nothing_and_duplicates_nothing(postern):
    postern.configure(home_mailbox="Maildir/", minimal_backoff_time="1s",
                      maximal_backoff_time="2s", queue_run_delay="1s")
    postern.start()
    accepted, stop = [], threading.Event()
    t = threading.Thread(target=sender_thread, args=(postern, accepted, stop))
    t.start()
    rng = random.Random(4711)
    # Every daemon is killed four times, in a shuffled order, at random moments of the stream.
    schedule = ["smtpd", "qmgr", "local"] * 4
    rng.shuffle(schedule)
    try:
        for victim in schedule:
            time.sleep(rng.uniform(0.1, 0.5))   # chaos timing: kill at a random moment
            assert t.is_alive(), "the sender stopped before the kills were done"
            postern.kill(victim)
            postern.restart(victim)
        time.sleep(0.5)   # let the stream run on the last restarted daemons before stopping it
    finally:
        stop.set()
        t.join(timeout=120)
    assert len(accepted) > 20, f"only {len(accepted)} messages accepted"

    postern.wait_queue_empty(timeout=60)
    delivered = maildir_message_ids("ptest1")
    missing = set(accepted) - set(delivered)
    assert not missing, f"answered 250 but never delivered: {sorted(missing)[:10]}"
    dups = {m for m in delivered if delivered.count(m) > 1}
    assert not dups, f"delivered more than once: {sorted(dups)[:10]}"


def test_message_survives_kill9_of_smtpd_right_after_250(postern):
    postern.start("smtpd")
    send(postern, "a@example.org", ["ptest2@localhost"],
         b"Message-ID: <survivor@client.test>\r\n\r\nstill here\r\n")
    postern.kill("smtpd")
    # Delivery machinery comes up only now: the message must be in the durable queue.
    postern.start("qmgr", "local")
    postern.wait_mailbox("ptest2", r"still here")
    postern.wait_queue_empty()
