"""The screening stage of postern-smtpd (Postfix's postscreen): smtp/postern_postscreen_enable.
Clients come from their own loopback addresses (127.0.0.5, ...) so that mynetworks
(127.0.0.1/32 here) does not allowlist them: a clean client waits out postscreen_greet_wait after
the "220-" teaser, passes (PASS NEW) and is cached, so its next connection goes straight on (PASS
OLD); a client that talks before the greeting is logged (PREGREET) and dropped, refused at RCPT
(enforce) or let on (ignore), never cached; postscreen_access_list permits and rejects; the wait
is a timer, so many waiting clients do not delay one that is allowlisted; behind the PROXY
protocol the proxied address is the one screened."""

import re
import sqlite3
import time

from test_smtpd_helpers import Raw, content_of, read_all, read_line
from test_smtpd_helpers import connect_from as connect

WAIT = 1.0   # postscreen_greet_wait of these tests


def start(postern, **conf):
    settings = {"smtp/postern_postscreen_enable": "yes", "postscreen_greet_wait": f"{int(WAIT)}s",
                "mynetworks": "127.0.0.1/32", "mydestination": "localhost, postern.test",
                "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}
    settings.update(conf)
    postern.configure(**settings)
    postern.start("smtpd")


def send_local(c):
    assert c.cmd("EHLO client.test").startswith("250")
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354")
    r = c.cmd("Subject: screened\r\n\r\nhello\r\n.")
    assert r.startswith("250 2.0.0 Ok: queued as "), r
    assert c.cmd("QUIT").startswith("221")
    return r.split()[-1]


def cached(postern, addr):
    db = postern.queue_dir / "postscreen_cache.db"
    if not db.exists():
        return None   # never opened: nobody was tested yet
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT greet FROM screen_cache WHERE address = ?", (addr,)).fetchone()


def test_clean_client_passes_new_then_old(postern):
    start(postern, smtpd_banner="postern.test ESMTP")
    t0 = time.monotonic()
    with Raw(sock=connect(postern, "127.0.0.5")) as c:
        took = time.monotonic() - t0
        # the teaser, then the real greeting after the wait: one multi-line 220
        assert c.greeting == (220, ["postern.test ESMTP", "postern.test ESMTP"])
        assert took >= WAIT * 0.9, took
        qid = send_local(c)
    assert "hello" in content_of(postern, qid)
    m = postern.wait_log("smtpd", r"CONNECT from \[127\.0\.0\.5\]:(\d+) to \[127\.0\.0\.1\]:%d" % postern.smtp_port)
    port = m.group(1)
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.5\]:%s\b" % port)
    postern.wait_log("smtpd", r"connect from unknown\[127\.0\.0\.5\]")
    (greet,) = cached(postern, "127.0.0.5")
    assert 86000 < greet - time.time() <= 86400   # postscreen_greet_ttl = 1d

    # cached: no teaser, no wait
    t0 = time.monotonic()
    with Raw(sock=connect(postern, "127.0.0.5")) as c:
        assert c.greeting == (220, ["postern.test ESMTP"])
        assert time.monotonic() - t0 < WAIT * 0.9
        send_local(c)
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.5\]:\d+")
    assert "PREGREET" not in postern.log("smtpd")
    assert "DISCONNECT" not in postern.log("smtpd")   # only the stage's own closes say that

    # the cache survives a restart of smtpd
    postern.restart("smtpd")
    with Raw(sock=connect(postern, "127.0.0.5")) as c:
        assert c.greeting == (220, ["postern.test ESMTP"])
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.5\]:\d+", count=2)


def test_greet_ttl_expires(postern):
    start(postern, postscreen_greet_ttl="1s", postscreen_cache_cleanup_interval="1s",
          postscreen_cache_retention_time="0s")
    with Raw(sock=connect(postern, "127.0.0.5")) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.5\]")
    # the cleanup removes the expired entry (it runs every second here) ...
    postern.wait_for(lambda: cached(postern, "127.0.0.5") is None, timeout=10, what="cache cleanup")
    postern.wait_log("smtpd", r"cache .*postscreen_cache\.db full cleanup: dropped=1 entries")
    # ... and the client is tested again
    with Raw(sock=connect(postern, "127.0.0.5")) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.5\]", count=2)


