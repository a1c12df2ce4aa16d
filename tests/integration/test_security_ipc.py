"""Sockets that any local user may connect to (DESIGN.md §10), attacked the way the security issue
describes, against the real daemons: postern-qmgr's socket (SocketMode=0666, for flush) and
postern-smtpd's submit listener (postern-sendmail).

qmgr: requests are at most 4 KiB and 64 attributes and must be finished within 10 s of their
first byte; an ordinary uid may hold 16 connections, all ordinary uids together 128, root and
mail_owner 256 each. Every limit hit is answered status=error reason=... and logged (at most
5 lines per 10 s). submit: smtpd_client_connection_count_limit (50) connections per uid, root
exempt; more get 421.

The attacking connections are made by a forked child running as the attacking uid (so that
SO_PEERCRED names it), which hands the sockets to the test over SCM_RIGHTS and exits."""

import collections
import io
import os
import pwd
import re
import socket
import threading
import time

import pytest

from postern_harness import format_record, read_record
from postern_harness import measure_live_memory, settled_peak_kib, status_kib

KIB = 1024
MIB = 1024 * KIB
LOG_BURST = 5               # IPC_LOG_BURST: limit lines per 10 s
QMGR_PER_UID = 16           # IPC_PUBLIC_CONN_LIMITS
QMGR_ORDINARY_MAX = 128
SUBMIT_PER_UID = 50         # smtpd_client_connection_count_limit's default


def start(postern, *daemons, **conf):
    measure_live_memory(postern)
    postern.configure(queue_run_delay="300s", **conf)
    postern.start(*daemons)


def wait_until(predicate, timeout):
    """Polls predicate until it holds or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)   # the poll interval of a wait with a deadline


class Peer:
    """One connection made as another uid: what the server sent, and whether it closed."""

    def __init__(self, sock):
        self.sock, self.data, self.closed, self.closed_at = sock, b"", False, None

    def poll(self):
        while not self.closed:
            try:
                chunk = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except ConnectionResetError:
                chunk = b""
            if chunk:
                self.data += chunk
            else:
                self.closed, self.closed_at = True, time.monotonic()
        return self.closed

    def send(self, data):
        """Sends what the server takes; False when it has closed."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def reply(self):
        return read_record(io.BytesIO(self.data)) or {}

    def request(self, rec, timeout=10):
        """One request on this connection; the reply record (or {} when it closed)."""
        self.send(format_record(rec).encode())
        wait_until(lambda: self.poll() or self.data.endswith(b"\n\n"), timeout)
        return self.reply()

    def close(self):
        self.sock.close()


def connect_as(who, path, n):
    """n connections to path, made by a child running as who (a user name or a bare uid)."""
    if isinstance(who, str):
        pw = pwd.getpwnam(who)
        uid, gid = pw.pw_uid, pw.pw_gid
    else:
        uid = gid = who
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ours.close()
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            socks = []
            for _ in range(n):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(path))
                socks.append(s)
            for i in range(0, n, 100):
                socket.send_fds(theirs, [b"fds"], [s.fileno() for s in socks[i:i + 100]])
            theirs.recv(1)
            code = 0
        finally:
            os._exit(code)
    theirs.close()
    fds = []
    try:
        while len(fds) < n:
            _, got, _, _ = socket.recv_fds(ours, 16, 100)
            if not got:
                raise AssertionError(f"the child connecting as {who} failed")
            fds += got
        ours.send(b"k")
    finally:
        os.waitpid(pid, 0)
        ours.close()
    return [Peer(socket.socket(fileno=fd)) for fd in fds]


def closed(peers):
    return [p for p in peers if p.poll()]


def qmgr_limit_lines(postern):
    return re.findall(r"^.*qmgr socket: .*$", postern.log("qmgr"), re.M)


