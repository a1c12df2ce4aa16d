"""The deep protocol tests of postern-smtpd's screening stage (Postfix's postscreen after the
greeting): postscreen_pipelining_enable, _non_smtp_command_enable, _bare_newline_enable with their
actions and TTLs, run by the stage's own SMTP engine, which answers RCPT with 450 ("come back
later") and never hands the client to the real SMTP session in that connection; the engine's
limits (command count, command time, HELO required, VRFY, EHLO keywords, reject footer); and the
stage's connection limits (postscreen_client_connection_count_limit, _pre_queue_limit,
_post_queue_limit). Clients come from their own loopback addresses (mynetworks is 127.0.0.1/32)."""

import sqlite3
import subprocess
import time

from test_smtpd_helpers import Raw, read_all, read_line
from test_smtpd_helpers import connect_from as connect

WAIT = 1   # postscreen_greet_wait of these tests, seconds
DEEP = ("pipelining", "non_smtp", "bare_newline")


def start(postern, **conf):
    settings = {"smtp/postern_postscreen_enable": "yes", "postscreen_greet_wait": f"{WAIT}s",
                "mynetworks": "127.0.0.1/32", "mydestination": "localhost, postern.test",
                "smtpd_banner": "postern.test ESMTP", "myhostname": "postern.test",
                "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}
    settings.update(conf)
    postern.configure(**settings)
    postern.start("smtpd")


def all_deep(**conf):
    c = {"postscreen_pipelining_enable": "yes", "postscreen_non_smtp_command_enable": "yes",
         "postscreen_bare_newline_enable": "yes"}
    c.update(conf)
    return c


def entry(postern, addr):
    db = postern.queue_dir / "postscreen_cache.db"
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM screen_cache WHERE address = ?", (addr,)).fetchone()
        return dict(row) if row else None


def swaks(postern, source):
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(postern.smtp_port),
                           "--local-interface", source, "--from", "a@example.org", "--to", "ptest1@localhost",
                           "--helo", "client.test", "--timeout", "20"],
                          capture_output=True, text=True, timeout=60)


def ehlo(c, helo="EHLO client.test"):
    """Sends EHLO; returns (code, [lines])."""
    c.send(helo + "\r\n")
    return c.reply()


def engine_session(c, helo="EHLO client.test"):
    """EHLO, MAIL, RCPT one at a time on a client of the engine; returns the RCPT reply."""
    code, lines = ehlo(c, helo)
    assert code == 250
    assert "PIPELINING" not in lines   # the engine never announces it
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    return c.cmd("RCPT TO:<ptest1@localhost>")


def test_well_behaved_client_comes_back_and_delivers(postern):
    start(postern, **all_deep())
    first = swaks(postern, "127.0.0.5")
    assert first.returncode != 0
    assert "<** 450 4.3.2 Service currently unavailable" in first.stdout, first.stdout
    m = postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.5\]:(\d+)")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from \[127\.0\.0\.5\]:%s: 450 4\.3\.2 Service currently "
                     r"unavailable; from=<a@example\.org>, to=<ptest1@localhost>, proto=ESMTP, "
                     r"helo=<client\.test>" % m.group(1))
    log = postern.log("smtpd")
    assert "connect from unknown[127.0.0.5]" not in log   # never handed to the SMTP session
    e = entry(postern, "127.0.0.5")
    now = time.time()
    for test in DEEP:   # postscreen_*_ttl = 30d
        assert 30 * 86400 - 60 < e[test] - now <= 30 * 86400, (test, e)
    assert 86400 - 60 < e["greet"] - now <= 86400

    second = swaks(postern, "127.0.0.5")
    assert second.returncode == 0, second.stdout
    assert "250 2.0.0 Ok: queued as" in second.stdout
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.5\]:\d+")
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.5\]")


