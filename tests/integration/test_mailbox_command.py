"""postern-local: mailbox_command and mailbox_command_maps, local_command_shell, the commands'
environment, X-Original-To: and biff — Postfix's local(8) behaviour.

The first tests run the whole chain (smtpd, qmgr, local) so that the client's attributes, ORCPT
and the logs are real; the others drive postern-local over its IPC socket as test_local.py does,
so each result can be checked exactly. procmail (Debian package procmail) is a real
mailbox_command delivering into a Maildir.
"""

import grp
import os
import pathlib
import pwd
import re
import shutil
import socket
import subprocess

import pytest

import postern_harness

from test_local import deliver, message, queue_message, results
from test_virtual import failing_table

HOST = "postern.test"
SENDER = "sender@example.org"


def home(user):
    return pathlib.Path(pwd.getpwnam(user).pw_dir)


def write_user_file(user, name, text, mode=0o644):
    """A file in user's home, owned by user (procmail refuses a .procmailrc of anyone else)."""
    pw = pwd.getpwnam(user)
    path = home(user) / name
    path.write_text(text)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    os.chmod(path, mode)
    return path


def script(p, name, body):
    """An executable shell script under the test's root, readable by every user."""
    d = p.root / "bin"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o755)
    path = d / name
    path.write_text("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def maildir_files(d, sub="new"):
    d = d / sub
    return sorted(d.iterdir()) if d.is_dir() else []


@pytest.fixture
def local(postern):
    postern.configure(recipient_delimiter="+")
    return postern


# --- the whole chain ---------------------------------------------------------------------------
@pytest.mark.skipif(not shutil.which("procmail"), reason="procmail not installed (Debian procmail)")
def test_procmail_into_maildir(local):
    """Debian's own example, mailbox_command = procmail -a "$EXTENSION": the shell (the command
    has shell syntax) expands $EXTENSION from the environment, procmail runs as the user with its
    .procmailrc and files the message into a Maildir folder chosen by the extension."""
    p = local
    p.configure(mailbox_command='/usr/bin/procmail -a "$EXTENSION"')
    write_user_file("ptest1", ".procmailrc",
                    "LOGFILE=$HOME/procmail.log\nDEFAULT=$HOME/Maildir/\nARG=$1\n"
                    ":0\n* ARG ?? ^^lists^^\n$HOME/Maildir/.lists/\n")
    p.start()
    md = home("ptest1") / "Maildir"
    # One at a time: two procmail runs creating the same new Maildir can trip over each other.
    code, _ = p.send(SENDER, [f"ptest1@{HOST}"], message("to procmail"))
    assert code == 250
    p.wait_for(lambda: maildir_files(md), 30, "procmail's delivery into the Maildir")
    code, _ = p.send(SENDER, [f"ptest1+lists@{HOST}"], message("to a folder"))
    assert code == 250
    p.wait_for(lambda: maildir_files(md / ".lists"), 30, "procmail's delivery into .lists")
    inbox = maildir_files(md)[0].read_text()
    assert "Subject: to procmail" in inbox
    assert f"\nX-Original-To: ptest1@{HOST}\nDelivered-To: ptest1@{HOST}\n" in inbox
    folder = maildir_files(md / ".lists")[0].read_text()
    assert "Subject: to a folder" in folder and f"Delivered-To: ptest1+lists@{HOST}\n" in folder
    uid = pwd.getpwnam("ptest1").pw_uid
    assert all(f.stat().st_uid == uid for f in maildir_files(md) + maildir_files(md / ".lists"))
    assert not p.mailbox("ptest1")
    p.wait_log("local", rf"to=<ptest1\+lists@{re.escape(HOST)}>, relay=local, delay=[\d.]+, "
               r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2\.0\.0, status=sent "
               r'\(delivered to command: /usr/bin/procmail -a "\$EXTENSION"\)')
    p.wait_queue_empty()


def test_environment_uid_and_directory(local):
    """The command runs directly (no shell syntax), as the user with the user's groups, in the
    home directory, with Postfix's environment; ORIGINAL_RECIPIENT is the client's ORCPT, and
    characters outside command_expansion_filter become '_'."""
    p = local
    with postern_harness.accounts_lock():
        subprocess.run(["groupadd", "-f", "postern-mboxcmd"], check=True)
        subprocess.run(["gpasswd", "-a", "ptest1", "postern-mboxcmd"], check=True, capture_output=True)
    try:
        envdump = script(p, "envdump", '{ env; echo "UID=$(id -u)"; echo "GID=$(id -g)"; '
                                       'echo "GROUPS=$(id -G)"; echo "CWD=$(pwd)"; echo "ARGS=$*"; '
                                       'echo "-- stdin"; cat; } > "$HOME/env.out"\n')
        p.configure(mailbox_command=f"{envdump} one two")
        p.start()
        code, _ = p.send("o'brien@example.org", [(f"ptest1+tag@{HOST}", ["ORCPT=rfc822;orig@example.net"])],
                         message("env"))
        assert code == 250
        out = home("ptest1") / "env.out"
        p.wait_for(lambda: out.exists() and "Subject: env" in out.read_text(), 30, "the command's output")
        text = out.read_text()
    finally:
        with postern_harness.accounts_lock():
            subprocess.run(["gpasswd", "-d", "ptest1", "postern-mboxcmd"], capture_output=True)
    env, stdin = text.split("-- stdin\n", 1)
    vars = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    pw = pwd.getpwnam("ptest1")
    expect = {
        "HOME": pw.pw_dir, "USER": "ptest1", "LOGNAME": "ptest1", "SHELL": pw.pw_shell,
        "SENDER": "o_brien@example.org", "RECIPIENT": f"ptest1+tag@{HOST}", "LOCAL": "ptest1+tag",
        "EXTENSION": "tag", "DOMAIN": HOST, "ORIGINAL_RECIPIENT": "orig@example.net",
        "CLIENT_ADDRESS": "127.0.0.1", "CLIENT_HELO": "client.test", "CLIENT_PROTOCOL": "ESMTP",
        "PATH": "/usr/bin:/bin", "UID": str(pw.pw_uid), "GID": str(pw.pw_gid), "CWD": pw.pw_dir,
        "ARGS": "one two",
    }
    assert {k: vars.get(k) for k in expect} == expect, text
    assert re.fullmatch(r"[A-Za-z0-9._-]+", vars.get("CLIENT_HOSTNAME", "")), text
    assert "SASL_USERNAME" not in vars and "SASL_METHOD" not in vars   # not authenticated
    grp_gid = str(grp.getgrnam("postern-mboxcmd").gr_gid)
    assert grp_gid in vars["GROUPS"].split(), vars["GROUPS"]
    assert re.match(r"From o'brien@example\.org  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n"
                    r"Return-Path: <o'brien@example\.org>\n"
                    r"X-Original-To: orig@example\.net\n"
                    rf"Delivered-To: ptest1\+tag@{re.escape(HOST)}\n", stdin), stdin[:300]
    p.wait_log("local", rf"to=<ptest1\+tag@{re.escape(HOST)}>, relay=local, .*"
               rf"dsn=2\.0\.0, status=sent \(delivered to command: {re.escape(str(envdump))} one two\)")
    p.wait_queue_empty()


# --- postern-local alone -----------------------------------------------------------------------
def test_exit_status_and_maps(local):
    """mailbox_command_maps (looked up by login name) wins over mailbox_command; exit 75 defers
    (4.3.0), 67 bounces (5.1.1), other statuses bounce with the command's output; the mailbox is
    not written. allow_mail_to_commands does not apply to mailbox_command."""
    p = local
    maps = p.etc_dir / "mboxcmd"
    maps.write_text("ptest2 exit 75\nptest3 echo no such user here; exit 67\n")
    p.configure(mailbox_command='/bin/sh -c "cat > $HOME/default.out"',
                mailbox_command_maps=f"texthash:{maps}", allow_mail_to_commands="")
    p.start("local")
    rcpts = [f"ptest1@{HOST}", f"ptest2@{HOST}", f"ptest3@{HOST}"]
    qid, rids = queue_message(p, SENDER, rcpts, message("exit codes"))
    r = results(deliver(p, qid, list(zip(rcpts, rids))))
    assert r[0] == ("delivered", "2.0.0", 'delivered to command: /bin/sh -c "cat > $HOME/default.out"'), r
    assert r[1][:2] == ("deferred", "4.3.0"), r
    assert r[2] == ("bounced", "5.1.1", "no such user here"), r
    assert "Subject: exit codes" in (home("ptest1") / "default.out").read_text()
    for u in ("ptest1", "ptest2", "ptest3"):
        assert not p.mailbox(u)
    p.wait_log("local", rf"{qid}: to=<ptest2@{re.escape(HOST)}>, relay=local, .*dsn=4\.3\.0, status=deferred")
    p.wait_log("local", rf"{qid}: to=<ptest3@{re.escape(HOST)}>, relay=local, .*dsn=5\.1\.1, status=bounced "
               r"\(no such user here\)")


def test_maps_failure_defers(local):
    """A mailbox_command_maps table that fails defers (4.3.0) and is logged; it never falls back
    to mailbox delivery."""
    p = local
    spec, break_it = failing_table(p, "mailbox_command_maps", [("ptest1", "/bin/true")])
    p.configure(mailbox_command_maps=spec)
    p.start("local")
    qid, (rid,) = queue_message(p, SENDER, [f"ptest1@{HOST}"], message("table works"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)])) == \
        [("delivered", "2.0.0", "delivered to command: /bin/true")]
    break_it()
    qid, (rid,) = queue_message(p, SENDER, [f"ptest1@{HOST}"], message("table fails"))
    (action, dsn, diag), = results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))
    assert (action, dsn) == ("deferred", "4.3.0") and \
        diag.startswith('mailbox_command_maps lookup failure for "ptest1"'), diag
    p.wait_log("local", r"table mailbox_command_maps: lookup ptest1: ")
    assert not p.mailbox("ptest1")


