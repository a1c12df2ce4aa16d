"""Before-queue content filtering (smtpd_proxy_filter, SMTPD_PROXY_README): port 25's
transactions pass through a scripted SMTP proxy (filter_peers.BeforeQueueProxy), which relays the
mail to a second listener that queues it (127.0.0.1-PORT with smtpd_proxy_filter empty); the
proxy's replies become the client's. Without smtpd_proxy_options = speed_adjust the proxy answers
MAIL, RCPT and DATA as they come; with it postern-smtpd answers them itself and contacts the
proxy once the message is complete (seed 003), so a refusal there refuses the message. Messages
are counted end to end; a proxy that hangs costs the client 451 after smtpd_proxy_timeout; a
proxy that is down, 451."""

import re
import time

import pytest

from postern_harness import tcp_listener

from filter_peers import BeforeQueueProxy


@pytest.fixture(params=["plain", "speed_adjust"])
def proxied(request, postern):
    """Yields (postern, proxy, speed_adjust)."""
    after = tcp_listener()
    port = after.getsockname()[1]
    proxy = BeforeQueueProxy(port)
    speed = request.param == "speed_adjust"
    postern.configure(**{
        "smtpd_proxy_filter": f"127.0.0.1:{proxy.port}",
        "smtpd_proxy_ehlo": "proxy-ehlo.test",
        "smtpd_proxy_timeout": "3s",
        "smtpd_proxy_options": "speed_adjust" if speed else "",
        f"127.0.0.1-{port}/smtpd_proxy_filter": "",
        f"127.0.0.1-{port}/receive_override_options": "no_unknown_recipient_checks",
        f"127.0.0.1-{port}/smtpd_authorized_xforward_hosts": "127.0.0.0/8",
    })
    postern.set_aliases("proxyreject: ptest3\nproxygarbage: ptest3\n")   # known here; only the proxy refuses it
    postern.listeners["smtpd"].append((f"127.0.0.1-{port}", after))
    postern.start()
    yield postern, proxy, speed
    proxy.stop()


def msg(tag):
    return f"From: alice@example.org\nSubject: proxied {tag}\n\nbody {tag}\n"


def test_messages_pass_through_the_proxy(proxied):
    postern, proxy, speed = proxied
    for i in range(3):
        code, text = postern.send("alice@example.org", ["ptest1@postern.test", "ptest2@postern.test"], msg(i))
        # the reply to the end of data is the proxy's, which is the queueing listener's
        assert code == 250 and "queued as" in text, (code, text)
    postern.wait_mailbox("ptest1", r"Subject: proxied", count=3, timeout=60)
    postern.wait_mailbox("ptest2", r"Subject: proxied", count=3, timeout=60)
    postern.wait_queue_empty(timeout=60)
    assert proxy.relayed_count() == 3
    assert postern.mailbox("ptest1").count("Subject: proxied") == 3
    # each transaction had a proxy session of its own, greeted with smtpd_proxy_ehlo
    assert len(proxy.sessions) == 3
    for cmds in proxy.sessions:
        assert cmds[0] == "EHLO proxy-ehlo.test", cmds
        # the proxy offers XFORWARD: it learns the real client, and passes it on
        assert cmds[1].startswith("XFORWARD NAME=localhost ADDR=127.0.0.1 PORT=") and \
            cmds[1].endswith(" PROTO=ESMTP HELO=client.test SOURCE=REMOTE"), cmds
        assert cmds[2].startswith("MAIL FROM:<alice@example.org>"), cmds
        assert cmds[3:] == ["RCPT TO:<ptest1@postern.test>", "RCPT TO:<ptest2@postern.test>", "DATA",
                            "<message>", "QUIT"], cmds
    # so the queueing listener's Received: names the client, not the proxy
    assert "Received: from proxy.test" not in postern.mailbox("ptest1")
    assert postern.mailbox("ptest1").count("Received: from client.test (localhost [127.0.0.1])") == 6
    log = postern.log("smtpd")
    assert len(re.findall(r": proxy-accept: END-OF-MESSAGE from \S+: 250 .*queued as", log)) == 3, log


def test_proxy_replies_are_the_clients(proxied):
    postern, proxy, speed = proxied
    with postern.smtp() as s:
        s.ehlo()
        code, text = s.mail("alice@example.org")
        assert code == 250
        assert (b"at the proxy" in text) != speed, text     # speed_adjust: our own 250
        code, text = s.rcpt("proxyreject@postern.test")
        if speed:
            assert code == 250, text
        else:
            assert code == 550 and b"Recipient refused by the proxy" in text, text
        assert s.rcpt("ptest1@postern.test")[0] == 250
        code, text = s.data(msg("partial").encode())
        if speed:   # the proxy's refusal of one recipient refuses the message
            assert code == 550 and b"Recipient refused by the proxy" in text, text
        else:
            assert code == 250, text
        code, text = s.mail("alice@example.org")
        assert code == 250
        assert s.rcpt("ptest2@postern.test")[0] == 250
        code, text = s.data(msg("refused PROXY-REJECT").encode())
        assert code == 554 and b"Message refused by the proxy" in text, text
    if not speed:
        postern.wait_mailbox("ptest1", r"Subject: proxied partial", timeout=60)
    postern.wait_queue_empty(timeout=60)
    assert proxy.relayed_count() == (0 if speed else 1)
    assert "refused PROXY-REJECT" not in postern.mailbox("ptest2")
    log = postern.log("smtpd")
    assert re.search(r": proxy-reject: END-OF-MESSAGE from \S+: 554 5\.7\.1 Message refused by the proxy", log), log
    if not speed:
        assert re.search(r"reject: RCPT from \S+: 550 5\.7\.1 Recipient refused by the proxy; "
                         r"from=<alice@example\.org> to=<proxyreject@postern\.test>", log), log


