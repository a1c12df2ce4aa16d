"""postern-smtpd relay control: nobody outside mynetworks may relay. Clients connect from
127.0.0.2 with mynetworks = 127.0.0.1/32 and every routing trick must be refused with nothing
queued; the same addresses from 127.0.0.1 (inside mynetworks) are relayed."""

import pytest

from mailtest import send
from test_smtpd_helpers import OUTSIDE, RELAY, raw, queue_ids, session, start_relay

RELAY_DENIED = "554 5.7.1 <{}>: Relay access denied"
UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in local recipient table"

# (what the client sends after RCPT TO:, the reply it must get)
ATTEMPTS = [
    ("<user@remote.test>", RELAY_DENIED.format("user@remote.test")),
    ("<USER@Remote.Test>", RELAY_DENIED.format("USER@remote.test")),
    ("<user@remote.test.>", None),                       # 501 or relay denied, never accepted
    ("<user@localhost.remote.test>", RELAY_DENIED.format("user@localhost.remote.test")),
    ("<user%remote.test@localhost>", UNKNOWN.format("user%remote.test@localhost")),
    ("<remote.test!user@localhost>", UNKNOWN.format("remote.test!user@localhost")),
    ("<@localhost:user@remote.test>", RELAY_DENIED.format("user@remote.test")),
    ("<@localhost,@postern.test:user@remote.test>", RELAY_DENIED.format("user@remote.test")),
    ('<"user@remote.test"@localhost>', UNKNOWN.format('"user@remote.test"@localhost')),
    # a literal of this host's address is local (inet_interfaces = all); of another, relaying
    ("<user@[127.0.0.1]>", UNKNOWN.format("user@[127.0.0.1]")),
    ("<user@[192.0.2.99]>", RELAY_DENIED.format("user@[192.0.2.99]")),
    ("<user@[IPv6:2001:db8::99]>", RELAY_DENIED.format("user@[IPv6:2001:db8::99]")),
    ("<user@[IPv6:::1]>", None),
    ("<user@dom.test@localhost>", "501"),
    ("<user@remote.test@localhost>", "501"),
    ("user@remote.test", RELAY_DENIED.format("user@remote.test")),
    ("<ptest1@remote.test>", RELAY_DENIED.format("ptest1@remote.test")),
]


@pytest.mark.parametrize("addr,expect", ATTEMPTS, ids=[a for a, _ in ATTEMPTS])
def test_relay_attempt_from_outside_mynetworks(postern, addr, expect):
    start_relay(postern)
    with session(postern, sender="spammer@example.org") as c:
        r = c.cmd("RCPT TO:" + addr)
        assert not r.startswith("2"), r
        if expect and len(expect) > 3:
            assert r == expect
        elif expect:
            assert r.startswith(expect + " "), r
        assert c.cmd("DATA") == "554 5.5.1 Error: no valid recipients"
        c.cmd("QUIT")
    assert queue_ids(postern) == []


def test_relay_reject_is_logged(postern):
    start_relay(postern)
    with session(postern, sender="spammer@example.org") as c:
        c.cmd("RCPT TO:<victim@remote.test>")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.2\]: 554 5\.7\.1 "
                     r"<victim@remote\.test>: Relay access denied; from=<spammer@example\.org> "
                     r"to=<victim@remote\.test> proto=ESMTP helo=<client\.test>")


def test_pipelined_relay_attempt_then_data_queues_nothing(postern):
    # EHLO and DATA may not be followed by pipelined input; allow it here to see each reply.
    start_relay(postern, smtpd_forbid_unauth_pipelining="no")
    with raw(postern, source=OUTSIDE) as c:
        c.send("EHLO client.test\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<a@remote.test>\r\n"
               "RCPT TO:<b%remote.test@localhost>\r\nDATA\r\nSubject: spam\r\n\r\nspam\r\n.\r\nQUIT\r\n")
        replies = []
        try:
            while True:
                replies.append(c.text())
        except EOFError:
            pass
        assert replies[2].startswith("554 5.7.1")
        assert replies[3].startswith("550 5.1.1")
        assert replies[4] == "554 5.5.1 Error: no valid recipients"
        assert all(not r.startswith("354") for r in replies)
    assert queue_ids(postern) == []


def test_local_delivery_allowed_from_outside(postern):
    start_relay(postern)
    with session(postern, sender="friend@example.org") as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest2@POSTERN.TEST>") == "250 2.1.5 Ok"


def test_relay_allowed_from_mynetworks(postern):
    start_relay(postern)
    send(postern, "me@postern.test", ["someone@remote.test", "x%y@remote.test"],
         b"Subject: relay\r\n\r\nrelayed\r\n")
    rows = postern.queue_rows("SELECT address FROM recipients ORDER BY id")
    assert [r[0] for r in rows] == ["someone@remote.test", "x%y@remote.test"]


