"""Lookup tables in real databases and lookup servers: pgsql: (a private PostgreSQL), mysql: (a
private MariaDB), socketmap: and tcp: (scripted servers), each against the same scenarios as
texthash: files (sql_peers.py starts the servers). virtual_mailbox_domains, virtual_mailbox_maps,
virtual_alias_maps and smtpd_sender_login_maps live in the backend:

- the same RCPT and sender answers as with texthash:, and delivery into the virtual mailboxes;
- a change in the database takes effect without a reload, a changed .cf file on reload;
- a server that hangs (SIGSTOP) costs the table's timeout, then 451 4.3.0;
- the server stopped: 451 4.3.0 at RCPT (never 550) and deferral at delivery; started again,
  lookups work again without a restart (retry_interval = 1 s);
- a key with quotes (and, for MariaDB, a backslash) cannot change the query;
- mysql: and pgsql: over TLS with the server's certificate verified (mysql's tls_CAfile and
  tls_verify_cert, a postgresql:// URI with sslmode=verify-full);
- a .cf file holding a password that anyone can read is refused, and posternctl check says so.
"""

import os
import re
import shutil
import time

import pytest

import mailtest
from sql_peers import PASSWORD, Mariadb, Postgres, ScriptedMap
from test_smtpd_helpers import raw, session
from test_smtpd_tls import CERTTOOL, _ca, _leaf

VDOM = "vdomain.test"
SENDER = "sender@example.org"
MAPS = ("domains", "mailboxes", "aliases", "senders")
DATA = {
    "domains": {VDOM: VDOM},
    "mailboxes": {f"alice@{VDOM}": f"{VDOM}/alice/", f"bob@{VDOM}": f"{VDOM}/bob/"},
    "aliases": {f"info@{VDOM}": f"alice@{VDOM}", f"team@{VDOM}": f"alice@{VDOM},bob@{VDOM}"},
    "senders": {f"alice@{VDOM}": "alice"},
}
QUERY = {
    "domains": "SELECT domain FROM domains WHERE domain = '%s'",
    "mailboxes": "SELECT maildir FROM mailboxes WHERE address = '%s'",
    "aliases": "SELECT goto FROM aliases WHERE address = '%s'",
    "senders": "SELECT login FROM senders WHERE address = '%s'",
}
SCHEMA = {"domains": ("domain",), "mailboxes": ("address", "maildir"), "aliases": ("address", "goto"),
          "senders": ("address", "login")}


class Backend:
    """The four maps in one kind of table; put() changes an entry in place, stop()/start() the
    server behind them."""

    def __init__(self, kind, postern):
        self.kind, self.p = kind, postern
        self.server = None
        self.maps = {}
        if kind == "pgsql":
            self.server = Postgres()
        elif kind == "mysql":
            self.server = Mariadb()
        if self.server:
            for name, cols in SCHEMA.items():
                self.sql(f"CREATE TABLE {name} ({', '.join(c + ' VARCHAR(200)' for c in cols)})")
            if kind == "pgsql":
                self.sql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO postern")
        for name in MAPS:
            for k, v in DATA[name].items():
                self.put(name, k, v)

    def sql(self, text):
        return self.server.sql(text)

    def put(self, name, key, value):
        if self.kind == "texthash":
            path = self.p.etc_dir / f"{name}.txt"   # not "...aliases": that would be aliases(5) syntax
            entries = dict(line.split(" ", 1) for line in path.read_text().splitlines()) if path.exists() else {}
            entries[key] = value
            path.write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
        elif self.server:
            for v in value.split(","):
                q = "'" + key.replace("'", "''") + "'"
                vals = [q] if name == "domains" else [q, "'" + v + "'"]
                self.sql(f"INSERT INTO {name} VALUES ({', '.join(vals)})")
        else:
            self.maps.setdefault(name, ScriptedMap(self.kind)).entries[key] = value

    def spec(self, name):
        if self.kind == "texthash":
            return f"texthash:{self.p.etc_dir / name}.txt"
        if self.kind in ("socketmap", "tcp"):
            m = self.maps[name]
            return f"proxy:socketmap:inet:127.0.0.1:{m.port}:virtual" if self.kind == "socketmap" else f"tcp:127.0.0.1:{m.port}"
        cf = self.p.etc_dir / f"{self.kind}-{name}.cf"
        host = f"unix:{self.server.socket_dir}" if self.kind == "pgsql" else f"unix:{self.server.socket}"
        cf.write_text(f"# {name}\nhosts = {host}\nuser = postern\npassword = {PASSWORD}\ndbname = mail\n"
                      f"query = {QUERY[name]}\nretry_interval = 1\ntimeout = 5\n")
        os.chmod(cf, 0o640)
        return f"proxy:{self.kind}:{cf}"

    def stop(self):
        if self.server:
            self.server.stop()
        for m in self.maps.values():
            m.stop()

    def start(self):
        if self.server:
            self.server.start()
        for m in self.maps.values():
            m.start()

    def close(self):
        if self.server:
            self.server.close()
        for m in self.maps.values():
            if m.listener:
                m.stop()


