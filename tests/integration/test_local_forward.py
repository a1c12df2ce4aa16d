"""postern-local: forward_path and .forward files, :include: files, luser_relay and the owner-
aliases (owner_request_special, expand_owner_alias), as Postfix's local(8) does them.

Most tests drive postern-local over its IPC socket (as test_local.py does) so each result can be
checked exactly; the command and loop tests run the whole chain over SMTP and check that the
queue is empty afterwards.
"""

import grp
import os
import pwd
import re

import pytest

from test_local import HOST, deliver, home, message, queue_message, results

H = re.escape(HOST)


def uid(user):
    return pwd.getpwnam(user).pw_uid


def write_owned(path, text, owner, mode=0o644, group=None):
    """Writes a file owned by owner (and group, default the owner's) with mode."""
    path.write_text(text)
    pw = pwd.getpwnam(owner)
    os.chown(path, pw.pw_uid, grp.getgrnam(group).gr_gid if group else pw.pw_gid)
    os.chmod(path, mode)
    return path


def forward_file(user, text, **kw):
    return write_owned(home(user) / ".forward", text, kw.pop("owner", user), **kw)


@pytest.fixture
def local(postern):
    postern.configure(recipient_delimiter="+")
    return postern


@pytest.fixture
def drop(postern):
    """A directory every user may write to, for commands' output."""
    d = postern.root / "drop"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


def other_messages(p, qid):
    """(queue id, sender, recipient, content) of the messages postern-local queued besides qid."""
    rows = p.queue_rows("SELECT m.queue_id, m.sender, r.address, c.data FROM messages m "
                        "JOIN recipients r ON r.message_id = m.id JOIN content c ON c.message_id = m.id "
                        "WHERE m.queue_id != ?", (qid,))
    return [(q, s, r, bytes(c).decode() if not isinstance(c, str) else c) for q, s, r, c in rows]


# --- .forward ----------------------------------------------------------------------------------
def test_forward_pipes_to_command_as_the_user(postern, drop):
    """The whole chain: a .forward that pipes into a command; the command runs as the user (uid,
    HOME), gets the message with Delivered-To, and the queue is empty afterwards."""
    p = postern
    forward_file("ptest1", f'"|id -u > {drop}/uid; echo $HOME > {drop}/home; cat > {drop}/out"\n')
    p.start()
    code, _ = p.send("sender@example.org", [f"ptest1@{HOST}"], message("fwd pipe"))
    assert code == 250
    p.wait_for(lambda: (drop / "out").exists() and "fwd-pipe" in (drop / "out").read_text(), 20,
               "the command's output")
    p.wait_queue_empty()
    assert (drop / "uid").read_text().strip() == str(uid("ptest1"))
    assert (drop / "home").read_text().strip() == str(home("ptest1"))
    assert (drop / "out").stat().st_uid == uid("ptest1")
    out = (drop / "out").read_text()
    assert f"\nDelivered-To: ptest1@{HOST}\n" in out
    assert p.mailbox("ptest1") == ""   # the .forward took the mail
    p.wait_log("local", rf": to=<ptest1@{H}>, relay=local, .*status=sent \(delivered to command: "
                        rf"id -u > {re.escape(str(drop))}/uid;")


