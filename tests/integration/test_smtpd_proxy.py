"""postern-smtpd behind a load balancer: smtpd_upstream_proxy_protocol = haproxy. Headers of the
PROXY protocol v1 and v2 are sent from Python (every connection really comes from 127.0.0.1)
and the address they name must be the client's everywhere: Received:, the log lines, mynetworks,
access maps, policy requests. Bad headers, a client that talks SMTP instead, and a header that
never completes end the connection without a greeting and with a log line saying why. Last, real
HAProxy (Debian's haproxy) in front of smtpd with send-proxy and send-proxy-v2."""

import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import pytest

from test_smtpd_helpers import Raw, ScriptedPolicy, content_of, queue_ids
from test_smtpd_tls import certs, tls_params, tls_wrap, raw_on   # noqa: F401 — the certificate fixture

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst, sport, dport, proto="TCP4"):
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst, sport, dport, tlvs=b"", command=0x21):
    """A v2 PROXY header (INET or INET6 by the address) with the given raw TLV bytes."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    body = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) + struct.pack(">HH", sport, dport) + tlvs
    return V2_SIG + bytes([command, 0x21 if fam == socket.AF_INET6 else 0x11]) + struct.pack(">H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack(">H", len(value)) + value


def start(postern, **conf):
    """smtpd with the PROXY protocol on its port 25 listener (a listener override, as master.cf's
    -o becomes one), relaying only for mynetworks."""
    settings = {"smtp/smtpd_upstream_proxy_protocol": "haproxy", "mynetworks": "127.0.0.0/8",
                "mydestination": "localhost, postern.test",
                "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination"}
    settings.update(conf)
    postern.configure(**settings)
    postern.start("smtpd")


def proxied(postern, header, port=None, pieces=1):
    """A Raw client that sent header (in `pieces` writes) and then read the greeting."""
    s = socket.create_connection(("127.0.0.1", port or postern.smtp_port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    step = max(1, len(header) // pieces)
    for i in range(0, len(header), step):
        s.sendall(header[i:i + step])
        if pieces > 1:
            time.sleep(0.05)   # separate segments: smtpd must collect the header across reads
    return Raw(sock=s)


def send_local(c, rcpt="ptest1@localhost"):
    assert c.cmd("EHLO client.test").startswith("250")
    assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
    assert c.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Ok"
    assert c.cmd("DATA").startswith("354")
    r = c.cmd("Subject: proxied\r\n\r\nhello\r\n.")
    assert r.startswith("250 2.0.0 Ok: queued as "), r
    assert c.cmd("QUIT").startswith("221")
    return r.split()[-1]


def test_v1_address_in_received_and_logs(postern):
    start(postern)
    with proxied(postern, v1("192.0.2.7", "198.51.100.25", 40123, 25)) as c:
        assert c.greeting[0] == 220
        qid = send_local(c)
    assert re.search(r"Received: from client\.test \(unknown \[192\.0\.2\.7\]\)\n\tby postern\.test",
                     content_of(postern, qid))
    postern.wait_log("smtpd", r"connect from unknown\[192\.0\.2\.7\]")
    postern.wait_log("smtpd", re.escape(qid) + r": client=unknown\[192\.0\.2\.7\]")
    postern.wait_log("smtpd", r"disconnect from unknown\[192\.0\.2\.7\] ehlo=1 mail=1 rcpt=1 data=1 quit=1")
    assert "127.0.0.1" not in re.findall(r"connect from .*", postern.log("smtpd"))[0]


def test_v2_ipv6_with_tlvs_collected_across_reads(postern):
    start(postern)
    header = v2("2001:db8::5", "2001:db8::25", 65000, 25,
                tlv(0x01, b"smtp") + tlv(0x05, b"unique-id-1234") + tlv(0x04, b"\0" * 40))
    with proxied(postern, header, pieces=5) as c:
        assert c.greeting[0] == 220
        qid = send_local(c)
    assert "Received: from client.test (unknown [IPv6:2001:db8::5])" in content_of(postern, qid)
    postern.wait_log("smtpd", r"connect from unknown\[2001:db8::5\]")


def test_mynetworks_decides_on_the_proxied_address(postern):
    # the connection comes from 127.0.0.1; only 10.0.0.0/8 may relay
    start(postern, mynetworks="10.0.0.0/8")
    with proxied(postern, v1("10.1.2.3", "10.0.0.1", 5000, 25)) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<someone@remote.example>") == "250 2.1.5 Ok"
    with proxied(postern, v2("192.0.2.9", "10.0.0.1", 5001, 25)) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<someone@remote.example>") == \
            "554 5.7.1 <someone@remote.example>: Relay access denied"
    postern.wait_log("smtpd", r"NOQUEUE: reject: RCPT from unknown\[192\.0\.2\.9\]: 554 5\.7\.1 "
                     r"<someone@remote\.example>: Relay access denied")


def test_access_map_and_policy_see_the_proxied_client(postern, tmp_path):
    access = tmp_path / "client_access"
    access.write_text("192.0.2.66 REJECT proxied client refused\n")
    srv = ScriptedPolicy(tmp_path, ["action=DUNNO"] * 4)
    start(postern, smtpd_client_restrictions=f"check_client_access texthash:{access}",
          smtpd_recipient_restrictions=f"check_policy_service {srv.service}",
          smtpd_policy_service_retry_delay="0s")
    with proxied(postern, v1("192.0.2.66", "198.51.100.25", 1234, 2525)) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == \
            "554 5.7.1 <unknown[192.0.2.66]>: Client host rejected: proxied client refused"
    with proxied(postern, v1("192.0.2.67", "198.51.100.25", 4321, 2525)) as c:
        assert c.cmd("EHLO client.test").startswith("250")
        assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
        assert c.cmd("RCPT TO:<ptest1@localhost>") == "250 2.1.5 Ok"
    assert len(srv.requests) == 1
    r = srv.requests[0]
    assert (r["client_address"], r["client_port"]) == ("192.0.2.67", "4321")
    assert (r["server_address"], r["server_port"]) == ("198.51.100.25", "2525")


def test_local_command_and_unknown_keep_the_connections_addresses(postern):
    start(postern)
    with proxied(postern, V2_SIG + b"\x20\x00\x00\x00") as c:   # a health check: LOCAL
        assert c.greeting[0] == 220
        assert c.cmd("QUIT").startswith("221")
    postern.wait_log("smtpd", r"PROXY protocol: v2 LOCAL command from \[127\.0\.0\.1\]:\d+; "
                     r"using the connection's own addresses")
    with proxied(postern, b"PROXY UNKNOWN\r\n") as c:
        assert c.greeting[0] == 220
    postern.wait_log("smtpd", r"PROXY protocol: v1 UNKNOWN protocol from \[127\.0\.0\.1\]:\d+")
    postern.wait_log("smtpd", r"connect from localhost\[127\.0\.0\.1\]", count=2)


BAD = [
    ("smtp-instead", b"EHLO client.test\r\n", r"not a PROXY protocol header \(it began with \"EHLO client\.test\"\)"),
    ("v1-bad-address", b"PROXY TCP4 192.0.2.300 127.0.0.1 1 25\r\n", r"v1 header has a malformed source address"),
    ("v1-too-long", b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n", r"v1 header longer than 107 bytes"),
    ("v1-family-mismatch", b"PROXY TCP6 192.0.2.1 127.0.0.1 1 25\r\n", r"v1 header has a malformed source address"),
    ("v2-unknown-family", V2_SIG + b"\x21\x41\x00\x0c" + b"\0" * 12, r"v2 header has an unknown address family"),
    ("v2-too-long", V2_SIG + b"\x21\x11\xff\xff" + b"\0" * 64, r"v2 header longer than 16 \+ 4096 bytes"),
    ("v2-tlv-overrun", v2("192.0.2.1", "127.0.0.1", 1, 25, b"\x05\x00\x40abc"),
     r"v2 header has a TLV longer than the header"),
    ("binary", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", r"not a PROXY protocol header"),
]


@pytest.mark.parametrize("data,why", [(d, w) for _, d, w in BAD], ids=[n for n, _, _ in BAD])
def test_bad_header_closes_without_greeting(postern, data, why):
    start(postern)
    with socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                d = s.recv(4096)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
        assert got == b""   # no greeting, no reply at all
    postern.wait_log("smtpd", r"warning: PROXY protocol: bad header from \[127\.0\.0\.1\]:\d+: " + why
                     + r".*; closing the connection")
    assert "connect from" not in postern.log("smtpd")
    # the listener goes on serving proper headers
    with proxied(postern, v1("192.0.2.8", "127.0.0.1", 1, 25)) as c:
        assert c.greeting[0] == 220


def test_header_that_never_completes_times_out(postern):
    start(postern, smtpd_upstream_proxy_timeout="1s")
    with socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10) as s:
        s.sendall(b"PROXY TCP4 192.0.2.")
        assert s.recv(4096) == b""   # closed after the timeout, without a greeting
    postern.wait_log("smtpd", r"warning: PROXY protocol: no complete header from \[127\.0\.0\.1\]:\d+ "
                     r"within 1s; closing the connection")
    # a client that waits for a greeting (as SMTP clients do) gets the same
    with socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10) as s:
        assert s.recv(4096) == b""
    postern.wait_log("smtpd", r"no complete header from .* within 1s", count=2)


def test_only_listed_load_balancers_may_send_a_header(postern, tmp_path):
    start(postern, postern_upstream_proxy_networks="127.0.0.2/32")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.connect(("127.0.0.1", postern.smtp_port))
    s.settimeout(10)
    s.sendall(v1("192.0.2.5", "127.0.0.1", 1, 25))
    assert s.recv(4096) == b""   # closed at once, no greeting
    s.close()
    postern.wait_log("smtpd", r"warning: PROXY protocol: connection from \[127\.0\.0\.1\]:\d+, which is not in "
                     r"postern_upstream_proxy_networks; closing the connection")
    s = socket.socket()
    s.bind(("127.0.0.2", 0))
    s.connect(("127.0.0.1", postern.smtp_port))
    s.sendall(v1("192.0.2.5", "127.0.0.1", 1, 25))
    with Raw(sock=s) as c:
        assert c.greeting[0] == 220
    postern.wait_log("smtpd", r"connect from unknown\[192\.0\.2\.5\]")


def test_shutdown_sends_nothing_to_a_session_without_its_header(postern):
    start(postern)
    waiting = socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10)
    # accepted in order: once this later session is greeted, the first one is in its PROXY phase
    with proxied(postern, v1("192.0.2.9", "127.0.0.1", 1, 25)) as c:
        assert c.greeting[0] == 220
        assert postern.stop()["smtpd"] == 0
        assert c.text().startswith("421 4.3.2 ")
    assert waiting.recv(4096) == b""   # closed, and not even the 421 went out
    waiting.close()


def test_other_listeners_and_submit_take_no_header(postern):
    start(postern)
    with Raw(port=postern.submission_port) as c:   # no override on submission
        assert c.greeting[0] == 220
    r = postern.sendmail(["-f", "a@example.org", "ptest1@localhost"], input=b"Subject: local\n\nx\n")
    assert r.returncode == 0, r.stderr


def _tcp_listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


@pytest.mark.skipif(not shutil.which("certtool"), reason="needs gnutls-bin (certtool)")
def test_master_cf_listener_with_implicit_tls(postern, certs):
    """mailcow's "10465 inet ... smtpd -o smtpd_upstream_proxy_protocol=haproxy
    -o smtpd_tls_wrappermode=yes": the header, then TLS from the next byte."""
    l = _tcp_listener()
    port = l.getsockname()[1]
    (postern.etc_dir / "master.cf").write_text(
        f"{port} inet n - n - - smtpd\n  -o smtpd_upstream_proxy_protocol=haproxy\n"
        f"  -o smtpd_tls_wrappermode=yes\n")
    postern.configure(**tls_params(certs), mydestination="localhost, postern.test")
    postern.listeners["smtpd"] += [(str(port), l)]
    postern.start("smtpd")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    # header and ClientHello may arrive together: smtpd must not read past the header
    s.sendall(v2("192.0.2.44", "127.0.0.1", 3333, 465))
    t = raw_on(tls_wrap(s, certs))
    assert t.text().startswith("220 ")
    qid = send_local(t)
    assert "Received: from client.test (unknown [192.0.2.44])" in content_of(postern, qid)
    # port 25 (no -o) is unchanged: it greets without a header
    with Raw(port=postern.smtp_port) as c:
        assert c.greeting[0] == 220


