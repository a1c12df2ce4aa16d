"""Virtual alias expansion (virtual_alias_maps, virtual(5)) in postern-smtpd when a message is
queued: the queue rows after expansion (one-to-many, recursion, self-reference, user and @domain
keys, extensions with several delimiters and propagate_unmatched_extensions, duplicates, NOTIFY
and ORCPT), delivery of the expanded recipients into local mailboxes and to smtp-sink, mail
from postern-sendmail (the submit socket), the "expanded" success notice and Original-Recipient
in failure notices, and the temporary failures: a loop, the limits, a table that cannot be
read."""

import email
import email.policy
import mailbox
import re

import pytest

import mailtest
from smtp_peers import Sink

HOST = "postern.test"
SENDER = f"ptest1@{HOST}"

VIRTUAL = f"""\
# one to many, across a local user, a recursion and a remote address
team@virt.example      ptest2@{HOST}, staff@virt.example, remote@far.example
staff@virt.example     ptest3@{HOST}
# keeps itself and adds a copy
keep@virt.example      keep@virt.example, ptest2@{HOST}
# the user form applies to $myorigin and $mydestination only
helpdesk               ptest3@{HOST}
# extensions: the key without them, the extension carried over
sales@virt.example     ptest2@{HOST}
# a catch-all, after the full addresses
@catch.example         ptest3@{HOST}
known@catch.example    ptest2@{HOST}
# duplicates collapse
twice@virt.example     ptest2@{HOST} PTEST2@{HOST} staff@virt.example
# a loop, and too many
loop-a@virt.example    loop-b@virt.example
loop-b@virt.example    loop-a@virt.example
many@virt.example      a@far.example b@far.example c@far.example
deep1@virt.example     deep2@virt.example
deep2@virt.example     deep3@virt.example
deep3@virt.example     ptest2@postern.test
# remote failures, for notices
bad@virt.example       bad@far.example
"""


def configure(postern, text=VIRTUAL, **params):
    path = postern.etc_dir / "virtual"
    path.write_text(text)
    postern.configure(virtual_alias_maps=f"hash:{path}", recipient_delimiter="+-",
                      local_recipient_maps="", **params)
    return path


def rows(postern, qid):
    return postern.queue_rows(
        "SELECT r.address, r.orcpt, r.notify, r.state, r.dsn_status, r.diag, r.flags "
        "FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ? ORDER BY r.id", (qid,))


def addresses(postern, qid):
    return [r[0] for r in rows(postern, qid)]


def msg(mid, to="someone@virt.example"):
    return mailtest.msg(mid, sender=SENDER, to=to)


@pytest.fixture
def sink(postern):
    s = Sink(postern.root / "sink")
    yield s
    s.stop()


def test_queue_rows_after_expansion(postern, local_users):
    configure(postern)
    postern.start("smtpd")   # no qmgr: the rows stay as smtpd queued them
    cases = [
        # staff takes team's second place (the first result of an alias replaces it)
        ("team@virt.example", [f"ptest2@{HOST}", f"ptest3@{HOST}", "remote@far.example"]),
        ("keep@virt.example", ["keep@virt.example", f"ptest2@{HOST}"]),
        (f"helpdesk@{HOST}", [f"ptest3@{HOST}"]),
        ("helpdesk@other.example", ["helpdesk@other.example"]),
        # an address literal of this host ($inet_interfaces = all) is local; another is not
        ("helpdesk@[127.0.0.1]", [f"ptest3@{HOST}"]),
        ("helpdesk@[192.0.2.1]", ["helpdesk@[192.0.2.1]"]),
        ("sales+q1@virt.example", [f"ptest2+q1@{HOST}"]),
        ("sales-q2@virt.example", [f"ptest2-q2@{HOST}"]),
        ("anyone@catch.example", [f"ptest3@{HOST}"]),
        ("known@catch.example", [f"ptest2@{HOST}"]),
        ("twice@virt.example", [f"ptest2@{HOST}", f"ptest3@{HOST}"]),
        ("plain@far.example", ["plain@far.example"]),
    ]
    for rcpt, expected in cases:
        qid = mailtest.send(postern, SENDER, [rcpt], msg(f"rows-{rcpt}@test", rcpt))
        assert addresses(postern, qid) == expected, rcpt
        got = rows(postern, qid)
        if expected != [rcpt]:
            # The original recipient becomes the ORCPT of each address it expanded to.
            assert {r[1] for r in got} == {f"rfc822;{rcpt}"}, rcpt
        else:
            assert got[0][1] is None
        postern.wait_log("smtpd", rf"{qid}: from=<{re.escape(SENDER)}>, size=\d+, nrcpt={len(expected)}")
    # Nothing is logged per alias (as Postfix's cleanup).
    assert "virtual_alias" not in postern.log("smtpd")


