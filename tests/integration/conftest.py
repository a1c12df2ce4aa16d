"""pytest fixtures for Postern's integration tests: `local_users`, `postern`, `dovecot`,
`aiosmtpd_server` (scripted aiosmtpd receivers, smtp_peers.Handler) and `scripted` (line-level
SMTP/LMTP servers answering what a test scripts, smtp_peers.Scripted)."""

import os
import shutil

import pytest

import dnszone
import postern_harness
from smtp_peers import Scripted, peer_factory

_dns = None   # the run's dnsmasq (dnszone.DnsZone), serving localhost and what tests add


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes (e.g. testssl.sh); still part of the suite")
    if os.geteuid() != 0:
        pytest.exit("Postern's integration tests need root (delivery switches users).", returncode=4)
    postern_harness.isolate_test_homes()
    postern_harness.isolate_network()
    # Every daemon resolves through a dnsmasq of this run (smtpd looks up client names):
    # fast, deterministic, and never the machine's resolver. Only this namespace sees it.
    global _dns
    _dns = dnszone.DnsZone()
    _dns.start()
    _dns.bind_resolv_conf()


def pytest_unconfigure(config):
    if _dns:
        _dns.close()


@pytest.fixture
def dns_zone():
    """The run's DNS server: add records (host/mx/txt/ptr/add), then apply(); they are served
    until the test ends. Names under slow.test time out (a temporary failure after ~1 s)."""
    yield _dns
    if _dns.options:
        _dns.reset()
        _dns.apply()


@pytest.fixture(scope="session")
def local_users():
    """The test users ptest1..ptest3 (created on first use), as {name: passwd entry}."""
    return postern_harness.ensure_test_users()


@pytest.fixture
def postern(local_users, request):
    """A Postern instance in a fresh root; stopped at teardown, which also fails the test when a
    daemon's log shows a sanitizer report."""
    postern_harness.clean_test_homes()
    p = postern_harness.Postern()
    yield p
    p.close()
    reports = p.sanitizer_reports()
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    if not failed and not reports and not os.environ.get("POSTERN_KEEP_ROOT"):
        shutil.rmtree(p.root, ignore_errors=True)
    assert not reports, "sanitizer reports:\n" + "\n".join(reports)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def dovecot():
    """A private Dovecot (peers.Dovecot): auth socket at dovecot.auth_path, users alice/secret
    and bob/hunter2, mechanisms PLAIN and LOGIN; stopped and removed at teardown."""
    import peers
    d = peers.Dovecot()
    d.start()
    yield d
    d.close(keep=bool(os.environ.get("POSTERN_KEEP_ROOT")))


@pytest.fixture
def scripted():
    """make(**kw) starts a smtp_peers.Scripted server (stopped when the test ends)."""
    yield from peer_factory(Scripted)


@pytest.fixture
def aiosmtpd_server():
    """make(host="127.0.0.1", port=None, utf8=False, mail=..., rcpt=..., data=...) starts an
    aiosmtpd server with a smtp_peers.Handler; returns (handler, port). Stopped at teardown."""
    from aiosmtpd.controller import Controller
    from smtp_peers import Handler, free_port
    controllers = []

    def make(host="127.0.0.1", port=None, utf8=False, **kw):
        h = Handler(**kw)
        c = Controller(h, hostname=host, port=port or free_port(host), enable_SMTPUTF8=utf8)
        c.start()
        controllers.append(c)
        return h, c.port
    yield make
    for c in controllers:
        c.stop()

