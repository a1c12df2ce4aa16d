"""Postfix's address classes through SMTP and the queue: smtpd accepts the known recipients of
each class and refuses unknown ones with the class's code and text (local, virtual alias,
virtual mailbox, relay), answers 451 4.3.0 when a table cannot be read (a regexp: file that
disappears, a sqlite: table whose database is missing), refuses relocated addresses with 5.1.6,
warns once about a domain listed in two classes; qmgr delivers virtual mailbox domains through
virtual_transport (an LMTP server), relay domains through relay_transport and others through
default_transport (smtp-sink), and bounces what no class can deliver."""

import re
import sqlite3

import pytest

import mailtest
from mailtest import send
from smtp_peers import Scripted, Sink, peer_factory
from test_smtpd_helpers import OUTSIDE, session, start_relay

UNKNOWN = "{code} 5.1.1 <{addr}>: Recipient address rejected: User unknown in {table} table"
msg = mailtest.msg


def classes(postern):
    """Tables for every class; from OUTSIDE (not in mynetworks) relaying is refused."""
    etc = postern.root / "etc"
    (etc / "virtual").write_text("# virtual alias domain and aliases\n"
                                 "valias.example      anything\n"
                                 "info@valias.example ptest1@postern.test\n"
                                 "sales@vmbox.example bob@vmbox.example\n")
    (etc / "vmailbox").write_text("bob@vmbox.example   vmbox.example/bob/\n"
                                  "carol@vmbox.example vmbox.example/carol/\n")
    (etc / "relay_recipients").write_text("ok@relay.example x\n@open.relay.example x\n")
    return dict(virtual_alias_domains=f"texthash:{etc}/virtual",
                virtual_alias_maps=f"texthash:{etc}/virtual",
                virtual_mailbox_domains="vmbox.example",
                virtual_mailbox_maps=f"texthash:{etc}/vmailbox",
                relay_domains="relay.example",
                relay_recipient_maps=f"texthash:{etc}/relay_recipients",
                recipient_delimiter="+")


RCPTS = [
    # local
    ("ptest1@postern.test", "250 2.1.5 Ok"),
    ("nosuchuser@postern.test", UNKNOWN.format(code=550, addr="nosuchuser@postern.test", table="local recipient")),
    # virtual alias: the domain is listed by its own entry in virtual_alias_maps (Postfix's default)
    ("info@valias.example", "250 2.1.5 Ok"),
    ("Info@VALIAS.example", "250 2.1.5 Ok"),
    ("nobody@valias.example", UNKNOWN.format(code=550, addr="nobody@valias.example", table="virtual alias")),
    # virtual mailbox, with extensions, and a virtual alias in a virtual mailbox domain
    ("bob@vmbox.example", "250 2.1.5 Ok"),
    ("bob+lists@vmbox.example", "250 2.1.5 Ok"),
    ("sales@vmbox.example", "250 2.1.5 Ok"),
    ("dave@vmbox.example", UNKNOWN.format(code=550, addr="dave@vmbox.example", table="virtual mailbox")),
    # relay, with an @domain entry for a subdomain
    ("ok@relay.example", "250 2.1.5 Ok"),
    ("anyone@open.relay.example", "250 2.1.5 Ok"),
    ("x@relay.example", UNKNOWN.format(code=550, addr="x@relay.example", table="relay recipient")),
    # default: not ours, so relay control refuses it
    ("x@elsewhere.example", "554 5.7.1 <x@elsewhere.example>: Relay access denied"),
]


@pytest.mark.parametrize("rcpt,expect", RCPTS, ids=[r for r, _ in RCPTS])
def test_recipients_of_each_class(postern, rcpt, expect):
    start_relay(postern, **classes(postern))
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd(f"RCPT TO:<{rcpt}>") == expect


def test_class_codes_and_texts(postern):
    start_relay(postern, unknown_virtual_alias_reject_code="450",
                unknown_virtual_mailbox_reject_code="551", unknown_relay_recipient_reject_code="554",
                unknown_local_recipient_reject_code="450", **classes(postern))
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<nobody@valias.example>") == \
            UNKNOWN.format(code=450, addr="nobody@valias.example", table="virtual alias").replace("5.1.1", "4.1.1")
        assert c.cmd("RCPT TO:<dave@vmbox.example>") == \
            UNKNOWN.format(code=551, addr="dave@vmbox.example", table="virtual mailbox")
        assert c.cmd("RCPT TO:<x@relay.example>") == \
            UNKNOWN.format(code=554, addr="x@relay.example", table="relay recipient")
        assert c.cmd("RCPT TO:<nosuchuser@postern.test>") == \
            UNKNOWN.format(code=450, addr="nosuchuser@postern.test", table="local recipient").replace("5.1.1", "4.1.1")


