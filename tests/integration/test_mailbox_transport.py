"""local(8)'s mailbox_transport, mailbox_transport_maps, fallback_transport and
fallback_transport_maps (daemons/local/local-pass.c): after alias expansion postern-local hands
each user to another transport instead of writing the mailbox. The whole chain runs: postern-smtpd
queues, postern-local expands aliases and queues one copy per route (its filter), postern-qmgr
routes that copy to the transport, and a real peer delivers it — Dovecot's LMTP server into its
Maildirs, or a master.cf pipe(8) command."""

import os
import re
from functools import partial

import pytest

import mailtest
from mailtest import send
from test_lmtp_dovecot import maildir_messages, start_dovecot_lmtp
from test_local import deliver, marker_dir, message, queue_message, results
from test_pipe import RECORDER, runs  # noqa: F401 (the recorder script of the pipe fixture)

HOST = "postern.test"
SENDER = "sender@example.org"
msg = partial(mailtest.msg, sender=SENDER, to=f"team@{HOST}", subject="mailbox transport")


@pytest.fixture
def dovecot(postern):
    """Dovecot's LMTP server for ptest1, ptest2 (in passwd) and ghost (not in passwd); postern
    reaches it as lmtp:unix:lmtp, Postfix's relative form under postern_lmtp_socket_directory."""
    d = start_dovecot_lmtp(users={"ptest1": "x", "ptest2": "x", "ghost": "x"})
    postern.configure(postern_lmtp_socket_directory=str(d.dir))
    yield d
    d.close()


def passed(postern, qid, rcpt, route, orig=None):
    """Waits for postern-local's line for rcpt of qid passed on to route; the copy's queue id."""
    orig_to = rf", orig_to=<{re.escape(orig)}>" if orig else ""
    m = postern.wait_log("local", rf"{qid}: to=<{re.escape(rcpt)}>{orig_to}, relay=local, .*dsn=2\.0\.0, "
                                  rf"status=sent \(passed to {re.escape(route)} as (\w+)\)", timeout=20)
    return m.group(1)


def test_mailbox_transport_lmtp_alias_to_two_users(postern, dovecot):
    """mailbox_transport = lmtp:unix:lmtp: a user's mail and an alias's two users all reach
    Dovecot's Maildirs (each user passed with its expanded address, the alias as ORCPT), none the
    mbox spool; the copies leave the queue with the original."""
    d = dovecot
    postern.configure(mailbox_transport="lmtp:unix:lmtp")
    postern.set_aliases("team: ptest1, ptest2\n")
    postern.start()
    qid = send(postern, SENDER, [f"ptest1@{HOST}", f"team@{HOST}"], msg("pass-1@test"))
    direct = passed(postern, qid, f"ptest1@{HOST}", "lmtp:unix:lmtp")
    via_alias = passed(postern, qid, f"ptest2@{HOST}", "lmtp:unix:lmtp", orig=f"team@{HOST}")
    assert passed(postern, qid, f"ptest1@{HOST}", "lmtp:unix:lmtp", orig=f"team@{HOST}") == via_alias
    assert direct != via_alias
    relay = re.escape(f"localhost[{d.lmtp_path}]")
    postern.wait_log("smtp", rf"{direct}: to=<ptest1@{HOST}>, relay={relay}, .*status=sent \(250 ", timeout=20)
    for user in ("ptest1", "ptest2"):
        postern.wait_log("smtp", rf"{via_alias}: to=<{user}@{HOST}>, orig_to=<team@{HOST}>, relay={relay}, "
                                 r".*status=sent \(250 ", timeout=20)
    postern.wait_log("qmgr", rf"{qid}: removed")
    postern.wait_queue_empty()
    assert len(maildir_messages(d, "ptest1")) == 2
    (got,) = maildir_messages(d, "ptest2")
    assert b"Message-ID: <pass-1@test>" in got and b"\nHello.\n" in got
    assert b"Delivered-To: team@" not in got   # a pass is no forward: the content is unchanged
    assert postern.mailbox("ptest1") == "" and postern.mailbox("ptest2") == ""


