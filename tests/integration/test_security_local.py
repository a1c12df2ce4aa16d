"""postern-local against its own recipients and against a compromised postern user (issue 10,
items 2 and 4; docs/security.md names these tests).

- A recipient cannot signal, stop or trace the process that delivers to it and holds the
  delivery marker lock: that process keeps root as its real and saved uid (only the effective uid
  is the recipient's, as in Postfix's local(8)). Only a "|command" runs entirely as the user, and
  its parent still kills it at command_time_limit even when the user stopped it.
- Every delivery process has a deadline (daemon_timeout); a retry is never blocked by an earlier
  attempt.
- Root opens the postern-owned queue.db defensively: a symbolic link (or a file of the wrong
  owner) is refused and nothing is created or written where the link points.

The tests drive postern-local over its IPC socket the way postern-qmgr does (helpers from
test_local.py).
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from test_local import HOST, deliver, local, message, queue_message, results, start  # noqa: F401


def ids(pid):
    """(real, effective, saved) uid of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return tuple(int(x) for x in line.split()[1:4])
    except OSError:
        return None
    return None


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def kill_as(user, pid, sig):
    """kill -SIG pid run as user; True when the kernel let it through."""
    pw = pwd.getpwnam(user)

    def drop():
        os.setgroups([])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return subprocess.run(["/bin/kill", f"-{sig}", str(pid)], preexec_fn=drop,
                          capture_output=True).returncode == 0


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.05)   # the poll interval of a wait with a deadline
    raise AssertionError(f"timed out waiting for {what}")


def drop_dir(p):
    """A world-writable directory under the test root for commands to leave traces in."""
    d = p.root / "drop"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


class Delivery(threading.Thread):
    """deliver() in the background; .reply once it answered."""

    def __init__(self, p, qid, rcpts):
        super().__init__(daemon=True)
        self.p, self.qid, self.rcpts, self.reply = p, qid, rcpts, None

    def run(self):
        self.reply = deliver(self.p, self.qid, self.rcpts)


def test_recipient_cannot_stop_its_delivery_and_deadline_kills_it(local):
    """The dotlock of ptest1's mailbox is held, so the delivery process waits (as ptest1) for it
    with many attempts. ptest1 cannot stop that process; daemon_timeout ends it; another user's
    delivery goes on meanwhile; after the deadline the retry is not blocked by the marker lock."""
    local.configure(deliver_lock_attempts=100, deliver_lock_delay="1s", daemon_timeout="5s")
    p = start(local)
    uid1 = pwd.getpwnam("ptest1").pw_uid
    lock = p.spool_dir / "ptest1.lock"
    lock.write_text("12345\n")
    qid, (rid1, rid2) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}", f"ptest2@{HOST}"],
                                      message("stuck"))
    stuck = Delivery(p, qid, [(f"ptest1@{HOST}", rid1)])
    started = time.monotonic()
    stuck.start()
    local_pid = p.pid("local")
    child = wait_for(lambda: next((c for c in children(local_pid) if (ids(c) or (0, 0, 0))[1] == uid1), None),
                     10, "a delivery process running as ptest1")
    try:
        assert ids(child) == (0, uid1, 0), ids(child)
        for sig in ("STOP", "KILL", "TERM"):
            assert not kill_as("ptest1", child, sig), f"ptest1 could send SIG{sig} to its delivery process"
        # Someone else's mail is not held up.
        other = results(deliver(p, qid, [(f"ptest2@{HOST}", rid2)]))
        assert other[0][:2] == ("delivered", "2.0.0"), other
        stuck.join(30)
        assert not stuck.is_alive(), "the stuck delivery was never answered"
        (action, dsn, diag), = results(stuck.reply)
        assert (action, dsn) == ("deferred", "4.3.0"), stuck.reply
        assert "daemon_timeout" in diag, diag
        assert time.monotonic() - started < 20
        # Reaped right after the reply went out (sd-event reaps once the handler returned).
        wait_for(lambda: ids(child) is None, 5, "the killed delivery process to be reaped")
        p.wait_log("local", r"still running after daemon_timeout \(5s\); killing it")
    finally:
        for c in children(local_pid):
            os.kill(c, signal.SIGCONT)
    lock.unlink()
    # The retry takes the marker lock at once and delivers.
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid1)]))
    assert (action, dsn) == ("delivered", "2.0.0"), (action, dsn, diag)
    assert p.mailbox("ptest1").count("Subject: stuck") == 1


