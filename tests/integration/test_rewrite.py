"""postern-smtpd's address rewriting in the queueing step (Postfix's cleanup with trivial-rewrite's
canonical form, canonical(5) maps and masquerading), checked in the queue rows, the stored
content and a delivered mbox: the envelope always, headers of local clients
(local_header_rewrite_clients), headers of remote clients only with remote_header_rewrite_domain,
sender_/recipient_/canonical_maps from texthash: and inline: tables with their classes and
extensions, masquerade_domains with "!" and masquerade_exceptions, and a table that fails (451)."""

import pytest

from mailtest import queued_id
from test_smtpd_helpers import raw, send_message, start_smtpd, content_of

ORIGIN = "postern.test"   # the harness's myhostname, hence $myorigin
REMOTE = "127.0.0.2"      # not an address of this host: a remote client for header rewriting


def send(postern, sender, rcpts, message, source=None):
    """One message with a raw client (from source); returns the reply to the end of data."""
    return send_message(postern, message, rcpts=rcpts, sender=sender, source=source)


def envelope(postern, qid):
    sender = postern.queue_rows("SELECT sender FROM messages WHERE queue_id = ?", (qid,))[0][0]
    rcpts = [r[0] for r in postern.queue_rows(
        "SELECT r.address FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.queue_id = ? ORDER BY r.id", (qid,))]
    return sender, rcpts


def orcpts(postern, qid):
    return [r[0] for r in postern.queue_rows(
        "SELECT r.orcpt FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.queue_id = ? ORDER BY r.id", (qid,))]


def headers(postern, qid):
    """The stored header section without our Received: header."""
    head = content_of(postern, qid).split("\n\n", 1)[0]
    lines, keep = [], False
    for line in head.split("\n"):
        if not line.startswith((" ", "\t")):
            keep = not line.startswith("Received:")
        if keep:
            lines.append(line)
    return "\n".join(lines)


MESSAGE = "\n".join([
    'From: "Alice A." <alice> (the sender)',
    "Sender: host!alice",
    "To: ptest1, friends: bob@mail, \"carol x\"@elsewhere.example;, <@relay:dave@elsewhere.example>",
    "Cc: Long Name\n\t<erin>,\n frank%elsewhere.example",
    "Bcc: undisclosed-recipients:;",
    "Reply-To: <unclosed",
    "Subject: alice and bob stay as they are",
    "",
    "To: alice (the body is never rewritten)",
])

LOCAL_HEADERS = "\n".join([
    f'From: "Alice A." <alice@{ORIGIN}> (the sender)',
    "Sender: alice@host",
    f"To: ptest1@{ORIGIN}, friends: bob@mail, \"carol x\"@elsewhere.example;, <dave@elsewhere.example>",
    f"Cc: Long Name\n\t<erin@{ORIGIN}>,\n frank@elsewhere.example",
    "Reply-To: <unclosed",
    "Subject: alice and bob stay as they are",
])


def test_envelope_canonical_form(postern):
    # The local recipient check would refuse "%" local parts before they reach the rewriting.
    start_smtpd(postern, local_recipient_maps="", mydomain="example.com")
    qid = queued_id(send(postern, "host!alice", ["ptest1", f"carol%elsewhere.example@{ORIGIN}",
                                                 "bob@mail", "@relay:dave@elsewhere.example"],
                         "Subject: x\n\nbody"))
    assert envelope(postern, qid) == ("alice@host", [f"ptest1@{ORIGIN}", "carol@elsewhere.example",
                                                     "bob@mail", "dave@elsewhere.example"])
    # The journal line after the commit names the rewritten sender.
    postern.wait_log("smtpd", rf"{qid}: from=<alice@host>, size=\d+, nrcpt=4")
    # The null sender stays null.
    qid = queued_id(send(postern, "", ["ptest1"], "Subject: x\n\nbody"))
    assert envelope(postern, qid) == ("", [f"ptest1@{ORIGIN}"])


