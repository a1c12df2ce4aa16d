"""postern-smtpd relay control: nobody outside mynetworks may relay. Clients connect from
127.0.0.2 with mynetworks = 127.0.0.1/32 and every routing trick must be refused with nothing
queued; the same addresses from 127.0.0.1 (inside mynetworks) are relayed."""

import pytest

from test_smtpd_helpers import raw, queue_ids

RELAY = "permit_mynetworks, reject_unauth_destination"


def start_relay(postern, **extra):
    params = dict(mynetworks="127.0.0.1/32", smtpd_relay_restrictions=RELAY)
    params.update(extra)
    postern.configure(**params)
    postern.start("smtpd")


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
    ("<user@[127.0.0.1]>", RELAY_DENIED.format("user@[127.0.0.1]")),
    ("<user@[IPv6:::1]>", None),
    ("<user@dom.test@localhost>", "501"),
    ("<user@remote.test@localhost>", "501"),
    ("user@remote.test", RELAY_DENIED.format("user@remote.test")),
    ("<ptest1@remote.test>", RELAY_DENIED.format("ptest1@remote.test")),
]


@pytest.mark.parametrize("addr,expect", ATTEMPTS, ids=[a for a, _ in ATTEMPTS])
def test_relay_attempt_from_outside_mynetworks(postern, addr, expect):
    start_relay(postern)
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<spammer@example.org>") == "250 2.1.0 Ok"
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
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<spammer@example.org>")
        c.cmd("RCPT TO:<victim@remote.test>")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.2\]: 554 5\.7\.1 "
                     r"<victim@remote\.test>: Relay access denied; from=<spammer@example\.org> "
                     r"to=<victim@remote\.test> proto=ESMTP helo=<client\.test>")


def test_pipelined_relay_attempt_then_data_queues_nothing(postern):
    start_relay(postern)
    with raw(postern, source="127.0.0.2") as c:
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
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<friend@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<ptest2@POSTERN.TEST>") == "250 2.1.5 Ok"


def test_relay_allowed_from_mynetworks(postern):
    start_relay(postern)
    code, text = postern.send("me@postern.test", ["someone@remote.test", "x%y@remote.test"],
                              b"Subject: relay\r\n\r\nrelayed\r\n")
    assert code == 250, text
    rows = postern.queue_rows("SELECT address FROM recipients ORDER BY id")
    assert [r[0] for r in rows] == ["someone@remote.test", "x%y@remote.test"]


def test_default_relay_restrictions_defer(postern):
    """Postfix's default smtpd_relay_restrictions ends in defer_unauth_destination."""
    postern.configure(mynetworks="127.0.0.1/32")
    postern.start("smtpd")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>") == "454 4.7.1 <u@remote.test>: Relay access denied"


def test_relay_domains_with_subdomains(postern):
    start_relay(postern, relay_domains="example.net, .only-subs.test")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u@mx.sub.example.net>") == "250 2.1.5 Ok"
        assert c.cmd("RCPT TO:<u@notexample.net>").startswith("554 5.7.1 ")
        assert c.cmd("RCPT TO:<u@only-subs.test>").startswith("554 5.7.1 ")
        assert c.cmd("RCPT TO:<u@a.only-subs.test>") == "250 2.1.5 Ok"


def test_mydestination_has_no_subdomain_match(postern):
    start_relay(postern)
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@sub.postern.test>").startswith("554 5.7.1 ")


def test_mynetworks_forms(postern):
    start_relay(postern, mynetworks="[::1]/128, ::1/128, [::ffff:127.0.0.0]/104, 10.0.0.0/8, 127.0.0.2")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
    assert "ignoring unsupported entry" not in postern.log("smtpd")


def test_mynetworks_prefix(postern):
    start_relay(postern, mynetworks="127.0.0.0/31")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>").startswith("554 5.7.1 ")
    with raw(postern, source="127.0.0.1") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"


def test_restriction_elements(postern):
    start_relay(postern, smtpd_relay_restrictions="reject_unauth_destination",
          smtpd_recipient_restrictions="permit_mynetworks, defer")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"


def test_reject_element_and_unknown_element(postern):
    start_relay(postern, smtpd_relay_restrictions="permit_mynetworks, reject")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <ptest1@localhost>: Recipient address rejected: Access denied"


def test_unknown_restriction_is_configuration_error(postern):
    start_relay(postern, smtpd_relay_restrictions="permit_mynetworks, reject_whatever, reject_unauth_destination")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "451 4.3.5 Server configuration error"


def test_open_relay_configuration_refused(postern):
    start_relay(postern, smtpd_relay_restrictions="permit_mynetworks", smtpd_recipient_restrictions="")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>") == "451 4.3.5 Server configuration error"
    assert queue_ids(postern) == []


def test_submission_listener_override(postern):
    postern.configure(mynetworks="127.0.0.1/32", smtpd_relay_restrictions=RELAY,
                      **{"submission/smtpd_relay_restrictions": "reject"})
    postern.start("smtpd")
    from test_smtpd_helpers import Raw
    with Raw(port=postern.submission_port) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("554 5.7.1 ")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_client_helo_sender_restrictions_at_rcpt(postern):
    start_relay(postern, smtpd_client_restrictions="permit_mynetworks, reject",
                smtpd_helo_restrictions="", smtpd_sender_restrictions="")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        assert c.cmd("MAIL FROM:<s@example.org>") == "250 2.1.0 Ok"   # smtpd_delay_reject
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <localhost[127.0.0.2]>: Client host rejected: Access denied"
    with raw(postern, source="127.0.0.1") as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"


def test_sender_and_helo_restrictions(postern):
    start_relay(postern, smtpd_sender_restrictions="defer", smtpd_helo_restrictions="permit_mynetworks, reject")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO bad.helo")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <bad.helo>: Helo command rejected: Access denied"
    with raw(postern, source="127.0.0.1") as c:
        c.cmd("EHLO good.helo")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "450 4.7.1 <s@example.org>: Sender address rejected: Access denied"


def ipv6_listener(postern):
    """Swaps the harness's IPv4 smtp listener for one on [::1] (before start)."""
    import socket
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s6.bind(("::1", 0))
    s6.listen(128)
    lst = postern.listeners["smtpd"]
    lst[0][1].close()
    lst[0] = ("smtp", s6)
    return s6.getsockname()[1]


def v6_client(port):
    import socket
    from test_smtpd_helpers import Raw
    s = socket.create_connection(("::1", port))
    return Raw(sock=s)


def test_ipv6_client_in_mynetworks(postern):
    port = ipv6_listener(postern)
    start_relay(postern, mynetworks="127.0.0.1/32, [::1]/128")
    with v6_client(port) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>") == "250 2.1.5 Ok"
        c.cmd("DATA")
        c.send(b"Subject: v6\r\n\r\nx\r\n.\r\n")
        reply = c.text()
        assert reply.startswith("250 2.0.0 Ok: queued as ")
    qid = reply.rsplit(" ", 1)[1]
    from test_smtpd_helpers import content_of
    assert content_of(postern, qid).startswith("Received: from client.test (localhost [IPv6:::1])\n")
    assert postern.queue_rows("SELECT client_address FROM messages") == [("::1",)]
    postern.wait_log("smtpd", r"connect from localhost\[::1\]")


def test_ipv6_client_outside_mynetworks(postern):
    port = ipv6_listener(postern)
    start_relay(postern, mynetworks="127.0.0.0/8, [::2]/128")
    with v6_client(port) as c:
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<s@example.org>")
        assert c.cmd("RCPT TO:<u@remote.test>") == "554 5.7.1 <u@remote.test>: Relay access denied"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