def test_stopped_command_is_killed_at_its_time_limit(local):
    """The command itself runs entirely as default_privs (nobody may signal it, and does: it is
    stopped); the process that waits for it is not nobody's to signal and still kills it at
    command_time_limit."""
    drop = drop_dir(local)
    local.configure(command_time_limit="3s")
    local.set_aliases(f'slow: "|echo $$ > {drop}/pid; exec sleep 300"\n')
    p = start(local)
    nobody = pwd.getpwnam("nobody").pw_uid
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("slow"))
    d = Delivery(p, qid, [(f"slow@{HOST}", rid)])
    started = time.monotonic()
    d.start()
    pidfile = drop / "pid"
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the command to start")
    cmd = int(pidfile.read_text())
    assert ids(cmd) == (nobody, nobody, nobody), ids(cmd)
    waiter = int(open(f"/proc/{cmd}/stat").read().rsplit(")", 1)[1].split()[1])
    assert ids(waiter) == (0, nobody, 0), ids(waiter)
    assert kill_as("nobody", cmd, "STOP"), "the command should be nobody's own process"
    assert not kill_as("nobody", waiter, "STOP"), "nobody could stop the process waiting for its command"
    d.join(20)
    assert not d.is_alive()
    (action, dsn, diag), = results(d.reply)
    assert (action, dsn) == ("bounced", "5.3.0") and "time limit" in diag, d.reply
    assert time.monotonic() - started < 15
    wait_for(lambda: ids(cmd) is None, 5, "the stopped command to be killed")


def test_command_with_closed_output_is_killed_at_its_time_limit(local):
    """The time limit also holds for a command that closed its output (it used to be waited for
    without a deadline once its output ended)."""
    drop = drop_dir(local)
    local.configure(command_time_limit="2s")
    local.set_aliases(f'quiet: "|echo $$ > {drop}/pid; exec sleep 300 >/dev/null 2>&1"\n')
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("quiet"))
    started = time.monotonic()
    (action, dsn, diag), = results(deliver(p, qid, [(f"quiet@{HOST}", rid)]))
    assert (action, dsn) == ("bounced", "5.3.0") and "time limit" in diag, (action, dsn, diag)
    assert time.monotonic() - started < 15
    cmd = int((drop / "pid").read_text())
    wait_for(lambda: ids(cmd) is None, 5, "the command to be killed")


def test_queue_symlink_refused_by_root(local):
    """A postern user that swaps queue.db for a symbolic link gets nothing from root: the open
    is refused with the reason, the delivery is deferred, and no -wal/-shm appears beside the
    link's target."""
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("symlink"))
    p.kill("local")
    elsewhere = p.root / "elsewhere"
    elsewhere.mkdir()
    for suffix in ("", "-wal", "-shm"):
        src = p.queue_dir / f"queue.db{suffix}"
        if src.exists():
            shutil.move(str(src), str(elsewhere / f"queue.db{suffix}"))
    subprocess.run(["sqlite3", str(elsewhere / "queue.db"), "PRAGMA wal_checkpoint(TRUNCATE)"],
                   check=True, capture_output=True)
    for suffix in ("-wal", "-shm"):
        (elsewhere / f"queue.db{suffix}").unlink(missing_ok=True)
    (p.queue_dir / "queue.db").symlink_to(elsewhere / "queue.db")
    p.restart("local")
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert (action, dsn) == ("deferred", "4.3.0"), (action, dsn, diag)
    p.wait_log("local", r"Cannot open the queue in .*: refusing .*queue\.db: it is a symbolic link")
    assert sorted(x.name for x in elsewhere.iterdir()) == ["queue.db"]
    assert p.mailbox("ptest1") == ""


def test_queue_of_wrong_owner_refused_by_root(local):
    p = start(local)
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("owner"))
    p.kill("local")
    nobody = pwd.getpwnam("nobody")
    os.chown(p.queue_dir / "queue.db", nobody.pw_uid, nobody.pw_gid)
    p.restart("local")
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert (action, dsn) == ("deferred", "4.3.0"), (action, dsn, diag)
    p.wait_log("local", r"it is owned by uid %d, not by the queue directory's owner" % nobody.pw_uid)
    os.chown(p.queue_dir / "queue.db", 0, 0)
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert (action, dsn) == ("delivered", "2.0.0"), (action, dsn, diag)


def test_unqualified_hostname_is_reported(local):
    """Under systemd postern-local has no network: when main.cf does not set myhostname and the
    host's name is not qualified locally, it says which name it uses and how to make the daemons
    agree."""
    if "." in socket.gethostname():
        pytest.skip("this host's name is qualified")
    local.settings.pop("myhostname")
    local.settings["mydestination"] = "localhost"
    local.configure()
    p = start(local)
    p.wait_log("local", r"myhostname is not set in main.cf .*: using [^ ]+\.localdomain; set myhostname")