def test_envelope_append_dot_mydomain_and_switches_off(postern):
    start_smtpd(postern, local_recipient_maps="", mydomain="example.com", append_dot_mydomain="yes")
    qid = queued_id(send(postern, "host!alice", ["bob@mail", "ptest1@[127.0.0.1]"], "Subject: x\n\nbody"))
    assert envelope(postern, qid) == ("alice@host.example.com", ["bob@mail.example.com", "ptest1@[127.0.0.1]"])

    postern.configure(append_dot_mydomain="no", swap_bangpath="no", allow_percent_hack="no",
                      append_at_myorigin="no")
    postern.restart("smtpd")
    qid = queued_id(send(postern, "host!alice", ["x%elsewhere.example@postern.test", "bob@mail"],
                         "From: alice\n\nbody"))
    # smtpd still needs a domain for its checks: a bare name gets @$myorigin at MAIL/RCPT even with
    # append_at_myorigin = no (a deviation from Postfix, which would queue "host!alice").
    assert envelope(postern, qid) == ("host!alice@postern.test", ["x%elsewhere.example@postern.test", "bob@mail"])
    assert "From: alice\n" in headers(postern, qid) + "\n"


def test_local_client_headers(postern):
    """A client on one of this host's addresses (permit_inet_interfaces): phrases, comments, groups,
    quoting and folding are kept; a header that does not parse and the body stay as they were."""
    start_smtpd(postern)
    qid = queued_id(send(postern, "alice", ["ptest1"], MESSAGE))
    assert headers(postern, qid) == LOCAL_HEADERS   # Bcc: is dropped (message_drop_headers)
    assert content_of(postern, qid).endswith("\n\nTo: alice (the body is never rewritten)\n")


def test_remote_client_headers_untouched(postern):
    start_smtpd(postern)
    qid = queued_id(send(postern, "alice", ["ptest1"], MESSAGE, source=REMOTE))
    # The envelope is rewritten for every client; the headers of a remote one are not.
    assert envelope(postern, qid) == (f"alice@{ORIGIN}", [f"ptest1@{ORIGIN}"])
    assert headers(postern, qid) == MESSAGE.split("\n\n")[0].replace("Bcc: undisclosed-recipients:;\n", "")


def test_remote_header_rewrite_domain(postern):
    start_smtpd(postern, remote_header_rewrite_domain="remote.example", append_dot_mydomain="yes",
                masquerade_domains="example.com")
    qid = queued_id(send(postern, "alice", ["ptest1"],
                         "From: alice\nTo: bob@host, carol@mail.example.com\nCc: ptest1@postern.test\n\nbody",
                         source=REMOTE))
    # Incomplete addresses get the remote domain (not $myorigin, not $mydomain); canonical
    # maps and masquerading apply too.
    assert headers(postern, qid) == ("From: alice@remote.example\nTo: bob@host.remote.example, carol@example.com\n"
                                     "Cc: ptest1@postern.test")


@pytest.mark.parametrize("clients", ["permit_mynetworks", "check_address_map inline:{ 127.0.0.2=yes }",
                                     "static:all"])
def test_local_header_rewrite_clients(postern, clients):
    start_smtpd(postern, local_header_rewrite_clients=clients)
    qid = queued_id(send(postern, "alice", ["ptest1"], "From: alice\n\nbody", source=REMOTE))
    assert headers(postern, qid) == f"From: alice@{ORIGIN}"


def test_local_submission_headers(postern, local_users):
    start_smtpd(postern, masquerade_domains="example.com")
    r = postern.sendmail(["-f", "alice@host.example.com", "ptest1"],
                         input=b"From: Alice <alice@host.example.com>\nTo: ptest1, bob\n\nhi\n")
    assert r.returncode == 0
    qid = postern.queue_rows("SELECT queue_id FROM messages")[0][0]
    assert envelope(postern, qid) == ("alice@example.com", [f"ptest1@{ORIGIN}"])
    h = headers(postern, qid)
    assert "From: Alice <alice@example.com>\n" in h
    assert f"To: ptest1@{ORIGIN}, bob@{ORIGIN}\n" in h


