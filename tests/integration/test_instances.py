"""Two Postern instances side by side (README "Multiple instances"): each its own main.cf
directory, queue, socket directory, ports and mailbox spool, as postern@NAME.target's units give
them. Mail sent to each (over SMTP, and with `postern-sendmail -C DIR`) lands in that instance's
queue and mailboxes only; `posternctl -c DIR` lists and flushes that instance's queue only; and
`posternctl -i NAME` reads /etc/postern-NAME/main.cf, whose queue and socket directories default
to the instance's."""

import os
import sqlite3
import subprocess

import pytest

import postern_harness
from postern_harness import binary

HELD = "retry:4.3.0 remote delivery is off in this test"


@pytest.fixture
def second(local_users):
    """A second instance in a root of its own, beside the `postern` fixture's."""
    p = postern_harness.Postern()
    yield p
    p.close()
    assert not p.sanitizer_reports()


def env_without_config():
    """The environment of an admin's shell: no POSTERN_CONFIG, so -c / -C / -i must choose."""
    return {k: v for k, v in os.environ.items() if k not in ("POSTERN_CONFIG", "POSTERN_INSTANCE")}


def ctl(*args):
    return subprocess.run([binary("tools/posternctl/posternctl")] + list(args), env=env_without_config(),
                          capture_output=True, text=True, timeout=30)


def queued_subjects(p):
    con = sqlite3.connect(str(p.queue_dir / "queue.db"), timeout=10)
    try:
        return sorted(r[0] for r in con.execute("SELECT queue_id FROM messages"))
    finally:
        con.close()


def message(subject):
    return f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\r\n{subject} body\r\n"


def test_two_instances_keep_their_mail_apart(postern, second):
    for p in (postern, second):
        p.configure(default_transport=HELD)
        p.start()
    assert postern.smtp_port != second.smtp_port
    assert postern.queue_dir != second.queue_dir and postern.socket_dir != second.socket_dir

    # local mail over each instance's SMTP port: delivered into that instance's spool only
    assert postern.send("s@example.org", ["ptest1@postern.test"], message("to-first"))[0] == 250
    assert second.send("s@example.org", ["ptest1@postern.test"], message("to-second"))[0] == 250
    # and with postern-sendmail -C DIR (Postfix's sendmail -C), as an admin's shell runs it
    r = subprocess.run([binary("tools/sendmail/postern-sendmail"), "-C", str(second.etc_dir), "-i",
                        "ptest2@postern.test"], input=message("sendmail-second").encode(),
                       env=env_without_config(), capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    postern.wait_mailbox("ptest1", "to-first")
    second.wait_mailbox("ptest1", "to-second")
    second.wait_mailbox("ptest2", "sendmail-second")
    assert "to-second" not in postern.mailbox("ptest1")
    assert "to-first" not in second.mailbox("ptest1")
    assert postern.mailbox("ptest2") == ""

    # remote mail stays queued (default_transport retries), each in its own queue.db
    assert postern.send("s@example.org", ["far1@remote.test"], message("remote-first"))[0] == 250
    assert second.send("s@example.org", ["far2@remote.test", "far3@remote.test"],
                       message("remote-second"))[0] == 250
    postern.wait_for(lambda: len(queued_subjects(postern)) == 1, what="one message in the first queue")
    second.wait_for(lambda: len(queued_subjects(second)) == 1, what="one message in the second queue")
    first_id, second_id = queued_subjects(postern)[0], queued_subjects(second)[0]

    # posternctl -c DIR addresses each instance's queue
    q1 = ctl("-c", str(postern.etc_dir), "queue")
    q2 = ctl("-c", str(second.etc_dir), "queue")
    assert q1.returncode == 0 and q2.returncode == 0, (q1.stderr, q2.stderr)
    assert first_id in q1.stdout and "far1@remote.test" in q1.stdout
    assert second_id not in q1.stdout and "far2@remote.test" not in q1.stdout
    assert second_id in q2.stdout and "far3@remote.test" in q2.stdout
    assert first_id not in q2.stdout and "far1@remote.test" not in q2.stdout
    # config shows the instance's own settings
    c = ctl("-c", str(second.etc_dir), "config", "-h", "queue_directory", "postern_socket_directory")
    assert c.stdout.split() == [str(second.queue_dir), str(second.socket_dir)], c

    # flush reaches the second instance's qmgr only (its socket in its socket directory)
    before = postern.log("qmgr").count("flush")
    f = ctl("-c", str(second.etc_dir), "flush")
    assert f.returncode == 0, f.stderr
    second.wait_log("qmgr", "flush")
    assert postern.log("qmgr").count("flush") == before


def test_posternctl_instance_name_picks_etc_postern_name(postern):
    # /etc/postern-NAME need not exist: a missing main.cf means defaults, and the defaults of an
    # instance's main.cf are its own directories
    r = ctl("-i", "second", "config", "-h", "config_directory", "queue_directory",
            "postern_socket_directory")
    assert r.returncode == 0, r.stderr
    confdir, queue, sockets = r.stdout.split()
    assert confdir.endswith("/postern-second")
    assert queue == "/var/spool/postern-second" and sockets == "/run/postern-second"
    # a directory of another name is no instance: the plain defaults
    r = ctl("-c", "/nonexistent/postern-second", "config", "-h", "queue_directory", "postern_socket_directory")
    assert r.stdout.split() == ["/var/spool/postern", "/run/postern"], r
    # not a name: refused, nothing read
    r = ctl("-i", "../etc", "queue")
    assert r.returncode == 2 and "not an instance name" in r.stderr
