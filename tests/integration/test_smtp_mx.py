"""postern-smtp's next-hop lookups through common/dns against the run's dnsmasq (dns_zone):
MX hosts in preference order (the next one when the best refuses), no MX → the domain's A
record, null MX, NXDOMAIN and a timing-out zone. MX destinations use smtp_tcp_port so that
the receivers can listen on test ports of 127.0.0.x."""

import email
import email.policy
from functools import partial

import pytest

import mailtest
from mailtest import send
from smtp_peers import Sink, free_port, peer_factory


msg = partial(mailtest.msg, to="bob@x", subject="mx test")


@pytest.fixture
def sinks(postern):
    yield from peer_factory(lambda host, port: Sink(postern.root / f"sink-{host}", host=host, port=port))


def bounce(postern, qid):
    postern.wait_mailbox("ptest1", "Undelivered Mail Returned to Sender", timeout=20)
    text = postern.mailbox("ptest1")
    return email.message_from_string(text[text.index("\n") + 1:] if text.startswith("From ") else text,
                                     policy=email.policy.default)


def status_part(m):
    for part in m.walk():
        if part.get_content_type() == "message/delivery-status":
            return str(part)
    raise AssertionError("no delivery-status part")


def test_mx_preference_order_next_host_when_best_refuses(postern, dns_zone, sinks):
    port = free_port("127.0.0.6")
    good = sinks("127.0.0.6", port)
    dns_zone.mx("mxorder.test", "mx1.mxorder.test", 10)
    dns_zone.mx("mxorder.test", "mx2.mxorder.test", 20)
    dns_zone.mx("mxorder.test", "mx3.mxorder.test", 30)
    dns_zone.host("mx1.mxorder.test", "127.0.0.5")     # nothing listens there: refused
    dns_zone.host("mx2.mxorder.test", "127.0.0.6")
    dns_zone.host("mx3.mxorder.test", "127.0.0.7")
    dns_zone.apply()
    postern.configure(smtp_tcp_port=str(port))
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@mxorder.test"], msg("mx-order@test"))
    assert len(good.wait_count(1)) == 1
    postern.wait_log("smtp", rf"{qid}: to=<bob@mxorder\.test>, relay=mx2\.mxorder\.test\[127\.0\.0\.6\]:{port}, "
                     r".*status=sent")


def test_no_mx_falls_back_to_address(postern, dns_zone, sinks):
    port = free_port("127.0.0.6")
    good = sinks("127.0.0.6", port)
    dns_zone.host("nomx.test", "127.0.0.6")
    dns_zone.apply()
    postern.configure(smtp_tcp_port=str(port))
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@nomx.test"], msg("no-mx@test"))
    good.wait_count(1)
    postern.wait_log("smtp", rf"{qid}: to=<bob@nomx\.test>, relay=nomx\.test\[127\.0\.0\.6\]:{port}, .*status=sent")


def test_null_mx_bounces(postern, dns_zone):
    dns_zone.add("--mx-host=nullmx.test,.,0")
    dns_zone.apply()
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@nullmx.test"], msg("null-mx@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@nullmx\.test>, relay=none, .*dsn=5\.1\.10, status=bounced \((.*)\)")
    assert m.group(1) == "Host or domain name not found. Domain nullmx.test has null MX (RFC 7505)"
    st = status_part(bounce(postern, qid))
    assert "Status: 5.1.10" in st and "Final-Recipient: rfc822; bob@nullmx.test" in st


def test_nxdomain_bounces(postern, dns_zone):
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@nosuch.test"], msg("nx@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@nosuch\.test>, relay=none, .*dsn=5\.4\.4, status=bounced \((.*)\)")
    assert m.group(1) == ("Host or domain name not found. Name service error for name=nosuch.test type=MX: "
                          "Host not found")
    assert "Status: 5.4.4" in status_part(bounce(postern, qid))


def test_timing_out_zone_defers(postern, dns_zone):
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@x.slow.test"], msg("slow@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@x\.slow\.test>, relay=none, .*dsn=4\.4\.3, status=deferred \((.*)\)",
                         timeout=30)
    assert m.group(1) == ("Host or domain name not found. Name service error for name=x.slow.test type=MX: "
                          "Host not found, try again")


