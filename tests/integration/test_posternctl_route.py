"""posternctl route ADDRESS [SENDER] (tools/posternctl/posternctl-route.c): the steps an address
goes through, computed by the daemons' own code (smtpd's rewriting, RCPT check and virtual alias
expansion, qmgr's routing) with the table entry that decided each; a table that fails is printed
and the exit code is 1. No daemon runs: posternctl reads main.cf and the tables itself."""


def configure_routes(postern, **params):
    etc = postern.etc_dir
    (etc / "virtual").write_text(
        "team@example.com  alice@vmail.example, lists@example.com\n"
        "lists@example.com carol@vmail.example, ext@remote.example, lists@example.com\n")
    (etc / "canonical").write_text("old@example.com team@example.com\n")
    (etc / "vmailbox").write_text("alice@vmail.example alice/\ncarol@vmail.example carol/\n")
    (etc / "transport").write_text("remote.example smtp:[mx.remote.example]:2525\n")
    settings = dict(
        myhostname="mx.example.com", mydomain="example.com", myorigin="example.com",
        mydestination="mx.example.com, localhost", local_recipient_maps="inline:{ root=x, ptest1=x }",
        virtual_alias_domains="example.com", virtual_alias_maps=f"texthash:{etc}/virtual",
        canonical_maps=f"texthash:{etc}/canonical", transport_maps=f"texthash:{etc}/transport",
        virtual_mailbox_domains="vmail.example", virtual_mailbox_maps=f"texthash:{etc}/vmailbox",
        virtual_transport="lmtp:unix:private/dovecot-lmtp",
        relay_domains="relay.example", relay_transport="relay:[gw.relay.example]",
        relocated_maps="inline:{ gone@vmail.example=new@elsewhere.example }",
        masquerade_domains="example.com")
    settings.update(params)
    postern.configure(**settings)


def route(postern, *args):
    r = postern.posternctl("route", *args)
    return r.returncode, r.stdout


def block(out, address):
    """The lines of the routing block of one final address."""
    lines = out.splitlines()
    start = lines.index(address)
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return lines[start + 1:end]


def test_canonical_tree_classes_and_transports(postern):
    configure_routes(postern)
    rc, out = route(postern, "old@example.com")
    assert rc == 0, out
    etc = postern.etc_dir
    lines = out.splitlines()
    assert lines[:5] == [
        "recipient <old@example.com>",
        "  canonical form: old@example.com (unchanged)",
        "  canonical_maps: old@example.com -> team@example.com",
        f'    texthash:{etc}/canonical: key "old@example.com" -> "team@example.com"',
        "  RCPT TO check: known",
    ]
    tree = lines[lines.index("virtual alias expansion") + 1:lines.index("alice@vmail.example")]
    assert tree == [
        "  team@example.com",
        f'      (virtual_alias_maps texthash:{etc}/virtual: key "team@example.com" -> '
        '"alice@vmail.example, lists@example.com")',
        "      -> alice@vmail.example",
        "      -> lists@example.com",
        f'          (virtual_alias_maps texthash:{etc}/virtual: key "lists@example.com" -> '
        '"carol@vmail.example, ext@remote.example, lists@example.com")',
        "          -> carol@vmail.example",
        "          -> ext@remote.example",
        "          -> lists@example.com (itself: delivered as it is)",
    ]
    assert block(out, "carol@vmail.example") == [
        "  class: virtual mailbox (virtual_mailbox_domains lists vmail.example)",
        "  relocated_maps: no entry",
        "  transport: lmtp, next hop: unix:private/dovecot-lmtp",
        "  socket: /var/spool/postfix/private/dovecot-lmtp (relative: under postern_lmtp_socket_directory)",
        "  decided by: virtual_transport",
    ]
    assert block(out, "ext@remote.example") == [
        "  class: default (remote.example is in no class list)",
        "  relocated_maps: no entry",
        "  transport: smtp, next hop: [mx.remote.example]:2525",
        "  decided by:",
        f'    texthash:{etc}/transport: key "remote.example" -> "smtp:[mx.remote.example]:2525"',
    ]
    # Kept by its own expansion, in a virtual alias domain: no mailbox.
    assert block(out, "lists@example.com") == [
        "  class: virtual alias (virtual_alias_domains lists example.com)",
        "  relocated_maps: no entry",
        "  transport: error, next hop: 5.1.1 User unknown in virtual alias table",
        "  decided by: the virtual alias class (no mailbox)",
    ]


