"""TLSRPT (RFC 8460): with smtp_tlsrpt_enable and MTA-STS, postern-smtp counts each session's result
per policy domain in $queue_directory/tlsrpt.db; `posternctl tlsrpt send --day D` mails the JSON
report, gzipped, to the mailto: rua of the domain's _smtp._tls TXT record as RFC 8460 5.3 says.
The fixtures are test_smtp_mta_sts.py's (HTTPS policy server on 127.0.0.5:443, test CA, the
Python/OpenSSL SMTP peer with STARTTLS); the report goes to a local mailbox (ptest1), or is POSTed
to an https: rua on the same HTTPS server (RFC 8460 3)."""

import datetime
import email
import email.policy
import gzip
import json
import re
import sqlite3
import subprocess

import pytest

from postern_harness import binary
from test_smtp_mta_sts import DOMAIN, MX, WEB_ADDR, pki, peer, start, web  # noqa: F401 (fixtures)
from test_smtp_tls import deferred, send, sent

REQUIRED = {"organization-name", "date-range", "contact-info", "report-id", "policies"}


def zone(dns_zone, mx_host, rua="mailto:ptest1@postern.test"):
    dns_zone.reset()
    dns_zone.mx(DOMAIN, mx_host, 10)
    dns_zone.host(mx_host, "127.0.0.1")
    dns_zone.host(f"mta-sts.{DOMAIN}", WEB_ADDR)
    dns_zone.host(f"reports.{DOMAIN}", WEB_ADDR)     # the web server's certificate does not name it
    dns_zone.txt(f"_mta-sts.{DOMAIN}", "v=STSv1; id=one;")
    if rua:
        dns_zone.txt(f"_smtp._tls.{DOMAIN}", f"v=TLSRPTv1; rua={rua}")
    dns_zone.apply()