def test_pipelining_enforce_drop_ignore(postern):
    start(postern, postscreen_pipelining_enable="yes")   # action enforce, the default
    batch = b"EHLO bot.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ptest1@localhost>\r\n"
    with Raw(sock=connect(postern, "127.0.0.6")) as c:
        assert c.greeting[0] == 220
        c.send(batch)   # one write: the commands wait behind EHLO when it is read
        assert c.reply()[0] == 250
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "550 5.5.1 Protocol error"
    postern.wait_log("smtpd", r"COMMAND PIPELINING from \[127\.0\.0\.6\]:\d+ after EHLO: "
                     r"MAIL FROM:<a@example\.org>\\r\\nRCPT TO:<ptest1@localhost>\\r\\n")
    assert "PASS NEW" not in postern.log("smtpd")
    assert entry(postern, "127.0.0.6")["pipelining"] == 0   # not passed: tested again

    postern.configure(postscreen_pipelining_action="drop")
    postern.restart("smtpd")
    s = connect(postern, "127.0.0.7")
    with Raw(sock=s) as c:
        c.send(batch)
        assert c.text() == "521 5.5.1 Protocol error"   # before any answer to EHLO
        assert c.is_closed()
    postern.wait_log("smtpd", r"COMMAND PIPELINING from \[127\.0\.0\.7\]:\d+ after EHLO")
    postern.wait_log("smtpd", r"DISCONNECT \[127\.0\.0\.7\]:\d+")

    postern.configure(postscreen_pipelining_action="ignore", postscreen_greet_ttl="1d")
    postern.restart("smtpd")
    with Raw(sock=connect(postern, "127.0.0.8")) as c:
        c.send(batch)
        assert c.reply()[0] == 250
        assert c.text() == "250 2.1.0 Ok"
        assert c.text() == "450 4.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"COMMAND PIPELINING from \[127\.0\.0\.8\]")
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.8\]")
    # ignored: passed only for the shortest of the TTLs (postscreen_dnsbl_ttl 1h here)
    e = entry(postern, "127.0.0.8")
    assert 3600 - 60 < e["pipelining"] - time.time() <= 3600, e


def test_non_smtp_commands(postern):
    start(postern, postscreen_non_smtp_command_enable="yes")   # action drop, the default
    for source, line, word in (("127.0.0.9", "CONNECT mail.example:443 HTTP/1.0", "CONNECT"),
                               ("127.0.0.10", "GET / HTTP/1.0", "GET")):
        with Raw(sock=connect(postern, source)) as c:
            assert c.cmd(line) == "521 5.7.0 Error: I can break rules, too. Goodbye."
            assert c.is_closed()
        postern.wait_log("smtpd", r"NON-SMTP COMMAND from \[%s\]:\d+ after CONNECT: %s" %
                         (source.replace(".", r"\."), line.replace(".", r"\.").replace("/", "/")))

    postern.configure(postscreen_non_smtp_command_action="enforce",
                      postscreen_forbidden_commands="CONNECT, GET, POST, X-Probe:")
    postern.restart("smtpd")
    with Raw(sock=connect(postern, "127.0.0.11")) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("Host: mail.example") == "502 5.5.2 Error: command not recognized"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "550 5.5.1 Protocol error"
        assert c.cmd("QUIT") == "221 2.0.0 Bye"
    postern.wait_log("smtpd", r"NON-SMTP COMMAND from \[127\.0\.0\.11\]:\d+ after EHLO: Host: mail\.example")
    with Raw(sock=connect(postern, "127.0.0.12")) as c:
        assert c.cmd("X-PROBE: 1").startswith("502")   # a "Word:" entry of the list
        assert c.cmd("POST /cgi HTTP/1.1").startswith("502")
    postern.wait_log("smtpd", r"NON-SMTP COMMAND from \[127\.0\.0\.12\]:\d+ after CONNECT: X-PROBE: 1")
    assert "PASS NEW" not in postern.log("smtpd")
    # a plain unknown command is no reason to fail
    with Raw(sock=connect(postern, "127.0.0.13")) as c:
        assert c.cmd("XYZZY").startswith("502")
        assert engine_session(c) == "450 4.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.13\]")


def test_bare_newline_actions(postern):
    start(postern, postscreen_bare_newline_enable="yes", postscreen_bare_newline_action="enforce")
    with Raw(sock=connect(postern, "127.0.0.14")) as c:
        c.send(b"EHLO client.test\n")   # LF alone
        assert c.reply()[0] == 250
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "550 5.5.1 Protocol error"
        assert c.cmd("DATA") == "554 5.5.1 Error: no valid recipients"   # the engine takes no mail
    postern.wait_log("smtpd", r"BARE NEWLINE from \[127\.0\.0\.14\]:\d+ after CONNECT")

    postern.configure(postscreen_bare_newline_action="drop")
    postern.restart("smtpd")
    with Raw(sock=connect(postern, "127.0.0.15")) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        c.send(b"MAIL FROM:<a@example.org>\n")
        assert c.text() == "521 5.5.1 Protocol error"
        assert c.is_closed()
    postern.wait_log("smtpd", r"BARE NEWLINE from \[127\.0\.0\.15\]:\d+ after EHLO")

    postern.configure(postscreen_bare_newline_action="ignore")
    postern.restart("smtpd")
    with Raw(sock=connect(postern, "127.0.0.16")) as c:
        c.send(b"HELO client.test\n")
        assert c.text() == "250 postern.test"
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "450 4.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"BARE NEWLINE from \[127\.0\.0\.16\]:\d+ after CONNECT")
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.16\]")
    assert "PASS NEW [127.0.0.14]" not in postern.log("smtpd")