def test_unfinished_records_from_many_connections_do_not_grow_qmgr(postern):
    """The issue's attack: 200 connections from one user, each with a big unfinished record. qmgr
    stays small, refuses what is over the per-uid cap and the record size, and keeps answering
    others meanwhile."""
    start(postern, "qmgr")
    pid = postern.pid("qmgr")
    base = status_kib(pid, "VmRSS")
    peers = connect_as("ptest1", postern.socket_dir / "qmgr", 200)
    # qmgr takes them all first, refusing those over the cap at once
    wait_until(lambda: len(closed(peers)) >= 200 - QMGR_PER_UID, 5)
    over_cap = closed(peers)

    unfinished = b"request=flush\nsite=" + b"a" * (256 * KIB)   # no end of line, no end of record
    for p in peers:
        p.send(unfinished)
    # the peak, once qmgr has read what is in flight (it stops moving for a second)
    grown_kib = settled_peak_kib(pid) - base
    print(f"qmgr VmRSS {base} KiB before, peak grew by {grown_kib} KiB under 200 x 256 KiB")

    # others are served during the attack: root and another ordinary user
    r = postern.posternctl("flush")
    assert r.returncode == 0, r.stderr
    r = postern.posternctl("flush", user="ptest2")
    assert r.returncode == 0, r.stderr

    assert grown_kib < 8 * 1024, f"qmgr grew by {grown_kib} KiB"
    assert len(over_cap) == 200 - QMGR_PER_UID
    assert wait_until(lambda: len(closed(peers)) == 200, 5), f"{len(closed(peers))} of 200 closed"
    reasons = collections.Counter(p.reply().get("reason") for p in peers)
    assert reasons == {"too many connections": 200 - QMGR_PER_UID, "record too large": QMGR_PER_UID}
    assert {p.reply().get("status") for p in peers} == {"error"}

    # one line names the peer and the limit; 200 events make at most LOG_BURST lines
    lines = qmgr_limit_lines(postern)
    assert 1 <= len(lines) <= LOG_BURST, lines
    uid = pwd.getpwnam("ptest1").pw_uid
    assert re.search(rf"qmgr socket: peer uid={uid} pid=\d+: more than {QMGR_PER_UID} connections "
                     r"from this uid; refused", "\n".join(lines)), lines
    assert postern.running("qmgr")


def test_trickled_record_is_cut_at_its_deadline(postern):
    """Bytes trickling in do not keep a request alive: it must be finished within 10 s of its
    first byte. An idle connection is not affected (the idle timeout applies between requests)."""
    start(postern, "qmgr")
    path = postern.socket_dir / "qmgr"
    tricklers = connect_as("ptest1", path, 3)
    idle = connect_as("ptest2", path, 1)[0]
    started = time.monotonic()
    for p in tricklers:
        p.send(b"request=flush\nsite=")
    while time.monotonic() - started < 20 and len(closed(tricklers)) < len(tricklers):
        for p in tricklers:
            if not p.closed:
                p.send(b"a")   # 2 bytes a second: far below the size limit
        time.sleep(0.5)   # pacing: the trickle rate is the point of the test
    after = [round(p.closed_at - started, 1) if p.closed else None for p in tricklers]
    assert all(t is not None and 9 <= t <= 13 for t in after), f"closed after {after} s"
    for p in tricklers:
        assert p.reply() == {"status": "error", "reason": "request not finished in time"}
    assert not idle.poll()
    assert idle.request({"request": "flush"}) == {"status": "ok"}
    uid = pwd.getpwnam("ptest1").pw_uid
    postern.wait_log("qmgr", rf"qmgr socket: peer uid={uid} pid=\d+: request not finished within "
                     r"10 s; closed")


def test_per_uid_cap_spares_other_users_root_and_mail_owner(postern):
    """One user's connections beyond the cap are refused at once; another user, root and
    mail_owner (with a cap of their own) still get through, and the user gets his places back
    as his connections close."""
    start(postern, "qmgr", mail_owner="ptest3")
    path = postern.socket_dir / "qmgr"
    hog = connect_as("ptest1", path, 40)
    assert wait_until(lambda: len(closed(hog)) >= 40 - QMGR_PER_UID, 5), \
        f"{len(closed(hog))} of 40 connections closed"
    kept = [p for p in hog if not p.poll()]
    assert len(kept) == QMGR_PER_UID
    for p in kept:   # served, not just not closed yet
        assert p.request({"request": "flush"}) == {"status": "ok"}
    for p in closed(hog):
        assert p.reply() == {"status": "error", "reason": "too many connections"}

    r = postern.posternctl("flush", user="ptest1")
    assert r.returncode == 1 and "too many connections" in r.stderr, (r.returncode, r.stderr)
    r = postern.posternctl("flush", user="ptest2")
    assert r.returncode == 0, r.stderr
    owner = connect_as("ptest3", path, 40)   # mail_owner: above the ordinary cap
    assert owner[-1].request({"request": "flush"}) == {"status": "ok"}
    assert not closed(owner)
    r = postern.posternctl("flush")
    assert r.returncode == 0, r.stderr

    uid = pwd.getpwnam("ptest1").pw_uid
    lines = qmgr_limit_lines(postern)
    assert 1 <= len(lines) <= LOG_BURST, lines
    assert all(f"peer uid={uid} pid=" in line for line in lines), lines

    for p in hog:
        p.close()
    assert wait_until(lambda: postern.posternctl("flush", user="ptest1").returncode == 0, 5)