def test_default_relay_restrictions_defer(postern):
    """Postfix's default smtpd_relay_restrictions ends in defer_unauth_destination."""
    postern.configure(mynetworks="127.0.0.1/32")
    postern.start("smtpd")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "454 4.7.1 <u@remote.test>: Relay access denied"


def test_relay_domains_with_subdomains(postern):
    start_relay(postern, relay_domains="example.net, .only-subs.test")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<u@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u@mx.sub.example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u@notexample.net>").startswith("554 5.7.1 ")
        assert c.cmd("RCPT TO:<u@only-subs.test>").startswith("554 5.7.1 ")
        assert c.cmd("RCPT TO:<u@a.only-subs.test>") == "250 2.1.5 Ok"


def test_mydestination_has_no_subdomain_match(postern):
    start_relay(postern)
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@sub.postern.test>").startswith("554 5.7.1 ")


def test_mynetworks_forms(postern):
    start_relay(postern, mynetworks="[::1]/128, ::1/128, [::ffff:127.0.0.0]/104, 10.0.0.0/8, 127.0.0.2")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
    assert "ignoring unsupported entry" not in postern.log("smtpd")


def test_mynetworks_from_a_file(postern, tmp_path):
    """A "/file/name" entry stands for the networks written in the file (comments, several per
    line), as in Postfix; a change takes effect at reload."""
    nets = tmp_path / "networks"
    nets.write_text("# relay clients\n10.0.0.0/8 127.0.0.2\n  [::1]/128,127.0.0.5\n")
    nets.chmod(0o644)
    tmp_path.chmod(0o755)
    start_relay(postern, mynetworks=str(nets))
    with session(postern) as c:   # from 127.0.0.2
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
    with session(postern, source="127.0.0.3") as c:
        assert c.cmd("RCPT TO:<u@remote.test>").startswith("554 5.7.1 ")
    nets.write_text("127.0.0.3\n")
    postern.reload("smtpd")
    postern.wait_for(lambda: session_rcpt(postern, "127.0.0.3") == "250 2.1.5 Ok", 30,
                     "the file's new network after reload")


def session_rcpt(postern, source):
    with session(postern, source=source) as c:
        return c.cmd("RCPT TO:<u@remote.test>")


def test_mynetworks_prefix(postern):
    start_relay(postern, mynetworks="127.0.0.0/31")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<u@remote.test>").startswith("554 5.7.1 ")
    with session(postern, source="127.0.0.1") as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"


def test_restriction_elements(postern):
    start_relay(postern, smtpd_relay_restrictions="reject_unauth_destination",
          smtpd_recipient_restrictions="permit_mynetworks, defer")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"


def test_reject_element_and_unknown_element(postern):
    start_relay(postern, smtpd_relay_restrictions="permit_mynetworks, reject")
    with session(postern) as c:
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"


def start_fails(postern, pattern):
    """smtpd must refuse to start (before READY=1), logging pattern."""
    import re
    with pytest.raises(RuntimeError) as e:
        postern.start("smtpd")
    assert "before READY=1" in str(e.value), str(e.value)
    assert re.search(pattern, postern.log("smtpd")), postern.log("smtpd")


def reload_rejected(postern, pattern, **params):
    """A reload to params is rejected with pattern logged; returns with the old settings live."""
    postern.configure(**params)
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"Applying the new configuration failed, keeping the old one")
    import re
    assert re.search(pattern, postern.log("smtpd")), postern.log("smtpd")


def test_unknown_restriction_is_configuration_error(postern):
    """Compiled at start: an unknown element stops smtpd from starting, naming parameter and
    word (Postfix would answer 451 4.3.5 to every client at run time)."""
    postern.configure(mynetworks="127.0.0.1/32",
                      smtpd_relay_restrictions="permit_mynetworks, reject_whatever, reject_unauth_destination")
    start_fails(postern, r'smtpd_relay_restrictions: unknown restriction "reject_whatever"')


def test_unknown_restriction_rejected_at_reload(postern):
    start_relay(postern)
    reload_rejected(postern, r'smtpd_sender_restrictions: unknown restriction "check_sender_acces"',
                    smtpd_sender_restrictions="check_sender_acces, reject")
    assert postern.running("smtpd")
    with session(postern) as c:   # old settings: no sender restriction
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u@remote.test>") == "554 5.7.1 <u@remote.test>: Relay access denied"


