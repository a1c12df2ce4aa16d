"""postern-local as Postfix's pipe(8): the "pipe" socket runs the command of a master.cf pipe
entry (daemons/local/local-pipe.c, common/conf/master-pipe.c).

Most tests drive postern-local directly over its "pipe" socket (request=deliver with transport=,
as postern-qmgr sends it) for messages queued with the real queue module. The command is a small
script written here that records its argv, uid/gid, environment and stdin into a file named by
its pid, and exits as a file next to it says. The last tests run postern-qmgr: transport_maps
routes a domain to a pipe transport, which reaches the pipe socket with the transport's name and
its recipient limit, and the whole chain delivers through a real Debian program (maildrop).
"""

import json
import os
import pwd
import re
import shutil
import subprocess
import time

import pytest

from postern_harness import ipc_call
from test_local import HOST, message, queue_message, results
from test_qmgr_agent import FakeLocal, assert_one_request_in_flight, inject, wakeup

SENDER = "Sender@Example.ORG"

RECORDER = r"""#!/usr/bin/python3
import json, os, sys
out = sys.argv[1]
data = sys.stdin.buffer.read().decode("latin-1")
rec = {"argv": sys.argv[2:], "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
       "env": dict(os.environ), "stdin": data, "cwd": os.getcwd()}
path = os.path.join(out, "run-%d.json" % os.getpid())
with open(path + ".tmp", "w") as f:
    json.dump(rec, f)
os.rename(path + ".tmp", path)
action = os.path.join(out, "exit")
if os.path.exists(action):
    what = open(action).read().split()
    if what[0] == "hang":
        import time
        time.sleep(3600)
    if what[0] == "signal":
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    print(" ".join(what[1:]))
    sys.exit(int(what[0]))
"""


@pytest.fixture
def pipe(postern):
    """A recorder script, its output directory (world-writable) and a master.cf writer;
    postern-local is not started yet."""
    p = postern
    p.out = p.root / "out"
    p.out.mkdir()
    os.chmod(p.out, 0o1777)
    p.recorder = p.root / "recorder"
    p.recorder.write_text(RECORDER)
    os.chmod(p.recorder, 0o755)
    p.configure(recipient_delimiter="+")

    def master(**entries):
        """entries: name -> the attributes after "pipe" (argv= defaults to the recorder)."""
        lines = []
        for name, attrs in entries.items():
            if "argv=" not in attrs:
                attrs += f" argv={p.recorder} {p.out}"
            lines.append(f"{name} unix - n n - - pipe\n  {attrs}\n")
        (p.etc_dir / "master.cf").write_text("".join(lines))
    p.master = master
    return p


def runs(p):
    """The recorded runs, oldest first."""
    files = sorted((f for f in p.out.glob("run-*.json")), key=lambda f: f.stat().st_mtime_ns)
    return [json.loads(f.read_text()) for f in files]


def pipe_deliver(p, transport, rcpts, subject="pipe test", body="hello\n", sender=SENDER, orcpts=None,
                 extra=()):
    """Queues one message for rcpts, sends one request=deliver for all of them to the pipe socket
    with transport=; returns [(action, dsn, diag)]."""
    qid, rids = queue_message(p, sender, rcpts, message(subject, body))
    now = int(time.time() * 1e6)
    attrs = [("request", "deliver"), ("queue_id", qid), ("sender", sender), ("arrival", now - 1000),
             ("active", now - 500), ("nexthop", "Next.Hop.Example"), ("transport", transport),
             ("count", len(rcpts))] + list(extra)
    for i, (addr, rid) in enumerate(zip(rcpts, rids)):
        attrs += [(f"rcpt.{i}", addr), (f"rcpt_id.{i}", rid)]
        if orcpts and orcpts[i]:
            attrs += [(f"orcpt.{i}", "rfc822;" + orcpts[i])]
    p.last_qid = qid
    return results(ipc_call(p.socket_dir / "pipe", attrs, timeout=60))


def owner(name):
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