def test_bracketed_name_skips_mx(postern, dns_zone, sinks):
    port = free_port("127.0.0.6")
    good = sinks("127.0.0.6", port)
    dns_zone.mx("relay.test", "elsewhere.test", 10)      # must not be used for [relay.test]
    dns_zone.host("relay.test", "127.0.0.6")
    dns_zone.apply()
    postern.configure(relayhost=f"[relay.test]:{port}")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@remote.example"], msg("bracket@test"))
    good.wait_count(1)
    postern.wait_log("smtp", rf"{qid}: to=<bob@remote\.example>, relay=relay\.test\[127\.0\.0\.6\]:{port}, .*status=sent")


def test_mx_naming_myhostname_loops_back(postern, dns_zone):
    dns_zone.mx("loop.test", "postern.test", 10)
    dns_zone.host("postern.test", "127.0.0.8")
    dns_zone.apply()
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@loop.test"], msg("loop-name@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@loop\.test>, relay=none, .*dsn=5\.4\.6, status=bounced \((.*)\)")
    assert m.group(1) == "mail for loop.test loops back to myself"


def test_mx_with_our_address_loops_back_or_uses_better_host(postern, dns_zone, sinks):
    port = free_port("127.0.0.6")
    good = sinks("127.0.0.6", port)
    dns_zone.mx("selfaddr.test", "us.selfaddr.test", 10)
    dns_zone.host("us.selfaddr.test", "127.0.0.8")
    dns_zone.mx("better.test", "them.better.test", 5)
    dns_zone.mx("better.test", "us.selfaddr.test", 10)
    dns_zone.host("them.better.test", "127.0.0.6")
    dns_zone.apply()
    postern.configure(inet_interfaces="127.0.0.8, 127.0.0.1", smtp_tcp_port=str(port))
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@selfaddr.test", "carol@better.test"], msg("loop-addr@test"))
    m = postern.wait_log("smtp", rf"{qid}: to=<bob@selfaddr\.test>, relay=none, .*dsn=5\.4\.6, status=bounced \((.*)\)")
    assert m.group(1) == "mail for selfaddr.test loops back to myself"
    good.wait_count(1)
    postern.wait_log("smtp", rf"{qid}: to=<carol@better\.test>, relay=them\.better\.test\[127\.0\.0\.6\]:{port}, .*status=sent")


def test_dns_support_level_disabled_uses_host_lookup_without_mx(postern, dns_zone, sinks):
    # nat.test has an MX (127.0.0.6) and an A record of its own (127.0.0.7): with DNS support
    # disabled there is no MX lookup, the domain's address comes from the system's host lookup.
    port = free_port("127.0.0.6")
    via_mx, via_host = sinks("127.0.0.6", port), sinks("127.0.0.7", port)
    dns_zone.mx("nat.test", "mx.nat.test", 10)
    dns_zone.host("mx.nat.test", "127.0.0.6")
    dns_zone.host("nat.test", "127.0.0.7")
    dns_zone.apply()
    postern.configure(smtp_tcp_port=str(port), smtp_dns_support_level="disabled")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@nat.test"], msg("native@test"))
    via_host.wait_count(1)
    postern.wait_log("smtp", rf"{qid}: to=<bob@nat\.test>, relay=nat\.test\[127\.0\.0\.7\]:{port}, .*status=sent")
    assert via_mx.messages() == []
    # The same mail with DNS enabled goes to the MX host.
    postern.stop()
    postern.configure(smtp_dns_support_level="enabled")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@nat.test"], msg("dns@test"))
    via_mx.wait_count(1)
    postern.wait_log("smtp", rf"{qid}: to=<bob@nat\.test>, relay=mx\.nat\.test\[127\.0\.0\.6\]:{port}, "
                     r".*status=sent")


def test_dns_support_level_disabled_unknown_name(postern, dns_zone):
    postern.configure(smtp_dns_support_level="disabled")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@nowhere.test"], msg("native-nx@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@nowhere\.test>, relay=none, .*dsn=5\.4\.4, status=bounced "
                     r"\(Host or domain name not found\. Name service error for name=nowhere\.test type=A: "
                     r"Host not found\)", timeout=20)


def test_bad_dns_support_level_is_refused(postern):
    postern.configure(smtp_dns_support_level="sometimes")
    with pytest.raises(RuntimeError, match=r"smtp_dns_support_level = sometimes: expected disabled, "
                                           r"enabled or dnssec"):
        postern.start("smtp")


