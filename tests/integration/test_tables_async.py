"""Lookups in server tables never block postern-smtpd's event loop (common/conf/table-async.h):
while one session's RCPT waits for a lookup server that holds its answer, another session's
whole dialogue (greeting, EHLO, MAIL, RCPT with a lookup in the same table, RSET) is answered at
once; the first session gets its answer when the server gives it. Also at queue time: a message
whose virtual alias expansion waits for the server does not keep another session from queueing
its own. The lookup server is sql_peers.ScriptedMap (socketmap protocol) with a held key.

postern-qmgr too (daemons/qmgr/qmgr-lookup.c): while one message's routing waits for its
transport_maps answer, another message (a different key of the same table) is routed and
delivered at once; the first goes out when the server answers. And postern-smtp
(daemons/smtp/smtp-lookup.c): a delivery whose smtp_tls_policy_maps answer is held does not keep
another delivery from going out, nor does one whose server's smtp_sasl_password_maps answer (the
AUTH-time lookup, daemons/smtp/smtp-session-auth.c) is held."""

import re
import threading
import time

import mailtest
from mailtest import send
from smtp_peers import Scripted, Sink
from sql_peers import ScriptedMap
from test_smtpd_helpers import session, wait_until

VDOM = "vdomain.test"
SENDER = "s@example.org"


def _start(p, **maps):
    params = {"virtual_mailbox_domains": VDOM}
    params.update(maps)
    p.configure(**params)
    p.start("smtpd")


def _quick_dialogue(p, rcpt):
    """A second session's dialogue; returns how long it took (every answer within 5 s)."""
    t0 = time.monotonic()
    with session(p, source="127.0.0.1", sender=SENDER) as b:   # greeting, EHLO, MAIL
        b.s.settimeout(5)
        assert b.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok"
        assert b.cmd("RSET").startswith("250 ")
    return time.monotonic() - t0


def _other_session_goes_on(p, a, gate, key_seen, expect):
    """With session a's lookup held (key_seen() true), another session's dialogue is answered at
    once; then the server answers and a gets expect (a prefix)."""
    assert wait_until(key_seen, timeout=10)
    took = _quick_dialogue(p, f"alice@{VDOM}")
    assert not gate.is_set()
    assert took < 3, f"the other session waited {took:.1f} s for a lookup it did not need"
    gate.set()
    a.s.settimeout(10)
    reply = a.text()
    assert reply.startswith(expect), reply


def test_slow_rcpt_lookup_does_not_stall_other_sessions(postern):
    p = postern
    m = ScriptedMap("socketmap", {f"alice@{VDOM}": f"{VDOM}/alice/", f"slow@{VDOM}": f"{VDOM}/slow/"})
    gate = m.hold[f"slow@{VDOM}"] = threading.Event()
    try:
        _start(p, virtual_mailbox_maps=f"socketmap:inet:127.0.0.1:{m.port}:virtual")
        with session(p, source="127.0.0.1", sender=SENDER) as a:
            a.send(f"RCPT TO:<slow@{VDOM}>\r\n")
            _other_session_goes_on(p, a, gate, lambda: f"slow@{VDOM}" in m.requests, "250 2.1.5 Ok")
            assert a.cmd("QUIT").startswith("221")
    finally:
        gate.set()
        m.stop()


def test_slow_expansion_does_not_stall_other_sessions(postern):
    p = postern
    # info@ is known at RCPT time; its target, held, is looked up when the message is queued
    aliases = ScriptedMap("socketmap", {f"info@{VDOM}": f"held@{VDOM}", f"held@{VDOM}": f"alice@{VDOM}"})
    gate = aliases.hold[f"held@{VDOM}"] = threading.Event()
    try:
        _start(p, virtual_alias_maps=f"socketmap:inet:127.0.0.1:{aliases.port}:virtual",
               virtual_mailbox_maps=f"inline:{{ alice@{VDOM}={VDOM}/alice/ }}")
        with session(p, source="127.0.0.1", sender=SENDER) as a:
            assert a.cmd(f"RCPT TO:<info@{VDOM}> NOTIFY=SUCCESS") == "250 2.1.5 Ok"
            assert a.cmd("DATA").startswith("354")
            a.send("Subject: held\r\n\r\nbody\r\n.\r\n")
            _other_session_goes_on(p, a, gate, lambda: f"held@{VDOM}" in aliases.requests,
                                   "250 2.0.0 Ok: queued as ")
        # the expansion ran once, on the recipients as given: info@ -> held@ -> alice@ (orig_to
        # info@); info@ asked for NOTIFY=SUCCESS: it is queued as expanded, alice@ without SUCCESS
        rows = p.queue_rows("SELECT address, orcpt, notify FROM recipients ORDER BY id")
        assert rows == [(f"info@{VDOM}", None, 2), (f"alice@{VDOM}", f"rfc822;info@{VDOM}", 1)], rows
    finally:
        gate.set()
        aliases.stop()


def _fast_goes_first(p, gate, key_seen, sink, held=lambda: True):
    """Sends x@slow.example's message; once its lookup is held (key_seen()), y@fast.example's
    reaches sink within 3 s (what it got is returned), still before the held answer; then the
    answer is let go."""
    send(p, SENDER, ["x@slow.example"], mailtest.msg("slow", sender=SENDER))
    assert wait_until(key_seen, timeout=10)
    t0 = time.monotonic()
    send(p, SENDER, ["y@fast.example"], mailtest.msg("fast", sender=SENDER))
    got = sink.wait_count(1, timeout=5)
    took = time.monotonic() - t0
    assert not gate.is_set() and held()
    assert took < 3, f"the other message waited {took:.1f} s for a lookup it did not need"
    gate.set()
    return got