# --- argv, user= ---------------------------------------------------------------------------------
def test_argv_expansion_and_user(pipe):
    """One run for the recipients of one message: ${recipient} and the other recipient macros give
    one argv word per recipient, ${sender}, ${nexthop}, ${size} one; the command runs as user= with
    its group, real and effective uid alike, in its home directory, with a small environment."""
    p = pipe
    p.master(rec="user=ptest1 argv=" + f"{p.recorder} {p.out} -f ${{sender}} -d ${{recipient}} "
             "u=${user} e=$extension d=${domain} m=${mailbox} o=${original_recipient} n=${nexthop} "
             "s=${size} $$literal")
    p.start("local")
    rcpts = [f"alice+box@{HOST}", "Bob@Other.Example"]
    assert pipe_deliver(p, "rec", rcpts, orcpts=["orig@example.net", None]) == [
        ("delivered", "2.0.0", "delivered via rec service")] * 2
    (run,) = runs(p)
    size = p.queue_rows("SELECT size FROM messages WHERE queue_id = ?", (p.last_qid,))[0][0]
    assert run["argv"] == [
        "-f", SENDER, "-d", rcpts[0], rcpts[1], "u=alice", "u=Bob", "e=box", "e=",
        f"d={HOST}", "d=Other.Example", "m=alice+box", "m=Bob", "o=orig@example.net", "o=Bob@Other.Example",
        "n=Next.Hop.Example", f"s={size}", "$literal"]
    uid, gid = owner("ptest1")
    assert (run["uid"], run["euid"], run["gid"]) == (uid, uid, gid)
    for f in p.out.glob("run-*.json"):
        st = f.stat()
        assert (st.st_uid, st.st_gid) == (uid, gid)
    home = pwd.getpwnam("ptest1").pw_dir
    assert run["cwd"] == home
    assert run["env"]["USER"] == "ptest1" and run["env"]["HOME"] == home
    assert "SENDER" not in run["env"]
    p.wait_log("local", rf"{p.last_qid}: to=<{re.escape(rcpts[0])}>, relay=rec, .*status=sent "
               r"\(delivered via rec service\)")


def test_user_with_group(pipe):
    """user=name:group runs the command with that group."""
    p = pipe
    p.master(rec="user=ptest1:ptest2")
    p.start("local")
    assert pipe_deliver(p, "rec", [f"a@{HOST}"])[0][:2] == ("delivered", "2.0.0")
    (run,) = runs(p)
    assert (run["uid"], run["gid"]) == (owner("ptest1")[0], owner("ptest2")[1])


def test_folding_and_quoting_flags(pipe):
    """h folds domains and ${nexthop}, u folds local parts, q quotes a local part that needs it;
    the null sender is MAILER-DAEMON, or null_sender=."""
    p = pipe
    p.master(fold="flags=hu user=ptest1 argv=" + f"{p.recorder} {p.out} ${{sender}} ${{recipient}} "
             "${nexthop} ${user} ${domain}",
             quote="flags=q user=ptest1 null_sender=nobody@null argv=" + f"{p.recorder} {p.out} "
             "${sender} ${recipient}")
    p.start("local")
    assert pipe_deliver(p, "fold", ["Mixed.Case@Some.DOMAIN"])[0][0] == "delivered"
    assert runs(p)[-1]["argv"] == ["sender@example.org", "mixed.case@some.domain", "next.hop.example",
                                   "mixed.case", "some.domain"]
    assert pipe_deliver(p, "quote", ['"two words"@example.org'], sender="")[0][0] == "delivered"
    assert runs(p)[-1]["argv"] == ["nobody@null", '"two words"@example.org']


