"""Transports defined in master.cf (common/conf/master-cf.c): unix entries whose command is smtp
or lmtp go to postern-smtp with transport=<name> and that entry's -o overrides
(daemons/smtp/smtp-settings.c, read again at a reload) and its maxproc as their process limit
(daemons/qmgr/qmgr-sched.c); error, retry and discard entries are decided by qmgr, a local entry is
the local transport; an entry whose command Postern does not have, and one whose -o is invalid,
defer with 4.3.5 naming the problem, and `posternctl check` says the same. Real peers: Postfix's smtp-sink (its dumps carry X-Helo-Args), a counting SMTP
server for the process limit, a scripted LMTP server."""

import re

import pytest

from smtp_peers import Scripted, Sink, peer_factory
from test_qmgr_agent import inject, rcpt_rows, wakeup
from test_qmgr_sched import CountingServer


@pytest.fixture
def sinks(postern):
    yield from peer_factory(lambda name: Sink(postern.root / name))


@pytest.fixture
def servers():
    yield from peer_factory(CountingServer)


def master(postern, text):
    (postern.etc_dir / "master.cf").write_text(text)


def start(postern, routes, **conf):
    """qmgr and smtp; routes maps a domain to "transport:nexthop" (values with spaces: {...})."""
    maps = ", ".join(f"{{{d}={route}}}" for d, route in routes.items())
    postern.configure(transport_maps=f"inline:{{ {maps} }}", queue_run_delay="300s", **conf)
    postern.start("qmgr", "smtp")


def send(postern, *rcpts):
    qid = inject(postern, "alice@example.org", list(rcpts))
    wakeup(postern)
    return qid


def helo_of(dump):
    return re.search(rb"^X-Helo-Args: (\S+)", dump, re.M).group(1).decode()


def check(postern):
    r = postern.posternctl("check", "-c", str(postern.etc_dir))
    return r.returncode, r.stderr


def test_override_applies_to_its_transport_only(postern, sinks):
    a, b = sinks("a"), sinks("b")
    master(postern, "smtp unix - - n - - smtp\n"
                    "sink-a unix - - n - 2 smtp -o smtp_helo_name=override.test\n"
                    "  -o syslog_name=postfix/$service_name -o smtp_fallback_relay=relay.test\n")
    start(postern, {"a.example": f"sink-a:[127.0.0.1]:{a.port}", "b.example": f"smtp:[127.0.0.1]:{b.port}"})
    qa = send(postern, "x@a.example")
    qb = send(postern, "y@b.example")
    postern.wait_log("smtp", rf"{qa}: to=<x@a\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{a.port}, .*status=sent")
    postern.wait_log("smtp", rf"{qb}: to=<y@b\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{b.port}, .*status=sent")
    # (the sink has written its dump by the time it answers the end of data)
    assert [helo_of(m) for m in a.wait_count(1)] == ["override.test"]
    assert [helo_of(m) for m in b.wait_count(1)] == ["postern.test"]
    postern.wait_queue_empty()
    # Not applied, never silent: at load and in posternctl check; the transport works anyway.
    for text in (postern.log("smtp"), check(postern)[1]):
        assert re.search(r"master\.cf:2: sink-a: not supported: -o syslog_name on sink-a \(postern-smtp logs "
                         r"every transport's deliveries as postern/smtp\)", text), text
        assert "sink-a: not supported: -o smtp_fallback_relay on sink-a (a parameter Postern does " \
               "not know)" in text, text
    assert check(postern)[0] == 0


def test_lmtp_entry_speaks_lmtp_with_its_override(postern):
    server = Scripted(unix_path=postern.root / "lmtp.sock", lmtp=True)
    try:
        master(postern, "inbox unix - - n - - lmtp -o lmtp_lhlo_name=lhlo.test\n")
        start(postern, {"l.example": f"inbox:unix:{postern.root}/lmtp.sock"})
        qid = send(postern, "u@l.example")
        postern.wait_log("smtp", rf"{qid}: to=<u@l\.example>, relay=.*status=sent")
        assert "LHLO lhlo.test" in server.commands, server.commands
        postern.wait_queue_empty()
    finally:
        server.stop()