def test_deep_ttl_expires_and_the_client_is_tested_again(postern):
    start(postern, postscreen_pipelining_enable="yes", postscreen_pipelining_ttl="3s")
    with Raw(sock=connect(postern, "127.0.0.17")) as c:
        assert len(c.greeting[1]) == 2   # the teaser, then the engine's 220 after the wait
        assert engine_session(c) == "450 4.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.17\]")
    until = entry(postern, "127.0.0.17")["pipelining"]

    with Raw(sock=connect(postern, "127.0.0.17")) as c:   # within the TTL: the real session
        assert c.greeting == (220, ["postern.test ESMTP"])
        code, lines = ehlo(c)
        assert "PIPELINING" in lines
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.17\]")

    postern.wait_for(lambda: time.time() > until + 0.1, timeout=10, what="the pipelining pass to expire")
    t0 = time.monotonic()
    with Raw(sock=connect(postern, "127.0.0.17")) as c:
        # the pregreet pass still holds: no teaser, no wait, straight to the engine's tests
        assert c.greeting == (220, ["postern.test ESMTP"])
        assert time.monotonic() - t0 < WAIT * 0.9
        assert engine_session(c) == "450 4.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.17\]", count=2)
    assert entry(postern, "127.0.0.17")["pipelining"] > until


def test_engine_limits_and_replies(postern):
    start(postern, **all_deep(postscreen_command_count_limit="4", postscreen_helo_required="yes",
                              postscreen_disable_vrfy_command="yes", postscreen_discard_ehlo_keywords="etrn, dsn",
                              postscreen_reject_footer="See https://postern.test/why for [$client_address]"))
    with Raw(sock=connect(postern, "127.0.0.18")) as c:
        assert c.cmd("MAIL FROM:<a@example.org>") == (
            "503 5.5.1 Error: send HELO/EHLO first\n5.5.1 See https://postern.test/why for [127.0.0.18]")
        code, lines = ehlo(c)
        assert code == 250 and lines[0] == "postern.test"
        assert "ETRN" not in lines and "DSN" not in lines and "VRFY" not in lines and "8BITMIME" in lines
        assert c.cmd("VRFY root").startswith("502 5.5.1 VRFY command is disabled")
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
        assert c.cmd("NOOP") == "421 4.7.0 postern.test Error: too many commands\n" \
                                "4.7.0 See https://postern.test/why for [127.0.0.18]"
        assert c.is_closed()
    postern.wait_log("smtpd", r"COMMAND COUNT LIMIT from \[127\.0\.0\.18\]:\d+ after NOOP")
    postern.wait_log("smtpd", r"discarding EHLO keywords: ETRN DSN")


def test_command_time_limit(postern):
    start(postern, **all_deep(postscreen_command_time_limit="1s"))
    with Raw(sock=connect(postern, "127.0.0.19")) as c:
        assert c.cmd("HELO client.test") == "250 postern.test"
        c.send(b"MAIL FR")   # never finished
        assert c.text() == "421 4.4.2 postern.test Error: timeout exceeded"
        assert c.is_closed()
    postern.wait_log("smtpd", r"COMMAND TIME LIMIT from \[127\.0\.0\.19\]:\d+ after HELO")


def test_client_connection_count_limit(postern):
    start(postern, postscreen_greet_wait="10s", postscreen_client_connection_count_limit="2")
    held = [connect(postern, "127.0.0.20") for _ in range(2)]
    for s in held:
        assert s.recv(4) == b"220-"
    s = connect(postern, "127.0.0.20")
    assert read_all(s) == "421 4.7.0 Error: too many connections from 127.0.0.20\r\n"
    postern.wait_log("smtpd", r"NOQUEUE: reject: CONNECT from \[127\.0\.0\.20\]:\d+: too many connections")
    t = connect(postern, "127.0.0.21")   # another client is not affected
    assert t.recv(4) == b"220-"
    for x in held + [s, t]:
        x.close()