# --- the message on stdin ------------------------------------------------------------------------
@pytest.mark.parametrize("flags,check", [
    ("", lambda s: s.startswith("From: Sender") and "\nFrom the start\n" in s and "\n.dot\n" in s),
    ("F", lambda s: s.startswith(f"From {SENDER}  ") and s.split("\n", 1)[1].startswith("From: Sender")),
    ("R", lambda s: s.startswith(f"Return-Path: <{SENDER}>\nFrom: Sender")),
    ("D", lambda s: s.startswith(f"Delivered-To: alice@{HOST}\nFrom: Sender")),
    ("O", lambda s: s.startswith("X-Original-To: first@example.net\nFrom: Sender")),
    ("B", lambda s: s.endswith("last line\n\n")),
    (".", lambda s: "\n..dot\n" in s),
    (">", lambda s: "\n>From the start\n" in s and "\n>From quoted\n" in s and ">>From" not in s),
    ("FRDO", lambda s: s.startswith(f"From {SENDER}  ") and
     s.split("\n", 1)[1].startswith(f"Return-Path: <{SENDER}>\nX-Original-To: first@example.net\n"
                                    f"Delivered-To: alice@{HOST}\n")),
    ("Xhqu", lambda s: s.startswith("From: Sender") and s.endswith("last line\n")),
], ids=["none", "F", "R", "D", "O", "B", "dot", "gt", "FRDO", "Xhqu"])
def test_flags_on_stdin(pipe, flags, check):
    p = pipe
    p.master(t=(f"flags={flags} " if flags else "") + "user=ptest1")
    p.start("local")
    body = "first\nFrom the start\n>From quoted\n.dot\nlast line\n"
    assert pipe_deliver(p, "t", [f"alice@{HOST}"], body=body, orcpts=["first@example.net"])[0][:2] == \
        ("delivered", "2.0.0")
    stdin = runs(p)[0]["stdin"]
    assert check(stdin), stdin


def test_eol_and_size(pipe):
    """eol= ends every line; size= bounces a larger message (5.2.3) without running the command."""
    p = pipe
    p.master(crlf="eol=\\r\\n user=ptest1", small="size=100 user=ptest1")
    p.start("local")
    assert pipe_deliver(p, "crlf", [f"a@{HOST}"])[0][0] == "delivered"
    assert "Subject: pipe test\r\n" in runs(p)[0]["stdin"]
    action, dsn, diag = pipe_deliver(p, "small", [f"a@{HOST}"], body="x" * 500)[0]
    assert (action, dsn) == ("bounced", "5.2.3") and "size=" in diag
    assert len(runs(p)) == 1


def test_delivered_to_needs_one_recipient(pipe):
    """Flag D with several recipients in one request is a configuration error (deferred, 4.3.5)."""
    p = pipe
    p.master(d="flags=D user=ptest1")
    p.start("local")
    res = pipe_deliver(p, "d", [f"a@{HOST}", f"b@{HOST}"])
    assert [r[:2] for r in res] == [("deferred", "4.3.5")] * 2
    assert "d_destination_recipient_limit = 1" in res[0][2]
    assert runs(p) == []


# --- exit status ---------------------------------------------------------------------------------
@pytest.mark.parametrize("code,action,dsn,diag", [
    (75, "deferred", "4.3.0", "mailbox busy, try later"),
    (67, "bounced", "5.1.1", "mailbox busy, try later"),
    (1, "bounced", "5.3.0", 'command died with status 1: "{recorder}". Command output: mailbox busy, try later'),
])
def test_exit_status(pipe, code, action, dsn, diag):
    """sysexits.h statuses map as in pipe(8) (EX_TEMPFAIL defers, EX_NOUSER bounces 5.1.1), any
    other non-zero status bounces; the command's output is the diagnostic."""
    p = pipe
    p.master(t="user=ptest1")
    (p.out / "exit").write_text(f"{code} mailbox busy, try later\n")
    p.start("local")
    assert pipe_deliver(p, "t", [f"a@{HOST}"]) == [(action, dsn, diag.format(recorder=p.recorder))]


def test_killed_by_a_signal_is_deferred(pipe):
    p = pipe
    p.master(t="user=ptest1")
    (p.out / "exit").write_text("signal\n")
    p.start("local")
    (action, dsn, diag), = pipe_deliver(p, "t", [f"a@{HOST}"])
    assert (action, dsn) == ("deferred", "4.3.0") and diag.startswith("command died with signal 9"), diag


