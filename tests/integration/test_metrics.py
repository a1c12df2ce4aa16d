"""postern-metrics: the endpoint over HTTP (status codes, formats) and exact values after known
traffic through the real postern-smtpd, postern-qmgr, postern-local and postern-smtp — three
messages in one SMTP session (one also with a RCPT refused for an unknown user), delivered to a
local mailbox, to smtp-sink, and deferred at a closed port — and counters that survive a restart
of every daemon (they live in queue.db); and a scrape by Debian's prometheus server, run in the
foreground with a configuration the test writes, whose HTTP API must report the same values."""

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import mailtest
import pytest
from smtp_peers import Sink, free_port
from test_smtpd_tls import certs, tls_params  # noqa: F401 (certs is a fixture)


@pytest.fixture
def sink(postern):
    s = Sink(postern.root / "sink")
    yield s
    s.stop()


def test_http_answers(postern):
    postern.start("smtpd", "qmgr", "metrics")
    status, headers, body = postern.scrape()
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "postfix_up 1\n" in body
    assert "# TYPE postfix_smtpd_connects_total counter\n" in body
    assert "# EOF" not in body
    status, headers, body = postern.scrape(accept="application/openmetrics-text;version=1.0.0,"
                                                  "text/plain;version=0.0.4;q=0.5")
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert "# TYPE postfix_smtpd_connects counter\n" in body
    assert body.endswith("\n# EOF\n")
    assert postern.scrape(path="/")[0] == 404
    assert postern.scrape(path="/metrics/x")[0] == 404
    # Other methods, a malformed request, a client that says nothing (answered by the timeout,
    # not here: it only must not block the others).
    idle = socket.create_connection(("127.0.0.1", postern.metrics_port))
    for request, status_line in ((b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
                                 (b"BREW /metrics HTTP/1.0\r\n\r\n", b"405"),
                                 (b"garbage\r\n\r\n", b"400"),
                                 (b"GET /metrics HTTP/1.0\n\n", b"200")):
        with socket.create_connection(("127.0.0.1", postern.metrics_port), timeout=10) as c:
            c.sendall(request)
            answer = b""
            while chunk := c.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 " + status_line), (request, answer[:200])
            assert b"Connection: close\r\n" in answer
    # A request header that never ends is cut at its limit.
    with socket.create_connection(("127.0.0.1", postern.metrics_port), timeout=10) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nX-Long: " + b"a" * 9000)
        assert c.recv(100).startswith(b"HTTP/1.1 400")
    # The silent client is closed at the request deadline (10 s), unanswered.
    idle.settimeout(30)
    assert idle.recv(100) == b""
    idle.close()


def expected_after_traffic(sizes):
    return {
        "postfix_up": 1,
        "postfix_smtpd_connects_total": 1,
        "postfix_smtpd_disconnects_total": 1,
        "postfix_smtpd_messages_processed_total": 3,
        "postern_smtpd_received_bytes_total": sum(sizes),
        'postfix_smtpd_messages_rejected_total{code="550",dsn="5.1.1",command="RCPT"}': 1,
        "postfix_smtpd_sasl_authentication_failures_total": 0,
        "postfix_qmgr_messages_removed_total": 2,
        'postern_deliveries_total{transport="local",status="sent"}': 1,
        'postern_deliveries_total{transport="smtp",status="sent"}': 1,
        'postern_deliveries_total{transport="smtp",status="deferred"}': 1,
        'postern_delivery_delay_seconds_count{transport="local"}': 1,
        'postern_delivery_delay_seconds_count{transport="smtp"}': 1,
        'postern_delivery_delay_seconds_bucket{transport="smtp",le="+Inf"}': 1,
        'postern_delivery_delay_seconds_bucket{transport="smtp",le="3600"}': 1,
        'postern_queue_recipients{queue="deferred"}': 1,
        'postern_queue_recipients{queue="incoming"}': 0,
        'postern_queue_recipients{queue="active"}': 0,
        'postern_queue_recipients{queue="hold"}': 0,
        'postfix_showq_message_size_bytes_count{queue="deferred"}': 1,
        'postfix_showq_message_age_seconds_count{queue="deferred"}': 1,
        'postfix_showq_message_age_seconds_bucket{queue="deferred",le="10000"}': 1,
        'postfix_showq_message_size_bytes_count{queue="incoming"}': 0,
        "postfix_qmgr_messages_inserted_receipients_count": 3,
        'postfix_qmgr_messages_inserted_receipients_bucket{le="1"}': 3,
        "postfix_qmgr_messages_inserted_size_bytes_count": 3,
        "postfix_qmgr_messages_inserted_size_bytes_sum": sum(sizes),
    }


def check_values(postern, expected, timeout=30):
    def matches():
        v = postern.metric_values()
        return all(v.get(k) == x for k, x in expected.items())
    try:
        postern.wait_for(matches, timeout=timeout, what="the expected metric values")
    except AssertionError:
        v = postern.metric_values()
        assert {k: v.get(k) for k in expected} == expected
    return postern.metric_values()


def test_values_after_known_traffic(postern, sink):
    closed = free_port()
    postern.configure(transport_maps=f"inline:{{sink.test=smtp:[127.0.0.1]:{sink.port}, "
                                     f"dead.test=smtp:[127.0.0.1]:{closed}}}",
                      minimal_backoff_time="3600s")
    postern.start()
    postern.start("metrics")
    before = postern.metric_values()
    assert before["postfix_smtpd_connects_total"] == 0
    assert before['postern_queue_recipients{queue="deferred"}'] == 0

    with postern.smtp() as s:
        s.ehlo()
        assert s.mail("sender@example.org")[0] == 250
        assert s.rcpt("nosuchuser@postern.test")[0] == 550
        assert s.rcpt("ptest1@postern.test")[0] == 250
        assert s.data(mailtest.msg("m1@test", to="ptest1@postern.test"))[0] == 250
        for mid, rcpt in (("m2@test", "a@sink.test"), ("m3@test", "b@dead.test")):
            assert s.mail("sender@example.org")[0] == 250
            assert s.rcpt(rcpt)[0] == 250
            assert s.data(mailtest.msg(mid, to=rcpt))[0] == 250
    sink.wait_count(1)
    postern.wait_log("smtp", r"to=<b@dead\.test>.*status=deferred")
    postern.wait_log("qmgr", r"removed", count=2)
    sizes = [int(m) for m in re.findall(r": from=<sender@example\.org>, size=(\d+), nrcpt=1\n",
                                         postern.log("smtpd"))]
    assert len(sizes) == 3

    values = check_values(postern, expected_after_traffic(sizes))
    # A delivered local message took well under an hour; a bucket never holds more than +Inf.
    assert values['postern_delivery_delay_seconds_bucket{transport="local",le="3600"}'] == 1
    assert values['postern_delivery_delay_seconds_sum{transport="local"}'] < 3600

    # Counters live in queue.db: a restart of every daemon keeps them.
    postern.stop()
    postern.start()
    postern.start("metrics")
    expected = expected_after_traffic(sizes)
    check_values(postern, expected)


@pytest.mark.skipif(not shutil.which("certtool"), reason="needs gnutls-bin (certtool)")
def test_tls_and_anvil_events(postern, certs):
    """A STARTTLS handshake is counted by protocol and cipher, an anvil refusal by its limit."""
    import ssl
    postern.configure(mynetworks="127.0.0.1/32", smtpd_client_connection_rate_limit=1,
                      **tls_params(certs))
    postern.start("anvil", "smtpd", "qmgr", "metrics")
    with postern.smtp("127.0.0.2") as s:
        s.ehlo()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s._host = "postern.test"              # smtplib sends it as SNI; connect() left it empty
        assert s.starttls(context=ctx)[0] == 220
        s.ehlo()
        protocol = s.sock.version()          # e.g. TLSv1.3
        assert s.noop()[0] == 250
    with socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10,
                                  source_address=("127.0.0.2", 0)) as c:
        assert c.makefile("rb").readline().startswith(b"421 4.7.0 ")
    postern.wait_log("smtpd", r"Connection rate limit exceeded")
    check_values(postern, {"postfix_smtpd_connects_total": 2,
                           'postern_smtpd_anvil_rejects_total{limit="connect"}': 1})
    tls = {k: v for k, v in postern.metric_values().items()
           if k.startswith("postfix_smtpd_tls_connections_total{")}
    assert list(tls.values()) == [1], tls
    assert re.fullmatch(r'postfix_smtpd_tls_connections_total\{protocol="' + re.escape(protocol) +
                        r'",cipher="[A-Z0-9_-]+"\}', list(tls)[0]), tls


