"""The milter client of postern-smtpd (smtpd-milter.c, smtpd-milter-edit.c) against the scripted
milter of milter_peer.py: the stages and macros a milter receives, negotiation (steps skipped,
steps not answered, the milter's own macro lists), every action and edit, default actions for a
milter that is down, slow, hangs up or talks out of protocol, and that no message is lost or
queued twice. Only smtpd runs: what was accepted stays in the queue to be looked at."""

import base64
import smtplib
import socket
import struct

import pytest

from milter_peer import ScriptedMilter, header, packet, replycode, strings, wait_for
from test_smtpd_helpers import content_of, free_port, queue_ids, raw


def start(postern, milter_spec, **conf):
    settings = dict(mydestination="localhost, postern.test", mynetworks="127.0.0.0/8",
                    smtpd_milters=milter_spec, milter_content_timeout="5s",
                    milter_command_timeout="5s", milter_connect_timeout="5s")
    settings.update(conf)
    postern.configure(**settings)
    postern.start("smtpd")


MESSAGE = b"From: a@example.org\r\nTo: ptest1@localhost\r\nSubject: hello\r\n\r\nline one\r\nline two\r\n"


def send(postern, rcpts=("ptest1@localhost",), msg=MESSAGE, sender="a@example.org"):
    """One transaction; returns (replies of RCPT, reply of DATA) as (code, text)."""
    with postern.smtp() as s:
        s.ehlo("client.test")
        code, text = s.mail(sender)
        if code != 250:
            return [(code, text.decode())], None
        rr = [s.rcpt(r) for r in rcpts]
        out = [(c, t.decode()) for c, t in rr]
        if not any(c == 250 for c, _ in rr):
            return out, None
        try:
            c, t = s.data(msg)
        except smtplib.SMTPDataError as e:
            c, t = e.smtp_code, e.smtp_error
        return out, (c, t.decode())


def rows(postern):
    return postern.queue_rows("SELECT queue_id, sender, hold FROM messages ORDER BY id")


def recipients(postern, queue_id):
    return [r[0] for r in postern.queue_rows(
        "SELECT r.address FROM recipients r JOIN messages m ON m.id = r.message_id WHERE m.queue_id = ? "
        "ORDER BY r.id", (queue_id,))]


def test_stages_macros_and_content(postern):
    m = ScriptedMilter()
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == 250
    [qid] = queue_ids(postern)
    assert m.cmds() == "OCHMRTLLLLNBE"
    version, actions, protocol = m.offered
    assert (version, actions, protocol) == (6, 0x1FF, 0x1FFFFF)
    conn = strings(m.data_of("C")[0][:m.data_of("C")[0].index(b"\0") + 1])[0]
    assert conn == "localhost"
    c = m.data_of("C")[0]
    assert c[c.index(b"\0") + 1:c.index(b"\0") + 2] == b"4"
    assert c.endswith(b"127.0.0.1\0")
    assert strings(m.data_of("H")[0]) == ["client.test"]
    assert strings(m.data_of("M")[0]) == ["<a@example.org>"]
    assert strings(m.data_of("R")[0]) == ["<ptest1@localhost>"]
    headers = [strings(h) for h in m.data_of("L")]
    assert headers[0][0] == "Received"            # ours, first, as Postfix sends it
    assert headers[1:] == [["From", "a@example.org"], ["To", "ptest1@localhost"], ["Subject", "hello"]]
    assert b"".join(m.data_of("B")) == b"line one\r\nline two\r\n"
    mc = m.macros
    assert mc["C"]["j"] == "mail.postern.test" or mc["C"]["j"]
    assert mc["C"]["{daemon_name}"] == mc["C"]["j"]
    assert mc["C"]["v"].startswith("Postern")
    assert mc["C"]["{daemon_addr}"] == "127.0.0.1"
    assert mc["C"]["_"] == "localhost [127.0.0.1]"
    assert mc["M"]["{mail_addr}"] == "a@example.org"
    assert mc["M"]["{mail_host}"] == "example.org"
    assert mc["R"]["{rcpt_addr}"] == "ptest1@localhost"
    assert mc["R"]["{rcpt_host}"] == "localhost"
    assert "i" not in mc["M"]          # the queue id comes with the first accepted recipient
    assert mc["E"]["i"] == qid
    assert mc["T"]["i"] == qid
    assert "Subject: hello" in content_of(postern, qid)


