"""postern-local as Postfix's virtual(8): the "virtual" socket of the same service.

Most tests drive postern-local directly over its "virtual" socket (request=deliver, as
postern-qmgr does for the virtual transport) for messages queued with the real queue module, so
each result can be checked exactly: Maildir and mbox mailboxes below virtual_mailbox_base, owners
from static: and table uid/gid maps, the lookup order (address, address without extension,
@domain), unknown users, virtual_minimum_uid, virtual_mailbox_limit, virtual_mailbox_lock, table
failures and exactly-once delivery after kill -9. The last tests run postern-qmgr: a domain
routed to the virtual transport reaches the virtual socket with virtual_destination_* limits.
"""

import os
import pwd
import re
import sqlite3
import stat
import threading
import time

import pytest

from test_local import deliver, kill_local_while_writing, marker_dir, message, queue_message, results
from test_qmgr_agent import FakeLocal, inject, wakeup

VDOM = "vdomain.test"
SENDER = "sender@example.org"


def owner(name):
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def virt(postern):
    """A base directory under the test's root (world-writable and sticky, so every owner may create
    its directories there), alice (Maildir) and bob (mbox) in virtual_mailbox_maps, ptest1 the owner
    of every mailbox; postern-local is not started yet."""
    p = postern
    p.vbase = p.root / "vmail"
    p.vbase.mkdir()
    os.chmod(p.vbase, 0o1777)
    p.vmaps = p.etc_dir / "vmailbox"
    p.vmaps.write_text(f"alice@{VDOM} {VDOM}/alice/\nbob@{VDOM} {VDOM}/bob\n")
    uid, gid = owner("ptest1")
    p.configure(recipient_delimiter="+", virtual_mailbox_base=str(p.vbase),
                virtual_mailbox_maps=f"texthash:{p.vmaps}", virtual_uid_maps=f"static:{uid}",
                virtual_gid_maps=f"static:{gid}")
    return p


def start(p):
    p.start("local")
    return p


def vdeliver(p, rcpts, subject, body="hello\n", sender=SENDER):
    """Queues one message for the addresses rcpts and delivers it over the virtual socket;
    returns [(action, dsn, diag)] in the same order."""
    qid, rids = queue_message(p, sender, rcpts, message(subject, body))
    return results(deliver(p, qid, list(zip(rcpts, rids)), sender=sender, socket="virtual"))


def maildir_messages(d):
    new = d / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def assert_owned(path, uid, gid, mode):
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid, gid, mode), path