def report_cmd(postern, *args):
    """posternctl tlsrpt ARGS, handing reports to the built postern-sendmail."""
    env = postern.env()
    env["POSTERN_SENDMAIL"] = str(binary("tools/sendmail/postern-sendmail"))
    return subprocess.run([str(binary("tools/posternctl/posternctl")), "tlsrpt", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_report_counts_successes_and_failures_and_is_mailed(postern, pki, peer, web, dns_zone):
    p = peer()
    web().policy("enforce", mx=[MX])
    zone(dns_zone, MX)
    start(postern, pki, p.port, smtp_tlsrpt_enable="yes", smtp_tlsrpt_organization_name="Postern Test Org",
          smtp_tlsrpt_contact_info="tls-reports@postern.test")
    for i in range(3):
        sent(postern, send(postern, f"rpt-ok-{i}@test"))
    # The MX moves to a host the (cached) policy does not list: enforced, never delivered.
    zone(dns_zone, "bad.sts.test")
    for i in range(2):
        deferred(postern, send(postern, f"rpt-bad-{i}@test"))
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")

    shown = report_cmd(postern, "show", "--day", day)
    assert shown.returncode == 0, shown.stderr
    r = report_cmd(postern, "send", "--day", day)
    assert r.returncode == 0, r.stderr
    assert f"{DOMAIN}: report {day}T00:00:00Z_{DOMAIN}@" in r.stdout

    box = postern.wait_mailbox("ptest1", r"TLS-Report-Domain: sts\.test", timeout=30)
    raw = box[box.rindex("\nFrom ") + 1:] if box.count("\nFrom ") else box
    msg = email.message_from_string(raw.split("\n", 1)[1], policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == DOMAIN
    submitter = msg["TLS-Report-Submitter"]
    assert submitter
    assert re.fullmatch(rf"Report Domain: {re.escape(DOMAIN)} Submitter: {re.escape(submitter)} "
                        r"Report-ID: <[^>]+>", msg["Subject"]), msg["Subject"]
    parts = [part for part in msg.iter_parts() if part.get_content_type() == "application/tlsrpt+gzip"]
    assert len(parts) == 1
    name = parts[0].get_filename()
    start_ts = int(datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())
    assert re.fullmatch(rf"{re.escape(submitter)}!{re.escape(DOMAIN)}!{start_ts}!{start_ts + 86399}!\w+\.json\.gz",
                        name), name
    report = json.loads(gzip.decompress(parts[0].get_content()))
    assert json.loads(shown.stdout) == report

    assert REQUIRED <= set(report)
    assert report["organization-name"] == "Postern Test Org"
    assert report["contact-info"] == "tls-reports@postern.test"
    assert report["date-range"] == {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"}
    assert f"<{report['report-id']}>" in msg["Subject"]
    [pol] = report["policies"]
    assert pol["policy"]["policy-type"] == "sts"
    assert pol["policy"]["policy-domain"] == DOMAIN
    assert pol["policy"]["mx-host"] == [MX]
    assert "mode: enforce" in pol["policy"]["policy-string"]
    assert pol["summary"] == {"total-successful-session-count": 3, "total-failure-session-count": 2}
    assert pol["failure-details"] == [{"result-type": "validation-failure", "receiving-ip": "127.0.0.1",
                                       "receiving-mx-hostname": "bad.sts.test", "failed-session-count": 2}]

    # the day is done: forgotten, so a second run sends nothing
    db = sqlite3.connect(postern.queue_dir / "tlsrpt.db")
    assert db.execute("SELECT count(*) FROM tlsrpt_result WHERE day = ?", (day,)).fetchone() == (0,)
    db.close()


def test_off_by_default_and_socket_name_not_supported(postern, pki, peer, web, dns_zone):
    p = peer()
    web().policy("enforce", mx=[MX])
    zone(dns_zone, MX)
    start(postern, pki, p.port, smtp_tlsrpt_socket_name="/run/tlsrpt/tlsrpt.sock")
    sent(postern, send(postern, "rpt-off@test"))
    postern.wait_log("smtp", r"not supported: smtp_tlsrpt_socket_name")
    assert not (postern.queue_dir / "tlsrpt.db").exists()
    r = report_cmd(postern, "send")
    assert r.returncode == 0 and "No TLSRPT results" in r.stdout, (r.stdout, r.stderr)


def show(postern, day):
    r = report_cmd(postern, "show", "--day", day)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_fetch_error_and_no_policy_found(postern, pki, peer, web, dns_zone):
    p = peer()
    w = web()
    w.reply = (404, {"Content-Type": "text/plain"}, b"not here\n")
    zone(dns_zone, MX)
    start(postern, pki, p.port, smtp_tlsrpt_enable="yes", smtp_tls_security_level="may")
    sent(postern, send(postern, "rpt-fetch@test"))       # no policy: opportunistic TLS
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    [report] = show(postern, day)
    by_type = {pol["policy"]["policy-type"]: pol for pol in report["policies"]}
    assert set(by_type) == {"sts", "no-policy-found"}
    assert by_type["sts"]["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 1}
    assert [f["result-type"] for f in by_type["sts"]["failure-details"]] == ["sts-policy-fetch-error"]
    assert by_type["no-policy-found"]["summary"] == {"total-successful-session-count": 1,
                                                     "total-failure-session-count": 0}
    assert "failure-details" not in by_type["no-policy-found"]


def results_of(postern, day):
    db = sqlite3.connect(postern.queue_dir / "tlsrpt.db")
    try:
        return db.execute("SELECT count(*) FROM tlsrpt_result WHERE day = ?", (day,)).fetchone()[0]
    finally:
        db.close()


def one_day_of_results(postern, pki, peer, web, dns_zone, rua, **conf):
    """One session under an enforce policy, counted; returns (policy/report server, day)."""
    p = peer()
    w = web()
    w.policy("enforce", mx=[MX])
    zone(dns_zone, MX, rua=rua)
    start(postern, pki, p.port, smtp_tlsrpt_enable="yes", smtp_tlsrpt_CAfile=str(pki["ca"]), **conf)
    sent(postern, send(postern, "rpt-https@test"))
    return w, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def test_report_posted_to_https_rua(postern, pki, peer, web, dns_zone):
    w, day = one_day_of_results(postern, pki, peer, web, dns_zone, f"https://mta-sts.{DOMAIN}/tlsrpt/v1?k=1")
    [shown] = show(postern, day)
    r = report_cmd(postern, "send", "--day", day)
    assert r.returncode == 0, r.stderr
    assert f"{DOMAIN}: report {day}T00:00:00Z_{DOMAIN}@" in r.stdout and f"sent to https://mta-sts.{DOMAIN}/" in r.stdout
    [(path, host, ctype, body)] = w.posts
    assert (path, host, ctype) == ("/tlsrpt/v1?k=1", f"mta-sts.{DOMAIN}", "application/tlsrpt+gzip")
    report = json.loads(gzip.decompress(body))
    assert report == shown
    assert REQUIRED <= set(report)
    assert report["date-range"] == {"start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"}
    [pol] = report["policies"]
    assert pol["policy"]["policy-type"] == "sts" and pol["policy"]["policy-domain"] == DOMAIN
    assert pol["summary"] == {"total-successful-session-count": 1, "total-failure-session-count": 0}
    assert results_of(postern, day) == 0          # sent: the day is forgotten


@pytest.mark.parametrize("case", ["status-500", "redirect", "bad-certificate"])
def test_https_rua_failure_keeps_the_day(postern, pki, peer, web, dns_zone, case):
    host = f"reports.{DOMAIN}" if case == "bad-certificate" else f"mta-sts.{DOMAIN}"
    w, day = one_day_of_results(postern, pki, peer, web, dns_zone, f"https://{host}/tlsrpt")
    w.post_reply = {"status-500": (500, {}, b"boom"), "redirect": (302, {"Location": "https://elsewhere.test/"}, b""),
                    "bad-certificate": (201, {}, b"")}[case]
    r = report_cmd(postern, "send", "--day", day)
    assert r.returncode == 75, (r.stdout, r.stderr)          # EX_TEMPFAIL, as a failed mailto: hand-off
    reason = {"status-500": "HTTP status 500", "redirect": "HTTP status 302 (redirects are not followed)",
              "bad-certificate": f"certificate of {host} not verified"}[case]
    assert f"{DOMAIN}: report not sent to https://{host}/tlsrpt: {reason}" in r.stderr, r.stderr
    assert len(w.posts) == (0 if case == "bad-certificate" else 1)
    assert results_of(postern, day) == 1          # kept for the next run
    if case == "status-500":                      # the next run succeeds and forgets the day
        w.post_reply = (200, {}, b"")
        r = report_cmd(postern, "send", "--day", day)
        assert r.returncode == 0, r.stderr
        assert len(w.posts) == 2 and results_of(postern, day) == 0
