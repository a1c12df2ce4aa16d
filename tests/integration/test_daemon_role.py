"""The role skeleton every daemon runs on (common/daemon/daemon-role.h): one wording for a missing
socket, restart parameters kept (and said once) at reload, mail still flowing afterwards."""

import os
import subprocess

from postern_harness import BINARIES, binary


def run_without_sockets(postern, name):
    return subprocess.run([binary(BINARIES[name])], env=postern.env({"LISTEN_FDS": "0"}),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)


def test_missing_socket_has_one_wording(postern):
    expected = {
        "anvil": 'No "anvil" socket was passed; nothing to do.',
        "local": 'No "local" socket was passed; nothing to do.',
        "smtp": 'No "smtp-client" or "lmtp-client" socket was passed; nothing to do.',
        "smtpd": 'No "smtp", "submission", "submit" or "submissions" socket was passed; nothing to do.',
        "verify": 'No "verify" socket was passed; nothing to do.',
    }
    for name, line in expected.items():
        r = run_without_sockets(postern, name)
        assert r.returncode != 0, name
        assert line in r.stderr, (name, r.stderr)


def test_queue_directory_needs_a_restart(postern):
    postern.start()
    old = str(postern.queue_dir)
    moved = postern.root / "elsewhere"
    os.makedirs(moved, exist_ok=True)
    postern.configure(queue_directory=str(moved))
    for name in ("smtpd", "qmgr", "local", "smtp"):
        postern.reload(name)
        postern.wait_log(name, r"reload -- configuration")
        text = postern.log(name)
        line = f"queue_directory changed: restart postern-{name} to apply (still using {old})"
        assert text.count(line) == 1, (name, text[-3000:])
    # Everything still uses the queue it started with.
    code, text = postern.send("sender@example.org", ["ptest1@localhost"],
                              b"Subject: after reload\r\n\r\nstill here\r\n")
    assert code == 250, text
    postern.wait_mailbox("ptest1", r"still here", timeout=20)
    postern.wait_queue_empty()
    assert not (moved / "queue.db").exists()