def test_mailbox_transport_maps_per_user(postern, dovecot):
    """mailbox_transport_maps (keyed by user name) passes ptest2 only; ptest1 gets its mbox."""
    d = dovecot
    postern.configure(mailbox_transport_maps="inline:{ ptest2=lmtp:unix:lmtp }")
    postern.start()
    qid = send(postern, SENDER, [f"ptest1@{HOST}", f"ptest2@{HOST}"], msg("pass-2@test", to=f"ptest2@{HOST}"))
    copy = passed(postern, qid, f"ptest2@{HOST}", "lmtp:unix:lmtp")
    postern.wait_log("local", rf"{qid}: to=<ptest1@{HOST}>, relay=local, .*status=sent \(delivered to mailbox\)")
    postern.wait_log("smtp", rf"{copy}: to=<ptest2@{HOST}>, .*status=sent", timeout=20)
    postern.wait_queue_empty()
    assert len(maildir_messages(d, "ptest2")) == 1
    assert maildir_messages(d, "ptest1") == []
    assert "Message-ID: <pass-2@test>" in postern.mailbox("ptest1")
    assert postern.mailbox("ptest2") == ""


def test_fallback_transport_for_users_not_in_passwd(postern, dovecot):
    """fallback_transport_maps, then fallback_transport, for names neither an alias nor in passwd
    (local_recipient_maps empty lets smtpd accept them): ghost reaches Dovecot, anyone else the
    error transport and bounces; a user in passwd still gets the mbox."""
    d = dovecot
    postern.configure(local_recipient_maps="", fallback_transport_maps="inline:{ ghost=lmtp:unix:lmtp }",
                      fallback_transport="error:5.1.1 no mailbox here")
    postern.start()
    qid = send(postern, SENDER, [f"ghost@{HOST}", f"nobody-here@{HOST}", f"ptest3@{HOST}"],
               msg("pass-4@test", to=f"ghost@{HOST}"))
    ghost = passed(postern, qid, f"ghost@{HOST}", "lmtp:unix:lmtp")
    other = passed(postern, qid, f"nobody-here@{HOST}", "error:5.1.1 no mailbox here")
    postern.wait_log("local", rf"{qid}: to=<ptest3@{HOST}>, relay=local, .*status=sent \(delivered to mailbox\)")
    postern.wait_log("smtp", rf"{ghost}: to=<ghost@{HOST}>, .*status=sent", timeout=20)
    postern.wait_log("qmgr", rf"{other}: to=<nobody-here@{HOST}>, relay=none, .*dsn=5\.1\.1, "
                             r"status=bounced \(no mailbox here\)", timeout=20)
    postern.wait_log("qmgr", rf"{other}: sender non-delivery notification: ", timeout=20)
    postern.wait_mailbox("ptest3", r"Message-ID: <pass-4@test>")
    assert len(maildir_messages(d, "ghost")) == 1


def test_pass_to_a_failing_transport_defers_then_delivers(postern, dovecot):
    """Dovecot is down: the copy is deferred by postern-smtp, the original leaves the queue; once
    Dovecot is back a flush delivers the copy, once, and the queue is empty."""
    d = dovecot
    d.stop()
    postern.configure(mailbox_transport="lmtp:unix:lmtp")
    postern.start()
    qid = send(postern, SENDER, [f"ptest1@{HOST}"], msg("pass-5@test", to=f"ptest1@{HOST}"))
    copy = passed(postern, qid, f"ptest1@{HOST}", "lmtp:unix:lmtp")
    postern.wait_log("smtp", rf"{copy}: to=<ptest1@{HOST}>, .*status=deferred", timeout=20)
    postern.wait_log("qmgr", rf"{qid}: removed")
    assert postern.queue_count() == 1
    d.start()
    assert postern.posternctl("flush").returncode == 0
    postern.wait_log("smtp", rf"{copy}: to=<ptest1@{HOST}>, .*status=sent", timeout=30)
    postern.wait_queue_empty()
    assert len(maildir_messages(d, "ptest1")) == 1


