"""postern-smtp's address probes (request=verify on its socket, what an address verification
service asks; Postfix's verify(8) → smtp(8)): MAIL and RCPT against the real next hop, nothing
delivered; smtp_address_verify_target = rcpt (the default: RCPT decides) or data (DATA decides,
for servers that reject recipients only then; the connection is dropped in DATA mode, so no
message is ever sent). Peers: aiosmtpd and the scripted line server. Also the agent's side of
multiplexing: tagged requests on one connection answered as each finishes."""

import socket
import time

import pytest

from postern_harness import format_record, ipc_call, read_record


def probe_record(port, rcpts, sender="probe@postern.test"):
    rec = [("request", "verify"), ("sender", sender), ("nexthop", f"[127.0.0.1]:{port}"),
           ("count", str(len(rcpts)))]
    for i, r in enumerate(rcpts):
        rec += [(f"rcpt.{i}", r), (f"rcpt_id.{i}", str(i + 1))]
    return rec


def probe(postern, port, rcpts, sender="probe@postern.test"):
    rec = probe_record(port, rcpts, sender)
    reply = ipc_call(postern.socket_dir / "smtp", rec)
    assert reply.get("status") == "ok", reply
    return [(reply[f"action.{i}"], reply[f"dsn.{i}"], reply[f"diag.{i}"]) for i in range(len(rcpts))]


def test_probe_at_rcpt(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "550 5.1.1 <%s>: no such user" % a if a.startswith("bad") else None)
    postern.start("smtp")
    res = probe(postern, port, ["good@remote.example", "bad@remote.example"])
    assert res[0][:2] == ("deliverable", "2.1.5") and "250" in res[0][2]
    assert res[1][:2] == ("undeliverable", "5.1.1")
    assert "no such user (in reply to RCPT TO command)" in res[1][2]
    assert h.envelopes == []   # nothing was delivered
    postern.wait_log("smtp", rf"NOQUEUE: to=<good@remote\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{port}, "
                             r".*dsn=2\.1\.5, status=deliverable")


def test_probe_tempfail_is_deferred(postern, aiosmtpd_server):
    h, port = aiosmtpd_server(rcpt=lambda a: "450 4.2.0 greylisted")
    postern.start("smtp")
    assert probe(postern, port, ["x@remote.example"])[0][:2] == ("deferred", "4.2.0")


@pytest.mark.parametrize("target,expect", [("rcpt", ("deliverable", "2.1.5")),
                                           ("data", ("undeliverable", "5.7.1"))])
def test_verify_target_for_servers_that_reject_at_data(postern, scripted, target, expect):
    s = scripted(replies={"DATA": "554 5.7.1 recipient unknown here"})
    postern.configure(smtp_address_verify_target=target)
    postern.start("smtp")
    assert probe(postern, s.port, ["x@remote.example"])[0][:2] == expect
    assert s.messages == []


def test_verify_target_data_never_sends_a_message(postern, scripted):
    s = scripted()
    postern.configure(smtp_address_verify_target="data")
    postern.start("smtp")
    assert probe(postern, s.port, ["x@remote.example", "y@remote.example"]) == [
        ("deliverable", "2.0.0", f"host 127.0.0.1[127.0.0.1]:{s.port} said: 354 go ahead (in reply to DATA command)")] * 2
    assert s.messages == []
    # The next delivery to the same server opens a new connection (a DATA-mode one is never reused).
    assert probe(postern, s.port, ["z@remote.example"])[0][0] == "deliverable"
    assert s.messages == []


def test_bad_verify_target_is_refused(postern):
    postern.configure(smtp_address_verify_target="header")
    with pytest.raises(RuntimeError, match=r"smtp_address_verify_target = header: expected rcpt or data"):
        postern.start("smtp")


def test_tagged_requests_on_one_connection_are_answered_as_they_finish(postern, aiosmtpd_server):
    """What qmgr does (common/ipc/ipc-mux.c): several requests tagged id= on one connection; the
    agent works on them at once and each reply carries its request's id, the fast one first."""
    _, slow = aiosmtpd_server(rcpt=lambda a: time.sleep(3))   # a slow server, by design
    _, fast = aiosmtpd_server()
    postern.start("smtp")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(postern.socket_dir / "smtp"))
        s.sendall(format_record(probe_record(slow, ["a@slow.example"]) + [("id", "slow-1")]).encode() +
                  format_record(probe_record(fast, ["b@fast.example"]) + [("id", "fast-2")]).encode())
        f = s.makefile("rb")
        t0 = time.monotonic()
        first = read_record(f)
        took = time.monotonic() - t0
        second = read_record(f)
        assert (first["id"], first["action.0"]) == ("fast-2", "deliverable")
        assert took < 2.5   # not behind the slow one (3 s)
        assert (second["id"], second["action.0"]) == ("slow-1", "deliverable")
        # an untagged request on the same connection is answered untagged
        s.sendall(format_record(probe_record(fast, ["c@fast.example"])).encode())
        third = read_record(f)
        assert third["status"] == "ok" and "id" not in third
