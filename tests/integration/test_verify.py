"""postern-verify and reject_unverified_recipient / reject_unverified_sender (Postfix's address
verification): the first RCPT of an unknown address gets 450 while the probe runs, the next one
250 or the reject code by what the next hop said; a probe that finishes within
address_verify_poll_count x address_verify_poll_delay answers in the same session; nothing is
ever delivered; results survive kill -9 of postern-verify; local recipients are decided by the
routing tables; postern-verify down or its cache corrupt → 450, never 5xx; bad requests."""

import signal
import subprocess

from postern_harness import ipc_call


def rcpt_reply(address):
    if address.startswith("bad"):
        return "550 5.1.1 <%s>: no such user" % address
    if address.startswith("soft"):
        return "450 4.2.1 <%s>: mailbox busy" % address
    return None


def configure(postern, aiosmtpd_server, **params):
    h, port = aiosmtpd_server(rcpt=rcpt_reply)
    settings = dict(relayhost=f"[127.0.0.1]:{port}", mynetworks="127.0.0.0/8",
                    smtpd_recipient_restrictions="reject_unverified_recipient",
                    unverified_recipient_reject_code=550, address_verify_poll_count=1)
    settings.update(params)
    postern.configure(**settings)
    return h


def rcpt(postern, address, sender="someone@client.test"):
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail(sender)[0] == 250
        code, text = s.rcpt(address)
        return code, text.decode()


def lookup(postern, address):
    return ipc_call(postern.socket_dir / "verify", [("request", "lookup"), ("address", address)])


def test_pending_then_result(postern, aiosmtpd_server):
    h = configure(postern, aiosmtpd_server)
    postern.start("smtpd", "qmgr", "smtp", "verify")
    for a in ("good@remote.example", "bad@remote.example", "soft@remote.example"):
        code, text = rcpt(postern, a)
        assert code == 450, (a, code, text)
        assert text == f"4.1.1 <{a}>: Recipient address rejected: unverified address: Address verification in progress"
    postern.wait_log("verify", r"<good@remote\.example>: deliverable")
    postern.wait_log("verify", r"<bad@remote\.example>: undeliverable")
    postern.wait_log("verify", r"<soft@remote\.example>: undetermined")
    assert rcpt(postern, "good@remote.example")[0] == 250
    code, text = rcpt(postern, "bad@remote.example")
    assert code == 550
    assert text.startswith("5.1.1 <bad@remote.example>: Recipient address rejected: unverified address: host "
                           "127.0.0.1[127.0.0.1]:")
    assert text.endswith("said: 550 5.1.1 <bad@remote.example>: no such user (in reply to RCPT TO command)")
    code, text = rcpt(postern, "soft@remote.example")
    assert code == 450 and "unverified address: host " in text and "450 4.2.1 <soft@remote.example>: mailbox busy" in text
    assert h.envelopes == []   # probes deliver nothing
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from .*550 5\.1\.1 <bad@remote\.example>")
    # the probe sender is $double_bounce_sender@$myorigin
    postern.wait_log("qmgr", r"probe of <good@remote\.example>: transport smtp, next hop "
                             r"\[127\.0\.0\.1\]:\d+, sender <double-bounce@postern\.test>")


def test_probe_answers_within_the_session(postern, aiosmtpd_server):
    configure(postern, aiosmtpd_server, address_verify_poll_count=5, address_verify_poll_delay="1s",
          unverified_recipient_reject_reason="Recipient unknown")
    postern.start("smtpd", "qmgr", "smtp", "verify")
    assert rcpt(postern, "good2@remote.example")[0] == 250
    code, text = rcpt(postern, "bad2@remote.example")
    assert (code, text) == (550, "5.1.1 <bad2@remote.example>: Recipient address rejected: unverified address: "
                                 "Recipient unknown")


def test_sender_verification(postern, aiosmtpd_server):
    configure(postern, aiosmtpd_server, smtpd_recipient_restrictions="",
          smtpd_sender_restrictions="reject_unverified_sender", unverified_sender_reject_code=550,
          address_verify_poll_count=5, address_verify_poll_delay="1s")
    postern.start("smtpd", "qmgr", "smtp", "verify")
    code, text = rcpt(postern, "root@postern.test", sender="bad@remote.example")
    assert code == 550 and text.startswith("5.1.7 <bad@remote.example>: Sender address rejected: unverified address:")
    assert rcpt(postern, "root@postern.test", sender="good@remote.example")[0] == 250
    assert rcpt(postern, "root@postern.test", sender="")[0] == 250   # <> is never verified