def test_show_user_unknown_table_name_no(postern):
    start_relay(postern, show_user_unknown_table_name="no", **classes(postern))
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<dave@vmbox.example>") == \
            "550 5.1.1 <dave@vmbox.example>: Recipient address rejected: User unknown"


def test_unlisted_sender_in_each_class(postern):
    start_relay(postern, smtpd_reject_unlisted_sender="yes", **classes(postern))
    for sender, table in (("dave@vmbox.example", "virtual mailbox"), ("x@relay.example", "relay recipient"),
                          ("nobody@valias.example", "virtual alias")):
        with session(postern, source=OUTSIDE, sender=sender) as c:
            assert c.cmd("RCPT TO:<ptest1@postern.test>") == \
                f"550 5.1.0 <{sender}>: Sender address rejected: User unknown in {table} table"
    with session(postern, source=OUTSIDE, sender="bob@vmbox.example") as c:
        assert c.cmd("RCPT TO:<ptest1@postern.test>") == "250 2.1.5 Ok"


def test_relocated(postern):
    etc = postern.root / "etc"
    (etc / "relocated").write_text("old@vmbox.example  bob@vmbox.example\n"
                                   "gone               a street address\n"
                                   "@moved.example     contact@new.example\n")
    start_relay(postern, relocated_maps=f"texthash:{etc}/relocated", **(classes(postern) | dict(
        relay_domains="relay.example, moved.example")))
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<old@vmbox.example>") == \
            "550 5.1.6 <old@vmbox.example>: Recipient address rejected: User has moved to bob@vmbox.example"
        assert c.cmd("RCPT TO:<old+tag@vmbox.example>") == \
            "550 5.1.6 <old+tag@vmbox.example>: Recipient address rejected: User has moved to bob@vmbox.example"
        # "user" alone: only in local domains
        assert c.cmd("RCPT TO:<gone@postern.test>") == \
            "550 5.1.6 <gone@postern.test>: Recipient address rejected: User has moved to a street address"
        assert c.cmd("RCPT TO:<gone@relay.example>") == \
            UNKNOWN.format(code=550, addr="gone@relay.example", table="relay recipient")
        assert c.cmd("RCPT TO:<x@moved.example>") == \
            "550 5.1.6 <x@moved.example>: Recipient address rejected: User has moved to contact@new.example"


def wait_reply(postern, rcpt, expect, timeout=10):
    """RCPT TO:<rcpt> in new sessions until the reply is expect (tables are re-checked at most once
    a second); returns it."""
    last = []

    def check():
        with session(postern, source=OUTSIDE) as c:
            last[:] = [c.cmd(f"RCPT TO:<{rcpt}>")]
        return last[0] == expect
    postern.wait_for(check, timeout, f"{expect!r} (last reply: {last})")
    return last[0]


def test_regexp_table_that_disappears_is_temporary(postern):
    table = postern.root / "etc" / "vmailbox.regexp"
    table.write_text("/^(bob|carol)@vmbox\\.example$/ ok\n")
    start_relay(postern, virtual_mailbox_domains="vmbox.example", virtual_mailbox_maps=f"regexp:{table}")
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<bob@vmbox.example>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<dave@vmbox.example>") == \
            UNKNOWN.format(code=550, addr="dave@vmbox.example", table="virtual mailbox")
    table.unlink()
    wait_reply(postern, "dave@vmbox.example", "451 4.3.0 <dave@vmbox.example>: Temporary lookup failure")
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<bob@vmbox.example>") == "451 4.3.0 <bob@vmbox.example>: Temporary lookup failure"
        assert c.cmd("RCPT TO:<ptest1@postern.test>") == "250 2.1.5 Ok"   # other classes go on
    postern.wait_log("smtpd", r"virtual_mailbox_maps lookup of <dave@vmbox\.example> failed")
    # The file comes back: the answers do too.
    table.write_text("/^(bob|carol)@vmbox\\.example$/ ok\n")
    wait_reply(postern, "bob@vmbox.example", "250 2.1.5 Ok")


def test_sqlite_table_without_database_is_temporary(postern):
    cf = postern.root / "etc" / "relay_recipients.cf"
    cf.write_text(f"dbpath = {postern.root}/etc/missing.sqlite\n"
                  "query = SELECT 1 FROM recipients WHERE address = '%s'\n")
    start_relay(postern, relay_domains="relay.example", relay_recipient_maps=f"sqlite:{cf}")
    postern.wait_log("smtpd", r"relay_recipient_maps = sqlite:.*cannot open database.*answering 451 4\.3\.0")
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<x@relay.example>") == "451 4.3.0 <x@relay.example>: Temporary lookup failure"
        assert c.cmd("RCPT TO:<ptest1@postern.test>") == "250 2.1.5 Ok"


