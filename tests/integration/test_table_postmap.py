"""lmdb: and cdb: tables as Postfix's postmap writes them (Debian's postfix-lmdb and postfix-cdb;
postmap runs with a configuration directory of its own): with only the binary file left (the
source text removed), virtual_mailbox_maps = lmdb:… and virtual_alias_maps = cdb:… answer RCPT as
texthash: would (keys folded to lower case by postmap, values without the NUL lmdb stores), a
message to an alias is delivered into the mailbox the lmdb file names, and a file postmap writes
again is read again without a reload. hash: and btree: .db files whose source text is gone are
read with libdb."""

import os
import pwd
import subprocess

import pytest

import mailtest
from test_addr_class import UNKNOWN, wait_reply
from test_smtpd_helpers import OUTSIDE, session

VDOM = "vdomain.test"
SENDER = "sender@remote.example"
POSTMAP = "/usr/sbin/postmap"


def postmap(postern, type_, path, text, suffix=None):
    """Writes text to path, runs postmap type_:path, removes the source text (postmap's file is
    path.<suffix>, by default path.<type_>)."""
    assert os.path.exists(POSTMAP), "postmap is missing: install postfix (tests/run-all does)"
    cfg = postern.root / "postmap-cf"
    cfg.mkdir(exist_ok=True)
    (cfg / "main.cf").write_text("")
    path.write_text(text)
    r = subprocess.run([POSTMAP, "-c", str(cfg), f"{type_}:{path}"], capture_output=True, text=True)
    assert r.returncode == 0, f"postmap {type_}: failed (install postfix-{type_}): {r.stderr}"
    path.unlink()
    assert (path.parent / f"{path.name}.{suffix or type_}").exists()


def rcpt(postern, addr):
    with session(postern, source=OUTSIDE) as c:
        return c.cmd(f"RCPT TO:<{addr}>")


@pytest.fixture
def tables(postern):
    vmailbox = postern.etc_dir / "vmailbox"
    virtual = postern.etc_dir / "virtual"
    postmap(postern, "lmdb", vmailbox, f"Alice@{VDOM} {VDOM}/alice/\nbob@{VDOM} {VDOM}/bob/\n")
    postmap(postern, "cdb", virtual, f"team@{VDOM} alice@{VDOM}, bob@{VDOM}\n")
    base = postern.root / "vmail"
    base.mkdir()
    os.chmod(base, 0o1777)
    pw = pwd.getpwnam("ptest1")
    postern.configure(mynetworks="127.0.0.1/32", virtual_mailbox_domains=VDOM,
                      virtual_mailbox_maps=f"lmdb:{vmailbox}", virtual_alias_maps=f"cdb:{virtual}",
                      virtual_mailbox_base=str(base), virtual_uid_maps=f"static:{pw.pw_uid}",
                      virtual_gid_maps=f"static:{pw.pw_gid}")
    postern.vbase = base
    return vmailbox, virtual


def test_postmap_files_answer_rcpt_and_deliver(postern, tables):
    p = postern
    p.start()
    for addr in (f"alice@{VDOM}", f"ALICE@{VDOM}", f"bob@{VDOM}", f"team@{VDOM}"):
        assert rcpt(p, addr) == "250 2.1.5 Ok", addr
    assert rcpt(p, f"carol@{VDOM}") == UNKNOWN.format(code=550, addr=f"carol@{VDOM}", table="virtual mailbox")
    qid = mailtest.send(p, SENDER, [f"team@{VDOM}"],
                        mailtest.msg("pm-1@test", sender=SENDER, to=f"team@{VDOM}", subject="postmap"))
    p.wait_log("qmgr", rf"{qid}: removed", timeout=30)
    for user in ("alice", "bob"):
        new = p.vbase / VDOM / user / "new"
        files = list(new.iterdir())
        assert len(files) == 1 and "Subject: postmap" in files[0].read_text(), user


@pytest.mark.parametrize("which", ["lmdb", "cdb"])
def test_postmap_again_is_read_without_reload(postern, tables, which):
    p = postern
    vmailbox, virtual = tables
    p.start("smtpd")
    addr = f"carol@{VDOM}" if which == "lmdb" else f"staff@{VDOM}"
    assert rcpt(p, addr) == UNKNOWN.format(code=550, addr=addr, table="virtual mailbox")
    if which == "lmdb":
        postmap(p, "lmdb", vmailbox, f"alice@{VDOM} {VDOM}/alice/\ncarol@{VDOM} {VDOM}/carol/\n")
    else:
        postmap(p, "cdb", virtual, f"staff@{VDOM} bob@{VDOM}\n")
    assert wait_reply(p, addr, "250 2.1.5 Ok") == "250 2.1.5 Ok"
    if which == "lmdb":   # bob is gone from the new file
        assert rcpt(p, f"bob@{VDOM}") == UNKNOWN.format(code=550, addr=f"bob@{VDOM}", table="virtual mailbox")


@pytest.mark.parametrize("type_", ["hash", "btree"])
def test_berkeley_db_file_without_its_source(postern, type_):
    """hash:/x and btree:/x where postmap's x.db is all that is left (an /etc/postfix copied
    without its source files): read with libdb, keys as postmap folded them."""
    p = postern
    src = p.etc_dir / "vmailbox"
    postmap(p, type_, src, f"Dave@{VDOM} {VDOM}/dave/\n", suffix="db")
    p.configure(virtual_mailbox_domains=VDOM, virtual_mailbox_maps=f"{type_}:{src}")
    p.start("smtpd")
    assert rcpt(p, f"dave@{VDOM}") == "250 2.1.5 Ok"
    assert rcpt(p, f"erin@{VDOM}") == UNKNOWN.format(code=550, addr=f"erin@{VDOM}", table="virtual mailbox")


def test_no_postmap_file_reads_the_source_text(postern):
    """lmdb:/x with only the source text /x (no postmap run): read like texthash:."""
    p = postern
    src = p.etc_dir / "vmailbox"
    src.write_text(f"dave@{VDOM} {VDOM}/dave/\n")
    p.configure(virtual_mailbox_domains=VDOM, virtual_mailbox_maps=f"lmdb:{src}")
    p.start("smtpd")
    assert rcpt(p, f"dave@{VDOM}") == "250 2.1.5 Ok"
    assert rcpt(p, f"erin@{VDOM}") == UNKNOWN.format(code=550, addr=f"erin@{VDOM}", table="virtual mailbox")