def probe_good_and_bad(postern, aiosmtpd_server):
    """Starts the roles and has good@ (deliverable) and bad@remote.example (undeliverable) probed."""
    configure(postern, aiosmtpd_server)
    postern.start("smtpd", "qmgr", "smtp", "verify")
    rcpt(postern, "good@remote.example")
    rcpt(postern, "bad@remote.example")
    postern.wait_log("verify", r"<bad@remote\.example>: undeliverable")
    postern.wait_log("verify", r"<good@remote\.example>: deliverable")


def test_cache_survives_kill9(postern, aiosmtpd_server):
    probe_good_and_bad(postern, aiosmtpd_server)
    postern.kill("verify", signal.SIGKILL)
    postern.kill("smtp", signal.SIGKILL)   # no new probe could answer
    postern.start("verify")
    assert lookup(postern, "good@remote.example")["result"] == "deliverable"
    rep = lookup(postern, "bad@remote.example")
    assert rep["result"] == "undeliverable" and "no such user" in rep["reason"]
    assert rcpt(postern, "good@remote.example")[0] == 250
    assert rcpt(postern, "bad@remote.example")[0] == 550


def test_smtpd_remembers_deliverable_for_a_few_seconds(postern, aiosmtpd_server):
    # a busy recipient costs one question to postern-verify per 10 s, not one per message; only
    # "deliverable" is remembered: other answers are always asked again
    probe_good_and_bad(postern, aiosmtpd_server)
    assert rcpt(postern, "good@remote.example")[0] == 250   # asked, and remembered
    assert rcpt(postern, "bad@remote.example")[0] == 550
    postern.kill("verify", signal.SIGKILL)
    (postern.socket_dir / "verify").unlink()   # nobody answers now
    assert rcpt(postern, "good@remote.example")[0] == 250   # from smtpd's memory
    code, text = rcpt(postern, "bad@remote.example")   # not remembered: asked, and verify is gone
    assert code == 450 and text.endswith("address verification problem"), text


def test_local_recipients_by_tables(postern):
    # no postern-verify at all: local addresses never need it
    postern.configure(smtpd_recipient_restrictions="reject_unverified_recipient",
                      unverified_recipient_reject_code=550, smtpd_reject_unlisted_recipient="no")
    postern.start("smtpd")
    assert rcpt(postern, "postmaster@postern.test")[0] == 250
    assert rcpt(postern, "root@postern.test")[0] == 250
    code, text = rcpt(postern, "nosuchuser@postern.test")
    assert code == 550 and text.startswith("5.1.1 <nosuchuser@postern.test>: Recipient address rejected: "
                                           "unverified address: ")
    assert "unknown" in text.lower()


def test_verify_down_is_a_tempfail(postern, aiosmtpd_server):
    configure(postern, aiosmtpd_server)
    postern.start("smtpd", "smtp")   # no verify socket at all
    code, text = rcpt(postern, "good@remote.example")
    assert code == 450
    assert text == "4.1.1 <good@remote.example>: Recipient address rejected: address verification problem"
    postern.wait_log("smtpd", r"verify service failure")
    # defer (not defer_if_permit) answers the same, at once
    postern.configure(unverified_recipient_tempfail_action="defer")
    postern.restart("smtpd")
    assert rcpt(postern, "good@remote.example")[0] == 450


def test_corrupt_cache(postern, aiosmtpd_server):
    configure(postern, aiosmtpd_server)
    (postern.queue_dir / "verify.db").write_bytes(b"this is not a database\n" * 200)
    postern.start("smtpd", "qmgr", "smtp", "verify")
    postern.wait_log("verify", r"verify cache .*verify\.db is not usable \(.*not a database.*\)")
    rep = lookup(postern, "good@remote.example")
    assert rep["status"] == "error" and "verify cache unavailable" in rep["reason"]
    code, text = rcpt(postern, "good@remote.example")
    assert code == 450 and "address verification problem" in text