def test_time_limit(pipe):
    """A command that hangs is killed at <transport>_time_limit and the recipient deferred."""
    p = pipe
    p.master(slow="user=ptest1")
    p.configure(slow_time_limit="2s")
    (p.out / "exit").write_text("hang\n")
    p.start("local")
    t0 = time.monotonic()
    (action, dsn, diag), = pipe_deliver(p, "slow", [f"a@{HOST}"])
    assert (action, dsn) == ("deferred", "4.3.0") and diag.startswith("command time limit exceeded"), diag
    assert time.monotonic() - t0 < 30
    assert "slow_time_limit" not in p.log("local")   # accepted, no warning


def test_missing_command_is_deferred(pipe):
    """A command that is not there defers (4.3.0) with the reason; one named without a "/" is
    looked for in /usr/bin:/bin (Debian's stock uucp entry runs "uux")."""
    p = pipe
    p.master(gone=f"user=ptest1 argv={p.root}/no-such-command ${{recipient}}",
             relative="user=ptest1 argv=true ${recipient}",
             norelative="user=ptest1 argv=no-such-command-x ${recipient}")
    p.start("local")
    (action, dsn, diag), = pipe_deliver(p, "gone", [f"a@{HOST}"])
    assert (action, dsn) == ("deferred", "4.3.0")
    assert f"cannot execute {p.root}/no-such-command: No such file or directory" in diag
    assert pipe_deliver(p, "relative", [f"a@{HOST}"])[0][:2] == ("delivered", "2.0.0")
    assert pipe_deliver(p, "norelative", [f"a@{HOST}"]) == [
        ("deferred", "4.3.0", "cannot execute no-such-command-x: not found in /usr/bin:/bin")]


def test_bad_entries_defer_and_name_the_problem(pipe):
    """A bad flag, a root user=, an unknown user or an unknown transport: deferred 4.3.5 with the
    reason, nothing run, postern-local still serving."""
    p = pipe
    p.master(badflag="flags=DZ user=ptest1", asroot="user=root", nouser="user=no-such-user-x", good="user=ptest1")
    p.start("local")
    p.wait_log("local", r"master\.cf:\d+: badflag: unknown flag 'Z' in flags=DZ")
    for transport, text in [("badflag", "unknown flag 'Z' in flags=DZ"),
                            ("asroot", "user=root: delivery as root is not allowed"),
                            ("nouser", 'unknown user "no-such-user-x" in user='),
                            ("nosuch", 'no pipe transport "nosuch" in master.cf')]:
        (action, dsn, diag), = pipe_deliver(p, transport, [f"a@{HOST}"])
        assert (action, dsn) == ("deferred", "4.3.5") and text in diag, diag
    assert runs(p) == []
    assert pipe_deliver(p, "good", [f"a@{HOST}"])[0][0] == "delivered"


def test_master_cf_is_read_again_on_reload(pipe):
    """A transport added to master.cf is served after a reload (SIGHUP), as main.cf changes are."""
    p = pipe
    p.master(old="user=ptest1")
    p.start("local")
    (action, dsn, diag), = pipe_deliver(p, "new", [f"a@{HOST}"])
    assert (action, dsn) == ("deferred", "4.3.5") and 'no pipe transport "new"' in diag
    p.master(new="flags=R user=ptest1")
    p.reload("local")
    p.wait_log("local", r"reload -- configuration")
    assert pipe_deliver(p, "new", [f"a@{HOST}"])[0][:2] == ("delivered", "2.0.0")
    assert runs(p)[0]["stdin"].startswith("Return-Path: <")


def test_exactly_once_after_a_repeated_request(pipe):
    """A request repeated for a recipient already delivered (qmgr lost the answer) does not run
    the command again: the delivery marker lists the transport."""
    p = pipe
    p.master(t="user=ptest1")
    p.start("local")
    qid, (rid,) = queue_message(p, SENDER, [f"a@{HOST}"], message("once"))
    now = int(time.time() * 1e6)
    attrs = [("request", "deliver"), ("queue_id", qid), ("sender", SENDER), ("arrival", now),
             ("active", now), ("nexthop", HOST), ("transport", "t"), ("count", 1),
             ("rcpt.0", f"a@{HOST}"), ("rcpt_id.0", rid)]
    for _ in range(2):
        assert results(ipc_call(p.socket_dir / "pipe", attrs, timeout=60))[0][:2] == ("delivered", "2.0.0")
    assert len(runs(p)) == 1