# --- delivery ------------------------------------------------------------------------------------
def test_maildir_and_mbox_under_the_base(virt):
    """A result ending in "/" is a Maildir, else an mbox file; both below virtual_mailbox_base,
    with the missing directories created as the owner (0700), files 0600, Return-Path:,
    X-Original-To: (the address as queued) and Delivered-To: on top (and the From_ line in the
    mbox), logged with relay=virtual."""
    p = start(virt)
    assert vdeliver(p, [f"alice@{VDOM}", f"Bob@{VDOM.upper()}"], "virtual one") == [
        ("delivered", "2.0.0", "delivered to maildir"), ("delivered", "2.0.0", "delivered to mailbox")]
    uid, gid = owner("ptest1")
    alice = p.vbase / VDOM / "alice"
    for d in (p.vbase / VDOM, alice, alice / "new", alice / "cur", alice / "tmp"):
        assert_owned(d, uid, gid, 0o700)
    files = maildir_messages(alice)
    assert len(files) == 1
    assert_owned(files[0], uid, gid, 0o600)
    text = files[0].read_text()
    assert text.startswith(f"Return-Path: <{SENDER}>\nX-Original-To: alice@{VDOM}\n"
                           f"Delivered-To: alice@{VDOM}\n"), text[:200]
    assert "Subject: virtual one\n" in text

    mbox = p.vbase / VDOM / "bob"
    assert_owned(mbox, uid, gid, 0o600)
    text = mbox.read_text()
    assert re.match(rf"From {re.escape(SENDER)}  \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d \d{{4}}\n"
                    rf"Return-Path: <{re.escape(SENDER)}>\nX-Original-To: Bob@{re.escape(VDOM.upper())}\n"
                    rf"Delivered-To: bob@{re.escape(VDOM)}\n", text), text[:300]
    assert "Subject: virtual one\n" in text and text.endswith("hello\n\n")
    p.wait_log("local", rf": to=<alice@{re.escape(VDOM)}>, relay=virtual, delay=[\d.]+, "
                        r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent \(delivered to maildir\)")
    p.wait_log("local", rf": to=<bob@{re.escape(VDOM)}>, relay=virtual, .*status=sent \(delivered to mailbox\)")
    # A second message goes into the same mailboxes.
    vdeliver(p, [f"alice@{VDOM}", f"bob@{VDOM}"], "virtual two")
    assert len(maildir_messages(alice)) == 2
    assert mbox.read_text().count(f"\nDelivered-To: bob@{VDOM}\n") == 2


def test_table_owners_and_lookup_order(virt):
    """uid and gid from tables, each searched like virtual_mailbox_maps: the address, then the
    address without its extension, then @domain (the catch-all)."""
    p = virt
    u1, g1 = owner("ptest1")
    u2, g2 = owner("ptest2")
    (p.vbase / VDOM).mkdir(mode=0o1777)
    os.chmod(p.vbase / VDOM, 0o1777)
    p.vmaps.write_text(f"alice@{VDOM} {VDOM}/alice/\nbob@{VDOM} {VDOM}/bob\n"
                       f"carol+special@{VDOM} {VDOM}/special/\n@{VDOM} {VDOM}/catchall/\n")
    uids, gids = p.etc_dir / "vuids", p.etc_dir / "vgids"
    uids.write_text(f"alice@{VDOM} {u2}\n@{VDOM} {u1}\n")
    gids.write_text(f"alice@{VDOM} {g2}\n@{VDOM} {g1}\n")
    p.configure(virtual_uid_maps=f"texthash:{uids}", virtual_gid_maps=f"texthash:{gids}")
    start(p)
    rcpts = [f"alice@{VDOM}", f"alice+tag@{VDOM}", f"bob@{VDOM}", f"someone@{VDOM}",
             f"carol+special@{VDOM}", f"carol+other@{VDOM}"]
    assert [r[:2] for r in vdeliver(p, rcpts, "lookup order")] == [("delivered", "2.0.0")] * 6

    alice = maildir_messages(p.vbase / VDOM / "alice")
    assert len(alice) == 2
    for f in alice:
        assert_owned(f, u2, g2, 0o600)
    assert_owned(p.vbase / VDOM / "alice", u2, g2, 0o700)
    delivered_to = sorted(re.search(r"^Delivered-To: (.*)$", f.read_text(), re.M).group(1) for f in alice)
    assert delivered_to == [f"alice+tag@{VDOM}", f"alice@{VDOM}"]
    assert_owned(p.vbase / VDOM / "bob", u1, g1, 0o600)
    catchall = maildir_messages(p.vbase / VDOM / "catchall")
    assert sorted(re.search(r"^Delivered-To: (.*)$", f.read_text(), re.M).group(1) for f in catchall) == \
        [f"carol+other@{VDOM}", f"someone@{VDOM}"]
    for f in catchall:
        assert_owned(f, u1, g1, 0o600)
    assert len(maildir_messages(p.vbase / VDOM / "special")) == 1


def test_unknown_user_bounces(virt):
    """No entry (and no catch-all): 5.1.1 in Postfix's words, with the lower-cased address."""
    p = start(virt)
    assert vdeliver(p, [f"NoBody@{VDOM}"], "unknown") == [
        ("bounced", "5.1.1", f'unknown user: "nobody@{VDOM}"')]
    p.wait_log("local", rf"to=<nobody@{re.escape(VDOM)}>, relay=virtual, .*dsn=5\.1\.1, status=bounced "
                        rf"\(unknown user: \"nobody@{re.escape(VDOM)}\"\)")
    assert list(p.vbase.iterdir()) == []


def test_empty_mailbox_maps_know_nobody(virt):
    virt.configure(virtual_mailbox_maps="")
    p = start(virt)
    assert vdeliver(p, [f"alice@{VDOM}"], "no maps") == [("bounced", "5.1.1", f'unknown user: "alice@{VDOM}"')]


@pytest.mark.parametrize("conf,log", [
    ({"virtual_uid_maps": "static:50"}, r"recipient alice@vdomain\.test: bad uid 50 in virtual_uid_maps"),
    ({"virtual_minimum_uid": "MINPLUS1"}, r"recipient alice@vdomain\.test: bad uid \d+ in virtual_uid_maps"),
    ({"virtual_uid_maps": "static:nobody"}, r"recipient alice@vdomain\.test: bad uid nobody in virtual_uid_maps"),
    ({"virtual_gid_maps": "static:0"}, r"recipient alice@vdomain\.test: bad gid 0 in virtual_gid_maps"),
    ({"virtual_uid_maps": "inline:{ bob@vdomain.test=1000 }"},
     r"recipient alice@vdomain\.test: not found in virtual_uid_maps"),
    ({"virtual_mailbox_base": "vmail"}, r"do not specify a relative pathname: virtual_mailbox_base = vmail"),
], ids=["below-default-minimum", "below-virtual_minimum_uid", "not-a-number", "gid-0", "uid-not-found",
        "relative-base"])
def test_bad_owner_or_base_defers(virt, conf, log):
    """As Postfix: a uid below virtual_minimum_uid (default 100), a gid of 0, an owner the tables do
    not know or a relative virtual_mailbox_base defers with 4.3.5 "mail system configuration
    error", the detail in the log; nothing is written."""
    if conf.get("virtual_minimum_uid") == "MINPLUS1":
        conf = {"virtual_minimum_uid": str(owner("ptest1")[0] + 1)}
    virt.configure(**conf)
    p = start(virt)
    assert vdeliver(p, [f"alice@{VDOM}"], "bad owner") == [
        ("deferred", "4.3.5", "mail system configuration error")]
    p.wait_log("local", log)
    assert list(p.vbase.iterdir()) == []


def test_regexp_substitution_never_names_a_mailbox(virt):
    """virtual_mailbox_maps take no $number substitution: a rule that would copy the address into
    the path is skipped (and logged), so the address "../../x" names no file; rules without it
    work."""
    rx = virt.etc_dir / "vmailbox.regexp"
    rx.write_text("/^dave@vdomain\\.test$/ vdomain.test/dave/\n/^(.+)@vdomain\\.test$/ vdomain.test/$1/\n")
    virt.configure(virtual_mailbox_maps=f"regexp:{rx}")
    p = start(virt)
    assert vdeliver(p, [f"dave@{VDOM}", f'"../../x"@{VDOM}'], "regexp") == [
        ("delivered", "2.0.0", "delivered to maildir"),
        ("bounced", "5.1.1", f'unknown user: ""../../x"@{VDOM}"')]
    p.wait_log("local", r"virtual_mailbox_maps: .*skipping")
    assert sorted(x.name for x in (p.vbase / VDOM).iterdir()) == ["dave"]
    assert sorted(x.name for x in p.root.iterdir() if x.name == "x") == []


def test_mailbox_limit(virt):
    """virtual_mailbox_limit caps an mbox file and each Maildir file (5.2.2, nothing left behind);
    mailbox_size_limit is local delivery's and does not apply here."""
    virt.configure(virtual_mailbox_limit="6000", mailbox_size_limit="1000")
    p = start(virt)
    big = "x" * 70 + "\n"
    assert [r[:2] for r in vdeliver(p, [f"alice@{VDOM}", f"bob@{VDOM}"], "fits", big * 40)] == \
        [("delivered", "2.0.0")] * 2
    res = vdeliver(p, [f"alice@{VDOM}", f"bob@{VDOM}"], "too big", big * 100)
    assert [r[:2] for r in res] == [("bounced", "5.2.2")] * 2, res
    assert "File too large" in res[0][2] and "File too large" in res[1][2]
    assert len(maildir_messages(p.vbase / VDOM / "alice")) == 1
    assert list((p.vbase / VDOM / "alice" / "tmp").iterdir()) == []
    text = (p.vbase / VDOM / "bob").read_text()
    assert "Subject: fits" in text and "too big" not in text


def test_mailbox_lock(virt):
    """virtual_mailbox_lock, not mailbox_delivery_lock, decides how a virtual mbox is locked: a
    dotlock held by someone else delays the delivery while dotlock is listed, and is not looked
    at when it is not."""
    virt.configure(mailbox_delivery_lock="fcntl", deliver_lock_attempts=2, deliver_lock_delay="1s")
    p = start(virt)
    uid, gid = owner("ptest1")
    (p.vbase / VDOM).mkdir(mode=0o700)
    os.chown(p.vbase / VDOM, uid, gid)
    lock = p.vbase / VDOM / "bob.lock"
    lock.write_text("12345\n")
    (action, dsn, diag), = vdeliver(p, [f"bob@{VDOM}"], "locked")
    assert (action, dsn[0]) == ("deferred", "4") and "lock" in diag, (action, dsn, diag)
    assert not (p.vbase / VDOM / "bob").exists() or (p.vbase / VDOM / "bob").read_text() == ""
    p.configure(virtual_mailbox_lock="fcntl")
    p.reload("local")
    p.wait_log("local", r"reload -- configuration")
    assert vdeliver(p, [f"bob@{VDOM}"], "not locked")[0][0] == "delivered"
    assert lock.exists()


def failing_table(p, name, rows):
    """A sqlite: table holding rows (key, value); returns (spec, break_it), where break_it() drops
    the SQL table so that every later lookup fails."""
    db = p.etc_dir / f"{name}.sqlite"
    con = sqlite3.connect(str(db))
    with con:
        con.execute("CREATE TABLE map (k TEXT PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO map VALUES (?, ?)", rows)
    con.close()
    cf = p.etc_dir / f"{name}.cf"
    cf.write_text(f"dbpath = {db}\nquery = SELECT v FROM map WHERE k = '%s'\n")

    def break_it():
        c = sqlite3.connect(str(db))
        with c:
            c.execute("DROP TABLE map")
        c.close()
    return f"sqlite:{cf}", break_it


@pytest.mark.parametrize("param", ["virtual_mailbox_maps", "virtual_uid_maps", "virtual_gid_maps"])
def test_table_failure_defers(virt, param):
    """A table that fails (here: its SQL table is gone) defers with 4.3.0, never a bounce and
    never a guess; the failure is logged."""
    p = virt
    u, g = owner("ptest1")
    value = {"virtual_mailbox_maps": f"{VDOM}/alice/", "virtual_uid_maps": str(u), "virtual_gid_maps": str(g)}
    spec, break_it = failing_table(p, param, [(f"alice@{VDOM}", value[param])])
    p.configure(**{param: spec})
    start(p)
    assert vdeliver(p, [f"alice@{VDOM}"], "table works")[0][0] == "delivered"
    break_it()
    res = vdeliver(p, [f"alice@{VDOM}"], "table fails")
    assert [r[:2] for r in res] == [("deferred", "4.3.0")], res
    assert res[0][2].startswith(f'{param} lookup failure for "alice@{VDOM}"'), res
    p.wait_log("local", rf"table {param}: lookup alice@{re.escape(VDOM)}")
    assert len(maildir_messages(p.vbase / VDOM / "alice")) == 1


def test_redelivery_is_not_duplicated(virt):
    """The same request again (qmgr after a crash before it recorded the result): the delivery
    marker says it is done."""
    p = start(virt)
    qid, rids = queue_message(p, SENDER, [f"alice@{VDOM}", f"bob@{VDOM}"], message("twice"))
    rcpts = list(zip([f"alice@{VDOM}", f"bob@{VDOM}"], rids))
    for _ in range(2):
        assert [r[0] for r in results(deliver(p, qid, rcpts, socket="virtual"))] == ["delivered"] * 2
    assert len(maildir_messages(p.vbase / VDOM / "alice")) == 1
    assert (p.vbase / VDOM / "bob").read_text().count("Message-ID: <twice@example.org>") == 1
    assert (marker_dir(p) / f"{qid}.{rids[0]}").read_text().strip() == str(p.vbase / VDOM / "alice") + "/"


# --- crash safety --------------------------------------------------------------------------------
def test_kill9_mid_batch_exactly_once(virt):
    """postern-local is killed with SIGKILL while a child appends a batch to a virtual mbox: the
    child finishes alone, and the request repeated after the restart delivers each message once."""
    virt.configure(message_size_limit=50000000, virtual_mailbox_limit=0)
    p = start(virt)
    body = "".join(f"line {j:06d} " + "q" * 80 + "\n" for j in range(40000))
    items = []
    for i in range(8):
        sender = f"s{i}@example.org"
        qid, (rid,) = queue_message(p, sender, [f"bob@{VDOM}"], message(f"vk9 batch {i}", body))
        items.append((qid, f"bob@{VDOM}", rid, sender))
    mbox = p.vbase / VDOM / "bob"
    kill_local_while_writing(p, items, lambda: mbox.exists() and mbox.stat().st_size > 0, socket="virtual")
    text = mbox.read_text()
    ids = re.findall(r"Message-ID: <(vk9-batch-\d)@example\.org>", text)
    assert sorted(ids) == [f"vk9-batch-{i}" for i in range(8)], ids
    assert text.count("line 039999 ") == 8


def test_kill9_whole_chain_exactly_once(virt):
    """Through smtpd and qmgr (transport_maps sends the domain to the virtual transport):
    postern-local is killed with SIGKILL three times while mail flows into a virtual Maildir;
    afterwards every message is there exactly once."""
    p = virt
    p.configure(transport_maps=f"inline:{{ {VDOM}=virtual: }}", minimal_backoff_time="1s",
                maximal_backoff_time="2s", queue_run_delay="1s")
    p.start()
    alice = p.vbase / VDOM / "alice"
    n = 30
    big = ("w" * 70 + "\n") * 3000

    def texts():
        out = []
        for sub in ("new", "cur"):
            d = alice / sub
            for f in (d.iterdir() if d.is_dir() else []):
                try:
                    out.append(f.read_text(errors="replace"))
                except FileNotFoundError:
                    pass
        return "".join(out)

    t = threading.Thread(target=lambda: [p.send(SENDER, [f"alice@{VDOM}"], message(f"vk9 {i}", big))
                                         for i in range(n)])
    t.start()
    for seen in (4, 12, 20):
        p.wait_for(lambda: texts().count("Message-ID: <vk9-") >= seen, 60, f"{seen} deliveries")
        p.kill("local")
        time.sleep(0.3)   # chaos timing: local stays down a moment while qmgr keeps sending
        p.restart("local")
    t.join(120)
    p.wait_queue_empty(timeout=120)
    ids = re.findall(r"Message-ID: <(vk9-\d+)@example\.org>", texts())
    assert sorted(ids) == sorted(f"vk9-{i}" for i in range(n)), [x for x in set(ids) if ids.count(x) > 1]


# --- postern-qmgr and the virtual transport ------------------------------------------------------
def start_qmgr_virtual(p, **conf):
    p.configure(transport_maps=f"inline:{{ {VDOM}=virtual: }}", **conf)
    p.start("qmgr")


def test_qmgr_sends_the_virtual_transport_to_the_virtual_socket(postern):
    """qmgr sends recipients routed to "virtual" to <postern_socket_directory>/virtual, at most
    virtual_destination_recipient_limit per request, the domain as next hop."""
    agent = FakeLocal(postern, listener="virtual")
    try:
        start_qmgr_virtual(postern, virtual_destination_recipient_limit="2")
        qid = inject(postern, "alice@example.org", [f"r{i}@{VDOM}" for i in range(5)])
        wakeup(postern)
        postern.wait_log("qmgr", rf"{qid}: removed")
        assert sorted(int(r["count"]) for r in agent.requests) == [1, 2, 2]
        assert {r["nexthop"] for r in agent.requests} == {VDOM}
        assert sorted(agent.rcpts()) == sorted(f"r{i}@{VDOM}" for i in range(5))
    finally:
        agent.stop()


def test_qmgr_virtual_concurrency_limit_and_waiting_messages_share_a_request(postern):
    """virtual_destination_concurrency_limit caps the requests in flight for one destination; the
    messages that wait behind it go to the virtual socket together, one request of at most
    virtual_destination_recipient_limit recipients (each message with its own queue_id.N), and
    every one is recorded and removed."""
    hold = threading.Event()
    agent = FakeLocal(postern, listener="virtual", hold=hold)
    try:
        start_qmgr_virtual(postern, virtual_destination_concurrency_limit="1",
                           virtual_destination_recipient_limit="3")
        first = inject(postern, "alice@example.org", [f"first@{VDOM}"])
        wakeup(postern)
        postern.wait_for(lambda: len(agent.requests) >= 1, what="the first request")
        waiting = [inject(postern, f"s{i}@example.org", [f"w{i}@{VDOM}"]) for i in range(4)]
        wakeup(postern)
        postern.wait_log("qmgr", rf"{waiting[-1]}: from=<s3@example.org>")
        time.sleep(0.5)   # absence: no second request while the first is held
        assert len(agent.requests) == 1
        hold.set()
        for qid in [first] + waiting:
            postern.wait_log("qmgr", rf"{qid}: removed")
        reqs = agent.requests
        assert [int(r["count"]) for r in reqs] == [1, 3, 1], reqs
        batch = reqs[1]
        assert [batch["queue_id"]] + [batch[f"queue_id.{i}"] for i in (1, 2)] == waiting[:3]
        assert [batch[f"rcpt.{i}"] for i in range(3)] == [f"w{i}@{VDOM}" for i in range(3)]
        assert postern.queue_rows("SELECT count(*) FROM messages") == [(0,)]
    finally:
        hold.set()
        agent.stop()


def test_parameter_defaults(postern):
    """The registry has Postfix's defaults for the virtual(8) parameters."""
    import subprocess
    import postern_harness
    out = subprocess.run([postern_harness.binary("tools/posternctl/posternctl"), "config", "-d",
                          "virtual_minimum_uid", "virtual_mailbox_limit", "virtual_mailbox_lock",
                          "virtual_mailbox_base", "virtual_mailbox_maps", "virtual_uid_maps",
                          "virtual_gid_maps", "virtual_destination_concurrency_limit",
                          "virtual_destination_recipient_limit"],
                         capture_output=True, text=True, check=True,
                         env=postern.env()).stdout
    assert out.splitlines() == [
        "virtual_minimum_uid = 100", "virtual_mailbox_limit = 51200000",
        "virtual_mailbox_lock = fcntl, dotlock", "virtual_mailbox_base =", "virtual_mailbox_maps =",
        "virtual_uid_maps =", "virtual_gid_maps =",
        "virtual_destination_concurrency_limit = $default_destination_concurrency_limit",
        "virtual_destination_recipient_limit = $default_destination_recipient_limit"], out


def test_qmgr_names_postern_local_when_the_virtual_socket_is_missing(postern):
    """Without a virtual socket the recipients are deferred, and the reason names the daemon that
    serves it (postern-local) and the socket."""
    from test_qmgr_agent import rcpt_rows
    for name, s in postern.listeners["local"]:
        if name == "virtual":
            s.close()
    (postern.socket_dir / "virtual").unlink()
    start_qmgr_virtual(postern, minimal_backoff_time="600s")
    qid = inject(postern, "alice@example.org", [f"x@{VDOM}"])
    wakeup(postern)
    postern.wait_for(lambda: rcpt_rows(postern, qid)[0][2] >= 1, what="the deferral")
    (address, state, attempts, _, dsn, diag), = rcpt_rows(postern, qid)
    assert dsn == "4.3.0" and diag.startswith(
        f"delivery agent unavailable: cannot connect to postern-local at {postern.socket_dir}/virtual:"), diag