def test_local_relay_and_default_classes(postern):
    configure_routes(postern)
    rc, out = route(postern, "root@localhost")
    assert rc == 0, out
    assert block(out, "root@localhost")[:4] == [
        "  class: local (mydestination lists localhost)",
        "  relocated_maps: no entry",
        "  transport: local, next hop: mx.example.com",
        "  decided by: local_transport",
    ]
    rc, out = route(postern, "x@relay.example")
    assert block(out, "x@relay.example") == [
        "  class: relay (relay_domains lists relay.example)",
        "  relocated_maps: no entry",
        "  transport: relay, next hop: [gw.relay.example]",
        "  decided by: relay_transport",
    ]
    rc, out = route(postern, "x@elsewhere.example")
    assert block(out, "x@elsewhere.example")[:3] == [
        "  class: default (elsewhere.example is in no class list)",
        "  relocated_maps: no entry",
        "  transport: smtp, next hop: elsewhere.example",
    ]


def test_address_literal_of_this_host_is_local(postern):
    # inet_interfaces = all (the default): every interface address is this host's, so a literal
    # of one is local (Postfix's resolve_local()); an address no interface has is not.
    configure_routes(postern)
    rc, out = route(postern, "ptest1@[127.0.0.1]")
    assert rc == 0, out
    assert "  RCPT TO check: known" in out.splitlines()
    lines = block(out, "ptest1@[127.0.0.1]")
    assert lines[0] == "  class: local ([127.0.0.1] is an address of this host: inet_interfaces, proxy_interfaces)"
    assert "  transport: local, next hop: mx.example.com" in lines
    rc, out = route(postern, "ptest1@[192.0.2.99]")
    assert block(out, "ptest1@[192.0.2.99]")[0] == "  class: default ([192.0.2.99] is in no class list)"
    configure_routes(postern, inet_interfaces="127.0.0.8")
    rc, out = route(postern, "ptest1@[127.0.0.1]")
    assert block(out, "ptest1@[127.0.0.1]")[0] == "  class: default ([127.0.0.1] is in no class list)"


def test_unknown_recipients_would_be_rejected(postern):
    configure_routes(postern)
    rc, out = route(postern, "nobody@vmail.example")
    assert rc == 0, out
    assert ("  RCPT TO check: unknown (would be rejected: 550 5.1.1 <nobody@vmail.example>: Recipient "
            "address rejected: User unknown in virtual mailbox table)") in out.splitlines()
    rc, out = route(postern, "nobody@localhost")
    assert ("  RCPT TO check: unknown (would be rejected: 550 5.1.1 <nobody@localhost>: Recipient "
            "address rejected: User unknown in local recipient table)") in out.splitlines()
    postern.configure(smtpd_reject_unlisted_recipient="no")
    rc, out = route(postern, "nobody@vmail.example")
    assert rc == 0
    assert ("  RCPT TO check: unknown (would be rejected: 550 5.1.1 <nobody@vmail.example>: Recipient "
            "address rejected: User unknown in virtual mailbox table) -- but smtpd_reject_unlisted_recipient "
            "= no") in out.splitlines()


def test_usage(postern):
    configure_routes(postern)
    r = postern.posternctl("route")
    assert r.returncode == 2 and r.stdout.startswith("Usage: posternctl route ADDRESS [SENDER]")
    r = postern.posternctl("route", "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: posternctl route ADDRESS [SENDER]")
    r = postern.posternctl("help")
    assert "route ADDRESS [SENDER]" in r.stdout


def test_relocated_and_sender_masquerading(postern):
    configure_routes(postern)
    rc, out = route(postern, "gone@vmail.example", "user@host.example.com")
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[:5] == [
        "sender <user@host.example.com>",
        "  canonical form: user@host.example.com (unchanged)",
        "  canonical_maps: user@host.example.com (unchanged)",
        "  masquerade_domains: user@host.example.com -> user@example.com",
        "recipient <gone@vmail.example>",
    ]
    assert block(out, "gone@vmail.example")[1:4] == [
        "  relocated_maps: 5.1.6 User has moved to new@elsewhere.example",
        "  transport: error, next hop: 5.1.6 User has moved to new@elsewhere.example",
        "  decided by:",
    ]