def test_pre_and_post_queue_limits(postern):
    start(postern, postscreen_greet_wait="10s", postscreen_pre_queue_limit="2", postscreen_post_queue_limit="1")
    held = [connect(postern, "127.0.0.%d" % i) for i in (22, 23)]
    for s in held:
        assert s.recv(4) == b"220-"
    s = connect(postern, "127.0.0.24")
    assert read_all(s) == "421 4.3.2 All screening ports are busy\r\n"
    postern.wait_log("smtpd", r"NOQUEUE: reject: CONNECT from \[127\.0\.0\.24\]:\d+: all screening ports busy")
    with Raw(sock=connect(postern, "127.0.0.1")) as c:   # allowlisted: not waiting for a decision
        assert c.greeting[0] == 220
        # its session is the one postscreen_post_queue_limit = 1 allows
        s2 = connect(postern, "127.0.0.25")
        assert read_all(s2) == "421 4.3.2 All server ports are busy\r\n"
        postern.wait_log("smtpd", r"NOQUEUE: reject: CONNECT from \[127\.0\.0\.25\]:\d+: all server ports busy")
        assert c.cmd("QUIT").startswith("221")
    for x in held + [s, s2]:
        x.close()
    postern.wait_log("smtpd", r"disconnect from \S+\[127\.0\.0\.1\]")
    for source in ("22", "23"):   # the two that waited hung up
        postern.wait_log("smtpd", r"DISCONNECT \[127\.0\.0\.%s\]:\d+" % source)
    with Raw(sock=connect(postern, "127.0.0.1")) as c:   # the counts came down again
        assert c.greeting[0] == 220


def test_command_filter_and_keyword_maps_in_the_engine(postern):
    rules = postern.etc_dir / "screen_command_filter"
    rules.write_text("/^HELO nobody$/ EHLO filtered.test\n")
    start(postern, **all_deep(postscreen_command_filter=f"regexp:{rules}",
                              postscreen_discard_ehlo_keywords="dsn",
                              postscreen_discard_ehlo_keyword_address_maps="inline:{ {127.0.0.29 = etrn} }"))
    with Raw(sock=connect(postern, "127.0.0.29")) as c:
        code, lines = ehlo(c, "HELO nobody")   # replaced: a multi-line EHLO reply
        assert code == 250 and "DSN" in lines and "ETRN" not in lines, lines
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>").startswith("450")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from \[127\.0\.0\.29\]:\d+: 450 .*helo=<filtered\.test>")
    postern.wait_log("smtpd", r"replacing command \"HELO nobody\" with \"EHLO filtered\.test\"")
    with Raw(sock=connect(postern, "127.0.0.30")) as c:   # no map entry: postscreen_discard_ehlo_keywords
        code, lines = ehlo(c)
        assert code == 250 and "DSN" not in lines and "ETRN" in lines, lines


def test_clients_failed_under_enforce_do_not_count_against_post_queue_limit(postern):
    # postscreen holds a client that failed an "enforce" test in its own engine, not in an smtpd
    # process: pregreeting bots let on to be refused must not lock clean clients out with 421
    start(postern, postscreen_greet_action="enforce", postscreen_post_queue_limit="1")
    bots = []
    for source in ("127.0.0.27", "127.0.0.28"):
        s = connect(postern, source)
        assert read_line(s).startswith("220-")
        s.sendall(b"EHLO early\r\n")
        bot = Raw(sock=s)   # the rest of the greeting: let on, carrying the refusal
        assert bot.greeting[0] == 220
        bots.append(bot)
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.28\]")
    with Raw(sock=connect(postern, "127.0.0.1")) as c:   # the one session the limit allows
        assert c.greeting[0] == 220
        assert c.cmd("QUIT").startswith("221")
    assert "all server ports busy" not in postern.log("smtpd")
    for bot in bots:
        assert bot.cmd("EHLO client.test").startswith("250")
        assert bot.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert bot.cmd("RCPT TO:<ptest1@localhost>") == "550 5.5.1 Protocol error"
        bot.close()


def test_cache_of_the_release_before_is_read_and_upgraded(postern):
    db = postern.queue_dir / "postscreen_cache.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    until = int(time.time()) + 3600
    with sqlite3.connect(db) as conn:   # the schema of user_version 1
        conn.executescript("CREATE TABLE screen_cache (address TEXT PRIMARY KEY NOT NULL, greet INTEGER NOT NULL,"
                           " dnsbl INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL); PRAGMA user_version = 1;")
        conn.execute("INSERT INTO screen_cache VALUES ('127.0.0.26', ?, 0, ?)", (until, until - 3600))
    conn.close()
    start(postern)
    with Raw(sock=connect(postern, "127.0.0.26")) as c:
        assert c.greeting == (220, ["postern.test ESMTP"])
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.26\]")
    e = entry(postern, "127.0.0.26")
    assert e["greet"] == until and e["pipelining"] == 0 and e["bare_newline"] == 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    # with a deep test enabled, the old entry's pregreet pass still counts: straight to the engine
    postern.configure(postscreen_non_smtp_command_enable="yes")
    postern.restart("smtpd")
    with Raw(sock=connect(postern, "127.0.0.26")) as c:
        assert c.greeting == (220, ["postern.test ESMTP"])
        assert engine_session(c) == "450 4.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.26\]")