def test_maxproc_is_the_transport_process_limit(postern, servers):
    s = servers(hosts=("127.0.0.1", "127.0.0.2", "127.0.0.3"), delay=0.3)
    master(postern, "one unix - - n - 1 smtp\n")
    start(postern, {f"d{k}.test": f"one:[127.0.0.{k + 1}]:{s.ports[k]}" for k in range(3)})
    for i in range(9):
        inject(postern, "alice@example.org", [f"p{i}@d{i % 3}.test"])
    wakeup(postern)
    postern.wait_for(lambda: s.stats.done == 9, timeout=30, what="9 deliveries")
    assert s.stats.max == 1            # three destinations, one delivery at a time
    postern.wait_queue_empty()


def test_main_cf_limits_of_a_master_cf_transport(postern, servers):
    """<name>_destination_concurrency_limit in main.cf for a master.cf smtp transport: known (no
    "unknown parameter" warning) and obeyed, while its maxproc allows more."""
    s = servers(delay=0.3)
    master(postern, "conc unix - - n - 5 smtp\n")
    start(postern, {"c.test": f"conc:[127.0.0.1]:{s.port}"}, conc_destination_concurrency_limit="1")
    for i in range(4):
        inject(postern, "alice@example.org", [f"c{i}@c.test"])
    wakeup(postern)
    postern.wait_for(lambda: s.stats.done == 4, timeout=30, what="4 deliveries")
    assert s.stats.max == 1
    postern.wait_queue_empty()
    assert "conc_destination_concurrency_limit" not in postern.log("qmgr") + postern.log("smtp")


def test_error_retry_and_discard_entries(postern):
    master(postern, "bouncer unix - - n - - error\n"
                    "retry unix - - n - - error\n"
                    "trash unix - - n - - discard\n")
    start(postern, {"b.example": "bouncer:5.7.1 no mail here", "r.example": "retry:4.4.0 try later",
                    "t.example": "trash:"})
    qb = send(postern, "x@b.example")
    qr = send(postern, "x@r.example")
    qt = send(postern, "x@t.example")
    postern.wait_log("qmgr", rf"{qb}: to=<x@b\.example>, relay=none, .*dsn=5\.7\.1, status=bounced \(no mail here\)")
    postern.wait_log("qmgr", rf"{qr}: to=<x@r\.example>, relay=none, .*dsn=4\.4\.0, status=deferred \(try later\)")
    postern.wait_log("qmgr", rf"{qt}: to=<x@t\.example>, relay=none, .*status=sent \(t\.example\)")
    postern.wait_for(lambda: rcpt_rows(postern, qt) == [], what="the discarded message removed")
    assert rcpt_rows(postern, qr)[0][4] == "4.4.0"     # still queued, deferred
    assert check(postern)[0] == 0


def test_bad_entries_defer_with_4_3_5(postern, sinks):
    good = sinks("good")
    master(postern, "policy unix - n n - 0 spawn user=nobody argv=/bin/true\n"
                    "badhelo unix - - n - - smtp -o smtp_helo_timeout=banana\n")
    start(postern, {"u.example": "policy:", "h.example": f"badhelo:[127.0.0.1]:{good.port}",
                    "g.example": f"smtp:[127.0.0.1]:{good.port}"})
    qu = send(postern, "x@u.example")
    qh = send(postern, "x@h.example")
    qg = send(postern, "x@g.example")
    postern.wait_log("qmgr", rf'{qu}: to=<x@u\.example>, relay=none, .*dsn=4\.3\.5, status=deferred \(mail '
                             r'transport unavailable: master\.cf entry policy \(line 1\) runs "spawn", which is '
                             r'not a delivery agent Postern has\)')
    postern.wait_log("smtp", rf"{qh}: to=<x@h\.example>, relay=none, .*dsn=4\.3\.5, status=deferred \(mail "
                             r"transport unavailable: master\.cf entry badhelo: -o smtp_helo_timeout=banana: ")
    # postern-smtp keeps running and delivering for the other transports.
    good.wait_count(1)
    postern.wait_log("smtp", rf"{qg}: to=<x@g\.example>, .*status=sent")
    assert postern.running("smtp") and postern.running("qmgr")
    assert re.search(r"master\.cf:2: badhelo: -o smtp_helo_timeout=banana: .*; mail for that transport is "
                     r"deferred", postern.log("smtp"))
    rc, text = check(postern)
    assert rc == 1, text
    assert re.search(r'master\.cf:1: policy: not supported: command "spawn" \(unix\) is not part of Postern; '
                     r"run it as a service of its own; mail routed to it is deferred \(4\.3\.5\)", text), text
    assert re.search(r"master\.cf:2: badhelo: -o smtp_helo_timeout=banana: .*; mail for that transport is "
                     r"deferred \(4\.3\.5\)", text), text


