"""check_policy_service (smtpd-policy.c) on a real smtpd: the request attributes a policy server
receives, connection reuse and its limits, timeouts, retries and the default action, malformed
answers, and greylisting by a real postgrey. The policy servers are ScriptedPolicy
(test_smtpd_helpers.py) and postgrey, started here on their own port."""

import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

from test_smtpd_helpers import ScriptedPolicy, content_of, free_port, queue_ids

POSTGREY = "/usr/sbin/postgrey"
CONFIG_PROBLEM = "451 4.3.5 <%s>: Recipient address rejected: Server configuration problem"


def start(postern, service, **conf):
    settings = dict(mydestination="localhost, postern.test", mynetworks="127.0.0.0/8",
                    smtpd_recipient_restrictions="check_policy_service %s, "
                    "permit_mynetworks, reject_unauth_destination" % service,
                    smtpd_policy_service_retry_delay="0s")
    settings.update(conf)
    postern.configure(**settings)
    postern.start("smtpd")


def rcpts(postern, *rcpts, source=None):
    """One session, one transaction: the replies to RCPT TO as "CODE text"."""
    with postern.smtp(source_address=source) as s:
        s.ehlo("client.test")
        assert s.mail("a@example.org")[0] == 250
        return ["%d %s" % (c, t.decode()) for c, t in (s.rcpt(r) for r in rcpts)]


def rcpt(postern, to="ptest1@localhost"):
    return rcpts(postern, to)[0]


def test_request_attributes_and_action(postern, tmp_path):
    srv = ScriptedPolicy(tmp_path, ["action=REJECT go away", "action=OK"])
    start(postern, srv.service, smtpd_policy_service_policy_context="ctx1",
          smtpd_data_restrictions="check_policy_service %s" % srv.service)
    with postern.smtp(source_address="127.0.0.2") as s:
        s.ehlo("client.test")
        assert s.mail("a@example.org")[0] == 250
        code, text = s.rcpt("ptest1@localhost")
        assert (code, text.decode()) == (554, "5.7.1 <ptest1@localhost>: Recipient address rejected: go away")
        assert s.rcpt("ptest2@localhost")[0] == 250
        assert s.data(b"Subject: t\r\n\r\nx\r\n")[0] == 250
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.2\]: 554 5\.7\.1 "
                     r"<ptest1@localhost>: Recipient address rejected: go away; from=<a@example\.org> "
                     r"to=<ptest1@localhost> proto=ESMTP helo=<client\.test>")
    assert len(srv.requests) == 3
    r = srv.requests[0]
    assert r["request"] == "smtpd_access_policy"
    assert r["protocol_state"] == "RCPT"
    assert r["protocol_name"] == "ESMTP"
    assert r["sender"] == "a@example.org"
    assert r["recipient"] == "ptest1@localhost"
    assert r["client_address"] == "127.0.0.2"
    assert r["client_name"] == "localhost"
    assert r["reverse_client_name"] == "localhost"
    assert r["helo_name"] == "client.test"
    assert r["policy_context"] == "ctx1"
    assert r["server_address"] == "127.0.0.1"
    assert r["server_port"] == str(postern.smtp_port)
    for k in ("queue_id", "instance", "sasl_method", "sasl_username", "size", "recipient_count",
              "client_port", "ccert_subject", "encryption_protocol"):
        assert k in r
    assert srv.requests[1]["recipient"] == "ptest2@localhost"
    data = srv.requests[2]
    assert data["protocol_state"] == "DATA"
    assert data["recipient_count"] == "1"
    assert srv.requests[1]["instance"] == data["instance"]     # one value per transaction
    # One connection for all three requests, and the next session reuses it too.
    assert rcpt(postern, "ptest3@localhost").startswith("250 ")
    assert srv.connections == 1
    assert srv.requests[3]["instance"] != data["instance"]


def test_unix_socket_and_request_limit(postern, tmp_path):
    srv = ScriptedPolicy(tmp_path, [], unix=True)
    start(postern, srv.service, smtpd_policy_service_request_limit="2")
    replies = rcpts(postern, "ptest1@localhost", "ptest2@localhost", "ptest3@localhost", "b@x.test")
    assert [r[:3] for r in replies] == ["250"] * 4
    assert len(srv.requests) == 4
    assert srv.connections == 2


def test_max_idle_closes_connection(postern, tmp_path):
    srv = ScriptedPolicy(tmp_path, [])
    start(postern, srv.service, smtpd_policy_service_max_idle="1s")
    assert rcpt(postern).startswith("250 ")
    postern.wait_for(lambda: srv.closed == 1, timeout=10, what="smtpd closing the idle connection")
    assert rcpt(postern).startswith("250 ")
    assert srv.connections == 2


def test_policy_server_down(postern):
    port = free_port()
    start(postern, "inet:127.0.0.1:%d" % port, smtpd_policy_service_retry_delay="1s")
    began = time.monotonic()
    # The default action is an access(5) action like any answer (Postfix: check_table_result).
    assert rcpt(postern) == CONFIG_PROBLEM % "ptest1@localhost"
    assert 0.9 < time.monotonic() - began < 10          # two tries, one retry delay
    postern.wait_log("smtpd", r"warning: problem talking to server inet:127\.0\.0\.1:%d: Connection refused" % port,
                     count=2)
    postern.stop()
    start(postern, "inet:127.0.0.1:%d" % port, smtpd_policy_service_default_action="DUNNO",
          smtpd_policy_service_try_limit="1")
    assert rcpt(postern).startswith("250 ")