def test_postscreen_entry_gives_its_proxy_protocol_to_smtpd(postern):
    """A port-25 postscreen of master.cf is smtpd itself, screening: the PROXY protocol postscreen
    would have read (its own -o, else main.cf's postscreen_upstream_proxy_protocol) is smtpd's, its
    own -o postscreen_* options apply, and the proxied client is the one screened."""
    (postern.etc_dir / "master.cf").write_text(
        "smtp inet n - n - 1 postscreen\n  -o postscreen_upstream_proxy_timeout=2s\n"
        "  -o postscreen_greet_wait=1s\n"
        "smtpd pass - - n - - smtpd\n  -o smtpd_helo_required=yes\n")
    postern.configure(postscreen_upstream_proxy_protocol="haproxy", mydestination="localhost, postern.test")
    postern.start("smtpd")
    with proxied(postern, v1("192.0.2.80", "127.0.0.1", 2000, 25)) as c:
        assert c.cmd("MAIL FROM:<a@example.org>").startswith("503")   # the pass entry's -o applies
        qid = send_local(c)
    assert "Received: from client.test (unknown [192.0.2.80])" in content_of(postern, qid)
    postern.wait_log("smtpd", r"CONNECT from \[192\.0\.2\.80\]:2000 to \[127\.0\.0\.1\]:25")
    postern.wait_log("smtpd", r"PASS NEW \[192\.0\.2\.80\]:2000")
    with socket.create_connection(("127.0.0.1", postern.smtp_port), timeout=10) as s:
        assert s.recv(4096) == b""   # no header within postscreen_upstream_proxy_timeout
    postern.wait_log("smtpd", r"no complete header from \[127\.0\.0\.1\]:\d+ within 2s")