def test_time_and_size_limits(local):
    """command_time_limit kills a mailbox command that takes too long (bounced, as for alias
    commands); mailbox_size_limit caps the files it writes (the command is killed by SIGXFSZ:
    deferred)."""
    p = local
    maps = p.etc_dir / "mboxcmd"
    maps.write_text("ptest1 /bin/sleep 30\n"
                    "ptest2 exec head -c 100000 /dev/zero > $HOME/big.out\n")
    p.configure(mailbox_command_maps=f"texthash:{maps}", command_time_limit="1s",
                mailbox_size_limit="20000")
    p.start("local")
    rcpts = [f"ptest1@{HOST}", f"ptest2@{HOST}"]
    qid, rids = queue_message(p, SENDER, rcpts, message("limits"))
    r = results(deliver(p, qid, list(zip(rcpts, rids))))
    assert r[0][:2] == ("bounced", "5.3.0") and "command time limit exceeded" in r[0][2], r
    assert r[1][:2] == ("deferred", "4.3.0") and "signal 25" in r[1][2], r
    assert (home("ptest2") / "big.out").stat().st_size <= 20000


def test_local_command_shell(local):
    """local_command_shell runs every local command through that program: its words, then the
    command as one argument — even a command that needs no shell (mailbox_command and alias
    commands alike)."""
    p = local
    wrap = script(p, "wrap", '{ echo "ARGS:$#"; printf "%s\\n" "$@"; } >> "$HOME/wrap.out"\n'
                             'exec /bin/sh "$@"\n')
    p.configure(local_command_shell=f"{wrap} -c", mailbox_command="/bin/true")
    p.start("local")
    qid, (rid,) = queue_message(p, SENDER, [f"ptest1@{HOST}"], message("wrapped"))
    assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)])) == \
        [("delivered", "2.0.0", "delivered to command: /bin/true")]
    assert (home("ptest1") / "wrap.out").read_text() == "ARGS:2\n-c\n/bin/true\n"