def test_reject_at_rcpt_with_replycode(postern):
    m = ScriptedMilter(script={"R": lambda ml, d: [replycode("550 5.7.1 not this one")]
                               if b"ptest1" in d else None})
    start(postern, m.spec)
    rc, dc = send(postern, rcpts=("ptest1@localhost", "ptest2@localhost"))
    assert rc[0] == (550, "5.7.1 not this one")
    assert rc[1][0] == 250
    assert dc[0] == 250
    [qid] = queue_ids(postern)
    assert recipients(postern, qid) == ["ptest2@localhost"]
    postern.wait_log("smtpd", r"milter-reject: RCPT from localhost\[127\.0\.0\.1\]: 550 5\.7\.1 not this one; "
                     r"from=<a@example\.org> to=<ptest1@localhost> proto=ESMTP helo=<client\.test>")


def test_multiline_replycode_and_tempfail(postern):
    m = ScriptedMilter(script={"M": [replycode("451-4.7.1 first\r\n451 4.7.1 second")]})
    start(postern, m.spec)
    with postern.smtp() as s:
        s.ehlo("client.test")
        code, text = s.mail("a@example.org")
        assert code == 451
        assert text.decode() == "4.7.1 first\n4.7.1 second"
        assert s.rset()[0] == 250
    assert queue_ids(postern) == []


@pytest.mark.parametrize("cmd,code", [("r", 550), ("t", 451)])
def test_reject_and_tempfail_at_end_of_message(postern, cmd, code):
    m = ScriptedMilter(script={"E": [(cmd, b"")]})
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == code
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: %d " % code)


def test_edits_applied_before_commit(postern):
    edits = [("h", header("X-Added", "yes")),
             ("i", struct.pack(">I", 0) + header("X-Top", "first")),
             ("m", struct.pack(">I", 1) + header("Subject", "changed")),
             ("m", struct.pack(">I", 1) + header("To", "")),
             ("+", b"<ptest2@localhost>\0"),
             ("2", b"<ptest3@localhost>\0NOTIFY=NEVER\0"),
             ("-", b"<ptest1@localhost>\0"),
             ("e", b"<new-sender@example.org>\0"),
             ("b", b"new body\r\n"),
             ("c", b"")]
    m = ScriptedMilter(script={"E": edits})
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == 250
    [(qid, sender, hold)] = rows(postern)
    assert sender == "new-sender@example.org"
    assert recipients(postern, qid) == ["ptest2@localhost", "ptest3@localhost"]
    notify = postern.queue_rows("SELECT r.notify FROM recipients r WHERE r.address = 'ptest3@localhost'")
    assert notify[0][0] != 0
    text = content_of(postern, qid)
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == "X-Top: first"
    assert lines[1].startswith("Received: ")
    assert "Subject: changed" in lines
    assert not any(l.startswith("To:") for l in lines)
    assert lines[-1] == "X-Added: yes"
    assert body == "new body\n"


def test_discard_and_quarantine(postern):
    m = ScriptedMilter(script={"E": lambda ml, d: [("d", b"")] if len(ml.data_of("E")) == 1
                               else [("q", b"looks odd\0"), ("c", b"")]})
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == 250            # discarded: the client is told it was queued
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"milter-discard: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: milter triggers "
                     r"DISCARD action; from=<a@example\.org>")
    rc, dc = send(postern)
    assert dc[0] == 250
    [(qid, sender, hold)] = rows(postern)
    assert hold == 1
    postern.wait_log("smtpd", r"%s: milter-hold: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: milter "
                     r"triggers HOLD action" % qid)