def test_sqlite_virtual_mailbox_maps(postern):
    db = postern.root / "etc" / "vmail.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE mailbox (username TEXT, maildir TEXT)")
    con.execute("INSERT INTO mailbox VALUES ('bob@vmbox.example', 'vmbox.example/bob/')")
    con.commit()
    con.close()
    cf = postern.root / "etc" / "vmailbox.cf"
    cf.write_text(f"dbpath = {db}\nquery = SELECT maildir FROM mailbox WHERE username = '%s'\n")
    start_relay(postern, virtual_mailbox_domains="vmbox.example", virtual_mailbox_maps=f"sqlite:{cf}")
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<bob@vmbox.example>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<dave@vmbox.example>") == \
            UNKNOWN.format(code=550, addr="dave@vmbox.example", table="virtual mailbox")
    # The database turns into something that is not one: lookups fail, 451 not 550.
    db.write_bytes(b"this is not an SQLite database" * 200)
    wait_reply(postern, "dave@vmbox.example", "451 4.3.0 <dave@vmbox.example>: Temporary lookup failure")


def test_domain_in_two_classes_warns_once(postern):
    start_relay(postern, mydestination="$myhostname, localhost, both.example",
                virtual_mailbox_domains="both.example")
    for _ in range(3):
        with session(postern, source=OUTSIDE) as c:
            c.cmd("RCPT TO:<ptest1@both.example>")
    postern.wait_log("smtpd", r"warning: domain both\.example is listed in both mydestination and "
                              r"virtual_mailbox_domains")
    assert postern.log("smtpd").count("both.example is listed in both") == 1


@pytest.fixture
def sinks(postern):
    yield from peer_factory(lambda name: Sink(postern.root / name))


def test_qmgr_routes_by_class(postern, sinks):
    lmtp = Scripted(lmtp=True)
    relay, default = sinks("relay"), sinks("default")
    try:
        postern.configure(virtual_transport=f"lmtp:inet:127.0.0.1:{lmtp.port}",
                          relay_transport=f"relay:[127.0.0.1]:{relay.port}",
                          default_transport=f"smtp:[127.0.0.1]:{default.port}",
                          **classes(postern))
        postern.start()
        qid = send(postern, "ptest1@postern.test",
                   ["bob@vmbox.example", "carol+x@vmbox.example", "ok@relay.example", "x@elsewhere.example",
                    "ptest1@postern.test"], msg("route-classes@test"))
        postern.wait_log("smtp", rf"{qid}: to=<bob@vmbox\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{lmtp.port}, "
                                 r".*status=sent")
        postern.wait_log("smtp", rf"{qid}: to=<carol\+x@vmbox\.example>, relay=127\.0\.0\.1.*status=sent")
        relay.wait_count(1)
        default.wait_count(1)
        postern.wait_mailbox("ptest1", r"Message-ID: <route-classes@test>")
        postern.wait_queue_empty()
        assert "LHLO postern.test" in lmtp.commands
        assert sorted(c for c in lmtp.commands if c.startswith("RCPT")) == \
            ["RCPT TO:<bob@vmbox.example>", "RCPT TO:<carol+x@vmbox.example>"]
        assert b"X-Rcpt-Args: <ok@relay.example>" in relay.messages()[0]
        assert b"X-Rcpt-Args: <x@elsewhere.example>" in default.messages()[0]
    finally:
        lmtp.stop()


def test_qmgr_bounces_virtual_alias_leftovers_and_relocated(postern):
    etc = postern.root / "etc"
    (etc / "relocated").write_text("old@vmbox.example bob@vmbox.example\n")
    # smtpd lets them in (no recipient checks), so qmgr's own decisions are what is observed.
    postern.configure(smtpd_reject_unlisted_recipient="no", relocated_maps=f"texthash:{etc}/relocated",
                      **classes(postern))
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["nobody@valias.example", "old@vmbox.example"],
               msg("leftover@test"))
    postern.wait_log("qmgr", rf"{qid}: to=<nobody@valias\.example>, relay=none, .*dsn=5\.1\.1, "
                             r"status=bounced \(User unknown in virtual alias table\)")
    postern.wait_log("qmgr", rf"{qid}: to=<old@vmbox\.example>, relay=none, .*dsn=5\.1\.6, "
                             r"status=bounced \(User has moved to bob@vmbox\.example\)")
    postern.wait_mailbox("ptest1", r"Undelivered Mail Returned to Sender", timeout=20)
    postern.wait_queue_empty()