def test_canonical_maps(postern):
    senders = postern.root / "sender_canonical"
    senders.write_text("# texthash: source text, as Postfix's postmap reads it\n"
                       f"alice@{ORIGIN}   Alice.Smith@example.com\n"
                       "joe               joseph@example.com\n")
    start_smtpd(postern, recipient_delimiter="+",
                sender_canonical_maps=f"texthash:{senders}",
                recipient_canonical_maps="inline:{ ptest2@postern.test=ptest1@postern.test }",
                canonical_maps="inline:{ @old.example=@new.example, Alice.Smith@example.com=alice.s@example.com }")
    qid = queued_id(send(postern, "alice", ["ptest1", "ptest2", "ptest2+list", "someone+x@old.example"],
                         "From: alice, joe+x@postern.test\nTo: ptest2, someone@old.example\n\nbody"))
    sender, rcpts = envelope(postern, qid)
    # sender_canonical_maps first, then canonical_maps on its result.
    assert sender == "alice.s@example.com"
    # ptest2 becomes ptest1 but stays a recipient of its own, since its original differs (as in
    # Postfix, whose duplicate filter keys on the original recipient too); the extension is
    # carried over; @domain keeps the local part. A rewritten recipient without an ORCPT gets
    # the address the client wrote as its ORCPT.
    assert rcpts == [f"ptest1@{ORIGIN}", f"ptest1@{ORIGIN}", f"ptest1+list@{ORIGIN}", "someone+x@new.example"]
    assert orcpts(postern, qid) == [None, f"rfc822;ptest2@{ORIGIN}", f"rfc822;ptest2+list@{ORIGIN}",
                                    "rfc822;someone+x@old.example"]
    h = headers(postern, qid)
    assert "From: alice.s@example.com, joseph+x@example.com\n" in h
    assert f"To: ptest1@{ORIGIN}, someone@new.example" in h


def test_canonical_classes(postern):
    start_smtpd(postern, sender_canonical_maps="inline:{ alice@postern.test=alice@example.com }",
                sender_canonical_classes="envelope_sender",
                canonical_maps="inline:{ ptest1@postern.test=ptest3@postern.test }",
                canonical_classes="header_recipient")
    qid = queued_id(send(postern, "alice", ["ptest1"], "From: alice\nTo: ptest1\n\nbody"))
    assert envelope(postern, qid) == ("alice@example.com", [f"ptest1@{ORIGIN}"])
    assert headers(postern, qid) == f"From: alice@{ORIGIN}\nTo: ptest3@{ORIGIN}"


def test_masquerading(postern):
    start_smtpd(postern, masquerade_domains="!keep.example.com, example.com", masquerade_exceptions="root")
    qid = queued_id(send(postern, "alice@host.example.com", ["bob@host.example.com"],
                         "From: alice@host.example.com, root@host.example.com\n"
                         "To: bob@a.b.example.com, x@host.keep.example.com, y@example.com\n\nbody"))
    # masquerade_classes (default): envelope sender, header sender and header recipient, not the
    # envelope recipient.
    assert envelope(postern, qid) == ("alice@example.com", ["bob@host.example.com"])
    assert headers(postern, qid) == ("From: alice@example.com, root@host.example.com\n"
                                     "To: bob@example.com, x@host.keep.example.com, y@example.com")


def test_table_failure_is_temporary(postern):
    table = postern.root / "canonical"
    table.write_text("bob@postern.test robert@postern.test\n")
    # Rewriting's own answer at the end of the message: without reject_unlisted_recipient,
    # which looks canonical_maps up at RCPT and answers "451 4.3.0 <addr>: Temporary lookup
    # failure" there already (tests/integration/test_addr_class.py).
    start_smtpd(postern, canonical_maps=f"texthash:{table}", smtpd_reject_unlisted_recipient="no")
    qid = queued_id(send(postern, "alice", ["ptest1"], "Subject: x\n\nbody"))
    assert envelope(postern, qid)[0] == f"alice@{ORIGIN}"
    table.unlink()   # the table is re-checked at most once a second; then lookups fail

    def refused():
        return send(postern, "alice", ["ptest1"], "Subject: x\n\nbody") == \
            "451 4.3.0 Error: queue file write error"
    postern.wait_for(refused, timeout=10, what="451 once the table is gone")
    postern.wait_log("smtpd", r"address rewriting of <alice@postern\.test> failed \(table lookup\)")