def test_pregreet_drop(postern):
    start(postern, postscreen_greet_action="drop")
    s = connect(postern, "127.0.0.6")
    assert read_line(s).startswith("220-")
    s.sendall(b"EHLO bot.example\r\n")   # before the greeting ends
    assert read_all(s) == "521 5.5.1 Protocol error\r\n"
    s.close()
    postern.wait_log("smtpd", r"PREGREET 18 after \d\.\d+ from \[127\.0\.0\.6\]:\d+: EHLO bot\.example\\r\\n")
    postern.wait_log("smtpd", r"DISCONNECT \[127\.0\.0\.6\]:\d+")
    assert "connect from unknown[127.0.0.6]" not in postern.log("smtpd")   # no SMTP session
    assert cached(postern, "127.0.0.6") is None
    # not cached: tested again next time
    with Raw(sock=connect(postern, "127.0.0.6")) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.6\]")


def test_pregreet_before_the_teaser_without_banner(postern):
    # postscreen_greet_banner empty: nothing is sent; a bot that talks first is still caught
    start(postern, postscreen_greet_action="drop", postscreen_greet_banner="")
    s = connect(postern, "127.0.0.6")
    s.sendall(b"HELO x\r\n")
    assert read_all(s) == "521 5.5.1 Protocol error\r\n"
    s.close()
    postern.wait_log("smtpd", r"PREGREET 8 after 0\.\d+ from \[127\.0\.0\.6\]:\d+: HELO x\\r\\n")


def test_pregreet_enforce_refuses_every_recipient(postern):
    start(postern, postscreen_greet_action="enforce")
    s = connect(postern, "127.0.0.7")
    assert read_line(s).startswith("220-")
    s.sendall(b"EHLO early\r\n")
    c = Raw(sock=s)   # reads the rest of the greeting: the session starts after the wait
    assert c.greeting[0] == 220
    assert c.cmd("EHLO client.test").startswith("250")   # what came early was discarded
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    assert c.cmd("RCPT TO:<ptest1@localhost>") == "550 5.5.1 Protocol error"
    assert c.cmd("DATA").startswith("554")
    assert c.cmd("QUIT").startswith("221")
    c.close()
    postern.wait_log("smtpd", r"PREGREET 12 after .* from \[127\.0\.0\.7\]")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.7\]: 550 5\.5\.1 Protocol error;"
                     r" from=<a@example\.org> to=<ptest1@localhost> proto=ESMTP helo=<client\.test>")
    assert "PASS NEW" not in postern.log("smtpd")
    assert cached(postern, "127.0.0.7") is None


def test_pregreet_ignore_lets_it_on_uncached(postern):
    start(postern)   # postscreen_greet_action = ignore (the default)
    s = connect(postern, "127.0.0.8")
    assert read_line(s).startswith("220-")
    s.sendall(b"EHLO early\r\n")
    with Raw(sock=s) as c:
        send_local(c)
    postern.wait_log("smtpd", r"PREGREET 12 after .* from \[127\.0\.0\.8\]")
    assert "PASS NEW" not in postern.log("smtpd")
    assert cached(postern, "127.0.0.8") is None


def test_hangup_during_the_wait(postern):
    start(postern)
    s = connect(postern, "127.0.0.9")
    assert read_line(s).startswith("220-")
    s.close()
    postern.wait_log("smtpd", r"HANGUP after \d\.\d+ from \[127\.0\.0\.9\]:\d+ in tests before SMTP handshake")
    postern.wait_log("smtpd", r"DISCONNECT \[127\.0\.0\.9\]:\d+")