def test_x_original_to_after_virtual_alias(local):
    """X-Original-To: carries the address the client gave: in an mbox after a virtual alias
    rewrote it (smtpd keeps the original as ORCPT), before Delivered-To:, as Postfix writes them."""
    p = local
    valias = p.etc_dir / "valias"
    valias.write_text(f"info@{HOST} ptest1@{HOST}\n")
    p.configure(virtual_alias_maps=f"texthash:{valias}")
    p.start()
    assert p.send(SENDER, [f"info@{HOST}"], message("aliased"))[0] == 250
    text = p.wait_mailbox("ptest1", "Subject: aliased", timeout=30)
    assert re.match(rf"From {re.escape(SENDER)}  .*\nReturn-Path: <{re.escape(SENDER)}>\n"
                    rf"X-Original-To: info@{re.escape(HOST)}\nDelivered-To: ptest1@{re.escape(HOST)}\n",
                    text), text[:300]
    p.wait_log("local", rf"to=<ptest1@{re.escape(HOST)}>, relay=local, .*status=sent \(delivered to mailbox\)")
    p.wait_queue_empty()


def test_x_original_to_virtual_maildir_and_off(local):
    """virtual(8) Maildir deliveries carry X-Original-To: (the address as queued, its case kept);
    enable_original_recipient = no leaves it out, and ORIGINAL_RECIPIENT with it."""
    p = local
    vbase = p.root / "vmail"
    vbase.mkdir()
    os.chmod(vbase, 0o1777)
    vmaps = p.etc_dir / "vmailbox"
    vmaps.write_text("alice@vdomain.test vdomain.test/alice/\n")
    pw = pwd.getpwnam("ptest2")
    p.configure(virtual_mailbox_base=str(vbase), virtual_mailbox_maps=f"texthash:{vmaps}",
                virtual_uid_maps=f"static:{pw.pw_uid}", virtual_gid_maps=f"static:{pw.pw_gid}")
    p.start("local")
    qid, (rid,) = queue_message(p, SENDER, ["Alice@vdomain.test"], message("virtual"))
    assert results(deliver(p, qid, [("Alice@vdomain.test", rid)], socket="virtual"))[0][0] == "delivered"
    f, = maildir_files(vbase / "vdomain.test" / "alice")
    assert f.read_text().startswith(f"Return-Path: <{SENDER}>\nX-Original-To: Alice@vdomain.test\n"
                                    "Delivered-To: alice@vdomain.test\n")

    envdump = script(p, "envdump", '{ env; echo "-- stdin"; cat; } > "$HOME/env.out"\n')
    p.configure(enable_original_recipient="no", mailbox_command_maps=f"inline:{{ ptest1={envdump} }}")
    p.restart("local")
    rcpts = [f"ptest3@{HOST}", f"ptest1@{HOST}"]
    qid, rids = queue_message(p, SENDER, rcpts, message("no original"))
    assert [r[0] for r in results(deliver(p, qid, list(zip(rcpts, rids))))] == ["delivered"] * 2
    text = p.mailbox("ptest3")
    assert "\nReturn-Path: <sender@example.org>\nDelivered-To: ptest3@" in text and "X-Original-To" not in text
    env, stdin = (home("ptest1") / "env.out").read_text().split("-- stdin\n", 1)
    assert "ORIGINAL_RECIPIENT=" not in env and "RECIPIENT=ptest1@" in env
    assert "\nReturn-Path: <sender@example.org>\nDelivered-To: ptest1@" in stdin and "X-Original-To" not in stdin


