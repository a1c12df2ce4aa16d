"""postern-smtp, the SMTP client, with qmgr routing to it: relayhost and transport_maps next
hops, delivery to Postfix's smtp-sink (content, CRLF, dot-stuffing, DSN parameters, connection
reuse), per-stage 4xx/5xx answers from aiosmtpd and a scripted server mapped to the queue and to
the sender's bounce, timeouts, SIZE, 8BITMIME, mail loops and unresolvable names."""

import asyncio
import re
import time

import pytest
from aiosmtpd.controller import Controller

from smtp_peers import Scripted, Sink, free_port


def msg(mid, body="Hello.\r\n", extra=""):
    return (f"From: <sender@example.org>\r\nTo: <bob@remote.example>\r\nSubject: relay test\r\n"
            f"Message-ID: <{mid}>\r\n{extra}\r\n{body}").encode()


def queue_id(text):
    m = re.search(r"queued as ([0-9A-Z]+)", text)
    assert m, text
    return m.group(1)


def rcpt_rows(postern, qid):
    return {r[0]: r[1:] for r in postern.queue_rows(
        "SELECT r.address, r.state, r.dsn_status, r.diag FROM recipients r JOIN messages m "
        "ON m.id = r.message_id WHERE m.queue_id = ?", (qid,))}


def wait_rcpt(postern, qid, address, state, timeout=20):
    postern.wait_for(lambda: (rcpt_rows(postern, qid).get(address) or (None,))[0] == state,
                     timeout=timeout, what=f"{address} in state {state}")
    return rcpt_rows(postern, qid)[address]


@pytest.fixture
def sink(postern):
    s = Sink(postern.root / "sink")   # smtp-sink runs as nobody: not under pytest's 0700 tmp
    yield s
    s.stop()


def relay_to(postern, port, host="127.0.0.1", **extra):
    postern.configure(relayhost=f"[{host}]:{port}", **extra)
    postern.start()


def test_relay_to_sink_content_crlf_and_dot_stuffing(postern, sink):
    relay_to(postern, sink.port)
    body = ".leading dot\r\n..two dots\r\n.\r\nmiddle\r\nend\r\n"
    code, text = postern.send("sender@example.org", ["bob@remote.example", "carol@remote.example"],
                              msg("relay-1@test", body))
    assert code == 250
    qid = queue_id(text)
    dumps = sink.wait_count(1)
    assert len(dumps) == 1
    d = dumps[0]
    assert b"Message-ID: <relay-1@test>" in d
    # smtp-sink un-stuffs and stores LF form: without dot-stuffing on the way out, the "." line
    # would have ended the message early and "middle"/"end" would be missing.
    assert b"\n.leading dot\n..two dots\n.\nmiddle\nend\n" in d
    assert b"X-Rcpt-Args: <bob@remote.example>\nX-Rcpt-Args: <carol@remote.example>" in d
    assert b"X-Helo-Args: postern.test\n" in d
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                                 rf"{sink.port}, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/[0-9.]+/[0-9.]+, "
                                 r"dsn=2\.0\.0, status=sent \((250 [^)]*)\)")
    assert "250 2.0.0" in m.group(1)
    postern.wait_log("qmgr", rf"{qid}: removed")
    postern.wait_queue_empty()