def test_same_command_in_two_users_forward_files(local, drop):
    """An alias reaching two users whose .forward files pipe into the same command: it runs once
    for each of them, as each of them, and a repeated request runs neither again."""
    for u in ("ptest1", "ptest2"):
        forward_file(u, f'"|id -u >> {drop}/ids.$USER"\n')
    local.set_aliases("both: ptest1, ptest2\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"both@{HOST}"], message("same cmd"))
    for _ in range(2):
        assert results(deliver(p, qid, [(f"both@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
        for u in ("ptest1", "ptest2"):
            assert (drop / f"ids.{u}").read_text().split() == [str(uid(u))], u


def test_forward_to_local_user_remote_address_and_self(local):
    forward_file("ptest1", "# my forwards\nptest2, friend@remote.example\n\\ptest1\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("fwd three"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    # ptest2 by its own address; ptest1 ("\ptest1") keeps a copy
    assert f"\nDelivered-To: ptest2@{HOST}\n" in p.mailbox("ptest2")
    assert p.mailbox("ptest1").count("Message-ID: <fwd-three@example.org>") == 1
    assert f"\nDelivered-To: ptest1@{HOST}\n" in p.mailbox("ptest1")
    # the remote address: a new message, the original sender, Delivered-To the user's address
    (new_id, sender, rcpt, content), = other_messages(p, qid)
    assert (sender, rcpt) == ("sender@example.org", "friend@remote.example")
    assert content.startswith(f"Delivered-To: ptest1@{HOST}\n")
    p.wait_log("local", rf"{qid}: to=<friend@remote\.example>, orig_to=<ptest1@{H}>, .*"
                        rf"status=sent \(forwarded as {new_id}\)")
    p.wait_log("local", rf"{qid}: to=<ptest2@{H}>, orig_to=<ptest1@{H}>, .*status=sent \(delivered to mailbox\)")


def test_forward_with_extension_and_forward_path(local):
    """The default forward_path tries .forward+ext first; a custom forward_path uses $user."""
    forward_file("ptest1", "ptest2\n")
    write_owned(home("ptest1") / ".forward+lists", "ptest3\n", "ptest1")
    p = local
    p.start("local")
    qid, (r1, r2) = queue_message(p, "sender@example.org", [f"ptest1+lists@{HOST}", f"ptest1@{HOST}"],
                                  message("fwd ext"))
    r = results(deliver(p, qid, [(f"ptest1+lists@{HOST}", r1), (f"ptest1@{HOST}", r2)]))
    assert [x[:2] for x in r] == [("delivered", "2.0.0")] * 2, r
    assert "Message-ID: <fwd-ext@example.org>" in p.mailbox("ptest3")   # via .forward+lists
    assert "Message-ID: <fwd-ext@example.org>" in p.mailbox("ptest2")   # via .forward
    assert p.mailbox("ptest1") == ""


def test_forward_path_setting(local):
    fwd_dir = local.root / "forwards"
    fwd_dir.mkdir()
    os.chmod(fwd_dir, 0o755)
    write_owned(fwd_dir / "ptest1", "ptest3\n", "ptest1")
    local.configure(forward_path="/nonexistent/$user, " + str(fwd_dir) + "/$user")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("fwd path"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert "Message-ID: <fwd-path@example.org>" in p.mailbox("ptest3")
    assert p.mailbox("ptest1") == ""


@pytest.mark.parametrize("kind", ["bad owner", "group writable", "world writable", "symlink"])
def test_unsafe_forward_is_ignored(local, kind):
    """A .forward owned by someone else, writable by a shared group or by all, or a symbolic
    link is ignored with a log line naming it: the mailbox gets the mail."""
    f = home("ptest1") / ".forward"
    if kind == "bad owner":
        forward_file("ptest1", "ptest2\n", owner="ptest2")
        why = rf"has bad owner uid {uid('ptest2')}"
    elif kind == "group writable":
        forward_file("ptest1", "ptest2\n", mode=0o664, group="users")
        why = "is group writable"
    elif kind == "world writable":
        forward_file("ptest1", "ptest2\n", mode=0o646)
        why = "is world writable"
    else:
        target = write_owned(home("ptest1") / "real-forward", "ptest2\n", "ptest1")
        f.symlink_to(target)
        why = "is not a regular file"
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("unsafe fwd"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)])) == [("delivered", "2.0.0", "delivered to mailbox")]
    assert "Message-ID: <unsafe-fwd@example.org>" in p.mailbox("ptest1")
    assert p.mailbox("ptest2") == ""
    p.wait_log("local", rf"file {re.escape(str(f))} {why}")


@pytest.mark.parametrize("mode", [0o644, 0o600], ids=["readable", "root-only"])
def test_root_owned_forward_is_read_with_the_users_rights(local, mode):
    """A .forward owned by root is allowed, but read with the user's rights: one only root may
    read is not used (root's rights never reach it), and the mailbox gets the mail."""
    forward_file("ptest1", "ptest2\n", owner="root", mode=mode)
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("root fwd"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    used = mode == 0o644
    assert ("Message-ID: <root-fwd@example.org>" in p.mailbox("ptest2")) == used
    assert ("Message-ID: <root-fwd@example.org>" in p.mailbox("ptest1")) != used
    if not used:
        p.wait_log("local", rf"cannot access forward file {re.escape(str(home('ptest1')))}/\.forward: "
                            "Permission denied")


def test_forward_group_writable_in_private_group_is_used(local):
    """Debian's user private groups: a group-writable .forward whose group only the user is in."""
    forward_file("ptest1", "ptest2\n", mode=0o664)
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("private group"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert "Message-ID: <private-group@example.org>" in p.mailbox("ptest2")


def test_forward_commands_restricted(local):
    local.configure(allow_mail_to_commands="alias", allow_mail_to_files="alias")
    forward_file("ptest1", '"|/bin/true", /tmp/postern-fwd-should-not-exist\n')
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("fwd restricted"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert (action, dsn) == ("bounced", "5.7.1") and "restricted" in diag, diag
    assert not os.path.exists("/tmp/postern-fwd-should-not-exist")


def test_forward_file_and_home_file_as_the_user(local):
    forward_file("ptest2", "~/saved.mbox\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest2@{HOST}"], message("fwd file"))
    assert results(deliver(p, qid, [(f"ptest2@{HOST}", rid)])) == \
        [("delivered", "2.0.0", f"delivered to file: {home('ptest2')}/saved.mbox")]
    saved = home("ptest2") / "saved.mbox"
    assert saved.stat().st_uid == uid("ptest2")
    assert f"\nDelivered-To: ptest2@{HOST}\n" in saved.read_text()


def test_home_file_needs_a_user(local):
    """~/file only means something in a .forward: in an alias (no user) it bounces."""
    local.set_aliases("tilde: ~/saved\nother: ~bob/saved\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"tilde@{HOST}"], message("tilde"))
    assert results(deliver(p, qid, [(f"tilde@{HOST}", rid), (f"other@{HOST}", rid + 1)])) == [
        ("bounced", "5.3.5", "unknown home directory for: ~/saved"),
        ("bounced", "5.3.5", "bad home directory syntax for: ~bob/saved")]


def test_mutual_forwards_deliver_to_the_user(local):
    """ptest1 forwards to ptest2, ptest2 back to ptest1: ptest1 is met again inside its own
    .forward, so its mailbox gets the mail (Postfix: no loop, no bounce)."""
    forward_file("ptest1", "ptest2\n")
    forward_file("ptest2", "ptest1\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1@{HOST}"], message("mutual"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert p.mailbox("ptest1").count("Message-ID: <mutual@example.org>") == 1
    assert p.mailbox("ptest2") == ""


def test_forwarding_loop_bounces(postern):
    """The whole chain: ptest1's .forward sends to an address that comes back to local delivery
    (transport_maps); the Delivered-To: header stops the loop with a bounce to the sender, and the
    queue ends empty."""
    p = postern
    p.configure(transport_maps="inline:{ loop.test=local: }")
    forward_file("ptest1", "ptest1@loop.test\n")
    p.start()
    code, _ = p.send(f"ptest3@{HOST}", [f"ptest1@{HOST}"], message("loop me"))
    assert code == 250
    p.wait_log("local", r": to=<ptest1@loop\.test>, relay=local, .*dsn=5\.4\.6, status=bounced "
                        r"\(mail forwarding loop for ptest1@loop\.test\)", timeout=30)
    p.wait_mailbox("ptest3", r"mail forwarding loop for ptest1@loop\.test", timeout=30)
    p.wait_queue_empty(timeout=30)
    assert p.mailbox("ptest1") == ""


# --- :include: ------------------------------------------------------------------------------
def test_include_in_aliases(local, drop):
    """:include: in an alias: the addresses listed, comments skipped; a command in it runs as
    the file's owner (allowed for the include class here)."""
    inc = write_owned(local.root / "list.inc",
                      f'# members\nptest1\nptest2, "|id -u > {drop}/inc.uid"\n', "ptest3")
    local.set_aliases(f"list: :include:{inc}\n")
    local.configure(allow_mail_to_commands="alias, forward, include")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"list@{HOST}"], message("inc list"))
    assert results(deliver(p, qid, [(f"list@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    for u in ("ptest1", "ptest2"):
        assert p.mailbox(u).count("Message-ID: <inc-list@example.org>") == 1, u
    assert (drop / "inc.uid").read_text().strip() == str(uid("ptest3"))


def test_include_commands_restricted_by_default(local):
    inc = write_owned(local.root / "cmd.inc", '"|/bin/true"\n', "ptest3")
    local.set_aliases(f"list: :include:{inc}\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"list@{HOST}"], message("inc cmd"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"list@{HOST}", rid)]))
    assert (action, dsn, diag) == ("bounced", "5.7.1", "mail to command is restricted")


def test_include_in_forward(local):
    inc = write_owned(home("ptest3") / "friends", "ptest1\nptest2\n", "ptest3")
    forward_file("ptest3", f":include:{inc}\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest3@{HOST}"], message("inc fwd"))
    assert results(deliver(p, qid, [(f"ptest3@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    for u in ("ptest1", "ptest2"):
        assert "Message-ID: <inc-fwd@example.org>" in p.mailbox(u), u
    assert p.mailbox("ptest3") == ""


@pytest.mark.parametrize("kind", ["missing", "relative", "world writable"])
def test_bad_include_bounces(local, kind):
    inc = local.root / "bad.inc"
    if kind == "world writable":
        write_owned(inc, "ptest1\n", "root", mode=0o666)
        ref, why = str(inc), rf":include: file {re.escape(str(inc))} is world writable"
    elif kind == "relative":
        ref, why = "lists/x", r":include:lists/x uses a relative path"
    else:
        ref, why = str(inc), rf"unable to lookup :include: file {re.escape(str(inc))}: No such file"
    local.set_aliases(f"list: :include:{ref}\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"list@{HOST}"], message("bad inc"))
    assert results(deliver(p, qid, [(f"list@{HOST}", rid)])) == \
        [("bounced", "5.3.5", "mail system configuration error")]
    p.wait_log("local", why)
    assert p.mailbox("ptest1") == ""


def test_include_loop_is_bounded(local):
    a, b = local.root / "a.inc", local.root / "b.inc"
    write_owned(a, f":include:{b}\nptest1\n", "root")
    write_owned(b, f":include:{a}\n", "root")
    local.set_aliases(f"list: :include:{a}\n")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"list@{HOST}"], message("inc loop"))
    assert results(deliver(p, qid, [(f"list@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    assert p.mailbox("ptest1").count("Message-ID: <inc-loop@example.org>") == 1


# --- luser_relay -------------------------------------------------------------------------------
def test_luser_relay_local(local):
    local.configure(luser_relay="ptest3+$user")
    p = local
    p.start("local")
    qid, ids = queue_message(p, "sender@example.org", [f"nosuch+x@{HOST}", f"ptest1@{HOST}"],
                             message("luser"))
    r = results(deliver(p, qid, [(f"NoSuch+x@{HOST}", ids[0]), (f"ptest1@{HOST}", ids[1])]))
    assert [x[:2] for x in r] == [("delivered", "2.0.0")] * 2, r
    assert f"\nDelivered-To: ptest3+nosuch@{HOST}\n" in p.mailbox("ptest3")
    assert "Message-ID: <luser@example.org>" in p.mailbox("ptest1")   # a known user is not relayed
    p.wait_log("local", rf"{qid}: to=<ptest3\+nosuch@{H}>, orig_to=<NoSuch\+x@{H}>, .*status=sent")


def test_luser_relay_remote_and_unknown(local):
    local.configure(luser_relay="${extension?$extension-}$local@remote.example")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"who+ext@{HOST}"], message("luser remote"))
    assert results(deliver(p, qid, [(f"who+ext@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    (_, sender, rcpt, content), = other_messages(p, qid)
    assert (sender, rcpt) == ("sender@example.org", "ext-who+ext@remote.example")
    assert content.startswith(f"Delivered-To: who+ext@{HOST}\n")


def test_luser_relay_to_unknown_name_bounces(local):
    local.configure(luser_relay="nobody-at-all")
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"who@{HOST}"], message("luser unknown"))
    assert results(deliver(p, qid, [(f"who@{HOST}", rid)])) == \
        [("bounced", "5.1.1", 'unknown user: "nobody-at-all"')]


# --- owner- aliases ----------------------------------------------------------------------------
@pytest.mark.parametrize("params,expect", [
    ({}, f"owner-list@{HOST}"),
    ({"owner_request_special": "no"}, "sender@example.org"),
    ({"expand_owner_alias": "yes"}, f"ptest2@{HOST}"),
], ids=["default", "owner_request_special=no", "expand_owner_alias=yes"])
def test_owner_alias_sender(local, params, expect):
    local.set_aliases("list: friend@remote.example\nowner-list: ptest2\n")
    local.configure(**params)
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"list@{HOST}"], message("owner"))
    assert results(deliver(p, qid, [(f"list@{HOST}", rid)]))[0][:2] == ("delivered", "2.0.0")
    (_, sender, rcpt, _), = other_messages(p, qid)
    assert (sender, rcpt) == (expect, "friend@remote.example")
    p.wait_log("local", rf"forwarded to new message \w+ \(sender=<{re.escape(expect)}>\)")


@pytest.mark.parametrize("special", ["yes", "no"])
def test_owner_request_special_keeps_request_addresses_whole(local, special):
    """With recipient_delimiter '-', ptest1-request is not split into ptest1 + extension while
    owner_request_special is on (it is a name of its own)."""
    local.configure(recipient_delimiter="-", owner_request_special=special)
    p = local
    p.start("local")
    qid, (rid,) = queue_message(p, "sender@example.org", [f"ptest1-request@{HOST}"], message("request"))
    r = results(deliver(p, qid, [(f"ptest1-request@{HOST}", rid)]))
    if special == "yes":
        assert r == [("bounced", "5.1.1", 'unknown user: "ptest1-request"')]
        assert p.mailbox("ptest1") == ""
    else:
        assert r[0][:2] == ("delivered", "2.0.0")
        assert "Message-ID: <request@example.org>" in p.mailbox("ptest1")