HAPROXY_CFG = """global
    log stderr format raw local0 warning
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{p1}
    default_backend smtpd_v1
frontend v2
    bind 127.0.0.1:{p2}
    default_backend smtpd_v2
backend smtpd_v1
    server postern 127.0.0.1:{smtp} send-proxy
backend smtpd_v2
    server postern 127.0.0.1:{smtp} send-proxy-v2
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def haproxy(postern):
    """HAProxy in the foreground (-db) with send-proxy on port p1 and send-proxy-v2 on p2, both
    towards postern's port 25 listener."""
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy is not installed (tests/run-all installs it)")
    d = tempfile.mkdtemp(prefix="postern-haproxy-", dir="/var/tmp")
    ports = {"p1": _free_port(), "p2": _free_port(), "smtp": postern.smtp_port}
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY_CFG.format(**ports))
    log = open(os.path.join(d, "haproxy.log"), "wb")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", cfg], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    for p in (ports["p1"], ports["p2"]):
        while True:
            try:
                socket.create_connection(("127.0.0.1", p), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("haproxy did not start: " + open(log.name).read())
                time.sleep(0.05)
    yield ports
    proc.terminate()
    proc.wait(10)
    log.close()
    shutil.rmtree(d, ignore_errors=True)


def test_haproxy_send_proxy_v1_and_v2(postern, haproxy):
    # the probe connections that waited for haproxy's ports count as lost, not as errors
    start(postern, mynetworks="127.0.0.1/32")
    for port, source in ((haproxy["p1"], "127.0.0.3"), (haproxy["p2"], "127.0.0.4")):
        s = socket.socket()
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        with Raw(sock=s) as c:
            assert c.greeting[0] == 220
            # 127.0.0.3/4 are outside mynetworks = 127.0.0.1/32: relaying is refused for them,
            # although every connection smtpd accepts comes from haproxy on 127.0.0.1
            assert c.cmd("EHLO client.test").startswith("250")
            assert c.cmd("MAIL FROM:<a@example.org>") == "250 2.1.0 Ok"
            assert c.cmd("RCPT TO:<x@remote.example>") == "554 5.7.1 <x@remote.example>: Relay access denied"
            c.cmd("RSET")
            qid = send_local(c)
        text = content_of(postern, qid)
        assert f"Received: from client.test (localhost [{source}])" in text, text
        postern.wait_log("smtpd", r"connect from localhost\[" + re.escape(source) + r"\]")
    assert len(queue_ids(postern)) == 2