def test_all_ordinary_users_together_are_capped_but_root_is_not(postern):
    """Many uids (a shared web server's sites) together hold at most 128 connections."""
    start(postern, "qmgr")
    path = postern.socket_dir / "qmgr"
    users = [30001 + i for i in range(QMGR_ORDINARY_MAX // QMGR_PER_UID)]
    held = []
    for uid in users:
        peers = connect_as(uid, path, QMGR_PER_UID)
        for p in peers:
            assert p.request({"request": "wakeup"}) == {"status": "ok"}, uid
        held += peers
    late = connect_as(30999, path, 1)[0]
    assert wait_until(late.poll, 5)
    assert late.reply() == {"status": "error", "reason": "too many connections"}
    r = postern.posternctl("flush")
    assert r.returncode == 0, r.stderr
    postern.wait_log("qmgr", rf"qmgr socket: peer uid=30999 pid=\d+: more than {QMGR_ORDINARY_MAX} "
                     r"connections from unprivileged users; refused")
    assert not closed(held)


def read_greeting(peer, timeout=10):
    wait_until(lambda: peer.poll() or b"\r\n" in peer.data, timeout)
    return peer.data.split(b"\r\n")[0].decode(errors="replace")


def test_submit_listener_caps_connections_per_uid(postern):
    """A local user opening many connections to the submit socket gets 421 beyond
    smtpd_client_connection_count_limit; other users and root still submit."""
    start(postern, "smtpd")
    hog = connect_as("ptest1", postern.submit_path, SUBMIT_PER_UID + 10)
    greetings = collections.Counter(read_greeting(p)[:3] for p in hog)
    assert greetings == {"220": SUBMIT_PER_UID, "421": 10}, greetings
    uid = pwd.getpwnam("ptest1").pw_uid
    refused = [read_greeting(p) for p in hog if p.data.startswith(b"421")]
    assert refused[0] == f"421 4.7.0 postern.test Error: too many connections from uid {uid}"
    assert wait_until(lambda: len(closed([p for p in hog if p.data.startswith(b"421")])) == 10, 5)

    msg = b"Subject: cap test\n\nhello\n"
    r = postern.sendmail(["ptest2@postern.test"], input=msg, user="ptest2", check=False)
    assert r.returncode == 0, r.stderr
    # ptest1's own sendmail waits for a place (there is no local queue to fall back on) ...
    waiting = {}
    t = threading.Thread(target=lambda: waiting.update(r=postern.sendmail(
        ["ptest2@postern.test"], input=msg, user="ptest1", check=False, timeout=60)))
    t.start()
    t.join(1.0)
    assert t.is_alive(), waiting
    root = connect_as(0, postern.submit_path, SUBMIT_PER_UID + 10)
    assert collections.Counter(read_greeting(p)[:3] for p in root) == {"220": SUBMIT_PER_UID + 10}

    lines = re.findall(r"^.*Connection concurrency limit exceeded: .*$", postern.log("smtpd"), re.M)
    assert 1 <= len(lines) <= LOG_BURST, lines
    assert re.search(rf"Connection concurrency limit exceeded: {SUBMIT_PER_UID + 1} from "
                     rf"local\[uid={uid}\] pid=\d+ for service submit; more than {SUBMIT_PER_UID} "
                     r"\(smtpd_client_connection_count_limit\)", lines[0]), lines
    # refused sessions log nothing else (ptest1's served ones are still open)
    assert f"disconnect from local[uid={uid}]" not in postern.log("smtpd")

    for p in hog + root:
        p.close()
    # ... and gets it once the others are gone.
    t.join(30)
    assert not t.is_alive() and waiting["r"].returncode == 0, waiting


def test_submit_cap_follows_the_listener_override(postern):
    """submit/smtpd_client_connection_count_limit sets the cap for the submit listener alone."""
    start(postern, "smtpd", **{"submit/smtpd_client_connection_count_limit": "3"})
    hog = connect_as("ptest1", postern.submit_path, 5)
    assert [read_greeting(p)[:3] for p in hog].count("421") == 2


def test_flush_and_refusal_lines_are_rate_limited(postern):
    """Anyone may ask qmgr to flush (and be refused a hold): a loop of such requests leaves at most
    LOG_BURST lines per 10 s in qmgr's log, so the journal's own rate limit never swallows qmgr's
    real lines."""
    start(postern, "qmgr")
    began = time.monotonic()
    for _ in range(20):
        assert postern.posternctl("flush", user="ptest1").returncode == 0
        assert postern.posternctl("hold", "ALL", user="ptest1").returncode == 77
    # Fixed 10 s windows: a slow machine may span more than one.
    windows = int((time.monotonic() - began) // 10) + 2
    log = postern.log("qmgr")
    flushes = re.findall(r"flush requested by uid \d+", log)
    refusals = re.findall(r"refused hold ALL from uid \d+", log)
    # Each kind has its own limit, so refusals never hide a flush.
    assert 1 <= len(flushes) <= LOG_BURST * windows < 20, (flushes, windows)
    assert 1 <= len(refusals) <= LOG_BURST * windows < 20, (refusals, windows)