def test_slow_server_times_out_and_retries(postern, tmp_path):
    srv = ScriptedPolicy(tmp_path, ["slow", "action=DEFER_IF_PERMIT try later"])
    start(postern, srv.service, smtpd_policy_service_timeout="1s")
    began = time.monotonic()
    assert rcpt(postern) == "450 4.7.1 <ptest1@localhost>: Recipient address rejected: try later"
    assert time.monotonic() - began < 4
    postern.wait_log("smtpd", r"warning: problem talking to server %s: timeout" % srv.service)
    assert srv.connections == 2


def test_garbage_close_and_huge_answers(postern, tmp_path):
    srv = ScriptedPolicy(tmp_path, ["garbage", "garbage", "close", "action=OK", "huge", "huge"])
    start(postern, srv.service)
    assert rcpts(postern, "ptest1@localhost", "ptest2@localhost", "ptest3@localhost") == [
        CONFIG_PROBLEM % "ptest1@localhost",      # two answers without action=
        "250 2.1.5 Ok",                           # hang-up, then OK on a new connection
        CONFIG_PROBLEM % "ptest3@localhost"]      # two answers over 8 KiB
    for reason in ("policy server answer without action= attribute", "connection closed by server",
                   "policy server answer too long"):
        postern.wait_log("smtpd", r"warning: problem talking to server %s: %s" % (srv.service, reason))
    assert postern.running("smtpd")


@pytest.mark.parametrize("service", ["inet:no-such-host.test:10023", "inet:127.0.0.1:99999"])
def test_bad_service_names(postern, service):
    start(postern, service, smtpd_policy_service_try_limit="1")
    assert rcpt(postern) == CONFIG_PROBLEM % "ptest1@localhost"
    postern.wait_log("smtpd", r"warning: problem talking to server %s: " % service)


@pytest.fixture
def postgrey():
    if not os.path.exists(POSTGREY):
        pytest.skip("postgrey is not installed")
    home = pathlib.Path(tempfile.mkdtemp(prefix="postern-postgrey-", dir="/var/tmp"))
    os.chmod(home, 0o755)          # postgrey drops to its own user
    db = home / "db"
    db.mkdir()
    shutil.chown(db, "postgrey", "postgrey")
    (home / "wl_clients").write_text("")
    (home / "wl_rcpts").write_text("")
    port = free_port()
    proc = subprocess.Popen([POSTGREY, "--inet=127.0.0.1:%d" % port, "--dbdir=%s" % db, "--delay=2",
                             "--whitelist-clients=%s" % (home / "wl_clients"),
                             "--whitelist-recipients=%s" % (home / "wl_rcpts"),
                             "--auto-whitelist-clients=0", "--hostname=postern.test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "postgrey did not start"
            time.sleep(0.1)   # polling for postgrey's port, with a deadline
    yield "inet:127.0.0.1:%d" % port
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        # a loaded machine can keep postgrey's (Perl) SIGTERM handling waiting: it is done here
        proc.kill()
        proc.wait(10)
    proc.stderr.close()
    shutil.rmtree(home, ignore_errors=True)


def test_postgrey_greylisting(postern, postgrey):
    start(postern, postgrey)
    for _ in range(2):      # the first attempt and a retry before the delay: greylisted
        reply = rcpt(postern)
        assert reply.startswith("450 4.2.0 <ptest1@localhost>: Recipient address rejected: Greylisted"), reply
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 450 4\.2\.0 "
                     r"<ptest1@localhost>: Recipient address rejected: Greylisted")
    time.sleep(2.5)   # postgrey's delay must pass: a timing test, nothing to wait for
    # after the delay: accepted, and postgrey's PREPEND puts X-Greylist: into the message
    postern.send("a@example.org", ["ptest1@localhost"], b"Subject: t\r\n\r\nx\r\n")
    (queue_id,) = queue_ids(postern)
    headers = content_of(postern, queue_id).split("\n\n", 1)[0]
    # above smtpd's Received:, as Postfix writes PREPEND headers
    assert re.match(r"X-Greylist: delayed [23] seconds by postgrey[^\n]*\nReceived: from ", headers), headers
    # another recipient is a new triplet: greylisted again
    assert rcpt(postern, "ptest2@localhost").startswith("450 4.2.0 <ptest2@localhost>: Recipient address "
                                                        "rejected: Greylisted")


def test_end_of_data_policy_then_pipelined_commands_wait_for_the_commit(postern, tmp_path):
    """An asynchronous end-of-data check hands the message to the committer inside its answer:
    what the client pipelined after the dot is answered only after the 250 (and QUIT does not
    free the session under a pending commit)."""
    srv = ScriptedPolicy(tmp_path, ["action=DUNNO"])
    start(postern, srv.service, smtpd_end_of_data_restrictions="check_policy_service %s" % srv.service)
    sock = socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10)
    f = sock.makefile("rb")

    def reply():
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
    sock.sendall(b"Subject: t\r\n\r\nx\r\n.\r\nRSET\r\nQUIT\r\n")
    replies = [reply() for _ in range(3)]
    assert replies[0].startswith(b"250 2.0.0 Ok: queued as "), replies
    assert replies[1:] == [b"250 2.0.0 Ok\r\n", b"221 2.0.0 Bye\r\n"], replies
    sock.close()
    assert len(queue_ids(postern)) == 1
