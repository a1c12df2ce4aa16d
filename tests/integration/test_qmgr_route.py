"""qmgr routing beyond transport_maps: sender_dependent_relayhost_maps and
sender_dependent_default_transport_maps (sender, then @domain, DUNNO, the null-sender key,
transport_maps winning), randmap: load balancing over two relays, and content filters
(FILTER transport:nexthop and the next-hop-less "transport:" form), each observed at real
smtp-sink receivers on loopback."""

import re
import time
from functools import partial

import pytest

import mailtest
from mailtest import send
from smtp_peers import Sink, peer_factory


msg = partial(mailtest.msg, sender="sender@example.org", subject="route test")


@pytest.fixture
def sinks(postern):
    yield from peer_factory(lambda name: Sink(postern.root / name))


def hop(sink):
    return f"[127.0.0.1]:{sink.port}"


def ids_at(sink):
    return [re.search(rb"Message-ID: <([^>]+)>", d).group(1).decode() for d in sink.messages()]


def test_sender_dependent_relayhost(postern, sinks):
    a, b, c = sinks("a"), sinks("b"), sinks("c")
    postern.configure(
        relayhost=hop(c),
        sender_dependent_relayhost_maps=(
            f"inline:{{ {{alice@a.example={hop(a)}}}, {{@b.example={hop(b)}}}, "
            f"{{boss@b.example=DUNNO}}, {{<>={hop(b)}}} }}"))
    postern.start()
    send(postern, "alice@a.example", ["x@remote.example"], msg("r-alice"))
    send(postern, "carol@B.example", ["x@remote.example"], msg("r-carol"))
    send(postern, "boss@b.example", ["x@remote.example"], msg("r-boss"))
    send(postern, "other@a.example", ["x@remote.example"], msg("r-other"))
    send(postern, "", ["x@remote.example"], msg("r-null"))
    # Local recipients never take the sender's relay host.
    send(postern, "alice@a.example", ["ptest1@localhost"], msg("r-local"))
    a.wait_count(1)
    b.wait_count(2)
    c.wait_count(2)
    postern.wait_queue_empty()
    assert ids_at(a) == ["r-alice"]
    assert sorted(ids_at(b)) == ["r-carol", "r-null"]
    # boss@b.example: DUNNO ends the search (no @b.example); other@a.example: not listed.
    assert sorted(ids_at(c)) == ["r-boss", "r-other"]
    postern.wait_mailbox("ptest1", r"Message-ID: <r-local>")


def test_sender_dependent_default_transport(postern, sinks):
    a, c = sinks("a"), sinks("c")
    postern.configure(
        relayhost=hop(c), relay_domains="relayed.example",
        sender_dependent_default_transport_maps=(
            f"inline:{{ {{@a.example=smtp:{hop(a)}}}, {{blocked@a.example=error:5.7.1 sender may not send out}} }}"),
        transport_maps="inline:{ {pinned.example=smtp:[127.0.0.1]:" + str(c.port) + "} }")
    postern.start()
    send(postern, "alice@a.example", ["x@remote.example"], msg("t-default"))
    # relay_domains use relay_transport, which the sender maps do not touch.
    send(postern, "alice@a.example", ["x@relayed.example"], msg("t-relay"))
    # transport_maps wins over the sender's transport.
    send(postern, "alice@a.example", ["x@pinned.example"], msg("t-pinned"))
    qid = send(postern, "blocked@a.example", ["x@remote.example"], msg("t-blocked"))
    a.wait_count(1)
    postern.wait_log("qmgr", rf"{qid}: to=<x@remote\.example>, relay=none, .*dsn=5\.7\.1, "
                             r"status=bounced \(sender may not send out\)")
    # The bounce to blocked@a.example has the null sender: no "<>" entry, so $relayhost.
    dumps = c.wait_count(3)
    postern.wait_queue_empty()
    assert ids_at(a) == ["t-default"]
    assert sorted(i for i in ids_at(c) if i.startswith("t-")) == ["t-pinned", "t-relay"]
    assert sum(b"X-Rcpt-Args: <blocked@a.example>" in d for d in dumps) == 1


def test_sender_table_failure_defers(postern, sinks):
    c = sinks("c")
    table = postern.root / "senders"
    table.write_text("alice@a.example [127.0.0.1]:9\n")
    postern.configure(relayhost=hop(c), sender_dependent_relayhost_maps=f"texthash:{table}")
    postern.start()
    table.unlink()     # a table that cannot be read any more: a temporary error, not "not found"
    time.sleep(1.2)    # tables are re-checked at most once a second: nothing to wait for
    qid = send(postern, "alice@a.example", ["x@remote.example"], msg("t-fail"))
    postern.wait_log("qmgr", rf"{qid}: to=<x@remote\.example>, relay=none, .*dsn=4\.3\.0, "
                             r"status=deferred \(transport_maps, sender_dependent_\*_maps or domain "
                             r"table lookup failure\)")
    assert c.messages() == []


