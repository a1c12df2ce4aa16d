"""Scale-out (docs/scale-out.md): two Postern instances, each in a root of its own (its own queue,
socket directory, virtual mailboxes, and smtpd listening on an address of its own: 127.0.0.2 and
127.0.0.3, as two machines behind MX records would), sharing ONE PostgreSQL (sql_peers.Postgres)
for virtual_mailbox_domains, virtual_mailbox_maps, virtual_alias_maps, smtpd_sender_login_maps
and relay_domains:

- mail to either instance is accepted or refused the same way (known and unknown mailbox, alias,
  relay domain, unknown domain, a sender not logged in);
- an INSERT or DELETE in the database applies on both at the next lookup, without a reload;
- one instance killed with SIGKILL (every daemon) while clients stream to both: every message
  the other acknowledged with 250 is delivered exactly once, and every message the killed one
  acknowledged before it died is delivered after it is started again.

The database, both instances and their configuration are module-scoped (started once); each
test leaves the database as it found it.
"""

import os
import pathlib
import pwd
import re
import signal
import smtplib
import socket
import threading

import pytest

import postern_harness
from sql_peers import PASSWORD, Postgres

VDOM = "scale.test"
RELAY = "relayed.test"
SENDER = "sender@example.org"
CLIENT = "127.0.0.9"   # outside both instances' mynetworks: relaying needs relay_domains

SCHEMA = """
CREATE TABLE domains   (domain  VARCHAR(200) PRIMARY KEY);
CREATE TABLE mailboxes (address VARCHAR(200) PRIMARY KEY, maildir VARCHAR(200));
CREATE TABLE aliases   (address VARCHAR(200), goto VARCHAR(200));
CREATE TABLE senders   (address VARCHAR(200), login VARCHAR(200));
CREATE TABLE relay_domains (domain VARCHAR(200) PRIMARY KEY);
GRANT SELECT ON ALL TABLES IN SCHEMA public TO postern;
"""
ROWS = f"""
INSERT INTO domains VALUES ('{VDOM}');
INSERT INTO mailboxes VALUES ('alice@{VDOM}', '{VDOM}/alice/'), ('bob@{VDOM}', '{VDOM}/bob/');
INSERT INTO aliases VALUES ('info@{VDOM}', 'alice@{VDOM}'), ('team@{VDOM}', 'alice@{VDOM}'),
                           ('team@{VDOM}', 'bob@{VDOM}');
INSERT INTO senders VALUES ('alice@{VDOM}', 'alice');
INSERT INTO relay_domains VALUES ('{RELAY}');
"""
QUERIES = {
    "domains": "SELECT domain FROM domains WHERE domain = '%s'",
    "mailboxes": "SELECT maildir FROM mailboxes WHERE address = '%s'",
    "aliases": "SELECT goto FROM aliases WHERE address = '%s'",
    "senders": "SELECT login FROM senders WHERE address = '%s'",
    "relay": "SELECT domain FROM relay_domains WHERE domain = '%s'",
}
PARAMS = {"virtual_mailbox_domains": "domains", "virtual_mailbox_maps": "mailboxes",
          "virtual_alias_maps": "aliases", "smtpd_sender_login_maps": "senders", "relay_domains": "relay"}