def test_access_list(postern, tmp_path):
    acl = tmp_path / "postscreen_access.cidr"
    acl.write_text("127.0.0.20 permit\n127.0.0.21 reject\n127.0.0.22 dunno\n127.0.0.0/24 reject\n")
    start(postern, postscreen_access_list=f"permit_mynetworks, cidr:{acl}", postscreen_denylist_action="drop")
    # permit_mynetworks and a permit entry: no tests, no teaser, no wait
    for source in ("127.0.0.1", "127.0.0.20"):
        t0 = time.monotonic()
        with Raw(sock=connect(postern, source)) as c:
            assert len(c.greeting[1]) == 1 and time.monotonic() - t0 < WAIT * 0.9
            send_local(c)
        postern.wait_log("smtpd", r"ALLOWLISTED \[%s\]:\d+" % re.escape(source))
    # reject with drop: 521 at once
    s = connect(postern, "127.0.0.21")
    assert read_all(s) == "521 5.3.2 Service currently unavailable\r\n"
    s.close()
    postern.wait_log("smtpd", r"DENYLISTED \[127\.0\.0\.21\]:\d+")
    postern.wait_log("smtpd", r"DISCONNECT \[127\.0\.0\.21\]:\d+")
    # dunno: the rest of the list (the /24 reject) is skipped, the tests run
    with Raw(sock=connect(postern, "127.0.0.22")) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.22\]")
    assert "127.0.0.22]:" not in "".join(re.findall(r"DENYLISTED .*", postern.log("smtpd")))


def test_denylist_enforce_and_old_name(postern, tmp_path):
    acl = tmp_path / "postscreen_access.cidr"
    acl.write_text("127.0.0.23 REJECT\n")
    # the old name sets the new one's default
    start(postern, postscreen_access_list=f"cidr:{acl}", postscreen_blacklist_action="enforce")
    with Raw(sock=connect(postern, "127.0.0.23")) as c:
        assert c.cmd("HELO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "550 5.3.2 Service currently unavailable"
    postern.wait_log("smtpd", r"DENYLISTED \[127\.0\.0\.23\]")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.23\]: 550 5\.3\.2 Service "
                     r"currently unavailable; from=<a@example\.org> to=<ptest1@localhost> proto=SMTP")
    assert cached(postern, "127.0.0.23") is None   # a denylisted client is never cached


def test_waiting_clients_do_not_delay_others(postern):
    start(postern, postscreen_greet_wait="3s")
    waiting = [connect(postern, "127.0.0.%d" % (30 + i)) for i in range(40)]
    for s in waiting:
        assert read_line(s).startswith("220-")
    # all 40 are inside their wait now; an allowlisted client is served at once ...
    t0 = time.monotonic()
    with Raw(sock=connect(postern, "127.0.0.1")) as c:
        send_local(c)
    assert time.monotonic() - t0 < 1.5
    # ... and the 40 waits end together, not one after the other
    t0 = time.monotonic()
    for s in waiting:
        assert read_line(s).startswith("220 ")
        s.close()
    assert time.monotonic() - t0 < 6
    postern.wait_log("smtpd", r"PASS NEW", count=40)


def test_proxied_client_is_the_one_screened(postern):
    start(postern, **{"smtp/smtpd_upstream_proxy_protocol": "haproxy"})
    s = connect(postern, "127.0.0.1")   # in mynetworks, but the proxied client is not
    s.sendall(b"PROXY TCP4 192.0.2.7 198.51.100.25 40123 25\r\n")
    with Raw(sock=s) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"CONNECT from \[192\.0\.2\.7\]:40123 to \[198\.51\.100\.25\]:25")
    postern.wait_log("smtpd", r"PASS NEW \[192\.0\.2\.7\]:40123")
    assert cached(postern, "192.0.2.7") is not None


def test_built_parameters_are_not_said_unsupported(postern):
    built = {"postscreen_command_filter": "inline:{ {NOOP = RSET} }",
             "postscreen_discard_ehlo_keyword_address_maps": "inline:{ {192.0.2.1 = etrn} }","postscreen_pre_queue_limit": "50", "postscreen_post_queue_limit": "50",
             "postscreen_client_connection_count_limit": "5", "postscreen_pipelining_enable": "yes",
             "postscreen_non_smtp_command_enable": "yes", "postscreen_bare_newline_enable": "yes",
             "postscreen_helo_required": "yes", "postscreen_discard_ehlo_keywords": "etrn",
             "postscreen_tls_security_level": "may"}
    start(postern, **built)
    with Raw(port=postern.smtp_port, source="127.0.0.1") as c:   # the snapshot that screens is loaded
        assert c.greeting[0] == 220
    for name in built:   # what is built is never said to be unsupported
        assert f"not supported: {name}" not in postern.log("smtpd")