def test_read_only_cache(postern, aiosmtpd_server):
    """An immutable verify.db (chattr +i: the tests run as root, whom file modes do not stop):
    a temporary error and a log line naming the file and why; once the file is writable again
    postern-verify opens it by itself (it retries every 10 s)."""
    configure(postern, aiosmtpd_server)
    postern.start("smtpd", "verify")
    db = postern.queue_dir / "verify.db"
    assert ipc_call(postern.socket_dir / "verify", [("request", "update"), ("address", "x@remote.example"),
                                                    ("result", "deliverable"), ("reason", "ok")])["status"] == "ok"
    postern.kill("verify", signal.SIGTERM)
    subprocess.run(["chattr", "+i", str(db)], check=True)
    try:
        postern.start("verify")
        postern.wait_log("verify", r"verify cache .*verify\.db is not usable \(.*readonly database\)")
        rep = lookup(postern, "x@remote.example")
        assert rep["status"] == "error" and "verify cache unavailable" in rep["reason"]
        code, text = rcpt(postern, "x@remote.example")
        assert code == 450 and "address verification problem" in text
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    postern.wait_for(lambda: lookup(postern, "x@remote.example").get("result") == "deliverable", timeout=20,
                     what="postern-verify to reopen its cache")
    assert rcpt(postern, "x@remote.example")[0] == 250


def test_bad_requests(postern):
    postern.start("verify")
    path = postern.socket_dir / "verify"
    assert ipc_call(path, [("request", "query")]) == {"status": "error", "reason": "missing address"}
    assert ipc_call(path, [("request", "query"), ("address", "a" * 1001)])["reason"] == "address too long"
    assert ipc_call(path, [("request", "frobnicate"), ("address", "a@b")])["reason"] == "unknown request"
    rep = ipc_call(path, [("request", "update"), ("address", "a@b"), ("result", "maybe")])
    assert rep["status"] == "error" and "invalid result" in rep["reason"]
    assert postern.running("verify")


def test_cleanup_in_batches(postern):
    """5,000 expired rows and one fresh: the cleanup drops the expired ones in batches (logged as
    Postfix does) and queries are answered meanwhile."""
    import sqlite3
    import time
    postern.configure(address_verify_cache_cleanup_interval="1s")
    postern.start("verify")
    path = postern.socket_dir / "verify"
    assert ipc_call(path, [("request", "update"), ("address", "fresh@remote.example"),
                           ("result", "deliverable"), ("reason", "ok")])["status"] == "ok"
    old = int(time.time()) - 40 * 86400
    con = sqlite3.connect(str(postern.queue_dir / "verify.db"), timeout=10)
    with con:
        con.executemany("INSERT INTO verify_cache (address, status, updated, probed, reason) VALUES (?, 0, ?, 0, '')",
                        [(f"old{i}@remote.example", old) for i in range(5000)])
    con.close()
    postern.wait_log("verify", r"full cleanup: retained=1 dropped=5000 entries", timeout=20)
    assert ipc_call(path, [("request", "lookup"), ("address", "fresh@remote.example")])["result"] == "deliverable"
    assert ipc_call(path, [("request", "lookup"), ("address", "old1@remote.example")])["result"] == "pending"


def test_reload_applies_routing_overrides(postern, aiosmtpd_server):
    """address_verify_relayhost overrides relayhost for probes only; a reload applies a new one;
    address_verify_map needs a restart (said once)."""
    h1, port1 = aiosmtpd_server(rcpt=lambda a: "550 5.1.1 no" if a.startswith("x") else None)
    h2, port2 = aiosmtpd_server(rcpt=lambda a: None)
    configure(postern, aiosmtpd_server, address_verify_relayhost=f"[127.0.0.1]:{port1}")
    postern.start("qmgr", "smtp", "verify")
    path = postern.socket_dir / "verify"
    assert ipc_call(path, [("request", "query"), ("address", "x1@remote.example")])["result"] == "pending"
    postern.wait_log("verify", r"<x1@remote\.example>: undeliverable")
    assert f":{port1}, sender" in postern.wait_log("qmgr", r"probe of <x1@remote\.example>.*").group(0)
    postern.configure(address_verify_relayhost=f"[127.0.0.1]:{port2}", address_verify_map="")
    postern.reload("verify")
    postern.reload("qmgr")   # probes are routed by postern-qmgr
    postern.wait_log("qmgr", r"reload -- configuration")
    postern.wait_log("verify", r"address_verify_map changed: restart postern-verify to apply")
    ipc_call(path, [("request", "query"), ("address", "x2@remote.example")])
    postern.wait_log("verify", r"<x2@remote\.example>: deliverable")
    assert f":{port2}, sender" in postern.wait_log("qmgr", r"probe of <x2@remote\.example>.*").group(0)
    assert h1.envelopes == [] and h2.envelopes == []