def test_bad_class_stops_smtpd(postern):
    postern.configure(masquerade_classes="envelope_sender, header")
    with pytest.raises(RuntimeError, match=r'masquerade_classes: unknown address class "header"'):
        postern.start("smtpd")


def test_delivered_mbox(postern, local_users):
    """End to end: the rewritten envelope and headers are what postern-local delivers."""
    postern.configure(sender_canonical_maps="inline:{ alice@postern.test=alice@example.com }",
                      recipient_canonical_maps="inline:{ ptest3@postern.test=ptest2@postern.test }")
    postern.start()
    qid = queued_id(send(postern, "alice", ["ptest3"], "From: Alice <alice>\nTo: ptest3\nSubject: hi\n\nHello."))
    box = postern.wait_mailbox("ptest2", r"Hello\.")
    assert box.startswith("From alice@example.com ")
    assert "Return-Path: <alice@example.com>\n" in box
    assert "From: Alice <alice@example.com>\n" in box
    assert f"To: ptest2@{ORIGIN}\n" in box
    postern.wait_log("local", rf"{qid}: to=<ptest2@postern\.test>, relay=local")


def test_added_from_is_rewritten(postern, local_users):
    """The From: smtpd adds to a local submission shows the sender as rewriting makes it."""
    start_smtpd(postern, masquerade_domains="example.com")
    postern.sendmail(["-f", "alice@host.example.com", "ptest1"], input=b"Subject: no From here\n\nhi\n")
    qid = postern.queue_rows("SELECT queue_id FROM messages")[0][0]
    assert envelope(postern, qid)[0] == "alice@example.com"
    froms = [line for line in headers(postern, qid).split("\n") if line.startswith("From:")]
    assert len(froms) == 1 and froms[0].endswith("<alice@example.com>"), froms


def test_header_checks_see_the_original(postern):
    """header_checks match the header as the client sent it; what is stored is rewritten, and a
    BCC address an action adds is rewritten like the other recipients."""
    checks = postern.root / "header_checks"
    checks.write_text("/^From: alice$/ PREPEND X-Seen: bare alice\n/^Subject: archive/ BCC archive@postern.test\n")
    start_smtpd(postern, header_checks=f"regexp:{checks}",
                recipient_canonical_maps="inline:{ archive@postern.test=ptest2@postern.test }")
    qid = queued_id(send(postern, "alice", ["ptest1"],
                         "From: alice\nResent-From: bob\nErrors-To: carol\nSubject: archive me\n\nbody"))
    assert headers(postern, qid) == (f"X-Seen: bare alice\nFrom: alice@{ORIGIN}\nResent-From: bob@{ORIGIN}\n"
                                     f"Errors-To: carol@{ORIGIN}\nSubject: archive me")
    assert envelope(postern, qid) == (f"alice@{ORIGIN}", [f"ptest1@{ORIGIN}", f"ptest2@{ORIGIN}"])


def test_bdat_headers(postern):
    start_smtpd(postern)
    message = "From: alice\r\nTo: ptest1\r\n\r\nbody\r\n"
    with raw(postern) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<alice>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1>") == "250 2.1.5 Ok"
        c.send(f"BDAT {len(message)} LAST\r\n{message}")
        qid = queued_id(c.text())
    assert headers(postern, qid) == f"From: alice@{ORIGIN}\nTo: ptest1@{ORIGIN}"


def test_canonical_before_virtual_alias(postern):
    """canonical -> virtual alias, as Postfix's cleanup: the virtual table sees the rewritten
    recipient (and a masqueraded sender is what the queue holds)."""
    start_smtpd(postern, local_recipient_maps="", masquerade_domains="example.com",
                recipient_canonical_maps="inline:{ old@postern.test=team@virt.example }",
                virtual_alias_domains="virt.example",
                virtual_alias_maps="inline:{ team@virt.example=ptest1@postern.test }")
    qid = queued_id(send(postern, "alice@host.example.com", ["old"], "Subject: x\n\nbody"))
    assert envelope(postern, qid) == ("alice@example.com", [f"ptest1@{ORIGIN}"])
    # The ORCPT names what the client wrote, not the canonical form the alias table saw.
    assert orcpts(postern, qid) == [f"rfc822;old@{ORIGIN}"]
