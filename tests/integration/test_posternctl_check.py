"""posternctl check (Postfix's `postfix check`): silent and 0 for a sound configuration; an error
and 1 for what cannot work; a master.cf next to main.cf is read, a syntax error in it is an error
naming file and line, and every entry Postern does not act on says "not supported" with the
reason (common/conf/master-cf.c, tools/posternctl/posternctl-check.c)."""


def check(postern):
    postern.configure()
    return postern.posternctl("check")


def test_sound_configuration_is_silent(postern):
    r = check(postern)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_postfix_parameters_with_no_meaning_are_information(postern):
    """Debian's main.cf sets readme_directory and friends: check says what replaces each, exits 0,
    and never calls them unknown."""
    postern.configure(readme_directory="no", daemon_directory="/usr/lib/postfix/sbin",
                      maillog_file="/var/log/postfix.log")
    r = postern.posternctl("check")
    assert r.returncode == 0, r.stderr
    assert "readme_directory: ignored, no meaning here: " in r.stderr
    assert "daemon_directory: ignored, no meaning here: the daemons are started by their systemd units" in r.stderr
    assert "maillog_file: ignored, no meaning here: log lines go to the journal" in r.stderr
    assert "unknown parameter" not in r.stderr


def test_config_x_shows_file_entries_and_myorigin_from_its_file(postern):
    (postern.etc_dir / "mailname").write_text("# this host\nmx.example.net\n")
    (postern.etc_dir / "networks").write_text("10.0.0.0/8  192.0.2.0/24\n# comment\n[2001:db8::]/32\n")
    postern.configure(myorigin=str(postern.etc_dir / "mailname"),
                      mynetworks=f"127.0.0.0/8, {postern.etc_dir}/networks")
    r = postern.posternctl("config", "-x", "myorigin", "mynetworks")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("myorigin = mx.example.net\n"
                        "mynetworks = 127.0.0.0/8, 10.0.0.0/8, 192.0.2.0/24, [2001:db8::]/32\n")
    r = postern.posternctl("config", "myorigin")   # without -x: as written
    assert r.stdout == f"myorigin = {postern.etc_dir}/mailname\n"


def test_smtp_client_settings_are_checked_without_a_master_cf(postern):
    """postern-smtp's own settings are checked even when there is no master.cf: what it does not
    act on says so."""
    postern.configure(smtp_sasl_auth_enable="yes", smtp_sasl_auth_cache_name="btree:/var/lib/postfix/sasl_cache")
    assert not (postern.etc_dir / "master.cf").exists()
    r = postern.posternctl("check")
    assert "not supported: smtp_sasl_auth_cache_name (Postern keeps no cache of rejected logins" in r.stderr


def test_missing_queue_directory_is_an_error(postern):
    postern.configure(queue_directory=str(postern.root / "nowhere"))
    r = postern.posternctl("check")
    assert r.returncode == 1
    assert f"queue_directory: {postern.root}/nowhere: No such file or directory" in r.stderr


def test_master_cf_entries_not_acted_on_say_not_supported(postern):
    (postern.etc_dir / "master.cf").write_text(
        "# Postern reads this for its transports\n"
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "  -o smtpd_tls_security_level=may\n"
        "qmgr      unix  n       -       n       300     1       qmgr\n"
        "relay     unix  -       -       y       -       -       smtp\n"
        "  -o smtp_helo_timeout=5 -o syslog_name=postfix/$service_name\n"
        "local     unix  -       n       n       -       -       local\n"
        "  -o mailbox_size_limit=0\n"
        "dovecot   unix  -       n       n       -       -       pipe\n"
        "  flags=DRhu user=nobody argv=/usr/lib/dovecot/deliver -f ${sender} -d ${recipient}\n"
        "smtp-amavis unix -      -       n       -       2       smtp\n"
        "policy    unix  -       n       n       -       0       spawn\n"
        "  user=nobody argv=/usr/bin/policyd\n")
    r = check(postern)
    path = postern.etc_dir / "master.cf"
    assert r.returncode == 0, r.stderr
    # relay's smtp_helo_timeout and smtp-amavis are used (test_master_transports.py)
    assert r.stderr.splitlines() == [
        f"posternctl: {path}:7: local: not supported: -o mailbox_size_limit on local (Postern's local "
        "transport takes no master.cf overrides; set it in main.cf)",
        f"posternctl: {path}:12: policy: not supported: command \"spawn\" (unix) is not part of Postern; "
        "run it as a service of its own; mail routed to it is deferred (4.3.5)",
        f"posternctl: {path}:5: relay: not supported: -o syslog_name on relay (postern-smtp logs every "
        "transport's deliveries as postern/smtp)",
    ]