def test_transport_maps_override_the_class_default(postern):
    etc = postern.etc_dir
    configure_routes(postern)
    (etc / "transport").write_text("carol@vmail.example  smtp:[backup.example]\nvmail.example  :\n")
    rc, out = route(postern, "lists@example.com")
    assert rc == 0, out
    assert block(out, "carol@vmail.example")[2:] == [
        "  transport: smtp, next hop: [backup.example]",
        "  decided by:",
        f'    texthash:{etc}/transport: key "carol@vmail.example" -> "smtp:[backup.example]"',
    ]


def test_sender_dependent_default_transport(postern):
    configure_routes(postern, sender_dependent_default_transport_maps="inline:{ @partner.example=relay:[smarthost] }")
    rc, out = route(postern, "x@elsewhere.example", "a@partner.example")
    assert rc == 0, out
    assert block(out, "x@elsewhere.example")[2:] == [
        "  transport: relay, next hop: [smarthost]",
        "  decided by:",
        '    inline:{ @partner.example=relay:[smarthost] }: key "@partner.example" -> "relay:[smarthost]"',
    ]


def test_failing_table_is_printed_and_exits_1(postern):
    etc = postern.etc_dir
    (etc / "garbage.sqlite").write_bytes(b"this is not an SQLite database" * 200)
    (etc / "transport.cf").write_text(f"dbpath = {etc}/garbage.sqlite\n"
                                      "query = SELECT nexthop FROM transport WHERE k = '%s'\n")
    configure_routes(postern, transport_maps=f"sqlite:{etc}/transport.cf")
    rc, out = route(postern, "x@elsewhere.example")
    assert rc == 1
    assert block(out, "x@elsewhere.example")[1:] == [
        "  route: error: a table lookup failed: mail would be deferred (4.3.0)",
        f'    sqlite:{etc}/transport.cf: lookup of "x@elsewhere.example" FAILED: Input/output error',
    ]


def test_alias_loop_is_an_error(postern):
    configure_routes(postern)
    (postern.etc_dir / "virtual").write_text("a@example.com b@example.com\nb@example.com a@example.com\n")
    rc, out = route(postern, "a@example.com")
    assert rc == 1
    assert ("  error: virtual_alias_maps loop for a@example.com: a@example.com -> b@example.com -> "
            "a@example.com: mail would get 451 4.6.0 Alias expansion error") in out.splitlines()


def test_local_delivery_step_shows_mailbox_transport(postern):
    """An address of the local transport gets postern-local's step: the alias expansion and, per
    user, where the copy goes: mailbox_transport (with the LMTP socket it reaches), the mbox for a
    user mailbox_transport_maps sends nowhere else, fallback_transport for a name not in passwd."""
    postern.set_aliases("team: ptest1, ptest2, nosuchuser\n")
    postern.configure(mailbox_transport_maps="inline:{ ptest2=dovecot }",
                      fallback_transport="lmtp:unix:private/dovecot-lmtp", postern_lmtp_socket_directory="/srv/pf",
                      local_recipient_maps="")
    rc, out = route(postern, "team@postern.test")
    assert rc == 0, out
    lines = block(out, "team@postern.test")
    i = lines.index("  local delivery (postern-local):")
    assert lines[i + 1].endswith(': key "team" -> "ptest1, ptest2, nosuchuser"'), out
    rest = [x for x in lines[i + 2:] if "inline:" not in x]
    spool = postern.spool_dir
    assert rest == [
        f"    ptest1@postern.test: mbox {spool}/ptest1 (user ptest1)",
        "    ptest2@postern.test: passed to transport dovecot, next hop postern.test "
        "(mailbox_transport or fallback_transport)",
        "    nosuchuser@postern.test: passed to transport lmtp, next hop unix:private/dovecot-lmtp "
        "(mailbox_transport or fallback_transport)",
        "      socket: /srv/pf/private/dovecot-lmtp (relative: under postern_lmtp_socket_directory)",
    ], out
