"""check_policy_service (smtpd-policy.c) against a real postgrey and a scripted policy server,
run through build/daemons/smtpd/smtpd-check-driver until the restriction engine calls it."""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import postern_harness
from test_smtpd_helpers import ScriptedPolicy, free_port  # noqa: F401 (re-exported)

DRIVER = postern_harness.binary("daemons/smtpd/smtpd-check-driver")
POSTGREY = "/usr/sbin/postgrey"


def run_checks(tmp_path, *checks, conf="", sender="a@example.org", client="127.0.0.2"):
    cf = tmp_path / "main.cf"
    cf.write_text("myhostname = postern.test\n" + conf)
    p = subprocess.run([DRIVER, str(cf), client, "localhost", "localhost", "client.test", sender]
                       + list(checks), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [line.split(": ", 1)[1] for line in p.stdout.splitlines()], p.stderr


def test_request_attributes_and_action(tmp_path):
    srv = ScriptedPolicy(tmp_path, ["action=REJECT go away", "action=OK"])
    res, _ = run_checks(tmp_path, "check_policy_service|%s|RCPT|b@example.net" % srv.service,
                        "check_policy_service|%s|DATA|" % srv.service,
                        conf="smtpd_policy_service_policy_context = ctx1\n")
    assert res == ["REJECT go away", "OK"]
    assert srv.connections == 1          # the connection was reused
    r = srv.requests[0]
    assert r["request"] == "smtpd_access_policy"
    assert r["protocol_state"] == "RCPT"
    assert r["sender"] == "a@example.org"
    assert r["recipient"] == "b@example.net"
    assert r["client_address"] == "127.0.0.2"
    assert r["client_name"] == "localhost"
    assert r["reverse_client_name"] == "localhost"
    assert r["helo_name"] == "client.test"
    assert r["policy_context"] == "ctx1"
    for k in ("queue_id", "instance", "sasl_method", "sasl_username", "size", "recipient_count",
              "protocol_name", "server_address", "client_port", "ccert_subject", "encryption_protocol"):
        assert k in r
    assert srv.requests[1]["protocol_state"] == "DATA"
    assert srv.requests[0]["instance"] == srv.requests[1]["instance"]


def test_unix_socket_and_request_limit(tmp_path):
    srv = ScriptedPolicy(tmp_path, [], unix=True)
    res, _ = run_checks(tmp_path, *["check_policy_service|%s|RCPT|b@x.test" % srv.service] * 4,
                        conf="smtpd_policy_service_request_limit = 2\n")
    assert res == ["DUNNO"] * 4
    assert srv.connections == 2


def test_max_idle_closes_connection(tmp_path):
    srv = ScriptedPolicy(tmp_path, [])
    svc = "check_policy_service|%s|RCPT|b@x.test" % srv.service
    res, _ = run_checks(tmp_path, svc, "sleep|2.5", svc, conf="smtpd_policy_service_max_idle = 1s\n")
    assert res == ["DUNNO", "DUNNO"]
    assert srv.connections == 2


def test_server_down_default_action(tmp_path):
    port = free_port()
    start = time.monotonic()
    res, err = run_checks(tmp_path, "check_policy_service|inet:127.0.0.1:%d|RCPT|b@x.test" % port,
                          conf="smtpd_policy_service_retry_delay = 1s\n")
    assert res == ["451 4.3.5 Server configuration problem"]
    assert 0.9 < time.monotonic() - start < 10         # two tries, one retry delay
    assert err.count("problem talking to server inet:127.0.0.1:%d: Connection refused" % port) == 2
    res, _ = run_checks(tmp_path, "check_policy_service|inet:127.0.0.1:%d|RCPT|b@x.test" % port,
                        conf="smtpd_policy_service_default_action = DUNNO\n"
                             "smtpd_policy_service_try_limit = 1\n")
    assert res == ["DUNNO"]


def test_slow_server_times_out_and_retries(tmp_path):
    srv = ScriptedPolicy(tmp_path, ["slow", "action=DEFER_IF_PERMIT try later"])
    start = time.monotonic()
    res, err = run_checks(tmp_path, "check_policy_service|%s|RCPT|b@x.test" % srv.service,
                          conf="smtpd_policy_service_timeout = 1s\nsmtpd_policy_service_retry_delay = 0s\n")
    assert res == ["DEFER_IF_PERMIT try later"]
    assert time.monotonic() - start < 4
    assert "problem talking to server %s: timeout" % srv.service in err


def test_garbage_close_and_huge_answers(tmp_path):
    srv = ScriptedPolicy(tmp_path, ["garbage", "garbage", "close", "action=OK", "huge", "huge"])
    conf = "smtpd_policy_service_retry_delay = 0s\n"
    svc = "check_policy_service|%s|RCPT|b@x.test" % srv.service
    res, err = run_checks(tmp_path, svc, svc, svc, conf=conf)
    assert res == ["451 4.3.5 Server configuration problem", "OK",
                   "451 4.3.5 Server configuration problem"]
    assert "policy server answer without action= attribute" in err
    assert "connection closed by server" in err
    assert "policy server answer too long" in err


def test_bad_service_names(tmp_path):
    res, err = run_checks(tmp_path, "check_policy_service|inet:no-such-host.test:10023|RCPT|b@x.test",
                          "check_policy_service|inet:127.0.0.1:99999|RCPT|b@x.test",
                          conf="smtpd_policy_service_try_limit = 1\n")
    assert res == ["451 4.3.5 Server configuration problem"] * 2


@pytest.fixture
def postgrey(tmp_path):
    if not os.path.exists(POSTGREY):
        pytest.skip("postgrey is not installed")
    import pathlib
    import tempfile
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
            time.sleep(0.1)
    yield "inet:127.0.0.1:%d" % port
    proc.terminate()
    proc.wait(10)
    proc.stderr.close()
    shutil.rmtree(home, ignore_errors=True)


def test_postgrey_greylists_then_accepts(tmp_path, postgrey):
    svc = "check_policy_service|%s|RCPT|ptest1@postern.test" % postgrey
    res, _ = run_checks(tmp_path, svc, svc)
    assert len(res) == 2
    for r in res:       # first attempt and a retry before the delay: greylisted
        assert r.startswith("DEFER_IF_PERMIT 4.2.0 Greylisted"), r
    time.sleep(2.5)
    res, _ = run_checks(tmp_path, svc)
    assert res[0].startswith("PREPEND X-Greylist: delayed "), res
    # another recipient is a new triplet: greylisted again
    res, _ = run_checks(tmp_path, "check_policy_service|%s|RCPT|ptest2@postern.test" % postgrey)
    assert res[0].startswith("DEFER_IF_PERMIT 4.2.0 Greylisted"), res