# --- postern-qmgr --------------------------------------------------------------------------------
PDOM = "pipe.test"


def test_qmgr_routes_pipe_transports_to_the_pipe_socket(pipe):
    """transport_maps names a master.cf pipe transport: qmgr sends its recipients to the pipe
    socket with transport=<name>, at most <name>_destination_recipient_limit per request; the
    parameter is not reported as unknown."""
    p = pipe
    p.master(rec="user=ptest1")
    agent = FakeLocal(p, listener="pipe")
    try:
        p.configure(transport_maps=f"inline:{{ {PDOM}=rec: }}", rec_destination_recipient_limit="2")
        p.start("qmgr")
        qid = inject(p, "alice@example.org", [f"r{i}@{PDOM}" for i in range(5)])
        wakeup(p)
        p.wait_log("qmgr", rf"{qid}: removed")
        assert sorted(int(r["count"]) for r in agent.requests) == [1, 2, 2]
        assert {r["transport"] for r in agent.requests} == {"rec"}
        assert {r["nexthop"] for r in agent.requests} == {PDOM}
        assert "unknown parameter" not in p.log("qmgr")
    finally:
        agent.stop()
    r = p.posternctl("check")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr


def test_virtual_transport_names_a_pipe_transport(pipe):
    """virtual_transport = <pipe transport> (Dovecot's LDA behind virtual mailbox domains): the
    virtual mailbox class goes to the pipe socket, the domain as next hop."""
    p = pipe
    p.master(dovecot="flags=DRhu user=ptest1")
    agent = FakeLocal(p, listener="pipe")
    try:
        p.configure(virtual_mailbox_domains=PDOM, virtual_mailbox_maps=f"inline:{{ a@{PDOM}=x }}",
                    virtual_transport="dovecot", dovecot_destination_recipient_limit="1")
        p.start("qmgr")
        qid = inject(p, "alice@example.org", [f"a@{PDOM}", f"b@{PDOM}"])
        wakeup(p)
        p.wait_log("qmgr", rf"{qid}: removed")
        assert [(r["transport"], r["nexthop"], r["count"]) for r in agent.requests] == \
            [("dovecot", PDOM, "1")] * 2
    finally:
        agent.stop()


def test_qmgr_pipe_concurrency_limit(pipe):
    """<transport>_destination_concurrency_limit caps the requests in flight for one destination."""
    p = pipe
    p.master(rec="user=ptest1")

    def start():
        p.configure(transport_maps=f"inline:{{ {PDOM}=rec: }}", rec_destination_concurrency_limit="1")
        p.start("qmgr")
    assert_one_request_in_flight(p, "pipe", PDOM, start)


def test_qmgr_pipe_end_to_end(pipe):
    """The whole chain: a message routed to a pipe transport is run once per recipient with
    <transport>_destination_recipient_limit = 1, and leaves the queue."""
    p = pipe
    p.master(rec="flags=DR user=ptest1 argv=" + f"{p.recorder} {p.out} ${{recipient}} ${{client_protocol}} "
             "${queue_id} ${nexthop} ${size}")
    p.configure(transport_maps=f"inline:{{ {PDOM}=rec: }}", rec_destination_recipient_limit="1")
    p.start("qmgr", "local")
    qid = inject(p, "alice@example.org", [f"a@{PDOM}", f"b@{PDOM}"])
    wakeup(p)
    p.wait_log("qmgr", rf"{qid}: removed", timeout=30)
    got = sorted(r["stdin"].split("\n")[1] for r in runs(p))
    assert got == [f"Delivered-To: a@{PDOM}", f"Delivered-To: b@{PDOM}"]
    assert all(r["stdin"].startswith("Return-Path: <alice@example.org>\n") for r in runs(p))
    assert sorted(r["argv"][0] for r in runs(p)) == [f"a@{PDOM}", f"b@{PDOM}"]
    assert all(r["argv"][1:4] == ["ESMTP", qid, PDOM] for r in runs(p)), runs(p)[0]["argv"]
    assert all(int(r["argv"][4]) > 0 for r in runs(p))
    p.wait_log("local", rf"{qid}: to=<a@{PDOM}>, relay=rec, .*status=sent")