def test_mailbox_transport_pipe(postern):
    """mailbox_transport names a master.cf pipe(8) transport: the command runs once per passed
    user with the expanded address as ${recipient} and the alias as ${original_recipient}; the
    copy keeps the original's client attributes; relay= names the transport."""
    p = postern
    out = p.root / "out"
    out.mkdir()
    os.chmod(out, 0o1777)
    recorder = p.root / "recorder"
    recorder.write_text(RECORDER)
    os.chmod(recorder, 0o755)
    (p.etc_dir / "master.cf").write_text(
        f"rec unix - n n - - pipe\n  flags=DR user=ptest1 argv={recorder} {out} ${{recipient}} "
        "${original_recipient} ${client_protocol} ${nexthop}\n")
    p.configure(mailbox_transport="rec", rec_destination_recipient_limit="1")
    p.set_aliases("team: ptest2, ptest3\n")
    p.start()
    qid = send(p, SENDER, [f"team@{HOST}"], msg("pass-6@test"))
    copy = passed(p, qid, f"ptest2@{HOST}", "rec:", orig=f"team@{HOST}")
    for user in ("ptest2", "ptest3"):
        p.wait_log("local", rf"{copy}: to=<{user}@{HOST}>, relay=rec, .*status=sent",
                   timeout=20)
    p.wait_queue_empty()
    p.out = out
    got = sorted(r["argv"] for r in runs(p))
    assert got == [[f"{u}@{HOST}", f"team@{HOST}", "ESMTP", HOST] for u in ("ptest2", "ptest3")]
    assert all(f"Delivered-To: {r['argv'][0]}\n" in r["stdin"] for r in runs(p))
    assert p.mailbox("ptest2") == "" and p.mailbox("ptest3") == ""


def test_mailbox_transport_local_is_a_configuration_error(postern):
    """mailbox_transport = local would loop: deferred with 4.3.5 and a log line naming it; a
    table that fails defers with 4.3.0; nothing is delivered or queued twice."""
    postern.configure(mailbox_transport="local:")
    postern.start()
    qid = send(postern, SENDER, [f"ptest1@{HOST}"], msg("pass-7@test", to=f"ptest1@{HOST}"))
    postern.wait_log("local", rf"{qid}: to=<ptest1@{HOST}>, relay=local, .*dsn=4\.3\.5, "
                              r"status=deferred \(mail system configuration error\)", timeout=20)
    assert re.search(r'mailbox_transport: value "local:" for <ptest1@postern\.test> names the local '
                     r"transport itself", postern.log("local"))
    assert postern.mailbox("ptest1") == ""
    assert postern.queue_count() == 1


def test_repeated_request_queues_one_copy(postern):
    """A request repeated after a crash (qmgr killed before it recorded the answer) finds the
    marker line and queues no second copy; with the marker lost too, the copy's derived queue id
    is found in the queue instead. Driven over postern-local's socket, no qmgr running."""
    p = postern
    p.configure(mailbox_transport="lmtp:unix:lmtp")
    p.set_aliases("team: ptest1, ptest2\n")
    p.start("local")
    qid, (rid,) = queue_message(p, SENDER, [f"team@{HOST}"], message("pass once"))

    def copies():
        return p.queue_rows("SELECT queue_id, filter FROM messages WHERE queue_id != ?", (qid,))

    first = results(deliver(p, qid, [(f"team@{HOST}", rid)]))
    assert first[0][:2] == ("delivered", "2.0.0") and first[0][2].startswith("passed to lmtp:unix:lmtp as ")
    ((copy, route),) = copies()
    assert route == "lmtp:unix:lmtp" and first[0][2].endswith(copy)
    rows = p.queue_rows("SELECT address, orcpt FROM recipients WHERE message_id = "
                        "(SELECT id FROM messages WHERE queue_id = ?) ORDER BY address", (copy,))
    assert rows == [(f"ptest1@{HOST}", f"rfc822;team@{HOST}"), (f"ptest2@{HOST}", f"rfc822;team@{HOST}")]
    marker = marker_dir(p) / f"{qid}.{rid}"
    assert f"pass:lmtp:unix:lmtp ptest1@{HOST}\n" in marker.read_text()

    again = results(deliver(p, qid, [(f"team@{HOST}", rid)]))
    assert again[0] == ("delivered", "2.0.0", "passed (already queued earlier)")
    marker.unlink()
    lost = results(deliver(p, qid, [(f"team@{HOST}", rid)]))
    assert lost[0] == ("delivered", "2.0.0", f"passed to lmtp:unix:lmtp as {copy} (queued by an earlier attempt)")
    assert copies() == [(copy, "lmtp:unix:lmtp")]