def test_biff(local):
    """biff = yes (the default): after an mbox delivery comsat's port on localhost gets
    "user@offset" (NUL-terminated, as Postfix sends it), the offset being where the new message
    starts. With biff = no nothing is sent (the first datagram seen is the later delivery's)."""
    p = local
    comsat = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    comsat.bind(("127.0.0.1", 512))
    comsat.settimeout(30)
    try:
        p.configure(biff="no")
        p.start("local")
        qid, (rid,) = queue_message(p, SENDER, [f"ptest1@{HOST}"], message("quiet"))
        assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"
        first = os.path.getsize(p.spool_dir / "ptest1")
        p.configure(biff="yes")
        p.restart("local")
        qid, (rid,) = queue_message(p, SENDER, [f"ptest1@{HOST}"], message("noisy"))
        assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"
        data, _ = comsat.recvfrom(512)
        assert data == f"ptest1@{first}\0".encode()
        assert p.mailbox("ptest1")[first:].startswith("From sender@example.org  ")
        qid, (rid,) = queue_message(p, SENDER, [f"ptest1@{HOST}"], message("again"))
        second = os.path.getsize(p.spool_dir / "ptest1")
        assert results(deliver(p, qid, [(f"ptest1@{HOST}", rid)]))[0][0] == "delivered"
        assert comsat.recvfrom(512)[0] == f"ptest1@{second}\0".encode()
    finally:
        comsat.close()