def test_master_cf_syntax_error_names_file_and_line(postern):
    (postern.etc_dir / "master.cf").write_text(
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "\n"
        "relay     unix  -       -       y       -       lots    smtp\n")
    r = check(postern)
    assert r.returncode == 1
    assert r.stderr == (f"posternctl: {postern.etc_dir}/master.cf:3: relay: maxproc field \"lots\" is not "
                        "a number or -\n")


def test_master_cf_pipe_entry_errors(postern):
    """pipe(8) entries are used (postern-local's pipe socket), so what is wrong in them is an error."""
    (postern.etc_dir / "master.cf").write_text(
        "good      unix  -       n       n       -       -       pipe\n"
        "  flags=FR user=nobody argv=/bin/cat\n"
        "badflag   unix  -       n       n       -       -       pipe\n"
        "  flags=DZ user=nobody argv=/bin/cat\n"
        "asroot    unix  -       n       n       -       -       pipe\n"
        "  user=root argv=/bin/cat\n")
    r = check(postern)
    path = postern.etc_dir / "master.cf"
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"posternctl: {path}:3: badflag: unknown flag 'Z' in flags=DZ",
        f"posternctl: {path}:5: asroot: user=root: delivery as root is not allowed",
    ]


def test_config_flags_as_postconf(postern):
    """postconf's flags: -h values only, -H names only, -j JSON, -e edit, -# comment out, -X remove
    (continuation lines go with their setting; comments and other lines stay)."""
    import json
    postern.configure(myhostname="a.example", relayhost="[smart.example]:587")
    with open(postern.config_path, "a") as f:
        f.write("# keep me\nmynetworks = 127.0.0.0/8\n  [::1]/128\n")
    r = postern.posternctl("config", "-h", "myhostname")
    assert (r.returncode, r.stdout) == (0, "a.example\n")
    r = postern.posternctl("config", "-j", "myhostname", "mynetworks")
    assert [json.loads(line) for line in r.stdout.splitlines()] == [
        {"name": "myhostname", "value": "a.example"}, {"name": "mynetworks", "value": "127.0.0.0/8 [::1]/128"}]
    r = postern.posternctl("config", "-n", "-H")
    assert "relayhost\n" in r.stdout and "=" not in r.stdout
    assert postern.posternctl("config", "-e", "myhostname=b.example").returncode == 0
    assert postern.posternctl("config", "-e", "myhostname").returncode == 2   # -e wants name=value
    assert postern.posternctl("config", "-#", "mynetworks").returncode == 0
    assert postern.posternctl("config", "-X", "relayhost", "not_set_anywhere").returncode == 0
    text = postern.config_path.read_text()
    assert "myhostname = b.example\n" in text
    assert "# keep me\n#mynetworks = 127.0.0.0/8\n#  [::1]/128\n" in text
    assert "relayhost" not in text
    names = postern.posternctl("config", "-n", "-H").stdout.split()
    assert "myhostname" in names and "mynetworks" not in names and "relayhost" not in names


def test_config_master_cf_entries_fields_and_parameters(postern):
    """-M, -F, -P show master.cf as postconf does; editing master.cf through them says it is not
    supported."""
    (postern.etc_dir / "master.cf").write_text(
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "127.0.0.1:10025 inet n  -       n       -       10      smtpd\n"
        "  -o content_filter= -o { smtpd_recipient_restrictions = permit_mynetworks, reject }\n"
        "  -o smtpd_helo_required=no -o smtpd_helo_required=yes\n")
    postern.configure(config_directory=str(postern.etc_dir))
    r = postern.posternctl("config", "-M", "127.0.0.1:10025/inet")
    assert r.stdout.split() == ["127.0.0.1:10025", "inet", "n", "-", "n", "-", "10", "smtpd", "-o",
                                "content_filter=", "-o", "{", "smtpd_recipient_restrictions", "=",
                                "permit_mynetworks,", "reject", "}", "-o", "smtpd_helo_required=no",
                                "-o", "smtpd_helo_required=yes"], r.stderr
    r = postern.posternctl("config", "-F", "smtp/inet")
    assert r.stdout == ("smtp/inet/service = smtp\nsmtp/inet/type = inet\nsmtp/inet/private = n\n"
                        "smtp/inet/unprivileged = -\nsmtp/inet/chroot = y\nsmtp/inet/wakeup = -\n"
                        "smtp/inet/process_limit = -\nsmtp/inet/command = smtpd\n")
    r = postern.posternctl("config", "-P", "127.0.0.1:10025/inet")
    assert r.stdout == ("127.0.0.1:10025/inet/content_filter = \n"
                        "127.0.0.1:10025/inet/smtpd_recipient_restrictions = permit_mynetworks, reject\n"
                        "127.0.0.1:10025/inet/smtpd_helo_required = yes\n")
    r = postern.posternctl("config", "-P", "-h", "127.0.0.1:10025/inet/smtpd_helo_required")
    assert r.stdout == "yes\n"
    r = postern.posternctl("config", "-M", "nosuch")
    assert r.returncode == 1 and "nosuch: no such master.cf entry" in r.stderr
    r = postern.posternctl("config", "-Me", "smtp/inet=x")
    assert r.returncode == 2 and "not supported: editing master.cf" in r.stderr