def test_other_listeners_are_not_screened(postern):
    start(postern, postern_postscreen_enable="yes")   # for every listener: only smtp screens
    with Raw(port=postern.submission_port, source="127.0.0.40") as c:
        assert len(c.greeting[1]) == 1
    assert "CONNECT from [127.0.0.40]" not in postern.log("smtpd")


# ---- DNS lists (the dns_zone fixture: a real dnsmasq; names under slow.test time out) ----

SITES = "zen.test=127.0.0.[2..11]*3, bl.test*2, wl.test=127.0.[0..255].[1..3]*-5"


def listed(zone, ip, dnsbl, answer):
    zone.host("%s.%s" % (".".join(reversed(ip.split("."))), dnsbl), answer)


def cached_dnsbl(postern, addr):
    db = postern.queue_dir / "postscreen_cache.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT dnsbl FROM screen_cache WHERE address = ?", (addr,)).fetchone()
    return row[0] if row else None


def test_dnsbl_score_drop_and_pass(postern, dns_zone):
    listed(dns_zone, "127.0.0.50", "zen.test", "127.0.0.4")     # 3: at the threshold
    listed(dns_zone, "127.0.0.51", "zen.test", "127.0.0.20")    # the filter does not match: 0
    listed(dns_zone, "127.0.0.51", "bl.test", "127.0.0.2")      # 2
    listed(dns_zone, "127.0.0.52", "zen.test", "127.0.0.2")     # 3
    listed(dns_zone, "127.0.0.52", "wl.test", "127.0.5.1")      # -5: an allowlist
    dns_zone.apply()
    start(postern, postscreen_dnsbl_sites=SITES, postscreen_dnsbl_threshold="3", postscreen_dnsbl_action="drop")

    s = connect(postern, "127.0.0.50")
    assert read_line(s).startswith("220-")
    assert read_all(s) == "521 5.7.1 Service unavailable; client [127.0.0.50] blocked using zen.test\r\n"
    s.close()
    postern.wait_log("smtpd", r"DNSBL rank 3 for \[127\.0\.0\.50\]:\d+")
    postern.wait_log("smtpd", r"DISCONNECT \[127\.0\.0\.50\]:\d+")
    assert cached(postern, "127.0.0.50") is None

    for source in ("127.0.0.51", "127.0.0.52"):
        with Raw(sock=connect(postern, source)) as c:
            assert len(c.greeting[1]) == 2
            send_local(c)
        postern.wait_log("smtpd", r"PASS NEW \[%s\]" % re.escape(source))
        # dnsmasq's answers carry TTL 0: the pass holds postscreen_dnsbl_min_ttl (60s)
        assert 50 < cached_dnsbl(postern, source) - time.time() <= 60
    assert "DNSBL rank" not in "".join(l for l in postern.log("smtpd").splitlines() if "127.0.0.5" in l
                                       and "127.0.0.50" not in l)
    # cached with both tests: straight on
    with Raw(sock=connect(postern, "127.0.0.51")) as c:
        assert len(c.greeting[1]) == 1
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.51\]")


def test_dnsbl_enforce_with_reply_map(postern, dns_zone, tmp_path):
    listed(dns_zone, "127.0.0.54", "zen.test", "127.0.0.10")
    listed(dns_zone, "127.0.0.54", "bl.test", "127.0.0.2")
    dns_zone.apply()
    reply_map = tmp_path / "postscreen_dnsbl_reply"
    reply_map.write_text("zen.test  Example-Zen\n")
    start(postern, postscreen_dnsbl_sites=SITES, postscreen_dnsbl_threshold="4",
          postscreen_dnsbl_action="enforce", postscreen_dnsbl_reply_map=f"texthash:{reply_map}")
    with Raw(sock=connect(postern, "127.0.0.54")) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        # the reply names the largest weight's list, as the reply map shows it
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "550 5.7.1 Service unavailable; client [127.0.0.54] blocked using Example-Zen"
    postern.wait_log("smtpd", r"DNSBL rank 5 for \[127\.0\.0\.54\]:\d+")
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.54\]: 550 5\.7\.1 Service "
                     r"unavailable; client \[127\.0\.0\.54\] blocked using Example-Zen;")
    assert cached(postern, "127.0.0.54") is None


