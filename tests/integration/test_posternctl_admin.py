"""The admin's verbs beside the queue control ones: posternctl show (postcat -q), qshape, status
and log against a real queue.db; flush DOMAIN, postern-sendmail -qRsite / -qIid and SMTP ETRN
retrying only the mail of one destination, each delivered to a real relay peer (Postfix's
smtp-sink) through postern-qmgr and postern-smtp, and reviving destinations suspended as dead."""

import re
import sqlite3
import time

import pytest

from postern_harness import qmgr_past_startup_scan
from smtp_peers import Sink, free_port
from test_qmgr_agent import inject, rcpt_rows, wakeup
from test_smtpd_helpers import raw

EX_USAGE = 64
MIN = 60 * 1_000_000


def ctl(postern, *args, user=None):
    return postern.posternctl(*args, user=user)


def start_quiet(postern, **conf):
    """qmgr alone, scanning only on request: injected mail stays as it was written."""
    conf.setdefault("default_transport", "retry:4.3.0 remote delivery is off in this test")
    postern.configure(queue_run_delay="300s", minimal_backoff_time="600s", **conf)
    postern.start("qmgr")
    qmgr_past_startup_scan(postern)


def set_rows(postern, qid, state, next_attempt=0, diag=None, hold=None, arrival=None):
    con = sqlite3.connect(str(postern.queue_dir / "queue.db"), timeout=10)
    try:
        with con:
            mid = con.execute("SELECT id FROM messages WHERE queue_id = ?", (qid,)).fetchone()[0]
            con.execute("UPDATE recipients SET state = ?, next_attempt_usec = ?, diag = ?, attempts = ?"
                        " WHERE message_id = ?", (state, next_attempt, diag, 1 if state else 0, mid))
            if hold is not None:
                con.execute("UPDATE messages SET hold = ? WHERE id = ?", (int(hold), mid))
            if arrival is not None:
                con.execute("UPDATE messages SET arrival_usec = ? WHERE id = ?", (arrival, mid))
    finally:
        con.close()


# --- show -----------------------------------------------------------------------------------

def test_show_prints_envelope_header_and_body_like_postcat(postern):
    start_quiet(postern)
    body = "Subject: hello\r\nFrom: <alice@example.org>\r\n\r\nfirst line\r\nsecond line\r\n"
    qid = inject(postern, "alice@example.org", ["bob@remote.example", "carol@remote.example"], body=body)
    set_rows(postern, qid, 1, next_attempt=int((time.time() + 600) * 1e6), diag="connect to x: refused")
    r = ctl(postern, "show", qid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"*** ENVELOPE RECORDS {qid} ***\nmessage_size: {len(body)}\n")
    assert "\nsender: alice@example.org\nnamed_attribute: protocol_name=ESMTP\n" in r.stdout
    assert ("recipient: bob@remote.example\n"
            "recipient_status: deferred attempts=1 (connect to x: refused)\n") in r.stdout
    assert r.stdout.endswith(f"*** MESSAGE CONTENTS {qid} ***\nSubject: hello\nFrom: <alice@example.org>\n\n"
                             f"first line\nsecond line\n*** MESSAGE FILE END {qid} ***\n")

    h = ctl(postern, "show", "-h", qid)
    assert h.stdout == (f"*** MESSAGE CONTENTS {qid} ***\nSubject: hello\nFrom: <alice@example.org>\n\n"
                        f"*** MESSAGE FILE END {qid} ***\n")
    b = ctl(postern, "show", "-b", qid)
    assert b.stdout == f"*** MESSAGE CONTENTS {qid} ***\nfirst line\nsecond line\n*** MESSAGE FILE END {qid} ***\n"
    e = ctl(postern, "show", "-e", qid)
    assert "MESSAGE CONTENTS" not in e.stdout and "recipient: carol@remote.example" in e.stdout
    # a held message as posternctl queue shows it ("!") is found too
    set_rows(postern, qid, 1, hold=True)
    assert "hold: yes\n" in ctl(postern, "show", "-e", qid + "!").stdout


def test_show_refuses_unknown_and_invalid_ids(postern):
    start_quiet(postern)
    r = ctl(postern, "show", "ABCDEFGH1234")
    assert (r.returncode, r.stdout) == (1, "")
    assert "ABCDEFGH1234: no such message in the queue" in r.stderr
    r = ctl(postern, "show", "../etc/passwd")
    assert r.returncode == EX_USAGE and "is not a queue id" in r.stderr
    assert ctl(postern, "show").returncode == EX_USAGE


