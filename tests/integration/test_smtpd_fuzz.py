"""postern-smtpd under hostile input: random mixes of valid commands, broken addresses, binary
junk, bare CR/LF, dots and NULs, cut into random segments. smtpd must stay up and answer (the
fixture also fails the test on any sanitizer report when run against an ASan/UBSan build)."""

import os
import random
import socket
import time

from test_smtpd_helpers import raw

PIECES = [
    b"EHLO x\r\n", b"HELO y\r\n", b"MAIL FROM:<a@example.org>\r\n", b"MAIL FROM:<>\r\n",
    b"MAIL FROM:<a@b> SIZE=99999999999999\r\n", b"MAIL FROM:<a@b> BODY=8BITMIME SIZE=10\r\n",
    b"RCPT TO:<ptest1@localhost>\r\n", b"RCPT TO:<x@remote.test>\r\n", b"RCPT TO:<\"q\\\"x\"@localhost>\r\n",
    b"RCPT TO:<@a,@b:c@d>\r\n", b"RCPT TO:<a@[IPv6:::1]>\r\n", b"RCPT TO:<a@[1.2.3.4>\r\n",
    b"RCPT TO:<" + b"a" * 300 + b"@x>\r\n", b"RCPT TO:<\xc3\xa9@localhost>\r\n",
    b"DATA\r\n", b"Subject: s\r\n", b"\r\n", b".\r\n", b"..\r\n", b"\n.\n", b"\r\n.\r\n",
    b"\r\n.\n", b"\n.\r\n", b"\r", b"\n", b"\x00", b"RSET\r\n", b"NOOP\r\n", b"VRFY a\r\n",
    b"QUIT\r\n", b"HELP\r\n", b"BDAT 10 LAST\r\n", b"AUTH LOGIN\r\n", b"STARTTLS\r\n",
    b"X" * 3000, b"From: a\r\n", b" folded\r\n", b"Message-ID: <" + b"m" * 500 + b">\r\n",
]


def random_session(rng):
    out = b""
    for _ in range(rng.randint(1, 40)):
        if rng.random() < 0.15:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
        else:
            out += rng.choice(PIECES)
    return out


def test_random_sessions(postern):
    postern.configure(smtpd_hard_error_limit="50", smtpd_timeout="3s", line_length_limit="1000",
                      message_size_limit="20000", header_size_limit="2000")
    postern.start("smtpd")
    rng = random.Random(int(os.environ.get("POSTERN_FUZZ_SEED", "20261121")))
    for _ in range(int(os.environ.get("POSTERN_FUZZ_SESSIONS", "150"))):
        data = random_session(rng)
        s = socket.create_connection(("127.0.0.1", postern.smtp_port))
        s.settimeout(3)
        try:
            pos = 0
            while pos < len(data):
                n = rng.randint(1, 2000)
                s.sendall(data[pos:pos + n])
                pos += n
                if rng.random() < 0.1:
                    time.sleep(0.001)   # pacing: sometimes split the input across reads
            s.shutdown(socket.SHUT_WR)   # EOF: the server must end the session
            try:
                while s.recv(65536):
                    pass
            except (socket.timeout, TimeoutError):
                pass
        except OSError:   # the server may close first (errors, 421, 521)
            pass
        finally:
            s.close()
    assert postern.running("smtpd")
    with raw(postern) as c:
        assert c.cmd("NOOP") == "250 2.0.0 Ok"