def test_bash_completion_offers_verbs_parameters_and_flags(postern):
    """The bash completion the package installs (tools/completions/posternctl.bash), run by bash
    against the built posternctl: verbs, parameter names from the registry, config's flags."""
    import os
    import subprocess
    from postern_harness import binary
    script = os.path.join(os.environ["POSTERN_SOURCE_DIR"], "tools/completions/posternctl.bash")
    postern.configure()

    def complete(*words):
        env = dict(postern.env())
        env["PATH"] = os.path.dirname(binary("tools/posternctl/posternctl")) + ":" + env.get("PATH", "/usr/bin:/bin")
        cmd = (f'source {script}; COMP_WORDS=(posternctl {" ".join(words)}); '
               f'COMP_CWORD={len(words)}; _posternctl; printf "%s\\n" "${{COMPREPLY[@]}}"')
        r = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return sorted(r.stdout.split())

    assert complete("qs") == ["qshape"]
    assert complete("re") == ["release", "requeue"]
    assert complete("config", "myhost") == ["myhostname"]
    assert complete("config", "smtpd_tls_cert") == ["smtpd_tls_cert_file"]
    assert "-X" in complete("config", "-") and "-j" in complete("config", "-")
    assert complete("qshape", "de") == ["deferred"]
    # -c DIR / -i NAME before the verb (an instance): the verb and its arguments come after them
    assert complete("-c", "/etc", "qs") == ["qshape"]
    assert complete("-i", "out", "config", "myhost") == ["myhostname"]
    assert "-i" in complete("-") and "-c" in complete("-")


def test_mynetworks_computed_from_mynetworks_style(postern):
    """mynetworks left unset is computed as Postfix does: the loopback networks, then this host's
    addresses (host), its interfaces' networks (subnet) or IPv4 class networks (class); what iproute2
    reports is the independent reference. compatibility_level below 2 means subnet."""
    import ipaddress
    import json
    import subprocess
    links = json.loads(subprocess.run(["ip", "-j", "addr", "show", "up"], capture_output=True, text=True,
                                      check=True).stdout)
    addrs = [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}") for link in links if link
             and "LOOPBACK" not in link.get("flags", []) for a in link.get("addr_info", [])]

    def text(net):
        return str(net) if net.version == 4 else f"[{net.network_address}]/{net.prefixlen}"

    def expect(style):
        nets = []
        for a in addrs:
            if style == "host":
                n = ipaddress.ip_network(f"{a.ip}/{a.max_prefixlen}")
            elif style == "class" and a.version == 4:
                first = int(str(a.ip).split(".")[0])
                n = ipaddress.ip_network(f"{a.ip}/{8 if first < 128 else 16 if first < 192 else 24}", strict=False)
            else:
                n = a.network
            if text(n) not in nets:
                nets.append(text(n))
        return " ".join(["127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128"] + nets)

    settings = {k: v for k, v in postern.settings.items() if k != "mynetworks"}
    for style in ("host", "subnet", "class"):
        postern.settings = dict(settings, mynetworks_style=style)
        postern.configure()
        r = postern.posternctl("config", "-h", "mynetworks")
        assert r.stdout == expect(style) + "\n", (style, r.stderr)
    postern.settings = dict(settings, compatibility_level="1")
    postern.configure()
    assert postern.posternctl("config", "-h", "mynetworks").stdout == expect("subnet") + "\n"


def test_milter_entries_are_checked(postern):
    postern.configure(smtpd_milters="inet:127.0.0.1:8891, { inet:127.0.0.1:8893, default_action=later }",
                      non_smtpd_milters="tcp:1.2.3.4:5")
    r = check(postern)
    assert r.returncode == 1
    err = r.stderr
    assert 'posternctl: smtpd_milters: milter "inet:127.0.0.1:8893, default_action=later": invalid default_action "later"' in err
    assert 'posternctl: non_smtpd_milters: milter "tcp:1.2.3.4:5": expected unix:/path, local:/path or inet:host:port' in err
    assert "8891" not in err