def test_mx_address_limit(postern, dns_zone, sinks):
    port = free_port("127.0.0.6")
    good = sinks("127.0.0.6", port)
    dns_zone.mx("limit.test", "mx1.limit.test", 10)
    dns_zone.mx("limit.test", "mx2.limit.test", 20)
    dns_zone.host("mx1.limit.test", "127.0.0.5")     # refused
    dns_zone.host("mx2.limit.test", "127.0.0.6")
    dns_zone.apply()
    postern.configure(smtp_tcp_port=str(port), smtp_mx_address_limit="1")
    postern.start()
    qid = send(postern, "ptest1@postern.test", ["bob@limit.test"], msg("limit-1@test"))
    # One address only: mx1's refusal is final for this attempt; mx2 is never tried.
    postern.wait_log("smtp", rf"{qid}: to=<bob@limit\.test>, relay=none, .*dsn=4\.4\.1, status=deferred "
                     rf"\(connect to mx1\.limit\.test\[127\.0\.0\.5\]:{port}: Connection refused\)")
    assert good.messages() == []
    postern.stop()
    postern.configure(smtp_mx_address_limit="2")
    postern.start()
    postern.posternctl("flush")
    good.wait_count(1)


def two_mx(postern, dns_zone, aiosmtpd_server, name, conf=None, **first):
    """name's MX hosts: mx1 (127.0.0.5, an aiosmtpd server answering as the keywords first say)
    and mx2 (127.0.0.6, one that accepts everything), both on one port; Postern started with
    smtp_tcp_port set to it (and the parameters conf). Returns (mx1's handler, mx2's handler,
    port)."""
    port = free_port("127.0.0.5")
    h1, _ = aiosmtpd_server("127.0.0.5", port, **first)
    h2, _ = aiosmtpd_server("127.0.0.6", port)
    dns_zone.mx(name, f"mx1.{name}", 10)
    dns_zone.mx(name, f"mx2.{name}", 20)
    dns_zone.host(f"mx1.{name}", "127.0.0.5")
    dns_zone.host(f"mx2.{name}", "127.0.0.6")
    dns_zone.apply()
    postern.configure(smtp_tcp_port=str(port), **(conf or {}))
    postern.start()
    return h1, h2, port


def test_4xx_moves_on_to_the_next_mx(postern, dns_zone, aiosmtpd_server):
    first, second, port = two_mx(postern, dns_zone, aiosmtpd_server, "soft.test", mail="451 4.3.2 try later")
    qid = send(postern, "ptest1@postern.test", ["bob@soft.test"], msg("soft-1@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@soft\.test>, relay=mx2\.soft\.test\[127\.0\.0\.6\]:{port}, .*status=sent")
    assert first.envelopes == [] and len(second.envelopes) == 1


def test_rcpt_4xx_only_that_recipient_moves_on(postern, dns_zone, aiosmtpd_server):
    first, second, port = two_mx(postern, dns_zone, aiosmtpd_server, "rsoft.test",
                                 rcpt=lambda a: "450 4.2.1 mailbox busy" if a.startswith("carol") else None)
    qid = send(postern, "ptest1@postern.test", ["bob@rsoft.test", "carol@rsoft.test"], msg("soft-2@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@rsoft\.test>, relay=mx1\.rsoft\.test\[127\.0\.0\.5\]:{port}, .*status=sent")
    postern.wait_log("smtp", rf"{qid}: to=<carol@rsoft\.test>, relay=mx2\.rsoft\.test\[127\.0\.0\.6\]:{port}, .*status=sent")
    assert [e.rcpt_tos for e in first.envelopes] == [["bob@rsoft.test"]]
    assert [e.rcpt_tos for e in second.envelopes] == [["carol@rsoft.test"]]


def test_5xx_does_not_move_on(postern, dns_zone, aiosmtpd_server):
    _, second, port = two_mx(postern, dns_zone, aiosmtpd_server, "hard.test", mail="550 5.7.1 go away")
    qid = send(postern, "ptest1@postern.test", ["bob@hard.test"], msg("hard-1@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@hard\.test>, .*dsn=5\.7\.1, status=bounced")
    assert second.envelopes == []


def test_mx_session_limit_one_keeps_the_first_4xx(postern, dns_zone, aiosmtpd_server):
    _, second, port = two_mx(postern, dns_zone, aiosmtpd_server, "limit1.test",
                             conf={"smtp_mx_session_limit": "1"}, mail="451 4.3.2 try later")
    qid = send(postern, "ptest1@postern.test", ["bob@limit1.test"], msg("limit-s@test"))
    postern.wait_log("smtp", rf"{qid}: to=<bob@limit1\.test>, relay=mx1\.limit1\.test\[127\.0\.0\.5\]:{port}, "
                     r".*dsn=4\.3\.2, status=deferred \(host .* said: 451 4\.3\.2 try later \(in reply to MAIL FROM command\)\)")
    assert second.envelopes == []