def test_qmgr_defers_when_a_class_table_cannot_be_read(postern, sinks):
    default = sinks("default")
    table = postern.root / "etc" / "vdomains"
    table.write_text("vmbox.example x\n")
    postern.configure(virtual_mailbox_domains=f"texthash:{table}",
                      default_transport=f"smtp:[127.0.0.1]:{default.port}")
    postern.start("smtpd")
    qid = send(postern, "ptest1@postern.test", ["x@elsewhere.example", "ptest1@postern.test"],
               msg("broken-class@test"))
    table.unlink()
    # qmgr starts without the table: local mail is decided before the broken list and delivered;
    # the remote recipient is deferred, never sent by default_transport.
    postern.start("qmgr", "local", "smtp")
    postern.wait_log("qmgr", r"virtual_mailbox_domains: texthash:.*vdomains.*deferring mail for the domains")
    postern.wait_log("qmgr", rf"{qid}: to=<x@elsewhere\.example>, relay=none, .*dsn=4\.3\.0, status=deferred")
    postern.wait_mailbox("ptest1", r"Message-ID: <broken-class@test>")
    assert default.messages() == []


def test_posternctl_check_names_class_tables(postern):
    etc = postern.root / "etc"
    (etc / "vmailbox").write_text("bob@vmbox.example x\n")
    postern.configure(virtual_mailbox_domains="vmbox.example", virtual_mailbox_maps=f"texthash:{etc}/vmailbox")
    r = postern.posternctl("check")
    assert r.returncode == 0, r.stderr
    postern.configure(virtual_mailbox_maps=f"texthash:{etc}/missing",
                      relay_domains=f"texthash:{etc}/missing-relay")
    r = postern.posternctl("check")
    assert r.returncode == 1
    assert re.search(r"posternctl: virtual_mailbox_maps: texthash:.*/missing: cannot open", r.stderr), r.stderr
    assert re.search(r"posternctl: relay_domains: texthash:.*/missing-relay: cannot open", r.stderr), r.stderr


def test_address_literals_of_own_addresses_are_local(postern):
    # Numeric inet_interfaces / proxy_interfaces entries and, for "all", every interface
    # address (127.0.0.1 on the tests' loopback): [address] literals are local.
    start_relay(postern, inet_interfaces="all, 127.0.0.8", proxy_interfaces="192.0.2.25")
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<ptest1@[127.0.0.1]>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<nosuchuser@[127.0.0.1]>") == \
            UNKNOWN.format(code=550, addr="nosuchuser@[127.0.0.1]", table="local recipient")
        assert c.cmd("RCPT TO:<ptest1@[127.0.0.8]>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest1@[192.0.2.25]>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<nosuchuser@[192.0.2.25]>") == \
            UNKNOWN.format(code=550, addr="nosuchuser@[192.0.2.25]", table="local recipient")
        assert c.cmd("RCPT TO:<ptest1@[127.0.0.9]>") == "554 5.7.1 <ptest1@[127.0.0.9]>: Relay access denied"


def test_reload_changes_the_classes(postern):
    start_relay(postern, virtual_mailbox_domains="vmbox.example")
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<x@new.example>") == "554 5.7.1 <x@new.example>: Relay access denied"
    postern.configure(virtual_mailbox_domains="vmbox.example, new.example",
                      virtual_mailbox_maps="inline:{ {bob@new.example=new.example/bob/} }")
    postern.reload("smtpd")
    wait_reply(postern, "x@new.example", UNKNOWN.format(code=550, addr="x@new.example", table="virtual mailbox"))
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<bob@new.example>") == "250 2.1.5 Ok"


def test_rewriting_tables_make_addresses_known_and_fail_temporarily(postern):
    table = postern.root / "etc" / "canonical"
    table.write_text("old@vmbox.example bob@vmbox.example\n")
    start_relay(postern, canonical_maps=f"texthash:{table}", **classes(postern))
    with session(postern, source=OUTSIDE) as c:
        assert c.cmd("RCPT TO:<old@vmbox.example>") == "250 2.1.5 Ok"   # canonical_maps rewrites it
    table.unlink()
    wait_reply(postern, "bob@vmbox.example", "451 4.3.0 <bob@vmbox.example>: Temporary lookup failure")
    postern.wait_log("smtpd", r"canonical_maps lookup of <bob@vmbox\.example> failed")