@pytest.fixture(params=["texthash", "pgsql", "mysql", "socketmap", "tcp"])
def backend(request, postern):
    b = Backend(request.param, postern)
    yield b
    b.close()


SERVERS = ["pgsql", "mysql", "socketmap", "tcp"]


@pytest.fixture(params=SERVERS)
def server_backend(request, postern):
    b = Backend(request.param, postern)
    yield b
    b.close()


def configure(p, b, **params):
    p.vbase = p.root / "vmail"
    p.vbase.mkdir(exist_ok=True)
    os.chmod(p.vbase, 0o1777)
    uid = __import__("pwd").getpwnam("ptest1").pw_uid
    p.configure(virtual_mailbox_domains=b.spec("domains"), virtual_mailbox_maps=b.spec("mailboxes"),
                virtual_alias_maps=b.spec("aliases"), smtpd_sender_login_maps=b.spec("senders"),
                smtpd_sender_restrictions="reject_unauthenticated_sender_login_mismatch",
                virtual_mailbox_base=str(p.vbase), virtual_uid_maps=f"static:{uid}", virtual_gid_maps=f"static:{uid}",
                **params)


def rcpt(p, address, sender=SENDER):
    with session(p, source="127.0.0.1", sender=sender) as c:
        return c.cmd(f"RCPT TO:<{address}>")


def maildir(p, user):
    new = p.vbase / VDOM / user / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


EXPECTED = [
    (f"alice@{VDOM}", SENDER, "250 2.1.5 Ok"),
    (f"Alice@VDOMAIN.test", SENDER, "250 2.1.5 Ok"),
    (f"info@{VDOM}", SENDER, "250 2.1.5 Ok"),
    (f"team@{VDOM}", SENDER, "250 2.1.5 Ok"),
    (f"nobody@{VDOM}", SENDER,
     f"550 5.1.1 <nobody@{VDOM}>: Recipient address rejected: User unknown in virtual mailbox table"),
    (f"alice@{VDOM}", f"alice@{VDOM}",
     f"553 5.7.1 <alice@{VDOM}>: Sender address rejected: not logged in"),
]


def test_same_answers_and_delivery(postern, backend):
    """Every backend answers RCPT and the sender check as texthash: does, and a message to an
    alias and a mailbox lands in the virtual mailboxes."""
    p = postern
    configure(p, backend)
    p.start()
    for address, sender, reply in EXPECTED:
        assert rcpt(p, address, sender) == reply, (backend.kind, address, sender)
    qid = mailtest.send(p, SENDER, [f"team@{VDOM}", f"info@{VDOM}"],
                        mailtest.msg("sql-1@test", sender=SENDER, to=f"team@{VDOM}", subject="db"))
    p.wait_log("local", rf"{qid}: to=<bob@{VDOM}>, relay=virtual, .*status=sent", timeout=20)
    p.wait_queue_empty()
    # one copy through team@, one through info@ (as with texthash:)
    assert (len(maildir(p, "alice")), len(maildir(p, "bob"))) == (2, 1)


def test_change_without_reload(postern, server_backend):
    """A mailbox added in the database (or the lookup server) is accepted at once."""
    p = postern
    configure(p, server_backend)
    p.start("smtpd")
    carol = f"carol@{VDOM}"
    assert rcpt(p, carol).startswith("550 5.1.1 ")
    server_backend.put("mailboxes", carol, f"{VDOM}/carol/")
    assert rcpt(p, carol) == "250 2.1.5 Ok"