def test_accept_skips_the_rest_of_the_transaction(postern):
    m = ScriptedMilter(script={"M": [("a", b"")]})
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == 250
    assert m.cmds() == "OCHM"
    assert len(queue_ids(postern)) == 1


def test_negotiated_steps_skipped_and_not_awaited(postern):
    # NOHELO, NOHDRS, NOBODY: not sent; NR_RCPT, NR_MAIL: sent, not answered (the milter's
    # script would hang if asked).
    m = ScriptedMilter(protocol=0x2 | 0x20 | 0x10 | 0x8000 | 0x4000,
                       script={"R": "hang", "M": "hang"},
                       symlist={2: "{mail_addr} {auth_type}", 5: "i {rcpt_addr}"})
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == 250
    assert m.cmds() == "OCMRTNE"
    assert set(m.macros["M"]) == {"{mail_addr}"}      # its own list ({auth_type} has no value)
    assert set(m.macros["E"]) == {"i"}
    assert len(queue_ids(postern)) == 1


def test_unknown_command_goes_to_the_milter(postern):
    m = ScriptedMilter(script={"U": [replycode("502 5.5.1 not here")]})
    start(postern, m.spec)
    with postern.smtp() as s:
        s.ehlo("client.test")
        code, text = s.docmd("FROB", "x y")
        assert (code, text.decode()) == (502, "5.5.1 not here")
    assert strings(m.data_of("U")[0]) == ["FROB x y"]


@pytest.mark.parametrize("action,ehlo_code,queued,hold", [
    ("accept", 250, 1, 0), ("tempfail", 451, 0, 0), ("reject", 550, 0, 0), ("quarantine", 250, 1, 1)])
def test_default_action_milter_down(postern, action, ehlo_code, queued, hold):
    spec = "inet:127.0.0.1:%d" % free_port()    # nothing listens there
    start(postern, spec, milter_default_action=action)
    with postern.smtp() as c:
        assert c.ehlo("client.test")[0] == ehlo_code
    if ehlo_code == 250:
        rc, dc = send(postern)
        assert dc[0] == 250
    assert len(queue_ids(postern)) == queued
    if queued:
        assert rows(postern)[0][2] == hold
    postern.wait_log("smtpd", r"milter %s: cannot connect: Connection refused .*default_action=%s" % (spec, action))


def test_shutdown_default_action_closes(postern):
    spec = "inet:127.0.0.1:%d" % free_port()
    start(postern, "{ %s, default_action=shutdown }" % spec)
    s = smtplib.SMTP(timeout=10)
    code, text = s.connect("127.0.0.1", postern.smtp_port)
    assert (code, text.decode()) == (421, "4.7.0 Server closing connection")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        s.ehlo("client.test")


def test_content_timeout_tempfails_and_nothing_is_queued(postern):
    m = ScriptedMilter(script={"E": "hang"})
    start(postern, m.spec, milter_content_timeout="1s")
    rc, dc = send(postern)
    assert dc[0] == 451
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"milter %s: timeout while waiting for a reply \(end-of-message stage" % m.spec)
    # the failed milter answers its default action for the rest of the session only
    m2_rc, m2_dc = send(postern)
    assert m2_dc[0] == 451


@pytest.mark.parametrize("bad,why", [
    (struct.pack(">I", 0x7FFFFFF0) + b"c", "exceeds the limit"),
    (packet("y", b"250 2.0.0 fine\0"), "is not a 4xx or 5xx reply"),
    (packet("z"), "unknown reply command 'z'"),
    (packet("h", b"X-A\0v\0"), "addheader reply before the end of the message"),
    (struct.pack(">I", 0) + b"c", "length 0"),
])
def test_malformed_replies_use_the_default_action(postern, bad, why):
    m = ScriptedMilter(script={"R": [bad]})
    start(postern, "{ %s, default_action=accept }" % m.spec)
    rc, dc = send(postern)
    assert rc[0][0] == 250 and dc[0] == 250       # accept: on without the milter
    assert len(queue_ids(postern)) == 1
    postern.wait_log("smtpd", r"milter %s: .*%s" % (m.spec, why.replace("(", r"\(").replace(")", r"\)")))
    assert postern.running("smtpd")