def test_hanging_proxy_times_out_with_451(proxied):
    postern, proxy, _ = proxied
    with postern.smtp(timeout=30) as s:
        s.ehlo()
        assert s.mail("alice@example.org")[0] == 250
        assert s.rcpt("ptest1@postern.test")[0] == 250
        start = time.monotonic()
        code, text = s.data(msg("PROXY-HANG").encode())
        assert code == 451 and b"4.3.0" in text, (code, text)
        assert time.monotonic() - start >= 2.5
        # the session goes on: the next transaction has a proxy connection of its own
        assert s.sendmail("alice@example.org", ["ptest1@postern.test"], msg("after hang").encode()) == {}
    postern.wait_mailbox("ptest1", r"Subject: proxied after hang", timeout=60)
    postern.wait_queue_empty(timeout=60)
    assert "PROXY-HANG" not in postern.mailbox("ptest1")
    assert proxy.relayed_count() == 1
    postern.wait_log("smtpd", r"warning: \w+: proxy filter inet:127\.0\.0\.1:\d+: timeout at END-OF-MESSAGE")


def test_malformed_proxy_reply_is_a_temporary_failure(proxied):
    postern, proxy, speed = proxied
    with postern.smtp() as s:
        s.ehlo()
        assert s.mail("alice@example.org")[0] == 250
        code, text = s.rcpt("proxygarbage@postern.test")
        if not speed:
            assert code == 451 and b"4.3.0" in text, (code, text)
            # the rest of the transaction gets the same answer; the next one starts afresh
            assert s.rcpt("ptest1@postern.test")[0] == 451
            s.rset()
            assert s.sendmail("alice@example.org", ["ptest1@postern.test"], msg("after garbage").encode()) == {}
        else:
            assert code == 250
            code, text = s.data(msg("garbage").encode())
            assert code == 451 and b"4.3.0" in text, (code, text)
    postern.wait_log("smtpd", r"warning: \w+: proxy filter inet:127\.0\.0\.1:\d+: malformed reply at (RCPT|MAIL)")
    if not speed:
        postern.wait_mailbox("ptest1", r"Subject: proxied after garbage", timeout=60)
    assert "Subject: proxied garbage" not in postern.mailbox("ptest3")


def test_client_leaving_while_the_proxy_hangs(proxied):
    postern, proxy, _ = proxied
    s = postern.smtp(timeout=30)
    s.ehlo()
    assert s.mail("alice@example.org")[0] == 250
    assert s.rcpt("ptest1@postern.test")[0] == 250
    assert s.docmd("DATA")[0] == 354
    s.send(msg("PROXY-HANG").replace("\n", "\r\n").encode() + b".\r\n")
    postern.wait_for(lambda: any("<message>" in c for c in proxy.sessions), what="the message at the proxy")
    s.close()                           # gone while smtpd waits for the proxy
    postern.wait_log("smtpd", r"disconnect from localhost")
    time.sleep(3.5)                     # past smtpd_proxy_timeout: the dropped wait must stay dropped
    assert postern.running("smtpd")
    assert postern.send("alice@example.org", ["ptest1@postern.test"], msg("later"))[0] == 250
    postern.wait_mailbox("ptest1", r"Subject: proxied later", timeout=60)


def test_proxy_down_is_a_temporary_failure(proxied):
    postern, proxy, speed = proxied
    proxy.stop()
    with postern.smtp() as s:
        s.ehlo()
        code, text = s.mail("alice@example.org")
        if not speed:
            assert code == 451 and b"4.3.0" in text, text
            return
        assert code == 250
        assert s.rcpt("ptest1@postern.test")[0] == 250
        code, text = s.data(msg("down").encode())
        assert code == 451 and b"4.3.0" in text, (code, text)
    assert postern.queue_count() == 0
    assert re.search(r"proxy filter inet:127\.0\.0\.1:\d+: cannot connect: Connection refused", postern.log("smtpd"))


def test_submit_socket_is_not_proxied(proxied):
    postern, proxy, _ = proxied
    postern.sendmail(["-f", "alice@example.org", "ptest3@postern.test"], input=msg("local").encode())
    postern.wait_mailbox("ptest3", r"Subject: proxied local", timeout=60)
    assert proxy.sessions == []


def test_bad_proxy_settings_are_errors(postern):
    postern.configure(smtpd_proxy_options="speed_adjust, fast")
    with pytest.raises(RuntimeError, match=r'smtpd_proxy_options: unknown option "fast"'):
        postern.start("smtpd")


def test_bdat_is_sent_as_data(proxied):
    postern, proxy, _ = proxied
    body = msg("bdat").replace("\n", "\r\n").encode()
    with postern.smtp() as s:
        s.ehlo()
        assert s.has_extn("chunking")
        assert s.mail("alice@example.org")[0] == 250
        assert s.rcpt("ptest2@postern.test")[0] == 250
        s.send(b"BDAT %d LAST\r\n" % len(body) + body)
        code, text = s.getreply()
        assert code == 250 and b"queued as" in text, (code, text)
    postern.wait_mailbox("ptest2", r"Subject: proxied bdat", timeout=60)
    assert "DATA" in proxy.sessions[0] and "<message>" in proxy.sessions[0], proxy.sessions
