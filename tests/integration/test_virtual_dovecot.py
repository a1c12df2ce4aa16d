"""Dovecot as the virtual mailbox store over LMTP, as VIRTUAL_README sets it up: the domain in
virtual_mailbox_domains, its users in virtual_mailbox_maps, virtual_transport =
lmtp:unix:<Dovecot's socket>, and a private Dovecot (tests/integration/peers.py) whose users come
from a passwd-file. Mail sent over SMTP lands in each user's Maildir with the headers Dovecot
writes (Return-Path, Delivered-To), the log says where it went and the queue ends empty; an
address the table does not list is refused at RCPT by smtpd."""

import re

import pytest

import mailtest
from mailtest import send
from test_lmtp_dovecot import maildir_messages, start_dovecot_lmtp

DOMAIN = "example.org"


@pytest.fixture
def dovecot_vmail():
    d = start_dovecot_lmtp(users={"alice": "secret1", "bob": "secret2", "dave": "secret3"}, passwd_userdb=True)
    yield d
    d.close()


def start(postern, d, **conf):
    vmaps = postern.etc_dir / "vmailbox"
    # dave has a Dovecot account but no entry in the table: smtpd must not accept mail for him.
    vmaps.write_text(f"alice@{DOMAIN} alice/\nbob@{DOMAIN} bob/\nzoe@{DOMAIN} zoe/\n")
    postern.configure(virtual_mailbox_domains=DOMAIN, virtual_mailbox_maps=f"texthash:{vmaps}",
                      virtual_transport=f"lmtp:unix:{d.lmtp_path}", **conf)
    postern.start()
    return postern


@pytest.fixture
def vpostern(postern, dovecot_vmail):
    return start(postern, dovecot_vmail)


def header(message, name):
    m = re.search(rb"^" + name.encode() + rb": (.*)$", message, re.M)
    return m.group(1).decode().strip() if m else None


@pytest.mark.parametrize("limit", [None, "1"])
def test_virtual_mailboxes_in_dovecot(postern, dovecot_vmail, limit):
    """Two recipients: in one LMTP transaction by default (Dovecot then writes no Delivered-To,
    the message being shared), one transaction each with lmtp_destination_recipient_limit = 1
    (Delivered-To: the recipient, as Dovecot writes it for a single one)."""
    d = dovecot_vmail
    p = start(postern, d, **({"lmtp_destination_recipient_limit": limit} if limit else {}))
    qid = send(p, "sender@remote.example", [f"alice@{DOMAIN}", f"Bob@{DOMAIN}"],
               mailtest.msg("vd-1@test", sender="sender@remote.example", to=f"alice@{DOMAIN}",
                            subject="to dovecot", body="Hello, virtual world.\r\n"))
    relay = re.escape(f"localhost[{d.lmtp_path}]")
    for user in ("alice", "Bob"):
        p.wait_log("smtp", rf"{qid}: to=<{user}@example\.org>, relay={relay}, delay=.*, dsn=2\.0\.0, "
                           rf"status=sent \(250 2\.0\.0 <{user}@example\.org> .* Saved\)", timeout=20)
    p.wait_log("qmgr", rf"{qid}: removed", timeout=20)
    p.wait_queue_empty()
    for user in ("alice", "bob"):
        got = maildir_messages(d, user)
        assert len(got) == 1, (user, d.log())
        m = got[0]
        assert b"Message-ID: <vd-1@test>" in m and b"Hello, virtual world.\n" in m
        # What Dovecot's LMTP server writes at the top of the stored message.
        assert m.startswith(b"Return-Path: <sender@remote.example>\n"), m[:400]
        assert re.search(rb"^Received: from postern\.test\n\s+by \S+ with LMTP", m, re.M), m[:400]
        if limit:
            # the envelope recipient as sent (RCPT TO:<Bob@example.org>)
            assert header(m, "Delivered-To") == {"alice": "alice", "bob": "Bob"}[user] + f"@{DOMAIN}", m[:600]
        else:
            assert header(m, "Delivered-To") is None, m[:600]
        # postern-smtpd's own Received: comes below Dovecot's.
        assert re.search(rb"Received: from .*\n(\s.*\n)*\s+by postern\.test", m), m[:800]


def test_unknown_virtual_user_refused_at_rcpt(vpostern, dovecot_vmail):
    p, d = vpostern, dovecot_vmail
    with p.smtp() as s:
        s.ehlo()
        assert s.mail("sender@remote.example")[0] == 250
        code, text = s.rcpt(f"dave@{DOMAIN}")
        assert code == 550, (code, text)
        assert text.decode() == (f"5.1.1 <dave@{DOMAIN}>: Recipient address rejected: User unknown in "
                                 "virtual mailbox table")
    p.wait_log("smtpd", rf"NOQUEUE: reject: RCPT from .*: 550 5\.1\.1 <dave@example\.org>: Recipient address "
                        r"rejected: User unknown in virtual mailbox table")
    assert maildir_messages(d, "dave") == []
    assert p.queue_count() == 0


def test_listed_user_without_dovecot_account_bounces(vpostern, dovecot_vmail):
    """zoe is in virtual_mailbox_maps but not in Dovecot's passwd-file: Dovecot refuses her at
    RCPT and the message bounces with its words; alice still gets her copy."""
    p, d = vpostern, dovecot_vmail
    qid = send(p, "ptest1@postern.test", [f"zoe@{DOMAIN}", f"alice@{DOMAIN}"], mailtest.msg("vd-2@test"))
    p.wait_log("smtp", rf"{qid}: to=<zoe@example\.org>, relay=.*, dsn=5\.1\.1, status=bounced \(host .* said: "
                       r"550 5\.1\.1 ", timeout=20)
    p.wait_log("smtp", rf"{qid}: to=<alice@example\.org>, .*status=sent", timeout=20)
    p.wait_log("qmgr", rf"{qid}: sender non-delivery notification: ", timeout=20)
    p.wait_mailbox("ptest1", r"<zoe@example\.org>: host .* said: 550 5\.1\.1 ", timeout=20)
    p.wait_queue_empty()
    assert len(maildir_messages(d, "alice")) == 1
    assert maildir_messages(d, "zoe") == []
