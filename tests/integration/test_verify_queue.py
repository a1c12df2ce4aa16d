"""Address verification probes are messages in the queue, as Postfix's verify(8) sends them:
postern-verify queues one (is_probe, sender double-bounce@, one recipient), postern-qmgr routes
it with the address_verify_* overrides and has postern-smtp probe the next hop (nothing is
delivered), the result goes to postern-verify's cache, and a probe never causes a bounce, DSN or
delay warning. A deferred probe shows in `posternctl queue` and is retried like mail; an expired
one goes quietly; kill -9 of postern-verify mid-probe loses nothing."""

import json
import signal
import time

from postern_harness import ipc_call


def query(postern, address):
    return ipc_call(postern.socket_dir / "verify", [("request", "query"), ("address", address)])


def lookup(postern, address):
    return ipc_call(postern.socket_dir / "verify", [("request", "lookup"), ("address", address)])


def queue_json(postern):
    r = postern.posternctl("queue", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def next_hop(aiosmtpd_server):
    def reply(a):
        if a.startswith("bad"):
            return "550 5.1.1 <%s>: no such user" % a
        if a.startswith("soft"):
            return "450 4.2.1 <%s>: mailbox busy" % a
        if a.startswith("slow"):
            time.sleep(3)   # a slow RCPT reply, by design: verify is killed meanwhile
        return None
    return aiosmtpd_server(rcpt=reply)


def test_deferred_probe_is_queued_and_retried(postern, aiosmtpd_server):
    h, port = next_hop(aiosmtpd_server)
    postern.configure(relayhost=f"[127.0.0.1]:{port}", minimal_backoff_time="1s", maximal_backoff_time="1s",
                      queue_run_delay="1s", delay_warning_time="1s")
    postern.start("qmgr", "smtp", "verify")
    assert query(postern, "soft@remote.example")["result"] == "pending"
    postern.wait_log("verify", r"<soft@remote\.example>: undetermined \(.*450 4\.2\.1")
    postern.wait_for(lambda: [m for m in queue_json(postern)
                              if m["recipients"][0]["attempts"] >= 2], timeout=15,
                     what="the deferred probe to be retried")
    [probe] = queue_json(postern)   # the probe, and nothing else (no delay warning)
    assert probe["is_probe"] is True and probe["sender"] == "double-bounce@postern.test"
    assert probe["recipients"][0]["address"] == "soft@remote.example"
    assert probe["recipients"][0]["state"] == "deferred" and "mailbox busy" in probe["recipients"][0]["reason"]
    text = postern.posternctl("queue").stdout
    assert "(address verification probe)" in text and "soft@remote.example" in text
    assert lookup(postern, "soft@remote.example")["result"] == "undetermined"
    assert h.envelopes == []
    assert "delay" not in postern.log("qmgr").lower().replace("delays=", "").replace("delay=", "")


def test_failed_and_expired_probes_send_no_notice(postern, aiosmtpd_server):
    """An undeliverable probe is removed at once, an expired one (maximal_queue_lifetime = 0:
    one attempt) quietly: no bounce, no DSN, the queue is empty."""
    h, port = next_hop(aiosmtpd_server)
    postern.configure(relayhost=f"[127.0.0.1]:{port}", maximal_queue_lifetime="0",
                      bounce_notice_recipient="postmaster", notify_classes="bounce, 2bounce, delay, resource")
    postern.start("qmgr", "smtp", "verify")
    query(postern, "bad@remote.example")
    query(postern, "soft@remote.example")
    postern.wait_log("verify", r"<bad@remote\.example>: undeliverable \(.*550 5\.1\.1")
    postern.wait_log("verify", r"<soft@remote\.example>: undetermined")
    postern.wait_log("qmgr", r"removed", count=2)
    qlog = postern.log("qmgr")
    assert "status=expired" in qlog
    assert "notification" not in qlog
    assert postern.queue_rows("SELECT queue_id FROM messages") == []
    assert h.envelopes == []
    assert lookup(postern, "bad@remote.example")["result"] == "undeliverable"


def test_routing_overrides_apply_to_probes_only(postern, aiosmtpd_server):
    """Mail goes by relayhost, probes by address_verify_relayhost; address_verify_transport_maps
    sends one address to error: (undeliverable with its text) and another to discard:."""
    probes, pport = next_hop(aiosmtpd_server)
    mail, mport = aiosmtpd_server()
    postern.configure(relayhost=f"[127.0.0.1]:{mport}", address_verify_relayhost=f"[127.0.0.1]:{pport}",
                      address_verify_transport_maps="inline:{ { moved@remote.example=error:5.1.6 moved away }, "
                                                    "gone@remote.example=discard: }")
    postern.start("smtpd", "qmgr", "smtp", "verify")
    query(postern, "bad@remote.example")
    postern.wait_log("verify", r"<bad@remote\.example>: undeliverable")
    assert f"next hop [127.0.0.1]:{pport}," in postern.wait_log("qmgr", r"probe of <bad@remote\.example>.*").group(0)
    query(postern, "moved@remote.example")
    query(postern, "gone@remote.example")
    postern.wait_log("verify", r"<moved@remote\.example>: undeliverable \(moved away\)")
    postern.wait_log("verify", r"<gone@remote\.example>: deliverable")
    # real mail to the same address goes by relayhost and is delivered there
    with postern.smtp() as s:
        s.sendmail("someone@client.test", ["bad@remote.example"], b"Subject: x\r\n\r\nbody\r\n")
    postern.wait_for(lambda: len(mail.envelopes) == 1, what="the mail at relayhost")
    assert mail.envelopes[0].rcpt_tos == ["bad@remote.example"]
    assert probes.envelopes == []


def test_kill9_of_verify_mid_probe_loses_nothing(postern, aiosmtpd_server):
    h, port = next_hop(aiosmtpd_server)
    postern.configure(relayhost=f"[127.0.0.1]:{port}")
    postern.start("qmgr", "smtp", "verify")
    assert query(postern, "slow@remote.example")["result"] == "pending"
    postern.wait_log("qmgr", r"probe of <slow@remote\.example>")
    postern.kill("verify", signal.SIGKILL)
    postern.wait_log("smtp", r"to=<slow@remote\.example>.*status=deliverable", timeout=15)
    # qmgr keeps the probe until postern-verify has the result
    rows = postern.queue_rows("SELECT is_probe FROM messages")
    assert rows == [(1,)]
    postern.start("verify")
    postern.wait_log("verify", r"<slow@remote\.example>: deliverable")
    assert lookup(postern, "slow@remote.example")["result"] == "deliverable"
    postern.wait_for(lambda: postern.queue_rows("SELECT queue_id FROM messages") == [], what="the probe removed")
    assert h.envelopes == []


def test_result_verify_cannot_take_is_found_again(postern, aiosmtpd_server):
    """postern-verify gone with its socket (not just restarting): the probe's result cannot be
    told, so the probe is deferred, not removed; once verify is back the retry's result lands in
    the cache."""
    h, port = next_hop(aiosmtpd_server)
    postern.configure(relayhost=f"[127.0.0.1]:{port}", minimal_backoff_time="1s", maximal_backoff_time="1s",
                      queue_run_delay="1s")
    postern.start("qmgr", "smtp", "verify")
    assert query(postern, "slow@remote.example")["result"] == "pending"
    postern.wait_log("qmgr", r"probe of <slow@remote\.example>")
    postern.kill("verify", signal.SIGKILL)
    for _, s in postern.listeners.pop("verify"):
        s.close()
    (postern.socket_dir / "verify").unlink()
    postern.wait_log("qmgr", r"cannot report the probe result to postern-verify.*tried again", timeout=15)
    postern.wait_log("qmgr", r"to=<slow@remote\.example>.*status=deferred \(address verification service unavailable")
    assert postern.queue_rows("SELECT is_probe FROM messages") == [(1,)]
    postern.start("verify")   # a new socket
    postern.wait_log("verify", r"<slow@remote\.example>: deliverable", timeout=20)
    postern.wait_for(lambda: postern.queue_rows("SELECT queue_id FROM messages") == [], what="the probe removed")
    assert h.envelopes == []


def test_probes_keep_the_destination_concurrency_limit(postern, scripted):
    """Probes are scheduled like mail: with smtp_destination_concurrency_limit = 1 the next hop
    never sees two probes at once (sent straight to postern-smtp, as before, all four ran
    together)."""
    import threading
    lock = threading.Lock()
    state = {"now": 0, "most": 0}

    def on_rcpt(arg):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.5)   # keeps the probe in flight, so overlap would show
        with lock:
            state["now"] -= 1
        return "250 2.1.5 Ok"
    s = scripted(replies={"RCPT": on_rcpt})
    postern.configure(relayhost=f"[127.0.0.1]:{s.port}", smtp_destination_concurrency_limit=1)
    postern.start("qmgr", "smtp", "verify")
    for i in range(4):
        assert query(postern, f"c{i}@remote.example")["result"] == "pending"
    for i in range(4):
        postern.wait_log("verify", rf"<c{i}@remote\.example>: deliverable", timeout=20)
    assert state["most"] == 1, state
    assert s.messages == []