@pytest.mark.skipif(not shutil.which("maildrop"), reason="maildrop not installed (Debian maildrop)")
def test_maildrop(pipe):
    """Debian's maildrop through a pipe transport, as its documentation sets it up
    (flags=DRhu user=... argv=/usr/bin/maildrop -d ${recipient}): the message lands in the
    user's Maildir with the Delivered-To: and Return-Path: lines."""
    p = pipe
    user = "ptest1"
    home = pwd.getpwnam(user).pw_dir
    maildir = os.path.join(home, "Maildir")
    uid, gid = owner(user)
    if not os.path.isdir(maildir):
        subprocess.run(["maildirmake", maildir], check=True)
        for root, dirs, _ in os.walk(maildir):
            os.chown(root, uid, gid)
    before = set(os.listdir(os.path.join(maildir, "new")))
    rc = p.root / "mailfilter"
    rc.write_text(f'to "{maildir}/"\n')
    os.chown(rc, uid, gid)
    os.chmod(rc, 0o600)
    p.master(maildrop=f"flags=DRhu user={user} argv=/usr/bin/maildrop {rc}")
    p.start("local")
    res = pipe_deliver(p, "maildrop", [f"{user}@{HOST}"], subject="via maildrop")
    assert res[0][:2] == ("delivered", "2.0.0"), res
    new = set(os.listdir(os.path.join(maildir, "new"))) - before
    assert len(new) == 1
    text = open(os.path.join(maildir, "new", new.pop()), errors="replace").read()
    assert text.startswith(f"Return-Path: <{SENDER.lower()}>\nDelivered-To: {user}@{HOST}\n") or \
        text.startswith(f"Return-Path: <{SENDER}>\nDelivered-To: {user}@{HOST}\n"), text[:200]
    assert "Subject: via maildrop" in text


DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"


@pytest.mark.skipif(not os.access(DOVECOT_LDA, os.X_OK), reason="dovecot-lda not installed (Debian dovecot-core)")
def test_dovecot_lda(pipe):
    """Dovecot's LDA through the classic master.cf entry (flags=DRhu, -f ${sender} -a
    ${recipient}), with a private configuration: the message lands in the user's Maildir with
    Delivered-To: and Return-Path:, and the transport's log line says relay=dovecot."""
    p = pipe
    maildirs = p.root / "maildirs"
    maildirs.mkdir()
    os.chmod(maildirs, 0o1777)
    conf = p.root / "dovecot.conf"
    conf.write_text(f"ssl = no\nmail_location = maildir:{maildirs}/%n\n"
                    f"postmaster_address = postmaster@{HOST}\nlog_path = {maildirs}/lda.log\n")
    os.chmod(conf, 0o644)
    p.master(dovecot=f"flags=DRhu user=ptest1 argv={DOVECOT_LDA} -c {conf} -f ${{sender}} -a ${{recipient}}")
    p.start("local")
    res = pipe_deliver(p, "dovecot", [f"PTest1@{HOST.upper()}"], subject="via dovecot-lda")
    assert res[0][:2] == ("delivered", "2.0.0"), res
    new = list((maildirs / "ptest1" / "new").iterdir())
    assert len(new) == 1
    text = new[0].read_text(errors="replace")
    assert f"Delivered-To: ptest1@{HOST}\n" in text and "Subject: via dovecot-lda" in text, text[:300]
    assert "Return-Path: <sender@example.org>" in text, text[:300]
    st = new[0].stat()
    assert (st.st_uid, st.st_gid) == owner("ptest1")
    p.wait_log("local", rf"{p.last_qid}: to=<PTest1@{HOST.upper()}>, relay=dovecot, .*status=sent")
