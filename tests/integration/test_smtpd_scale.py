"""postern-smtpd holds 10,000 concurrent sessions in one process, with modest memory."""

import resource
import selectors
import socket
import time

import pytest

from postern_harness import status_kib
from test_smtpd_helpers import raw

SESSIONS = 10000


def test_ten_thousand_sessions(postern):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < SESSIONS + 500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))   # smtpd inherits it
    try:
        postern.start("smtpd")
        base = status_kib(postern.pid("smtpd"), "VmRSS")
        conns = []
        try:
            sel = selectors.DefaultSelector()
            for i in range(SESSIONS):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", postern.smtp_port))
                conns.append(s)
                sel.register(s, selectors.EVENT_READ, i)
            greeted = set()
            deadline = time.monotonic() + 120
            while len(greeted) < SESSIONS and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(4096)
                    assert data.startswith(b"220 "), data
                    greeted.add(key.data)
                    sel.unregister(key.fileobj)
            assert len(greeted) == SESSIONS
            used = status_kib(postern.pid("smtpd"), "VmRSS") - base
            print(f"smtpd RSS grew by {used} KiB for {SESSIONS} sessions")
            # Idle sessions must stay small: well under 10 KiB each.
            assert used < SESSIONS * 10, f"{used} KiB for {SESSIONS} sessions"
            # Every session is still served.
            for s in conns[::500]:
                s.setblocking(True)
                s.settimeout(10)
                s.sendall(b"NOOP\r\n")
                assert s.recv(4096) == b"250 2.0.0 Ok\r\n"
            with raw(postern) as c:
                assert c.cmd("NOOP") == "250 2.0.0 Ok"
        finally:
            for s in conns:
                s.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
