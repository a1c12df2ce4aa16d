"""mailtest — the messages and SMTP transactions the integration tests share.

msg() builds a test message; send() submits one over SMTP and returns the queue id that
smtpd's "250 2.0.0 Ok: queued as ID" reply names; queue_id() and queued_id() take that id out of
a reply (or a client's output) and fail when it is not there. No tests live here; the test_*.py
modules import it. See README.md in this directory for the API.
"""

import re

QUEUED = re.compile(r"250 2\.0\.0 Ok: queued as ([0-9A-Z]+)")   # smtpd's reply to end of data
QUEUE_ID = re.compile(r"queued as ([0-9A-Z]+)")


def msg(mid, sender="ptest1@postern.test", to="bob@remote.example", subject="test",
        body="Hello.\r\n", extra=""):
    """A test message in CRLF form: From, To, Subject and Message-ID: <mid> headers, then extra
    (more header lines, each ending in CRLF), the empty line and body."""
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{mid}>\r\n{extra}\r\n{body}").encode()


def queue_id(text, whole_reply=False):
    """The queue id in a text holding "queued as ID" (smtplib's reply text, swaks' or sendmail's
    output, a transcript of replies) or, with whole_reply, "250 2.0.0 Ok: queued as ID"; fails when
    there is none."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    m = (QUEUED if whole_reply else QUEUE_ID).search(text)
    assert m, f"no queue id in {text!r}"
    return m.group(1)


def queued_id(reply):
    """The queue id of a reply that must be exactly "250 2.0.0 Ok: queued as ID" (a raw
    client's 'CODE text')."""
    m = QUEUED.fullmatch(reply)
    assert m, reply
    return m.group(1)


def send(postern, sender, rcpts, data, **kw):
    """Sends one message over SMTP with postern.send() (same arguments: rcpts are addresses or
    (address, [RCPT options]) pairs; mail_options, source_address, extension) and returns its
    queue id. Fails unless MAIL, every RCPT and DATA are accepted and the reply to DATA is
    "250 2.0.0 Ok: queued as ID"."""
    code, text = postern.send(sender, rcpts, data, **kw)
    assert code == 250, (code, text)
    return queued_id(f"{code} {text}")
