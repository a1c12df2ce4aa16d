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
from smtp_peers import Sink


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


def sender_thread(postern, accepted, stop, recipient, limit=1000000):
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
                    s.rcpt(recipient)
                    code, _ = s.data(msg)
                if code == 250:
                    accepted.append(mid)
                break
            except (smtplib.SMTPException, OSError):
                time.sleep(0.05)  # the daemon was killed mid-session; try again like a client would


def kill_at_random_while_sending(postern, victims, recipient):
    """Streams messages to recipient while each victim is killed with SIGKILL four times, in a
    shuffled order at random moments, and restarted; returns the Message-IDs answered 250."""
    accepted, stop = [], threading.Event()
    t = threading.Thread(target=sender_thread, args=(postern, accepted, stop, recipient))
    t.start()
    rng = random.Random(4711)
    schedule = list(victims) * 4
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
    return accepted


def assert_each_delivered_once(accepted, delivered, duplicates_allowed=0):
    missing = set(accepted) - set(delivered)
    assert not missing, f"answered 250 but never delivered: {sorted(missing)[:10]}"
    dups = {m for m in delivered if delivered.count(m) > 1}
    assert len(dups) <= duplicates_allowed, f"delivered more than once: {sorted(dups)[:10]}"


def test_kill9_of_every_daemon_loses_nothing_and_duplicates_nothing(postern):
    postern.configure(home_mailbox="Maildir/", minimal_backoff_time="1s",
                      maximal_backoff_time="2s", queue_run_delay="1s")
    postern.start()
    accepted = kill_at_random_while_sending(postern, ("smtpd", "qmgr", "local"), "ptest1@localhost")
    assert_each_delivered_once(accepted, maildir_message_ids("ptest1"))


def test_kill9_while_relaying_sends_again_only_what_the_agent_never_knew(postern):
    """The same chaos on the relay path, to Postfix's smtp-sink: smtpd, qmgr and postern-smtp
    killed four times each. Nothing is lost. A message the server took while postern-smtp died
    before reading its 250 is sent again (no MTA can know, RFC 1047); any other duplicate fails:
    a duplicated message must have one "status=sent" line, its second sending. Before
    smtp-remember.c, every qmgr kill sent the results it had not yet committed again
    (0.5-2 % of the stream)."""
    sink = Sink(postern.root / "sink")
    try:
        postern.configure(relayhost=f"[127.0.0.1]:{sink.port}", minimal_backoff_time="1s",
                          maximal_backoff_time="2s", queue_run_delay="1s")
        postern.start()
        accepted = kill_at_random_while_sending(postern, ("smtpd", "qmgr", "smtp"), "r@relay.test")
        received = {}   # Message-ID -> queue ids of the copies the sink got
        for msg in sink.messages():
            mid = re.search(rb"^Message-ID: <([^>]+)>", msg, re.M | re.I)
            qid = re.search(rb"^Received: .*?\bid ([0-9A-V]{16})\b", msg, re.M | re.S)
            assert mid and qid, msg[:500]
            received.setdefault(mid.group(1).decode(), []).append(qid.group(1).decode())
        delivered = [m for m, copies in received.items() for _ in copies]
        assert_each_delivered_once(accepted, delivered, duplicates_allowed=len(accepted))
        log = postern.log("smtp")
        dups = {m: copies for m, copies in received.items() if len(copies) > 1}
        for mid, copies in dups.items():
            assert len(set(copies)) == 1, f"{mid}: two queue entries {copies}"
            sent = re.findall(rf"{copies[0]}: to=<r@relay\.test>, .*status=sent", log)
            assert len(sent) == 1, f"{mid} ({copies[0]}) sent again after the agent logged it sent"
        print(f"{len(accepted)} accepted, {len(dups)} sent twice "
              f"({100 * len(dups) / len(accepted):.3f} %, each in postern-smtp's kill window)")
    finally:
        sink.stop()


def test_message_survives_kill9_of_smtpd_right_after_250(postern):
    postern.start("smtpd")
    send(postern, "a@example.org", ["ptest2@localhost"],
         b"Message-ID: <survivor@client.test>\r\n\r\nstill here\r\n")
    postern.kill("smtpd")
    # Delivery machinery comes up only now: the message must be in the durable queue.
    postern.start("qmgr", "local")
    postern.wait_mailbox("ptest2", r"still here")
    postern.wait_queue_empty()
