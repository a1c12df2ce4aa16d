/* test-posternctl-show.c — postcat's layout of `posternctl show`: the header/body split (LF and
 * CRLF, no body, no header), the sections -e/-h/-b choose, recipients by state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/tests.h"
#include "posternctl.h"

static void test_body_offset(void) {
        static const struct { const char *text; size_t offset; } cases[] = {
                { "A: 1\nB: 2\n\nbody\n", 11 },
                { "A: 1\r\n\r\nbody\r\n", 8 },
                { "A: 1\n", 5 },                /* no body */
                { "\nbody\n", 1 },              /* no header */
                { "A: 1\n \n\nbody", 8 },       /* a line of a space is not empty */
                { "", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                CHECK_INT(posternctl_show_body_offset(cases[i].text, strlen(cases[i].text)),
                          cases[i].offset);
}

static char *show(unsigned sections) {
        static const char content[] = "Subject: hi\r\nFrom: a@example.org\r\n\r\nHello.\r\n";
        QueueMessage m = {
                .queue_id = "1LG3CUL2FIPJH4TS", .sender = (char *) "a@example.org",
                .arrival_usec = 0, .size = sizeof content - 1, .client_address = (char *) "192.0.2.7",
                .protocol = (char *) "ESMTP", .hold = true,
        };
        QueueRecipient r[] = {
                { .address = (char *) "b@example.com" },
                { .address = (char *) "c@example.net", .state = QUEUE_RCPT_DEFERRED, .attempts = 2,
                  .dsn_status = (char *) "4.4.1", .diag = (char *) "connect to x: refused",
                  .orcpt = (char *) "rfc822;C@example.net" },
                { .address = (char *) "d@example.com", .state = QUEUE_RCPT_DELIVERED, .attempts = 1,
                  .dsn_status = (char *) "2.0.0" },
        };
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        CHECK(f);
        posternctl_show_write(f, &m, r, ELEMENTSOF(r), content, sizeof content - 1, sections);
        CHECK_INT(fclose(f), 0);
        return buf;
}

static void test_sections(void) {
        char *out;

        setenv("TZ", "UTC", 1);
        out = show(SHOW_ENVELOPE);
        CHECK_STR(out, "*** ENVELOPE RECORDS 1LG3CUL2FIPJH4TS ***\n"
                       "message_size: 44\n"
                       "message_arrival_time: Thu Jan  1 00:00:00 1970\n"
                       "sender: a@example.org\n"
                       "named_attribute: client_address=192.0.2.7\n"
                       "named_attribute: protocol_name=ESMTP\n"
                       "hold: yes\n"
                       "recipient: b@example.com\n"
                       "original_recipient: rfc822;C@example.net\n"
                       "recipient: c@example.net\n"
                       "recipient_status: deferred attempts=2 dsn=4.4.1 (connect to x: refused)\n"
                       "done_recipient: d@example.com\n"
                       "recipient_status: delivered attempts=1 dsn=2.0.0\n"
                       "*** MESSAGE FILE END 1LG3CUL2FIPJH4TS ***\n");
        free(out);
        out = show(SHOW_HEADER);
        CHECK_STR(out, "*** MESSAGE CONTENTS 1LG3CUL2FIPJH4TS ***\n"
                       "Subject: hi\nFrom: a@example.org\n\n"
                       "*** MESSAGE FILE END 1LG3CUL2FIPJH4TS ***\n");
        free(out);
        out = show(SHOW_BODY);
        CHECK_STR(out, "*** MESSAGE CONTENTS 1LG3CUL2FIPJH4TS ***\n"
                       "Hello.\n"
                       "*** MESSAGE FILE END 1LG3CUL2FIPJH4TS ***\n");
        free(out);
        /* none chosen: all three, in postcat's order */
        out = show(0);
        CHECK(strstr(out, "*** ENVELOPE RECORDS 1LG3CUL2FIPJH4TS ***\nmessage_size: 44\n") == out);
        CHECK(strstr(out, "done_recipient: d@example.com\nrecipient_status: delivered attempts=1 dsn=2.0.0\n"
                          "*** MESSAGE CONTENTS 1LG3CUL2FIPJH4TS ***\nSubject: hi\nFrom: a@example.org\n\n"
                          "Hello.\n*** MESSAGE FILE END 1LG3CUL2FIPJH4TS ***\n"));
        free(out);
}

int main(void) {
        test_body_offset();
        test_sections();
        return 0;
}