def prometheus_query(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    return {json.dumps(x["metric"], sort_keys=True): float(x["value"][1]) for x in answer["data"]["result"]}


@pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus not installed (Debian prometheus)")
def test_prometheus_scrapes(postern):
    postern.start("smtpd", "qmgr", "local")
    postern.start("metrics")
    for i in range(2):
        mailtest.send(postern, "sender@example.org", ["ptest1@postern.test"],
                      mailtest.msg(f"p{i}@test", to="ptest1@postern.test"))
    postern.wait_log("qmgr", r"removed", count=2)
    check_values(postern, {"postfix_smtpd_messages_processed_total": 2,
                           'postern_deliveries_total{transport="local",status="sent"}': 2})
    # promtool (same package) lints the text format: names, types, help; no complaint at all.
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=postern.scrape()[2],
                           capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), (r.stdout, r.stderr)

    web_port = free_port()
    work = postern.root / "prometheus"
    work.mkdir()
    config = work / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                      "scrape_configs:\n  - job_name: postern\n    static_configs:\n"
                      f"      - targets: ['127.0.0.1:{postern.metrics_port}']\n")
    log = open(work / "log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{web_port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def scraped():
            if prom.poll() is not None:
                raise AssertionError("prometheus exited:\n" + (work / "log").read_text(errors="replace")[-3000:])
            try:
                v = prometheus_query(web_port, "postfix_smtpd_messages_processed_total")
            except OSError:
                return False
            return list(v.values()) == [2.0]
        postern.wait_for(scraped, timeout=60, what="prometheus to scrape postern-metrics")
        assert prometheus_query(web_port, 'up{job="postern"}') == \
            {json.dumps({"__name__": "up", "instance": f"127.0.0.1:{postern.metrics_port}", "job": "postern"},
                        sort_keys=True): 1.0}
        sent = prometheus_query(web_port, 'postern_deliveries_total{status="sent"}')
        assert list(sent.values()) == [2.0] and '"transport": "local"' in list(sent)[0]
        # The histogram parses as one: a quantile comes out of its buckets.
        q = prometheus_query(web_port, "histogram_quantile(0.5, postern_delivery_delay_seconds_bucket)")
        assert len(q) == 1 and 0 <= list(q.values())[0] <= 1
        assert prometheus_query(web_port, 'postern_queue_recipients{queue="deferred"}') != {}
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def test_sasl_failures(postern, dovecot):
    """A wrong password is one SASL failure; a good login is none."""
    from test_smtpd_auth import start as start_auth, ehlo, b64, PLAIN_ALICE
    from test_smtpd_helpers import raw
    start_auth(postern, dovecot)
    postern.start("metrics")
    with raw(postern, source="127.0.0.2") as c:
        ehlo(c)
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0wrong")).startswith("535 5.7.8 ")
        assert c.cmd("AUTH PLAIN " + PLAIN_ALICE) == "235 2.7.0 Authentication successful"
    check_values(postern, {"postfix_smtpd_sasl_authentication_failures_total": 1,
                           "postfix_smtpd_connects_total": 1})


def test_milter_actions(postern):
    """postern_smtpd_milter_actions_total{milter,action}: a scripted milter that rejects one
    recipient, then at the end of each message accepts, tempfails, discards, and quarantines
    (and accepts); and a second milter that is down (default_action accept): "failed" once."""
    from milter_peer import ScriptedMilter
    ends = iter([[("c", b"")], [("t", b"")], [("d", b"")], [("q", b"held for review\0"), ("c", b"")]])
    m = ScriptedMilter(script={"R": lambda _, data: [("r", b"")] if b"ptest2" in data else [("c", b"")],
                               "E": lambda *_: next(ends)})
    down = f"inet:127.0.0.1:{free_port()}"
    postern.configure(smtpd_milters=f"{m.spec} {down}", milter_default_action="accept",
                      milter_connect_timeout="5s", milter_command_timeout="5s", milter_content_timeout="5s")
    postern.start("smtpd", "qmgr", "metrics")
    try:
        with postern.smtp() as s:
            s.ehlo()
            replies = []
            for i in range(4):
                assert s.mail("sender@example.org")[0] == 250
                if i == 0:
                    assert s.rcpt("ptest2@postern.test")[0] == 550   # a known user: the milter says no
                assert s.rcpt("ptest1@postern.test")[0] == 250
                replies.append(s.data(mailtest.msg(f"milter-{i}@test", to="ptest1@postern.test"))[0])
        assert replies == [250, 451, 250, 250]
    finally:
        m.close()
    check_values(postern, {
        f'postern_smtpd_milter_actions_total{{milter="{m.spec}",action="reject"}}': 1,
        f'postern_smtpd_milter_actions_total{{milter="{m.spec}",action="accept"}}': 2,
        f'postern_smtpd_milter_actions_total{{milter="{m.spec}",action="tempfail"}}': 1,
        f'postern_smtpd_milter_actions_total{{milter="{m.spec}",action="discard"}}': 1,
        f'postern_smtpd_milter_actions_total{{milter="{m.spec}",action="quarantine"}}': 1,
        f'postern_smtpd_milter_actions_total{{milter="{down}",action="failed"}}': 1,
    })
    family = {k for k in postern.metric_values() if k.startswith("postern_smtpd_milter_actions_total")}
    assert len(family) == 6, family


def test_verify_outcomes(postern, aiosmtpd_server):
    """postern_verify_queries_total{result,cache} and postern_verify_probes_total{result}: three
    unknown addresses (pending, cache misses, one probe each: deliverable, undeliverable,
    undetermined by the next hop's answer), then each asked again (answered from the cache)."""
    from test_verify import configure, rcpt
    configure(postern, aiosmtpd_server)
    postern.start("smtpd", "qmgr", "smtp", "verify", "metrics")
    addresses = ("good@remote.example", "bad@remote.example", "soft@remote.example")
    for a in addresses:
        assert rcpt(postern, a)[0] == 450
    for what in ("good@remote\\.example>: deliverable", "bad@remote\\.example>: undeliverable",
                 "soft@remote\\.example>: undetermined"):
        postern.wait_log("verify", "<" + what)
    assert [rcpt(postern, a)[0] for a in addresses] == [250, 550, 450]
    check_values(postern, {
        'postern_verify_queries_total{result="pending",cache="miss"}': 3,
        'postern_verify_queries_total{result="deliverable",cache="hit"}': 1,
        'postern_verify_queries_total{result="undeliverable",cache="hit"}': 1,
        'postern_verify_queries_total{result="undetermined",cache="hit"}': 1,
        'postern_verify_probes_total{result="deliverable"}': 1,
        'postern_verify_probes_total{result="undeliverable"}': 1,
    })
    # the undetermined one may be probed again when asked (it is no definite answer)
    assert postern.metric_values()['postern_verify_probes_total{result="undetermined"}'] >= 1
