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