def test_randmap_spreads_over_relays(postern, sinks):
    a, b = sinks("a"), sinks("b")
    postern.configure(transport_maps=f"randmap:{{smtp:{hop(a)}, smtp:{hop(b)}}}",
                      smtp_connection_cache_time_limit="0s")
    postern.start()
    n = 30
    for i in range(n):
        send(postern, "s@example.org", ["x@remote.example"], msg(f"rand-{i}"))
    postern.wait_for(lambda: len(a.messages()) + len(b.messages()) == n, timeout=30,
                     what=f"{n} messages at the two relays")
    # Each relay has 1/2 chance per message: both empty-handed ones have odds 2^-29.
    assert a.messages() and b.messages()
    assert sorted(ids_at(a) + ids_at(b)) == sorted(f"rand-{i}" for i in range(n))


def test_content_filter_routes_every_recipient(postern, sinks):
    f = sinks("filter")
    checks = postern.root / "header_checks"
    checks.write_text(f"/^X-Scan: yes/ FILTER smtp:{hop(f)}\n")
    postern.configure(header_checks=f"regexp:{checks}")
    postern.start()
    qid = send(postern, "s@example.org", ["ptest1@localhost", "x@remote.example"],
               msg("filtered", extra="X-Scan: yes\r\n"))
    dumps = f.wait_count(1)
    assert b"X-Rcpt-Args: <ptest1@localhost>\nX-Rcpt-Args: <x@remote.example>" in dumps[0]
    postern.wait_log("smtp", rf"{qid}: to=<ptest1@localhost>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{f.port}, "
                             r".*status=sent")
    postern.wait_queue_empty()
    assert "filtered" not in postern.mailbox("ptest1")


def test_filter_without_nexthop_keeps_the_routed_nexthop(postern, sinks):
    # The sender-reputation form (seed 003): "FILTER smtp:" picks the transport only; the next
    # hop stays what routing chose (here $relayhost, which default_transport=retry never uses).
    c = sinks("c")
    checks = postern.root / "header_checks"
    checks.write_text("/^X-Class: bulk/ FILTER smtp:\n")
    postern.configure(header_checks=f"regexp:{checks}", relayhost=hop(c), default_transport="retry")
    postern.start()
    qid_plain = send(postern, "s@example.org", ["x@remote.example"], msg("plain"))
    send(postern, "s@example.org", ["x@remote.example"], msg("bulk", extra="X-Class: bulk\r\n"))
    c.wait_count(1)
    postern.wait_log("qmgr", rf"{qid_plain}: to=<x@remote\.example>, relay=none, .*status=deferred")
    assert ids_at(c) == ["bulk"]


def test_filter_without_nexthop_goes_to_default_filter_nexthop(postern, sinks):
    # default_filter_nexthop replaces the routed next hop of a "transport:" filter, for local and
    # remote recipients alike (content_filter here; a FILTER action the same).
    c, f = sinks("c"), sinks("f")
    postern.configure(content_filter="smtp:", default_filter_nexthop=hop(f), relayhost=hop(c))
    postern.start()
    send(postern, "s@example.org", ["x@remote.example", "ptest1@localhost"], msg("via-default-hop"))
    dumps = f.wait_count(1)
    assert b"X-Rcpt-Args: <x@remote.example>\nX-Rcpt-Args: <ptest1@localhost>" in dumps[0]
    postern.wait_queue_empty()
    assert c.messages() == []


def test_relay_transport_has_its_own_limits(postern, sinks):
    # relay_domains mail goes through the "relay" transport (postern-smtp), scheduled with the
    # relay_* limits: 5 recipients at relay_destination_recipient_limit=2 are 3 transactions,
    # while the same 5 for a default-routed domain are one (smtp_ limit 50).
    c = sinks("c")
    postern.configure(relayhost=hop(c), relay_domains="relayed.example",
                      relay_destination_recipient_limit="2")
    postern.start()
    send(postern, "s@example.org", [f"r{i}@relayed.example" for i in range(5)], msg("relay-split"))
    send(postern, "s@example.org", [f"r{i}@other.example" for i in range(5)], msg("smtp-whole"))
    dumps = c.wait_count(4)
    postern.wait_queue_empty()
    counts = sorted(d.count(b"X-Rcpt-Args:") for d in dumps)
    assert counts == [1, 2, 2, 5]