class Machine(postern_harness.Postern):
    """An instance whose SMTP listeners are on an address of its own."""

    def __init__(self, address):
        self.address = address
        super().__init__()

    def _tcp_listener(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.address, 0))
        s.listen(4096)
        return s

    def client(self, timeout=20):
        s = smtplib.SMTP(timeout=timeout, local_hostname="client.test", source_address=(CLIENT, 0))
        s.connect(self.address, self.smtp_port)
        s.ehlo()
        return s

    def kill_all(self):
        """SIGKILL to every daemon of this instance and every process they started (delivery
        children), as a machine that loses power, or systemd killing a unit's whole cgroup."""
        pids = [self.pid(name) for name in self.daemons if self.running(name)]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)   # no fork between listing the children and the kill
        for pid in pids + descendants(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for name in list(self.daemons):
            self.daemons[name].proc.wait(timeout=10)

    def delivered(self):
        """{Message-ID: number of copies} in every virtual mailbox of this instance."""
        found = {}
        for f in (self.vbase / VDOM).glob("*/new/*"):
            try:
                head = f.read_bytes()[:4096]
            except FileNotFoundError:
                continue
            m = re.search(rb"(?im)^Message-ID: <([^>]+)>", head)
            if m:
                key = (f.parent.parent.name, m.group(1).decode())
                found[key] = found.get(key, 0) + 1
        return found


def descendants(pids):
    """Every process below pids (from /proc's parent links)."""
    children = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(pids)
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def write_cf(p, pg, name):
    cf = p.etc_dir / f"pgsql-{name}.cf"
    cf.write_text(f"hosts = unix:{pg.socket_dir}\nuser = postern\npassword = {PASSWORD}\ndbname = mail\n"
                  f"query = {QUERIES[name]}\nretry_interval = 1\ntimeout = 5\n")
    os.chmod(cf, 0o640)
    return f"proxy:pgsql:{cf}"


@pytest.fixture(scope="module")
def database():
    pg = Postgres()
    pg.sql(SCHEMA)
    pg.sql(ROWS)
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def machines(local_users, database):
    uid = pwd.getpwnam("ptest1").pw_uid
    ms = [Machine("127.0.0.2"), Machine("127.0.0.3")]
    for m in ms:
        m.vbase = m.root / "vmail"
        m.vbase.mkdir()
        os.chmod(m.vbase, 0o1777)
        m.configure(mynetworks="127.0.0.1/32",
                    smtpd_sender_restrictions="reject_unauthenticated_sender_login_mismatch",
                    virtual_mailbox_base=str(m.vbase), virtual_uid_maps=f"static:{uid}",
                    virtual_gid_maps=f"static:{uid}",
                    default_transport="retry:4.3.0 remote delivery is off in this test",
                    # a deferred delivery (see test_kill_one_mid_stream) is retried within seconds
                    minimal_backoff_time="2s", maximal_backoff_time="4s", queue_run_delay="1s",
                    **{param: write_cf(m, database, name) for param, name in PARAMS.items()})
        m.start()
    yield ms
    for m in ms:
        m.close()
    reports = [r for m in ms for r in m.sanitizer_reports()]
    assert not reports, "sanitizer reports:\n" + "\n".join(reports)
    if not os.environ.get("POSTERN_KEEP_ROOT"):
        import shutil
        for m in ms:
            shutil.rmtree(m.root, ignore_errors=True)


def rcpt(m, address, sender=SENDER):
    with m.client() as c:
        code, text = c.mail(sender)
        if code != 250:
            return f"{code} {text.decode()}"
        code, text = c.rcpt(address)
        return f"{code} {text.decode()}"


def answers(ms, address, sender=SENDER):
    """The reply of each instance to RCPT TO:<address>; fails unless they are the same."""
    got = [rcpt(m, address, sender) for m in ms]
    assert got[0] == got[1], (address, sender, got)
    return got[0]


CASES = [
    (f"alice@{VDOM}", SENDER, "250 2.1.5 Ok"),
    (f"info@{VDOM}", SENDER, "250 2.1.5 Ok"),
    (f"team@{VDOM}", SENDER, "250 2.1.5 Ok"),
    (f"nobody@{VDOM}", SENDER,
     f"550 5.1.1 <nobody@{VDOM}>: Recipient address rejected: User unknown in virtual mailbox table"),
    (f"anyone@{RELAY}", SENDER, "250 2.1.5 Ok"),
    ("someone@unknown.test", SENDER, "454 4.7.1 <someone@unknown.test>: Relay access denied"),   # defer_unauth_destination
    (f"bob@{VDOM}", f"alice@{VDOM}", f"553 5.7.1 <alice@{VDOM}>: Sender address rejected: not logged in"),
]


def test_both_answer_the_same(machines):
    for address, sender, reply in CASES:
        assert answers(machines, address, sender) == reply, (address, sender)


def test_database_change_applies_to_both_without_reload(machines, database):
    carol, shop = f"carol@{VDOM}", "shop.test"
    assert answers(machines, carol).startswith("550 5.1.1 ")
    assert answers(machines, f"x@{shop}").startswith("454 4.7.1 ")
    database.sql(f"INSERT INTO mailboxes VALUES ('{carol}', '{VDOM}/carol/'); "
                 f"INSERT INTO relay_domains VALUES ('{shop}'); "
                 f"INSERT INTO aliases VALUES ('sales@{VDOM}', '{carol}')")
    try:
        assert answers(machines, carol) == "250 2.1.5 Ok"
        assert answers(machines, f"sales@{VDOM}") == "250 2.1.5 Ok"
        assert answers(machines, f"x@{shop}") == "250 2.1.5 Ok"
    finally:
        database.sql(f"DELETE FROM mailboxes WHERE address = '{carol}'; "
                     f"DELETE FROM relay_domains WHERE domain = '{shop}'; "
                     f"DELETE FROM aliases WHERE address = 'sales@{VDOM}'")
    assert answers(machines, carol).startswith("550 5.1.1 ")
    assert answers(machines, f"sales@{VDOM}").startswith("550 5.1.1 ")
    assert answers(machines, f"x@{shop}").startswith("454 4.7.1 ")
    # the sender login map too
    assert answers(machines, f"bob@{VDOM}", f"alice@{VDOM}").startswith("553 5.7.1 ")
    database.sql(f"DELETE FROM senders WHERE address = 'alice@{VDOM}'")
    try:
        assert answers(machines, f"bob@{VDOM}", f"alice@{VDOM}") == "250 2.1.5 Ok"
    finally:
        database.sql(f"INSERT INTO senders VALUES ('alice@{VDOM}', 'alice')")
    assert answers(machines, f"bob@{VDOM}", f"alice@{VDOM}").startswith("553 5.7.1 ")


class Stream(threading.Thread):
    """One client sending message after message in one session until stopped or refused;
    acked holds the Message-IDs answered 250 to DATA (each to alice@ directly or through info@)."""

    def __init__(self, m, tag):
        super().__init__(daemon=True)
        self.m, self.tag = m, tag
        self.acked, self.error = [], None
        self.stop = threading.Event()

    def run(self):
        try:
            with self.m.client() as c:
                i = 0
                while not self.stop.is_set():
                    mid = f"{self.tag}-{i}@scale.test"
                    to = f"alice@{VDOM}" if i % 2 else f"info@{VDOM}"
                    data = (f"From: <{SENDER}>\r\nTo: <{to}>\r\nSubject: {self.tag} {i}\r\n"
                            f"Message-ID: <{mid}>\r\n\r\nbody {i}\r\n")
                    c.sendmail(SENDER, [to], data)   # raises unless every reply is 2xx
                    self.acked.append(mid)
                    i += 1
        except (smtplib.SMTPException, OSError) as e:
            self.error = e


def test_kill_one_mid_stream(machines):
    a, b = machines
    before = {m.address: m.delivered() for m in machines}
    sa, sb = Stream(a, "a"), Stream(b, "b")
    sa.start()
    sb.start()
    b.wait_for(lambda: len(sa.acked) >= 20 and len(sb.acked) >= 20, timeout=60, what="both streams under way")
    a.kill_all()                                    # mid-stream: a's client is cut off
    sa.join(timeout=30)
    assert not sa.is_alive() and sa.error is not None, "the killed instance's client went on"
    acked_b_at_kill = len(sb.acked)
    b.wait_for(lambda: len(sb.acked) >= acked_b_at_kill + 30 or sb.error, timeout=60,
               what="the other instance to go on accepting")
    sb.stop.set()
    sb.join(timeout=30)
    assert sb.error is None, f"the surviving instance's stream failed: {sb.error!r}"

    # the survivor: every acknowledged message delivered exactly once
    def copies(m, mids, base):
        d = m.delivered()
        return [d.get(("alice", mid), 0) - base.get(("alice", mid), 0) for mid in mids]
    b.wait_for(lambda: all(n >= 1 for n in copies(b, sb.acked, before[b.address])), timeout=60,
               what=f"all {len(sb.acked)} messages acknowledged by {b.address} delivered")
    b.wait_queue_empty(timeout=30)
    assert set(copies(b, sb.acked, before[b.address])) == {1}, "a message delivered twice"

    # the killed one, started again, delivers what it acknowledged before it died
    a.start()
    # The killed qmgr's last requests are still in the local socket's backlog (the listener
    # outlives the daemons, as under systemd): the new postern-local delivers them while the new
    # qmgr asks for the same recipients again. The two requests once met in one delivery child,
    # which then waited on its own marker lock for about a minute; now they do not.
    try:
        a.wait_for(lambda: all(n >= 1 for n in copies(a, sa.acked, before[a.address])), timeout=40)
    except AssertionError:
        missing = [mid for mid, n in zip(sa.acked, copies(a, sa.acked, before[a.address])) if n < 1]
        raise AssertionError(f"{len(missing)} of {len(sa.acked)} messages acknowledged by {a.address} not "
                             f"delivered after restart: {missing}") from None
    a.wait_queue_empty(timeout=90)
    # and it works as before
    assert answers(machines, f"alice@{VDOM}") == "250 2.1.5 Ok"