def test_server_down_is_temporary(postern, server_backend):
    """The server stopped: 451 4.3.0 for a known and for an unknown user (never 550); started
    again, lookups resume without a restart of Postern."""
    p = postern
    configure(p, server_backend)
    p.start("smtpd")
    assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
    server_backend.stop()
    for user in ("alice", "nobody"):
        r = rcpt(p, f"{user}@{VDOM}")
        assert r.startswith("451 4.3.0 "), r
    # the server's reason is logged, once for all these lookups
    what = "cannot connect to" if server_backend.kind in ("pgsql", "mysql") else "cannot connect"
    m = p.wait_log("smtpd", rf"warning: (proxy:)?{server_backend.kind}:\S+: lookup failed: .*{what}")
    assert len(re.findall(re.escape(m.group(0)), p.log("smtpd"))) == 1, p.log("smtpd")
    server_backend.start()
    p.wait_for(lambda: rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok", timeout=20, what="lookups after the restart")
    assert rcpt(p, f"nobody@{VDOM}").startswith("550 5.1.1 ")
    assert p.running("smtpd")


def test_cf_reread_on_reload(postern):
    """A changed .cf file takes effect when smtpd reloads (SIGHUP), as other table files do."""
    p = postern
    b = Backend("pgsql", p)
    try:
        configure(p, b)
        p.start("smtpd")
        assert rcpt(p, f"zed@{VDOM}").startswith("550 5.1.1 ")
        cf = p.etc_dir / "pgsql-mailboxes.cf"
        cf.write_text(cf.read_text().replace(QUERY["mailboxes"], "SELECT 'z/' WHERE '%u' = 'zed'"))
        p.reload("smtpd")
        p.wait_for(lambda: rcpt(p, f"zed@{VDOM}") == "250 2.1.5 Ok", timeout=20, what="the new query")
        assert rcpt(p, f"alice@{VDOM}").startswith("550 5.1.1 ")
    finally:
        b.close()


def test_hung_server_times_out(postern):
    """A server that stops answering (SIGSTOP): the query gives up after the table's timeout, the
    client gets 451 4.3.0 within seconds, and lookups resume when the server does."""
    p = postern
    b = Backend("pgsql", p)
    try:
        spec = b.spec("mailboxes")
        cf = p.etc_dir / "pgsql-mailboxes.cf"
        cf.write_text(cf.read_text().replace("timeout = 5", "timeout = 1"))
        p.configure(virtual_mailbox_domains=VDOM, virtual_mailbox_maps=spec)
        p.start("smtpd")
        assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"    # connected
        b.server.pause()
        start = time.monotonic()
        with session(p, source="127.0.0.1", sender=SENDER) as c:
            c.s.settimeout(30)
            r = c.cmd(f"RCPT TO:<alice@{VDOM}>")
        assert r.startswith("451 4.3.0 "), r
        assert time.monotonic() - start < 10
        p.wait_log("smtpd", r"lookup failed: .*(no answer within 1 s|timeout expired)")
        b.server.resume()
        p.wait_for(lambda: rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok", timeout=20, what="lookups after SIGCONT")
    finally:
        b.close()


@pytest.mark.parametrize("kind", ["pgsql", "mysql"])
def test_delivery_defers_while_down(postern, kind):
    """A message accepted while the database was up, routed while it is down: deferred (4.3.0),
    then delivered once the database is back and the queue is flushed."""
    p = postern
    b = Backend(kind, p)
    try:
        configure(p, b)
        p.start("smtpd")
        qid = mailtest.send(p, SENDER, [f"alice@{VDOM}"],
                            mailtest.msg("sql-2@test", sender=SENDER, to=f"alice@{VDOM}", subject="later"))
        b.stop()
        p.start("qmgr", "local", "smtp")
        deferred = rf"{qid}: to=<alice@{VDOM}>, .*dsn=4\.3\.0, status=deferred"
        p.wait_for(lambda: re.search(deferred, p.log("qmgr") + p.log("local")), timeout=30, what="deferral")
        assert maildir(p, "alice") == []
        b.start()
        p.wait_for(lambda: (p.posternctl("flush"), maildir(p, "alice"))[1], timeout=30, what="delivery after the restart")
        p.wait_queue_empty()
    finally:
        b.close()


@pytest.mark.parametrize("kind", ["pgsql", "mysql"])
def test_injection_in_a_key(postern, kind):
    """Keys that would turn the query into "... OR true" if pasted unescaped find nothing: quotes
    (both servers) and a backslash before a quote (MariaDB's other escape)."""
    p = postern
    b = Backend(kind, p)
    try:
        configure(p, b)
        p.start("smtpd")
        for local in ("x'or'1'='1'or'1'='1", "x'or'1'='1", "\"x\\\\' or 1=1 -- \""):
            r = rcpt(p, f"{local}@{VDOM}")
            assert r.startswith("550 5.1.1 "), (local, r)
        # the tables still answer, and the database still has its rows
        assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
        assert "alice" in b.sql("SELECT address FROM mailboxes")
        # a domain that is a quote: not ours, and no error
        with raw(p, source="127.0.0.1") as c:
            assert c.cmd("EHLO client.test").startswith("250")
            assert c.cmd(f"MAIL FROM:<{SENDER}>") == "250 2.1.0 Ok"
            r = c.cmd("RCPT TO:<a@x'or'1'='1>")
            assert not r.startswith("4"), r
    finally:
        b.close()


@pytest.fixture(scope="module")
def db_pki():
    d = _ca("postern-dbtls-", "Postern DB Test CA")
    _leaf(d, "db", ["--key-type=rsa", "--bits=2048"], ["db.postern.test"])
    other = _ca("postern-dbtls-other-", "Another CA")
    yield d, other
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(other, ignore_errors=True)


def tls_cf(kind, server, ca, tls=True):
    """mysql: tls_CAfile + tls_verify_cert = yes for postern_tls (who may log in only with TLS);
    pgsql: a postgresql:// URI with sslmode=verify-full."""
    if kind == "mysql":
        return (f"hosts = inet:127.0.0.1:{server.port}\nuser = postern_tls\ndbname = mail\n"
                + (f"tls_CAfile = {ca}\ntls_verify_cert = yes\n" if tls else ""))
    return (f"hosts = postgresql://db.postern.test:{server.port}/mail?sslmode=verify-full"
            f"&sslrootcert={ca}&hostaddr=127.0.0.1\nuser = postern\n")


@pytest.mark.parametrize("kind", ["pgsql", "mysql"])
def test_over_tls(postern, db_pki, kind):
    """The lookup goes over TLS with the server's certificate checked (the server's own view of
    the session, or a user who may log in only with TLS, says so); a certificate from another CA
    is a temporary error naming the certificate problem."""
    if not CERTTOOL:
        pytest.fail("certtool is missing: install gnutls-bin (tests/run-all does)")
    d, other = db_pki
    p = postern
    server = (Postgres if kind == "pgsql" else Mariadb)(tls=(d / "ca.crt", d / "db.crt", d / "db.key"))
    try:
        server.sql("CREATE TABLE mailboxes (address VARCHAR(200), maildir VARCHAR(200)); "
                   f"INSERT INTO mailboxes VALUES ('alice@{VDOM}', 'a/')"
                   + ("; GRANT SELECT ON mailboxes TO postern" if kind == "pgsql" else ""))
        cf = p.etc_dir / f"{kind}-tls.cf"

        def write(ca, tls=True):
            cf.write_text(tls_cf(kind, server, ca, tls) + f"password = {PASSWORD}\nquery = {QUERY['mailboxes']}\n"
                          "retry_interval = 1\n")
            os.chmod(cf, 0o640)

        write(d / "ca.crt")
        p.configure(virtual_mailbox_domains=VDOM, virtual_mailbox_maps=f"{kind}:{cf}")
        p.start("smtpd")
        assert rcpt(p, f"alice@{VDOM}") == "250 2.1.5 Ok"
        assert rcpt(p, f"bob@{VDOM}").startswith("550 5.1.1 ")
        if kind == "pgsql":
            assert "t" in server.sql("SELECT bool_or(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                                     "WHERE usename = 'postern'")
        else:
            # without the tls_* settings the same login is refused (REQUIRE SSL): TLS was in use
            write(d / "ca.crt", tls=False)
            p.reload("smtpd")
            p.wait_for(lambda: rcpt(p, f"alice@{VDOM}").startswith("451 4.3.0 "), timeout=20,
                       what="a refused plain login")
        write(other / "ca.crt")
        p.reload("smtpd")
        p.wait_for(lambda: rcpt(p, f"alice@{VDOM}").startswith("451 4.3.0 "), timeout=20, what="a refused certificate")
        p.wait_log("smtpd", rf"{kind}:\S+: lookup failed: cannot connect to \S+: .*(certificate|SSL|TLS)")
    finally:
        server.close()


def test_world_readable_password_refused(postern):
    """A .cf file with a password that anyone can read: smtpd does not start with it, and
    posternctl check names the file."""
    p = postern
    cf = p.etc_dir / "pgsql-open.cf"
    cf.write_text(f"hosts = unix:/nonexistent\nuser = postern\npassword = {PASSWORD}\nquery = SELECT 1\n")
    os.chmod(cf, 0o644)
    p.configure(virtual_alias_maps=f"pgsql:{cf}")
    r = p.posternctl("check")
    assert r.returncode != 0
    assert re.search(rf"{re.escape(str(cf))} holds a password and is world-readable", r.stderr), r.stderr
    os.chmod(cf, 0o640)
    r = p.posternctl("check")
    assert "world-readable" not in r.stderr, r.stderr