def test_notify_and_client_orcpt(postern, local_users):
    configure(postern)
    postern.start("smtpd")
    qid = mailtest.send(postern, SENDER, [
        ("team@virt.example", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;Team@Virt.Example"]),
        ("staff@virt.example", ["NOTIFY=SUCCESS"]),
        ("keep@virt.example", ["NOTIFY=NEVER"]),
    ], msg("notify@test"), extension="dsn")
    got = rows(postern, qid)
    SUCCESS, FAILURE, NEVER = 2, 4, 1
    delivered, pending, expanded = 2, 0, 4
    assert got == [
        # team: an "expanded" record for its success notice; SUCCESS taken off its expansion;
        # the client's ORCPT kept.
        ("team@virt.example", "rfc822;Team@Virt.Example", SUCCESS | FAILURE, delivered, "2.0.0",
         "alias expanded", expanded),
        (f"ptest2@{HOST}", "rfc822;Team@Virt.Example", FAILURE, pending, None, None, 0),
        (f"ptest3@{HOST}", "rfc822;Team@Virt.Example", FAILURE, pending, None, None, 0),
        ("remote@far.example", "rfc822;Team@Virt.Example", FAILURE, pending, None, None, 0),
        # staff: SUCCESS alone becomes NEVER; the same ptest3 with another ORCPT stays apart.
        ("staff@virt.example", None, SUCCESS, delivered, "2.0.0", "alias expanded", expanded),
        (f"ptest3@{HOST}", "rfc822;staff@virt.example", NEVER, pending, None, None, 0),
        ("keep@virt.example", "rfc822;keep@virt.example", NEVER, pending, None, None, 0),
        (f"ptest2@{HOST}", "rfc822;keep@virt.example", NEVER, pending, None, None, 0),
    ]
    postern.wait_log("smtpd", rf"{qid}: from=<{re.escape(SENDER)}>, size=\d+, nrcpt=6")


def test_sendmail_is_expanded(postern, local_users):
    configure(postern)
    postern.start("smtpd")
    r = postern.sendmail(["-i", "team@virt.example", "helpdesk"], user="ptest1",
                         input=b"Subject: from sendmail\n\nhello\n")
    qid = postern.wait_log("smtpd", r"([0-9A-Z]+): from=<ptest1@postern\.test>, size=\d+, nrcpt=4").group(1)
    # "helpdesk" was qualified with $myorigin, then matched the user form; ptest3 twice, as
    # it stands for two different original recipients.
    assert [(a, o) for a, o, *_ in rows(postern, qid)] == [
        (f"ptest2@{HOST}", "rfc822;team@virt.example"), (f"ptest3@{HOST}", "rfc822;team@virt.example"),
        ("remote@far.example", "rfc822;team@virt.example"), (f"ptest3@{HOST}", f"rfc822;helpdesk@{HOST}")]
    assert r.returncode == 0


def test_delivery_local_and_remote(postern, local_users, sink):
    configure(postern, transport_maps=f"inline:{{ far.example=smtp:[127.0.0.1]:{sink.port} }}")
    postern.start()
    qid = mailtest.send(postern, SENDER, ["team@virt.example"], msg("deliver@test", "team@virt.example"),
                        extension="dsn")
    postern.wait_mailbox("ptest2", r"Message-ID: <deliver@test>")
    postern.wait_mailbox("ptest3", r"Message-ID: <deliver@test>")
    (d,) = sink.wait_count(1)
    # The remote expansion target, with the original recipient as ORCPT (xtext) on the wire.
    assert re.search(rb"X-Rcpt-Args: <remote@far\.example>.*ORCPT=rfc822;team@virt\.example", d), d[:600]
    # postern-local names its own alias expansions in orig_to=, not the ORCPT; smtp and qmgr do.
    postern.wait_log("local", rf"{qid}: to=<ptest2@{re.escape(HOST)}>, .*status=sent")
    postern.wait_log("local", rf"{qid}: to=<ptest3@{re.escape(HOST)}>, .*status=sent")
    postern.wait_log("smtp", rf"{qid}: to=<remote@far\.example>, orig_to=<team@virt\.example>, .*status=sent")
    postern.wait_queue_empty()


def notices(postern, user, subject):
    path = postern.spool_dir / user
    if not path.exists():
        return []
    out = []
    for key in mailbox.mbox(str(path), create=False).keys():
        m = email.message_from_bytes(mailbox.mbox(str(path), create=False).get_bytes(key),
                                     policy=email.policy.default)
        if m.get_content_type() == "multipart/report" and m["Subject"] == subject:
            out.append(m)
    return out


def per_rcpt(m):
    return {r["Final-Recipient"].split(";", 1)[1].strip(): r for r in m.get_payload()[1].get_payload()[1:]}


def test_dsn_expanded_and_original_recipient(postern, local_users, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "550 5.1.1 no such user here" if a.startswith("bad") else None)
    configure(postern, transport_maps=f"inline:{{ far.example=smtp:[127.0.0.1]:{port} }}")
    postern.start()
    mailtest.send(postern, SENDER, [("staff@virt.example", ["NOTIFY=SUCCESS"]),
                                    ("bad@virt.example", ["NOTIFY=FAILURE"])],
                  msg("dsn@test", "staff@virt.example"), extension="dsn")
    postern.wait_for(lambda: notices(postern, "ptest1", "Successful Mail Delivery Report"), 30, "a success notice")
    postern.wait_for(lambda: notices(postern, "ptest1", "Undelivered Mail Returned to Sender"), 30, "a failure notice")
    (ok,) = notices(postern, "ptest1", "Successful Mail Delivery Report")
    r = per_rcpt(ok)
    # Only the alias, as expanded; its expansion asked for nothing more.
    assert list(r) == ["staff@virt.example"]
    assert (r["staff@virt.example"]["Action"], r["staff@virt.example"]["Status"]) == ("expanded", "2.0.0")
    (fail,) = notices(postern, "ptest1", "Undelivered Mail Returned to Sender")
    r = per_rcpt(fail)
    assert list(r) == ["bad@far.example"]
    assert r["bad@far.example"]["Action"] == "failed"
    assert r["bad@far.example"]["Original-Recipient"] == "rfc822; bad@virt.example"
    postern.wait_mailbox("ptest3", r"Message-ID: <dsn@test>")
    postern.wait_queue_empty()


def refused(postern, rcpt, data):
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt(rcpt)[0] == 250
        code, text = s.data(data)
        return code, text.decode()


def test_loop_and_limits_are_temporary_failures(postern, local_users):
    configure(postern, virtual_alias_expansion_limit="2")
    postern.start("smtpd")
    assert refused(postern, "loop-a@virt.example", msg("loop@test")) == (451, "4.6.0 Alias expansion error")
    postern.wait_log("smtpd", r"[0-9A-Z]+: virtual_alias_maps loop for loop-a@virt\.example: "
                              r"loop-a@virt\.example -> loop-b@virt\.example -> loop-a@virt\.example -- "
                              r"message not accepted, try again later")
    assert refused(postern, "many@virt.example", msg("many@test")) == (451, "4.6.0 Alias expansion error")
    postern.wait_log("smtpd", r"unreasonable virtual_alias_maps map expansion size for many@virt\.example -- "
                              r"message not accepted, try again later")
    assert postern.queue_count() == 0
    # The session and the daemon go on: the next message is queued.
    mailtest.send(postern, SENDER, ["staff@virt.example"], msg("after@test"))
    assert postern.queue_count() == 1


@pytest.mark.parametrize("param, value, refused_rcpt, log, accepted_rcpt", [
    # deep1 -> deep2 -> deep3 -> ...: the third lookup is one too many; team -> staff -> ptest3
    # (not found) is two lookups, team's other addresses count on their own.
    ("virtual_alias_recursion_limit", "2", "deep1@virt.example",
     r"unreasonable virtual_alias_maps map nesting for deep1@virt\.example", "team@virt.example"),
    ("virtual_alias_address_length_limit", "16", "staff@virt.example",
     r"unreasonable virtual_alias_maps result ptest3@postern\.test\.\.\.", "keep@far.example"),
])
def test_recursion_and_length_limits(postern, local_users, param, value, refused_rcpt, log, accepted_rcpt):
    configure(postern, **{param: value})
    postern.start("smtpd")
    assert refused(postern, refused_rcpt, msg("refused@test")) == (451, "4.6.0 Alias expansion error")
    postern.wait_log("smtpd", log)
    mailtest.send(postern, SENDER, [accepted_rcpt], msg("accepted@test"))
    assert postern.queue_count() == 1


def test_table_failures_answer_451(postern, local_users):
    # The expansion's own answer, at the end of the message: without the RCPT-time checks that
    # look virtual_alias_maps up first (reject_unlisted_recipient, and virtual_alias_domains'
    # default $virtual_alias_maps), which answer "451 4.3.0 <addr>: Temporary lookup failure"
    # already at RCPT (tests/integration/test_addr_class.py).
    path = configure(postern, smtpd_reject_unlisted_recipient="no", virtual_alias_domains="")
    postern.start("smtpd")
    mailtest.send(postern, SENDER, ["staff@virt.example"], msg("before@test"))
    # The file goes away: lookups fail (the table notices within a second), the message is refused.
    path.unlink()
    result = {}

    def refused_now():
        code, text = refused(postern, "staff@virt.example", msg("gone@test"))
        result["reply"] = (code, text)
        return code != 250
    postern.wait_for(refused_now, 10, "a refusal once the table is gone")
    assert result["reply"] == (451, "4.3.0 Error: queue file write error")
    postern.wait_log("smtpd", r"virtual_alias_maps map lookup problem for staff@virt\.example \(key "
                              r"staff@virt\.example\): .* -- message not accepted, try again later")

    # A table that cannot be opened at start: every message gets 451 4.3.0, smtpd runs on.
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"virtual_alias_maps.*answering 451 4\.3\.0 at the end of every message")
    assert refused(postern, "plain@far.example", msg("noopen@test")) == (451, "4.3.0 Error: queue file write error")
    postern.wait_log("smtpd", r"virtual_alias_maps cannot be opened -- message not accepted, try again later")
    assert postern.running("smtpd")


def test_per_listener_override_turns_expansion_off(postern, local_users):
    # What receive_override_options = no_address_mappings does for a Postfix listener.
    configure(postern, **{"submit/virtual_alias_maps": ""})
    postern.start("smtpd")
    postern.sendmail(["-i", "team@virt.example"], user="ptest1", input=b"Subject: s\n\nhello\n")
    qid = postern.wait_log("smtpd", r"([0-9A-Z]+): from=<ptest1@postern\.test>, size=\d+, nrcpt=1").group(1)
    assert addresses(postern, qid) == ["team@virt.example"]
    qid = mailtest.send(postern, SENDER, ["team@virt.example"], msg("smtp@test"))
    assert addresses(postern, qid) == [f"ptest2@{HOST}", f"ptest3@{HOST}", "remote@far.example"]