def test_dnsbl_allowlist_threshold_ends_the_wait(postern, dns_zone):
    listed(dns_zone, "127.0.0.55", "wl.test", "127.0.9.2")
    dns_zone.apply()
    start(postern, postscreen_dnsbl_sites=SITES, postscreen_greet_wait="6s",
          postscreen_dnsbl_whitelist_threshold="-3")   # the old name gives the new one its default
    t0 = time.monotonic()
    with Raw(sock=connect(postern, "127.0.0.55")) as c:
        assert len(c.greeting[1]) == 2
        assert time.monotonic() - t0 < 4   # not the 6 s wait
        send_local(c)
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.55\]")


def test_dnsbl_that_fails_counts_as_not_listed_and_is_not_cached(postern, dns_zone):
    dns_zone.apply()
    start(postern, postscreen_dnsbl_sites="slow.test*5", postscreen_greet_wait="2s")
    with Raw(sock=connect(postern, "127.0.0.56")) as c:
        assert len(c.greeting[1]) == 2
        send_local(c)
    postern.wait_log("smtpd", r"DNSBL lookup error: .*counted as not listed")
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.56\]")
    assert cached_dnsbl(postern, "127.0.0.56") == 0   # the pregreet pass is cached, the lists' is not
    with Raw(sock=connect(postern, "127.0.0.56")) as c:
        assert len(c.greeting[1]) == 2                 # so it is tested again


def test_cache_that_is_not_a_database(postern):
    (postern.queue_dir / "postscreen_cache.db").write_bytes(b"not an SQLite database at all, " * 40)
    start(postern)
    for _ in range(2):   # tested every time, and said once
        with Raw(sock=connect(postern, "127.0.0.57")) as c:
            assert len(c.greeting[1]) == 2
            send_local(c)
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.57\]", count=2)
    log = postern.log("smtpd")
    assert len(re.findall(r"postscreen_cache_map: cannot use .*postscreen_cache\.db: .*every client is tested "
                          r"at every connection", log)) == 1, log


def test_dnsbl_answer_that_is_not_an_address(postern, dns_zone):
    # the listed name has a TXT record but no A record: not listed
    dns_zone.txt("58.0.0.127.zen.test", "listed, but only in text")
    listed(dns_zone, "127.0.0.59", "zen.test", "127.0.0.2")
    dns_zone.apply()
    start(postern, postscreen_dnsbl_sites="zen.test", postscreen_dnsbl_action="drop")
    with Raw(sock=connect(postern, "127.0.0.58")) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.58\]")
    s = connect(postern, "127.0.0.59")
    assert read_line(s).startswith("220-")
    assert read_all(s) == "521 5.7.1 Service unavailable; client [127.0.0.59] blocked using zen.test\r\n"
    s.close()
    postern.wait_log("smtpd", r"DNSBL rank 1 for \[127\.0\.0\.59\]")


def test_allowlist_interfaces_decide_who_is_cached(postern):
    """postscreen_allowlist_interfaces: the listener is on 127.0.0.1; a list without it (or with
    it negated) lets a clean client through but does not cache it, so it is tested again."""
    start(postern, smtpd_banner="postern.test ESMTP", postscreen_allowlist_interfaces="!127.0.0.1, static:all")
    for _ in range(2):
        with Raw(sock=connect(postern, "127.0.0.71")) as c:
            assert c.greeting == (220, ["postern.test ESMTP", "postern.test ESMTP"])   # the wait each time
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.71\]:\d+", count=2)
    assert cached(postern, "127.0.0.71") is None
    assert "PASS OLD [127.0.0.71]" not in postern.log("smtpd")
    assert "not supported: postscreen_allowlist_interfaces" not in postern.log("smtpd")


def test_allowlist_interfaces_on_the_list_caches(postern):
    start(postern, smtpd_banner="postern.test ESMTP", postscreen_whitelist_interfaces="127.0.0.0/8")
    with Raw(sock=connect(postern, "127.0.0.72")) as c:
        assert len(c.greeting[1]) == 2
    postern.wait_log("smtpd", r"PASS NEW \[127\.0\.0\.72\]:\d+")
    assert cached(postern, "127.0.0.72") is not None
    with Raw(sock=connect(postern, "127.0.0.72")) as c:
        assert c.greeting == (220, ["postern.test ESMTP"])
    postern.wait_log("smtpd", r"PASS OLD \[127\.0\.0\.72\]:\d+")