def test_show_needs_read_access_to_the_queue(postern, local_users):
    start_quiet(postern)
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    r = ctl(postern, "show", qid, user="ptest1")
    assert r.returncode == 77 and "cannot open the queue" in r.stderr and "run as root or as postern" in r.stderr


# --- qshape ----------------------------------------------------------------------------------

def qshape_rows(out):
    lines = out.splitlines()
    assert lines[0].split() == ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+"]
    return {l.split()[0]: [int(x) for x in l.split()[1:]] for l in lines[1:]}


def test_qshape_counts_recipients_by_domain_and_age(postern):
    start_quiet(postern)
    now = int(time.time() * 1e6)
    later = now + 600 * 1_000_000
    a = inject(postern, "alice@example.org", ["x@a.example", "y@A.example", "z@b.example"])
    set_rows(postern, a, 1, next_attempt=later, arrival=now - 30 * MIN)                 # deferred, 20-40
    b = inject(postern, "", ["x@a.example"])
    set_rows(postern, b, 1, next_attempt=later, arrival=now - 2000 * MIN)               # deferred, 1280+
    c = inject(postern, "carol@c.example", ["x@b.example"])                             # incoming, < 5
    d = inject(postern, "dave@c.example", ["x@b.example"])
    set_rows(postern, d, 1, next_attempt=later, hold=True, arrival=now - 7 * MIN)       # hold, 5-10

    r = ctl(postern, "qshape", "deferred")
    assert r.returncode == 0, r.stderr
    rows = qshape_rows(r.stdout)
    assert rows == {"TOTAL": [4, 0, 0, 0, 3, 0, 0, 0, 0, 0, 1],
                    "a.example": [3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1],
                    "b.example": [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]}
    assert list(rows) == ["TOTAL", "a.example", "b.example"]   # largest first
    # -s: messages by sender domain (the null sender is MAILER-DAEMON)
    rows = qshape_rows(ctl(postern, "qshape", "-s", "deferred").stdout)
    assert rows == {"TOTAL": [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
                    "MAILER-DAEMON": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    "example.org": [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]}
    # default: incoming and active (qshape's default); hold on its own
    assert qshape_rows(ctl(postern, "qshape").stdout) == {"TOTAL": [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                                                          "b.example": [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
    assert qshape_rows(ctl(postern, "qshape", "hold", "-s").stdout)["c.example"] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    # -n 1: the top domain only
    assert list(qshape_rows(ctl(postern, "qshape", "-n", "1", "deferred").stdout)) == ["TOTAL", "a.example"]
    r = ctl(postern, "qshape", "maildrop")
    assert r.returncode == EX_USAGE and 'unknown queue "maildrop"' in r.stderr
    assert c


def test_qshape_of_an_empty_queue(postern):
    start_quiet(postern)
    rows = qshape_rows(ctl(postern, "qshape", "deferred").stdout)
    assert rows == {"TOTAL": [0] * 11}


# --- status ----------------------------------------------------------------------------------

def test_status_shows_units_counts_and_top_deferral_reasons(postern):
    start_quiet(postern)
    later = int((time.time() + 600) * 1e6)
    for i in range(3):
        set_rows(postern, inject(postern, "a@example.org", [f"r{i}@x.example"]), 1, next_attempt=later,
                 diag="connect to mx.x.example[192.0.2.1]:25: Connection refused")
    set_rows(postern, inject(postern, "a@example.org", ["s@y.example"]), 1, next_attempt=later,
             diag="host mx.y.example said: 451 4.7.1 greylisted")
    held = inject(postern, "a@example.org", ["h@y.example"])
    set_rows(postern, held, 0, hold=True)
    inject(postern, "a@example.org", ["n@z.example"])
    r = ctl(postern, "status")
    assert r.returncode == 0, r.stderr
    # this test machine runs no systemd: the unit part says so
    assert r.stdout.startswith("Units:\n  not under systemd")
    assert "Queue: 6 messages (" in r.stdout and "KiB), 1 on hold\n" in r.stdout
    assert "  recipients: 1 incoming, 0 active, 4 deferred, 1 on hold\n" in r.stdout
    assert r.stdout.endswith("Top deferral reasons:\n"
                             "       3  connect to mx.x.example[192.0.2.1]:25: Connection refused\n"
                             "       1  host mx.y.example said: 451 4.7.1 greylisted\n")


# --- log -------------------------------------------------------------------------------------

def test_log_without_a_journal_says_where_the_lines_went(postern, tmp_path):
    start_quiet(postern)
    qid = inject(postern, "alice@example.org", ["bob@remote.example"])
    r = ctl(postern, "log", qid)
    assert r.returncode == 1 and r.stdout == ""
    assert "no journal on this system" in r.stderr and qid in r.stderr
    # journal files of another machine (journalctl -D): none names the message
    r = ctl(postern, "log", "-D", str(tmp_path), qid)
    assert r.returncode == 1 and f"no journal entry names {qid}" in r.stderr
    assert ctl(postern, "log", "not/an/id").returncode == EX_USAGE


# --- flush DOMAIN, sendmail -qR / -qI, ETRN --------------------------------------------------

@pytest.fixture
def relay(postern):
    """qmgr and smtp with a.example, b.example and c.example routed to three loopback ports where
    nothing listens yet: their mail is deferred and the destinations suspended for 300 s. Yields
    (ports, {domain: queue id}); start_sink(domain) brings a domain's smtp-sink up."""
    ports = {d: free_port() for d in ("a.example", "b.example", "c.example")}
    maps = ", ".join(f"{d}=smtp:[127.0.0.1]:{p}" for d, p in ports.items())
    postern.configure(transport_maps=f"inline:{{ {maps} }}", queue_run_delay="300s",
                      minimal_backoff_time="300s", maximal_backoff_time="600s",
                      initial_destination_concurrency="1", relay_domains="a.example, b.example")
    postern.start("qmgr", "smtp")
    qmgr_past_startup_scan(postern)
    ids = {d: inject(postern, "alice@example.org", [f"x@{d}"]) for d in ports}
    wakeup(postern)
    for d, qid in ids.items():
        postern.wait_for(lambda: rcpt_rows(postern, qid)[0][1] == 1, timeout=15, what=f"{d} deferred")
        postern.wait_log("qmgr", rf"delivery to \[127\.0\.0\.1\]:{ports[d]} suspended for 300 s")
    sinks = []

    def start_sink(domain):
        s = Sink(postern.root / domain, port=ports[domain])
        sinks.append(s)
        return s
    yield ids, start_sink
    for s in sinks:
        s.stop()


def still_deferred(postern, qid):
    row = rcpt_rows(postern, qid)[0]
    return row[1] == 1 and row[2] == 1 and row[3] > time.time() * 1e6


def test_flush_domain_retries_only_that_domain_and_revives_it(postern, relay):
    ids, start_sink = relay
    a, b = start_sink("a.example"), start_sink("b.example")
    r = ctl(postern, "flush", "A.example")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "posternctl: flush of A.example requested: 1 deferred recipient is being retried now\n"
    postern.wait_log("qmgr", r"flush of A\.example requested by uid 0: 1 deferred recipient\(s\) due now")
    # a.example was suspended as dead: the flush revives it, so the mail goes out at once
    postern.wait_log("qmgr", r"flush: \d suspended destination\(s\) may be tried again")
    a.wait_count(1)
    postern.wait_log("qmgr", rf"{ids['a.example']}: removed")   # smtp-sink wrote it before its 250
    assert f"Message-ID: <{ids['a.example']}@client.test>".encode() in a.messages()[0]
    # b.example's mail was not touched: still deferred, one attempt, retry in the future
    assert still_deferred(postern, ids["b.example"]) and still_deferred(postern, ids["c.example"])
    assert b.messages() == []

    # what is not a domain is refused by qmgr, whoever asks
    r = ctl(postern, "flush", "bad..domain")
    assert r.returncode == 1 and "invalid site: expected a domain name or [address]" in r.stderr
    r = postern.sendmail(["-qR", "-x-"], check=False)
    assert r.returncode != 0 and b"invalid site" in r.stderr

    # postern-sendmail -qRsite (postqueue -s): the same for b.example, as an ordinary user
    postern.sendmail(["-qRb.example"], user="ptest1")
    b.wait_count(1)
    postern.wait_log("qmgr", rf"{ids['b.example']}: removed")
    assert still_deferred(postern, ids["c.example"])


def test_sendmail_qI_retries_one_message(postern, relay, local_users):
    ids, start_sink = relay
    c = start_sink("c.example")
    postern.sendmail([f"-qI{ids['c.example']}"], user="ptest1")
    c.wait_count(1)
    postern.wait_log("qmgr", rf"{ids['c.example']}: removed")
    assert still_deferred(postern, ids["a.example"])
    r = postern.sendmail(["-qIABCDEFGH1234"], check=False)
    assert r.returncode != 0 and b"no such message in the queue" in r.stderr


def test_etrn_flushes_one_domain_with_postfix_replies(postern, relay):
    ids, start_sink = relay
    a, b = start_sink("a.example"), start_sink("b.example")
    postern.start("smtpd")
    with raw(postern) as c:
        assert c.cmd("ETRN a.example") == "503 5.5.1 Error: send HELO/EHLO first"
        c.send("EHLO client.test\r\n")
        code, lines = c.reply()
        assert code == 250 and "ETRN" in lines
        assert c.cmd("ETRN") == "501 5.5.4 Syntax: ETRN domain"
        assert c.cmd("ETRN a.example b.example") == "501 5.5.4 Syntax: ETRN domain"
        assert c.cmd("ETRN #queue") == "458 4.3.0 Unable to queue messages"
        assert c.cmd("ETRN bad..domain") == "501 5.1.2 Error: invalid parameter syntax"
        # fast_flush_domains = $relay_domains: c.example is not in it
        assert c.cmd("ETRN c.example") == "459 4.3.0 <c.example>: service unavailable"
        assert c.cmd("MAIL FROM:<x@client.test>") == "250 2.1.0 Ok"
        assert c.cmd("ETRN a.example") == "503 5.5.1 Error: MAIL transaction in progress"
        assert c.cmd("RSET").startswith("250")
        assert c.cmd("ETRN a.example") == "250 Queuing started"
    a.wait_count(1)
    postern.wait_log("qmgr", rf"{ids['a.example']}: removed")
    postern.wait_log("smtpd", r"ETRN a\.example from .*: queuing started")
    assert still_deferred(postern, ids["b.example"]) and still_deferred(postern, ids["c.example"])
    assert b.messages() == []


def test_etrn_restrictions_and_an_unreachable_qmgr(postern, relay):
    ids, start_sink = relay
    postern.configure(smtpd_etrn_restrictions="check_client_access inline:{ {127.0.0.2=REJECT no ETRN here} }")
    postern.start("smtpd")
    with raw(postern, source="127.0.0.2") as c:
        c.cmd("EHLO client.test")
        reply = c.cmd("ETRN a.example")
        assert reply.startswith("554 5.7.1 ") and reply.endswith(" no ETRN here"), reply
    assert still_deferred(postern, ids["a.example"])
    postern.wait_log("smtpd", r"NOQUEUE: reject: ETRN from localhost\[127\.0\.0\.2\]: 554 5\.7\.1 "
                              r"<localhost\[127\.0\.0\.2\]>: Client host rejected: no ETRN here")
    # qmgr cannot be reached (its socket is gone): 458, and the session goes on
    (postern.socket_dir / "qmgr").unlink()
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("ETRN a.example") == "458 4.3.0 Unable to queue messages"
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
    postern.wait_log("smtpd", r"ETRN a\.example from .*: the queue manager at .*qmgr cannot be reached")


def test_etrn_asks_a_policy_service_with_etrn_domain(postern, tmp_path):
    from test_smtpd_helpers import ScriptedPolicy
    srv = ScriptedPolicy(tmp_path, ["action=REJECT not now", "action=DUNNO"])
    postern.configure(smtpd_etrn_restrictions=f"check_policy_service {srv.service}",
                      smtpd_policy_service_retry_delay="0s", relay_domains="a.example")
    postern.start("qmgr", "smtpd")
    with raw(postern) as c:
        c.cmd("EHLO client.test")
        assert c.cmd("ETRN a.example") == "554 5.7.1 <a.example>: Etrn command rejected: not now"
        assert c.cmd("ETRN A.Example") == "250 Queuing started"
    r = srv.requests[0]
    assert (r["protocol_state"], r["etrn_domain"], r["recipient"]) == ("ETRN", "a.example", "")
    postern.wait_log("qmgr", r"flush of a\.example requested by uid \d+: 0 deferred recipient\(s\) due now")