BAD_MYNETWORKS = [
    ("127.0.0.1/32, !bogus", r'mynetworks: unsupported entry "!bogus"'),
    ("127.0.0.1/33", r'mynetworks: unsupported entry "127\.0\.0\.1/33"'),
    ("127.0.0.1/32, mail.example.org", r'mynetworks: unsupported entry "mail\.example\.org"'),
    ("127.0.0.1/32, /nonexistent/networks", r'mynetworks: /nonexistent/networks: cannot open: No such file'),
    ("127.0.0.1/32, !cidr:/nonexistent/nets", r'mynetworks: cannot open table "!cidr:/nonexistent/nets"'),
    ("127.0.0.1/32, nosuchtype:/x", r'mynetworks: cannot open table "nosuchtype:/x"'),
]


@pytest.mark.parametrize("value,pattern", BAD_MYNETWORKS, ids=[v for v, _ in BAD_MYNETWORKS])
def test_bad_mynetworks_entry_refuses_start(postern, value, pattern):
    """An entry that cannot be honoured is never dropped silently (that could widen relaying,
    e.g. a lost "!" exclusion): smtpd refuses to start and names the entry."""
    postern.configure(mynetworks=value, smtpd_relay_restrictions=RELAY)
    start_fails(postern, pattern)


def test_bad_mynetworks_entry_rejected_at_reload(postern):
    start_relay(postern, mynetworks="!127.0.0.2, 127.0.0.0/8")
    reload_rejected(postern, r'mynetworks: unsupported entry "!127\.0\.0\.2x"',
                    mynetworks="!127.0.0.2x, 127.0.0.0/8")
    with session(postern) as c:   # the old list, with its exclusion, still applies
        assert c.cmd("RCPT TO:<u@remote.test>") == "554 5.7.1 <u@remote.test>: Relay access denied"
    with session(postern, source="127.0.0.3") as c:
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"


def test_mynetworks_negation(postern):
    start_relay(postern, mynetworks="!127.0.0.2, ![::ffff:127.0.0.4]/128, 127.0.0.0/8")
    for addr, ok in (("127.0.0.2", False), ("127.0.0.3", True), ("127.0.0.4", False)):
        with session(postern, source=addr) as c:
            r = c.cmd("RCPT TO:<u@remote.test>")
            assert (r == "250 2.1.5 Ok") == ok, (addr, r)


def test_mynetworks_cidr_table(postern):
    """type:table entries are looked up with the client address (as Postfix does)."""
    nets = postern.etc_dir / "mynetworks.cidr"
    nets.write_text("# trusted\n127.0.0.2/32 OK\n127.0.0.8/29 OK\n")
    start_relay(postern, mynetworks=f"!127.0.0.9, cidr:{nets}")
    for addr, ok in (("127.0.0.1", False), ("127.0.0.2", True), ("127.0.0.10", True), ("127.0.0.9", False)):
        with session(postern, source=addr) as c:
            r = c.cmd("RCPT TO:<u@remote.test>")
            assert (r == "250 2.1.5 Ok") == ok, (addr, r)


def count_opens(path):
    """Starts counting open(2)s of path (inotify); returns a function reading the count so far."""
    import ctypes
    import os
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0
    # IN_OPEN and IN_CLOSE_NOWRITE: alternating events are not coalesced by the kernel.
    assert libc.inotify_add_watch(fd, str(path).encode(), 0x20 | 0x10) >= 0
    seen = [0]

    def read():
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return seen[0]
            off = 0
            while off < len(data):
                _, mask, _, nlen = struct.unpack_from("iIII", data, off)
                seen[0] += bool(mask & 0x20)
                off += 16 + nlen
    read.close = lambda: os.close(fd)
    return read


def test_listeners_share_settings_without_overrides(postern):
    """Tables and lists are built once for all listeners that have no overrides: the
    recipient table is read once, not once per listener (smtp, submission, submit, submissions)."""
    table = postern.etc_dir / "recipients"
    table.write_text("ptest1 ok\n")
    postern.configure(local_recipient_maps=f"texthash:{table}")
    opens = count_opens(table)
    try:
        postern.start("smtpd")
        assert opens() == 1   # READY=1 came after the settings were built
        postern.wait_log("smtpd", r"1 settings snapshot\(s\) for 4 listener\(s\)")
        postern.configure(**{"submission/smtpd_relay_restrictions": "reject"})
        postern.reload("smtpd")
        postern.wait_log("smtpd", r"2 settings snapshot\(s\) for 4 listener\(s\)")
        postern.wait_log("smtpd", r"reload -- configuration")
        assert opens() == 3   # one shared snapshot (smtp, submit, submissions) and submission's own
    finally:
        opens.close()
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest2@localhost>").startswith("550 5.1.1 ")
