"""postern-smtp delivering over LMTP to Dovecot's real LMTP server (dovecot-lmtpd) on a UNIX
socket and on TCP: every recipient's message lands in its Maildir, per-recipient replies reach
the queue and the log, and an unknown user is refused by Dovecot for that recipient only."""

import os
import re
from functools import partial

import pytest

import mailtest
from mailtest import send
from peers import Dovecot
from smtp_peers import free_port


msg = partial(mailtest.msg, to="alice@mail.example", subject="dovecot lmtp",
              body="Hello, Dovecot.\r\n.a dot-stuffed line\r\n")


def start_dovecot_lmtp(ssl_config=None, users=None, passwd_userdb=False):
    """A private Dovecot serving LMTP on a UNIX socket (d.lmtp_path) and on 127.0.0.1:d.lmtp_port,
    delivering into Maildirs under d.maildirs for users (default alice and bob); ssl_config (lines
    replacing "ssl = no") lets it offer STARTTLS; passwd_userdb makes its passwd-file the userdb
    too (peers.PASSWD_USERDB), so only the users listed there have mailboxes. Also used by
    test_lmtp_params.py, test_mailbox_transport.py and test_virtual_dovecot.py."""
    port = free_port()
    d = Dovecot(users=users, extra_config=LMTP_CONF_PLACEHOLDER, passwd_userdb=passwd_userdb)
    conf = d.config_path.read_text().replace(LMTP_CONF_PLACEHOLDER, LMTP_CONF.format(dir=d.dir, port=port))
    conf = conf.replace("protocols =\n", "protocols = lmtp\n", 1)
    if ssl_config:
        conf = conf.replace("ssl = no\n", ssl_config.rstrip("\n") + "\n", 1)
    d.config_path.write_text(conf)
    maildirs = d.dir / "maildirs"
    maildirs.mkdir()
    os.chmod(maildirs, 0o1777)   # the static userdb delivers as nobody
    d.start()
    d.lmtp_path, d.lmtp_port, d.maildirs = d.dir / "lmtp", port, maildirs
    return d


@pytest.fixture
def dovecot_lmtp(tmp_path):
    d = start_dovecot_lmtp()
    yield d
    d.close()


LMTP_CONF_PLACEHOLDER = "# lmtp settings"
LMTP_CONF = """\
postmaster_address = postmaster@postern.test
auth_username_format = %Ln
mail_location = maildir:{dir}/maildirs/%n
service lmtp {{
  unix_listener lmtp {{
    path = {dir}/lmtp
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
"""


def maildir_messages(d, user):
    new = d.maildirs / user / "new"
    return [p.read_bytes() for p in new.iterdir()] if new.exists() else []


def test_dovecot_lmtp_unix_socket(postern, dovecot_lmtp):
    d = dovecot_lmtp
    postern.configure(transport_maps=f"inline:{{ mail.example=lmtp:unix:{d.lmtp_path} }}")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example", "bob@mail.example",
                                                "nosuchuser@mail.example"], msg("dovecot-1@test"))
    relay = re.escape(f"localhost[{d.lmtp_path}]")
    for user in ("alice", "bob"):
        postern.wait_log("smtp", rf"{qid}: to=<{user}@mail\.example>, relay={relay}, .*dsn=2\.0\.0, "
                                 r"status=sent \(250 2\.0\.0 <" + user + r"@mail\.example> ", timeout=20)
    postern.wait_log("smtp", rf"{qid}: to=<nosuchuser@mail\.example>, relay={relay}, .*dsn=5\.1\.1, "
                             r"status=bounced \(host .* said: 550 5\.1\.1 ", timeout=20)
    for user in ("alice", "bob"):
        got = maildir_messages(d, user)
        assert len(got) == 1, (user, d.log())
        assert b"Message-ID: <dovecot-1@test>" in got[0]
        assert b"\n.a dot-stuffed line\n" in got[0]
    assert maildir_messages(d, "nosuchuser") == []


def test_dovecot_lmtp_tcp(postern, dovecot_lmtp):
    d = dovecot_lmtp
    postern.configure(transport_maps=f"inline:{{ mail.example=lmtp:inet:[127.0.0.1]:{d.lmtp_port} }}")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["alice@mail.example"], msg("dovecot-2@test"))
    postern.wait_log("smtp", rf"{qid}: to=<alice@mail\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{d.lmtp_port}, "
                             r".*status=sent", timeout=20)
    assert len(maildir_messages(d, "alice")) == 1