def test_posternctl_verify(postern, aiosmtpd_server):
    configure(postern, aiosmtpd_server)
    r = postern.posternctl("verify", "a@remote.example")
    assert r.returncode == 69 and "postern-verify is not available" in r.stderr   # EX_UNAVAILABLE
    postern.start("qmgr", "smtp", "verify")
    r = postern.posternctl("verify", "good@remote.example")
    assert r.returncode == 0 and r.stdout == "good@remote.example: pending: address verification in progress\n"
    assert "probe queued" not in postern.log("verify")   # lookup never probes
    r = postern.posternctl("verify", "-p", "bad@remote.example")
    assert r.returncode == 0 and r.stdout.startswith("bad@remote.example: pending")
    postern.wait_log("verify", r"<bad@remote\.example>: undeliverable")
    r = postern.posternctl("verify", "bad@remote.example", "good@remote.example")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("bad@remote.example: undeliverable: host 127.0.0.1") and "no such user" in lines[0]
    assert lines[1].startswith("good@remote.example: pending")
    assert postern.posternctl("verify").returncode == 64


def test_scripted_peer_timeout_and_data_target(postern, scripted):
    """A scripted server that says nothing to RCPT for slow@ (smtp_rcpt_timeout: undetermined,
    a 450, never 5xx) and refuses bad@ only at DATA (smtp_address_verify_target = data finds it;
    the connection is dropped at 354, so no message is ever sent)."""
    def on_rcpt(arg):
        return None if "slow@" in arg else "250 2.1.5 Ok"
    slow = scripted(replies={"RCPT": on_rcpt})
    refuse_at_data = scripted(replies={"DATA": "554 5.7.1 no bad here"})
    # bad@ goes to the second server through address_verify_transport_maps (probes only)
    postern.configure(relayhost=f"[127.0.0.1]:{slow.port}", smtpd_recipient_restrictions="reject_unverified_recipient",
                      unverified_recipient_reject_code=550, address_verify_poll_count=1, smtp_rcpt_timeout="2s",
                      smtp_address_verify_target="data",
                      address_verify_transport_maps="inline:{ bad@remote.example=smtp:[127.0.0.1]:%d }"
                      % refuse_at_data.port)
    postern.start("smtpd", "qmgr", "smtp", "verify")
    assert rcpt_code(postern, "slow@remote.example") == 450
    postern.wait_log("verify", r"<slow@remote\.example>: undetermined \(.*timed out", timeout=20)
    code, text = rcpt(postern, "slow@remote.example")
    assert code == 450 and "unverified address:" in text
    assert rcpt_code(postern, "bad@remote.example") == 450
    postern.wait_log("verify", r"<bad@remote\.example>: undeliverable \(.*554 5\.7\.1 no bad here")
    assert rcpt_code(postern, "bad@remote.example") == 550
    assert slow.messages == [] and refuse_at_data.messages == []
    assert any(c.upper().startswith("DATA") for c in refuse_at_data.commands)


def rcpt_code(postern, address):
    return rcpt(postern, address)[0]


def test_posternctl_verify_needs_root_or_postern(postern):
    postern.start("verify")
    r = postern.posternctl("verify", "a@remote.example", user="ptest1")
    assert r.returncode == 77 and "is for root and postern only" in r.stderr   # EX_NOPERM


def test_pending_request_limit(postern, scripted):
    """address_verify_pending_request_limit = 1 and a next hop that never answers RCPT: the first
    address is probed, the second not (answered pending, logged once) until the first is done."""
    slow = scripted(replies={"RCPT": lambda a: None if a.startswith("slow") else "250 2.1.5 Ok"})
    postern.configure(relayhost=f"[127.0.0.1]:{slow.port}", address_verify_pending_request_limit=1,
                      smtp_rcpt_timeout="3s")
    postern.start("qmgr", "smtp", "verify")
    path = postern.socket_dir / "verify"
    query = lambda a: ipc_call(path, [("request", "query"), ("address", a)])   # noqa: E731
    assert query("slow1@remote.example")["result"] == "pending"
    assert query("fast@remote.example")["result"] == "pending"
    postern.wait_log("verify", r"address_verify_pending_request_limit \(1\) reached: <fast@remote\.example>")
    assert "probe queued for <fast@" not in postern.log("verify")
    postern.wait_log("verify", r"<slow1@remote\.example>: undetermined", timeout=20)
    assert query("fast@remote.example")["result"] == "pending"   # probed now
    postern.wait_log("verify", r"<fast@remote\.example>: deliverable")
    assert query("fast@remote.example")["result"] == "deliverable"