# The service entries of Debian's stock /etc/postfix/master.cf (postfix 3.7), as installed.
DEBIAN_MASTER_CF = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
defer     unix  -       -       y       -       0       bounce
trace     unix  -       -       y       -       0       bounce
verify    unix  -       -       y       -       1       verify
flush     unix  n       -       y       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
showq     unix  n       -       y       -       -       showq
error     unix  -       -       y       -       -       error
retry     unix  -       -       y       -       -       error
discard   unix  -       -       y       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       y       -       -       lmtp
anvil     unix  -       -       y       -       1       anvil
scache    unix  -       -       y       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
maildrop  unix  -       n       n       -       -       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient}
"""


def test_debian_stock_master_cf(postern, sinks):
    """Debian's master.cf as installed: relay (with its -o syslog_name) and smtp deliver through
    postern-smtp, discard and error work by their entries; posternctl check names only what is
    not applied."""
    master(postern, DEBIAN_MASTER_CF)
    relay, other = sinks("relay"), sinks("other")
    postern.configure(relay_domains="relayed.example", relayhost=f"[127.0.0.1]:{relay.port}")
    start(postern, {"other.example": f"smtp:[127.0.0.1]:{other.port}", "gone.example": "error:5.1.2 gone",
                    "null.example": "discard:"})
    q1 = send(postern, "x@relayed.example")
    q2 = send(postern, "y@other.example")
    q3 = send(postern, "z@gone.example")
    q4 = send(postern, "w@null.example")
    relay.wait_count(1)
    other.wait_count(1)
    postern.wait_log("smtp", rf"{q1}: to=<x@relayed\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{relay.port}, "
                             r".*status=sent")
    postern.wait_log("smtp", rf"{q2}: to=<y@other\.example>, .*status=sent")
    postern.wait_log("qmgr", rf"{q3}: to=<z@gone\.example>, relay=none, .*dsn=5\.1\.2, status=bounced \(gone\)")
    postern.wait_log("qmgr", rf"{q4}: to=<w@null\.example>, relay=none, .*status=sent")
    rc, text = check(postern)
    assert rc == 0, text
    transports = [l for l in text.splitlines() if "not part of Postern" not in l]
    assert len(transports) == 1 and "master.cf:15: relay: not supported: -o syslog_name on relay" in transports[0], text


def test_reload_reads_master_cf_again(postern, sinks):
    """postern-smtp builds its variants at every settings load: a changed -o applies after a
    reload, and an entry made invalid meanwhile defers (4.3.5) until it is fixed. (No connection
    caching here: a cached connection keeps what it negotiated until it expires.)"""
    a = sinks("a")
    master(postern, "sink-a unix - - n - - smtp -o smtp_helo_name=first.test\n")
    start(postern, {"a.example": f"sink-a:[127.0.0.1]:{a.port}"}, smtp_connection_cache_time_limit="0s")
    q1 = send(postern, "x@a.example")
    postern.wait_log("smtp", rf"{q1}: to=<x@a\.example>, .*status=sent")
    master(postern, "sink-a unix - - n - - smtp -o smtp_helo_name=second.test\n")
    postern.reload("smtp")
    postern.wait_log("smtp", r"reload -- configuration")
    q2 = send(postern, "y@a.example")
    postern.wait_log("smtp", rf"{q2}: to=<y@a\.example>, .*status=sent")
    assert sorted(helo_of(m) for m in a.wait_count(2)) == ["first.test", "second.test"]
    master(postern, "sink-a unix - - n - - smtp -o smtp_connect_timeout=soon\n")
    postern.reload("smtp")
    postern.wait_log("smtp", r"reload -- configuration", count=2)
    q3 = send(postern, "z@a.example")
    postern.wait_log("smtp", rf"{q3}: to=<z@a\.example>, relay=none, .*dsn=4\.3\.5, status=deferred \(mail "
                             r"transport unavailable: master\.cf entry sink-a: -o smtp_connect_timeout=soon: ")
    assert postern.running("smtp")


def test_local_entry_is_the_local_transport(postern):
    """A local(8) entry under another name delivers as Postern's local transport."""
    master(postern, "mylocal unix - n n - - local\n")
    postern.configure(transport_maps="inline:{ other.example=mylocal: }")
    postern.start()
    qid = send(postern, "ptest1@other.example")
    postern.wait_mailbox("ptest1", rf"Message-ID: <{qid}@client\.test>")
    postern.wait_log("local", rf"{qid}: to=<ptest1@other\.example>, .*status=sent")
    postern.wait_queue_empty()