def test_bad_negotiation(postern):
    m = ScriptedMilter(negotiate=packet("O", struct.pack(">III", 6, 0x1FF, 0x4000000)))
    start(postern, m.spec)
    with postern.smtp() as c:
        assert c.ehlo("client.test")[0] == 451    # tempfail, the default
    postern.wait_log("smtpd", r"milter %s: milter asks for protocol steps 0x4000000 that were not offered" % m.spec)


def test_hangup_mid_message_nothing_lost_or_doubled(postern):
    m = ScriptedMilter(script={"B": "close"})
    start(postern, "{ %s, default_action=tempfail }" % m.spec)
    rc, dc = send(postern)
    assert dc[0] == 451
    assert queue_ids(postern) == []
    postern.wait_log("smtpd", r"connection closed by the milter")
    # with accept the same hang-up lets the message through, exactly once
    m2 = ScriptedMilter(script={"B": "close"})
    postern.configure(smtpd_milters="{ %s, default_action=accept }" % m2.spec)
    postern.reload("smtpd")
    postern.wait_log("smtpd", r"settings snapshot", count=2)
    rc, dc = send(postern)
    assert dc[0] == 250
    assert len(queue_ids(postern)) == 1


def test_two_milters_in_order_and_per_listener_override(postern):
    a = ScriptedMilter(script={"E": [("h", header("X-First", "a")), ("c", b"")]})
    b = ScriptedMilter(script={"E": [("h", header("X-Second", "b")), ("c", b"")]})
    start(postern, "%s, %s" % (a.spec, b.spec), **{"submission/smtpd_milters": ""})
    rc, dc = send(postern)
    assert dc[0] == 250
    [qid] = queue_ids(postern)
    text = content_of(postern, qid)
    assert text.index("X-First: a") < text.index("X-Second: b")
    # the submission listener has none
    with smtplib.SMTP("127.0.0.1", postern.submission_port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("a@example.org", ["ptest1@localhost"], MESSAGE)
    assert a.connections == 1 and b.connections == 1


def test_non_smtpd_milters_for_the_submit_socket(postern):
    m = ScriptedMilter(script={"E": [("h", header("X-Local", "signed")), ("c", b"")]})
    start(postern, "", non_smtpd_milters=m.spec)
    postern.sendmail(["-f", "ptest1@localhost", "ptest2@localhost"], input=b"Subject: local\n\nhi\n",
                     user="ptest1")
    assert wait_for(lambda: len(queue_ids(postern)) == 1)
    [qid] = queue_ids(postern)
    assert "X-Local: signed" in content_of(postern, qid)
    c = m.data_of("C")[0]
    assert c.startswith(b"localhost\0" + b"4")
    assert m.macros["C"]["_"] == "localhost [127.0.0.1]"


def test_smtpd_milter_maps_disable(postern, tmp_path):
    m = ScriptedMilter()
    maps = tmp_path / "milter_maps"
    maps.write_text("127.0.0.1 DISABLE\n")
    start(postern, m.spec, smtpd_milter_maps="texthash:%s" % maps)
    rc, dc = send(postern)
    assert dc[0] == 250
    assert m.connections == 0


def test_milter_host_name_resolved_at_start(postern, dns_zone):
    m = ScriptedMilter(script={"E": [("h", header("X-Named", "yes")), ("c", b"")]})
    dns_zone.host("milter.postern.test", "127.0.0.1")
    dns_zone.apply()
    port = m.spec.rsplit(":", 1)[1]
    start(postern, "inet:milter.postern.test:%s, inet:nosuch.invalid:%s" % (port, port),
          milter_default_action="accept")
    postern.wait_log("smtpd", r'smtpd_milters: milter inet:nosuch\.invalid:%s: cannot resolve "nosuch\.invalid"' % port)
    rc, dc = send(postern)
    assert dc[0] == 250
    [qid] = queue_ids(postern)
    assert "X-Named: yes" in content_of(postern, qid)


def test_header_value_line_breaks_are_folded(postern):
    m = ScriptedMilter(script={"E": [("h", header("X-Multi", "one\r\nBcc: evil@example.org")), ("c", b"")]})
    start(postern, m.spec)
    rc, dc = send(postern)
    assert dc[0] == 250
    [qid] = queue_ids(postern)
    text = content_of(postern, qid)
    assert "X-Multi: one\n\tBcc: evil@example.org\n" in text
    assert "\nBcc:" not in text


def test_progress_extends_the_content_timeout(postern):
    m = ScriptedMilter(script={"E": [("p", b""), 0.7, ("p", b""), 0.7, ("c", b"")]})
    start(postern, m.spec, milter_content_timeout="1s")
    rc, dc = send(postern)
    assert dc[0] == 250             # 1.4 s in all, never 1 s without a sign of life
    assert len(queue_ids(postern)) == 1


@pytest.mark.parametrize("stage", ["C", "H"])
def test_refusal_at_connect_and_helo(postern, stage):
    m = ScriptedMilter(script={stage: [replycode("554 5.7.1 go away")]})
    start(postern, m.spec)
    with postern.smtp() as s:
        code, text = s.ehlo("client.test")
        assert (code, text.decode()) == (554, "5.7.1 go away")
        # a refusal at connect answers every command; after a refused EHLO the client may go on
        assert s.mail("a@example.org")[0] == (554 if stage == "C" else 250)
    what = "CONNECT" if stage == "C" else "EHLO"
    postern.wait_log("smtpd", r"NOQUEUE: milter-reject: %s from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 go away" % what)
    assert queue_ids(postern) == []


def test_abort_after_rset_and_quit_at_the_end(postern):
    m = ScriptedMilter()
    start(postern, m.spec)
    with postern.smtp() as s:
        s.ehlo("client.test")
        assert s.mail("a@example.org")[0] == 250
        assert s.rcpt("ptest1@localhost")[0] == 250
        assert s.rset()[0] == 250
        assert s.mail("b@example.org")[0] == 250
    assert wait_for(lambda: [c for _, c, _ in m.events if c in "AQ"] == ["A", "Q"])
    assert m.cmds() == "OCHMRM"


def test_slow_milter_does_not_stall_other_sessions(postern):
    import threading
    import time
    release = threading.Event()

    def eom(ml, data):
        if len(ml.data_of("E")) == 1:
            release.wait(20)        # the first message's milter answers only when told
        return [("c", b"")]
    m = ScriptedMilter(script={"E": eom})
    start(postern, m.spec, milter_content_timeout="30s")
    results = {}
    t = threading.Thread(target=lambda: results.setdefault("slow", send(postern)))
    t.start()
    assert wait_for(lambda: len(m.data_of("E")) == 1)
    t0 = time.monotonic()
    rc, dc = send(postern)                  # a second session meanwhile
    assert dc[0] == 250 and time.monotonic() - t0 < 10
    assert "slow" not in results            # the first still waits for its milter
    release.set()
    t.join(20)
    assert results["slow"][1][0] == 250
    assert len(queue_ids(postern)) == 2


def test_pipelined_commands_after_the_message_wait_for_the_commit(postern):
    """The end-of-message stage ends inside the milter's answer; the commit must still come before
    the replies to what the client pipelined after the final dot (and QUIT must not free the
    session under a pending commit)."""
    m = ScriptedMilter()
    start(postern, m.spec)
    sock = socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10)
    f = sock.makefile("rb")

    def reply():
        """One whole reply (its last line)."""
        while True:
            line = f.readline()
            assert line, "connection closed"
            if line[3:4] != b"-":
                return line
    assert reply().startswith(b"220")
    sock.sendall(b"EHLO client.test\r\n")
    assert reply().startswith(b"250")
    sock.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\nDATA\r\n")
    assert [reply()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    sock.sendall(MESSAGE + b".\r\nRSET\r\nQUIT\r\n")
    replies = [f.readline() for _ in range(3)]
    assert replies[0].startswith(b"250 2.0.0 Ok: queued as "), replies
    assert replies[1:] == [b"250 2.0.0 Ok\r\n", b"221 2.0.0 Bye\r\n"], replies
    sock.close()
    assert len(queue_ids(postern)) == 1


def test_milter_header_checks_act_on_the_headers_milters_add_only(postern, tmp_path):
    checks = tmp_path / "milter_header_checks"
    checks.write_text("/^X-Spam-Flag: YES/ HOLD spam says the milter\n"
                      "/^X-Redirect-Me:/ REDIRECT ptest9@localhost\n"
                      "/^X-Drop:/ DISCARD dropped by milter_header_checks\n"
                      "/^X-Reject:/ REJECT not an action for milter headers\n"
                      "/^X-Warn:/ WARN seen it\n"
                      "/^Subject: hello/ HOLD the message's own headers are not checked\n")
    per_message = [[("h", header("X-Spam-Flag", "YES"))],
                   [("h", header("X-Redirect-Me", "1"))],
                   [("m", struct.pack(">I", 1) + header("X-Drop", "now"))],
                   [("h", header("X-Reject", "1")), ("h", header("X-Warn", "1"))]]
    m = ScriptedMilter(script={"E": lambda ml, d: per_message[len(ml.data_of("E")) - 1] + [("c", b"")]})
    start(postern, m.spec, milter_header_checks=f"regexp:{checks}")

    assert send(postern)[1][0] == 250
    [(qid, _, hold)] = rows(postern)
    assert hold == 1
    postern.wait_log("smtpd", r"%s: hold: header X-Spam-Flag: YES from localhost\[127\.0\.0\.1\]; "
                     r"from=<a@example\.org> to=<ptest1@localhost> proto=ESMTP helo=<client\.test>: spam says"
                     % qid)

    assert send(postern)[1][0] == 250
    qid2 = [q for q, _, _ in rows(postern) if q != qid][0]
    assert recipients(postern, qid2) == ["ptest9@localhost"]

    assert send(postern)[1][0] == 250          # discarded: told it was queued, nothing stored
    assert len(rows(postern)) == 2
    postern.wait_log("smtpd", r"discard: header X-Drop: now from localhost")

    assert send(postern)[1][0] == 250          # REJECT is not an action for milter headers
    new = [r for r in rows(postern) if r[0] not in (qid, qid2)]
    assert len(new) == 1 and new[0][2] == 0
    postern.wait_log("smtpd", r"action reject is not supported for headers from milters")
    postern.wait_log("smtpd", r"warning: header X-Warn: 1 from localhost.*: seen it")
    assert "the message's own headers" not in postern.log("smtpd")


def test_auth_macros_with_the_mail_auth_parameter(postern, dovecot):
    m = ScriptedMilter()
    start(postern, m.spec, smtpd_sasl_auth_enable="yes", smtpd_sasl_path=str(dovecot.auth_path),
          smtpd_tls_auth_only="no")
    postern.wait_log("smtpd", r"SASL: connected to ")
    plain = base64.b64encode(b"\0alice\0secret").decode()
    with raw(postern, source="127.0.0.2") as c:
        c.send("EHLO client.test\r\n")
        assert c.reply()[0] == 250
        assert c.cmd("AUTH PLAIN " + plain).startswith("235 ")
        assert c.cmd("MAIL FROM:<a@example.org> AUTH=boss+2Bx@example.org") == "250 2.1.0 Ok"
    wait_for(lambda: "M" in m.macros)
    assert m.macros["M"]["{auth_type}"] == "PLAIN"
    assert m.macros["M"]["{auth_authen}"] == "alice"
    assert m.macros["M"]["{auth_author}"] == "boss+x@example.org"