def test_slow_routing_lookup_does_not_stall_the_queue(postern):
    p = postern
    sink = Sink(p.root / "sink")
    hop = f"smtp:[127.0.0.1]:{sink.port}"
    routes = ScriptedMap("socketmap", {"x@slow.example": hop, "fast.example": hop})
    gate = routes.hold["x@slow.example"] = threading.Event()
    try:
        p.configure(transport_maps=f"socketmap:inet:127.0.0.1:{routes.port}:virtual")
        p.start()
        # (a qmgr that waits on its loop answers nothing until the lookup times out, 10 s)
        got = _fast_goes_first(p, gate, lambda: "x@slow.example" in routes.requests, sink)
        assert [re.search(rb"Message-ID: <([^>]+)>", d).group(1) for d in got] == [b"fast"]
        sink.wait_count(2, timeout=10)
        p.wait_queue_empty()
    finally:
        gate.set()
        routes.stop()
        sink.stop()


def test_message_deleted_while_its_routing_waits(postern):
    p = postern
    routes = ScriptedMap("socketmap", {"x@slow.example": "discard:", "fast.example": "discard:"})
    gate = routes.hold["x@slow.example"] = threading.Event()
    try:
        p.configure(transport_maps=f"socketmap:inet:127.0.0.1:{routes.port}:virtual")
        p.start("smtpd", "qmgr")
        qid = send(p, SENDER, ["x@slow.example"], mailtest.msg("d-slow", sender=SENDER))
        assert wait_until(lambda: "x@slow.example" in routes.requests, timeout=10)
        r = p.posternctl("delete", qid)
        assert r.returncode == 0, r.stderr
        p.wait_log("qmgr", rf"{qid}: removed", timeout=3)
        gate.set()   # the answer comes for a message that is gone
        other = send(p, SENDER, ["y@fast.example"], mailtest.msg("d-fast", sender=SENDER))
        p.wait_log("qmgr", rf"{other}: to=<y@fast\.example>, relay=none, .*status=sent")
        p.wait_queue_empty()
        assert "to=<x@slow.example>" not in p.log("qmgr")
    finally:
        gate.set()
        routes.stop()


def test_slow_tls_policy_lookup_does_not_stall_other_deliveries(postern):
    p = postern
    a, b = Sink(p.root / "sink-a"), Sink(p.root / "sink-b")
    policy = ScriptedMap("socketmap", {f"[127.0.0.1]:{a.port}": "none"})
    gate = policy.hold[f"[127.0.0.1]:{a.port}"] = threading.Event()
    try:
        p.configure(transport_maps=(f"inline:{{ {{slow.example=smtp:[127.0.0.1]:{a.port}}}, "
                                    f"{{fast.example=smtp:[127.0.0.1]:{b.port}}} }}"),
                    smtp_tls_policy_maps=f"socketmap:inet:127.0.0.1:{policy.port}:virtual")
        p.start()
        # (postern-smtp waiting on its loop would send nothing until the lookup times out, 10 s)
        _fast_goes_first(p, gate, lambda: f"[127.0.0.1]:{a.port}" in policy.requests, b,
                         held=lambda: a.messages() == [])
        a.wait_count(1, timeout=10)
        p.wait_queue_empty()
    finally:
        gate.set()
        policy.stop()
        a.stop()
        b.stop()


def test_slow_auth_password_lookup_does_not_stall_other_deliveries(postern):
    p = postern
    ehlo = "250-scripted\r\n250-AUTH PLAIN\r\n250 8BITMIME"
    ok = {"AUTH": "235 2.7.0 Authentication successful"}
    a, b = Scripted(ok, ehlo=ehlo), Scripted(ok, ehlo=ehlo)
    hop_a, hop_b = f"[127.0.0.1]:{a.port}", f"[127.0.0.1]:{b.port}"
    passwd = ScriptedMap("socketmap", {hop_a: "alice:secret", hop_b: "bob:secret"})
    gate = passwd.hold[hop_a] = threading.Event()
    try:
        p.configure(transport_maps=f"inline:{{ {{slow.example=smtp:{hop_a}}}, {{fast.example=smtp:{hop_b}}} }}",
                    smtp_sasl_auth_enable="yes", smtp_sasl_security_options="noanonymous",
                    smtp_tls_security_level="none",
                    smtp_sasl_password_maps=f"socketmap:inet:127.0.0.1:{passwd.port}:virtual")
        p.start()
        send(p, SENDER, ["x@slow.example"], mailtest.msg("slow", sender=SENDER))
        assert wait_until(lambda: hop_a in passwd.requests, timeout=10)
        t0 = time.monotonic()
        send(p, SENDER, ["y@fast.example"], mailtest.msg("fast", sender=SENDER))
        # (postern-smtp waiting on its loop would send nothing until the lookup times out, 10 s)
        assert wait_until(lambda: len(b.messages) == 1, timeout=5)
        took = time.monotonic() - t0
        assert not gate.is_set() and a.messages == [] and not any(c.startswith("AUTH") for c in a.commands)
        assert took < 3, f"the other message waited {took:.1f} s for a lookup it did not need"
        assert "AUTH PLAIN AGJvYgBzZWNyZXQ=" in b.commands
        gate.set()
        assert wait_until(lambda: len(a.messages) == 1, timeout=10)
        assert "AUTH PLAIN AGFsaWNlAHNlY3JldA==" in a.commands
        p.wait_queue_empty()
    finally:
        gate.set()
        passwd.stop()
        a.stop()
        b.stop()
