/* test-dns.c — the asynchronous resolver against a real dnsmasq. Run through
 * tests/integration/dnszone.py (see tests/unit/meson.build), which serves the records below
 * and points /etc/resolv.conf at it inside a private mount namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "basic/tests.h"
#include "dns/dns.h"

typedef struct Outcome {
        bool called;
        DnsStatus status;
        char text[8][256];
        unsigned pref[8];
        size_t n;
} Outcome;

static unsigned outstanding;

static void on_done(DnsQuery *q, const DnsResult *r, void *userdata) {
        Outcome *o = userdata;
        CHECK(!o->called);
        o->called = true;
        o->status = r->status;
        o->n = MIN(r->n_records, 8);
        for (size_t i = 0; i < o->n; i++) {
                snprintf(o->text[i], sizeof(o->text[i]), "%s", r->records[i].text);
                o->pref[i] = r->records[i].preference;
        }
        outstanding--;
}

static void run_until_done(sd_event *e) {
        time_t start = time(NULL);
        while (outstanding > 0) {
                CHECK(sd_event_run(e, 500 * 1000) >= 0);
                CHECK(time(NULL) - start < 20);
        }
}

static Outcome ask(sd_event *e, DnsResolver *r, const char *name, int type) {
        Outcome o = { 0 };
        CHECK_INT(dns_query(r, name, type, on_done, &o, NULL), 0);
        CHECK(!o.called);   /* never answered from inside dns_query() */
        outstanding++;
        run_until_done(e);
        CHECK(o.called);
        return o;
}

static void test_helpers(void) {
        char buf[DNS_NAME_MAX];
        uint8_t v4[4] = { 127, 0, 0, 2 };
        uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x01 };

        CHECK_INT(dns_reverse_name(AF_INET, v4, "rbl.test", buf, sizeof(buf)), 0);
        CHECK_STR(buf, "2.0.0.127.rbl.test");
        CHECK_INT(dns_reverse_name(AF_INET6, v6, "ip6.arpa", buf, sizeof(buf)), 0);
        CHECK_STR(buf, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
        CHECK_INT(dns_reverse_name(AF_INET, v4, "rbl.test", buf, 10), -ENOBUFS);
        CHECK_INT(dns_name_to_alabel("B\xc3\xbc" "cher.Test.", buf, sizeof(buf)), 0);
        CHECK_STR(buf, "xn--bcher-kva.test");
        CHECK_INT(dns_name_to_alabel("Mail.EXAMPLE.org", buf, sizeof(buf)), 0);
        CHECK_STR(buf, "mail.example.org");
        CHECK_INT(dns_name_to_alabel("", buf, sizeof(buf)), -EINVAL);
        CHECK_INT(dns_name_to_alabel("a b.test", buf, sizeof(buf)), -EINVAL);
        CHECK(dns_valid_hostname("mail-1.example.org"));
        CHECK(!dns_valid_hostname("1.2.3.4"));
        CHECK(!dns_valid_hostname("-a.example"));
        CHECK(!dns_valid_hostname("a..example"));
        CHECK(!dns_valid_hostname("a b"));
}

/* A TLSA answer (built by hand): the AD bit, the record's fields and data, an RRSIG skipped. */
static void test_parse_tlsa(void) {
        static const unsigned char answer[] = {
                0x12, 0x34, 0x81, 0xa0, 0, 1, 0, 2, 0, 0, 0, 0,            /* qr rd ra ad; 1 q, 2 an */
                4, '_', '2', '5', 0, 4, '_', 't', 'c', 'p', 2, 'm', 'x', 4, 't', 'e', 's', 't', 0,
                0, 52, 0, 1,                                              /* TLSA IN */
                0xc0, 12, 0, 52, 0, 1, 0, 0, 1, 0x2c, 0, 7,               /* TLSA, ttl 300, 7 bytes */
                3, 1, 1, 0xde, 0xad, 0xbe, 0xef,
                0xc0, 12, 0, 46, 0, 1, 0, 0, 1, 0x2c, 0, 2, 0, 52,         /* an RRSIG (truncated) */
        };
        DnsResult res = { .type = DNS_TYPE_TLSA };
        dns_parse_answer(&res, answer, sizeof(answer));
        CHECK_INT(res.status, DNS_FOUND);
        CHECK(res.secure);
        CHECK_INT(res.n_records, 1);
        CHECK_INT(res.records[0].usage, 3);
        CHECK_INT(res.records[0].selector, 1);
        CHECK_INT(res.records[0].mtype, 1);
        CHECK_INT(res.records[0].data_len, 4);
        CHECK(memcmp(res.records[0].data, "\xde\xad\xbe\xef", 4) == 0);
        CHECK_STR(res.records[0].text, "3 1 1");
        CHECK_STR(dns_type_to_string(DNS_TYPE_TLSA), "TLSA");
        dns_result_done(&res);

        unsigned char insecure[sizeof(answer)];
        memcpy(insecure, answer, sizeof(answer));
        insecure[3] = 0x80;   /* no AD */
        DnsResult res2 = { .type = DNS_TYPE_TLSA };
        dns_parse_answer(&res2, insecure, sizeof(insecure));
        CHECK_INT(res2.status, DNS_FOUND);
        CHECK(!res2.secure);
        dns_result_done(&res2);

        /* rdata too short for usage, selector and matching type: a 2-byte TLSA record alone */
        unsigned char shortrr[35 + 12 + 2];
        memcpy(shortrr, answer, sizeof(shortrr));
        shortrr[7] = 1;                          /* one answer */
        shortrr[35 + 11] = 2;                    /* its rdlength */
        DnsResult res3 = { .type = DNS_TYPE_TLSA };
        dns_parse_answer(&res3, shortrr, (int) sizeof(shortrr));
        CHECK_INT(res3.status, DNS_TEMPFAIL);
        dns_result_done(&res3);
}

int main(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(dns_resolver_freep) DnsResolver *r = NULL;
        Outcome o;

        test_helpers();
        test_parse_tlsa();
        CHECK(sd_event_new(&e) >= 0);
        CHECK_INT(dns_resolver_new(e, 2, 16, &r), 0);

        o = ask(e, r, "mail.good.test", DNS_TYPE_A);
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_INT(o.n, 1);
        CHECK_STR(o.text[0], "127.0.0.10");

        o = ask(e, r, "mail.good.test", DNS_TYPE_AAAA);
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_STR(o.text[0], "2001:db8::10");

        o = ask(e, r, "Good.Test", DNS_TYPE_MX);   /* case-insensitive; sorted by preference */
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_INT(o.n, 3);
        CHECK_INT(o.pref[0], 5);
        CHECK_STR(o.text[0], "mail2.good.test");
        CHECK_INT(o.pref[1], 10);
        CHECK_STR(o.text[1], "mail.good.test");
        CHECK_INT(o.pref[2], 20);
        CHECK_STR(o.text[2], "mail3.good.test");

        o = ask(e, r, "nullmx.test", DNS_TYPE_MX);
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_INT(o.n, 1);
        CHECK_STR(o.text[0], ".");   /* null MX (RFC 7505): the root */

        o = ask(e, r, "2.0.0.127.rbl.test", DNS_TYPE_TXT);
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_STR(o.text[0], "Listed; see http://rbl.test/127.0.0.2");

        o = ask(e, r, "5.0.0.127.in-addr.arpa", DNS_TYPE_PTR);
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_STR(o.text[0], "forged.test");

        o = ask(e, r, "b\xc3\xbc" "cher.test", DNS_TYPE_A);   /* sent as xn--bcher-kva.test */
        CHECK_INT(o.status, DNS_FOUND);
        CHECK_STR(o.text[0], "127.0.0.11");

        o = ask(e, r, "nothere.test", DNS_TYPE_A);
        CHECK_INT(o.status, DNS_NXDOMAIN);
        CHECK_INT(o.n, 0);

        o = ask(e, r, "mail.good.test", DNS_TYPE_MX);
        CHECK_INT(o.status, DNS_NODATA);

        o = ask(e, r, "bad name.test", DNS_TYPE_A);
        CHECK_INT(o.status, DNS_INVALID);

        CHECK_INT(dns_query(r, "good.test", 99, on_done, &o, NULL), -EINVAL);

        /* A query to the black hole fails temporarily (resolv.conf: timeout:1 attempts:1). */
        o = ask(e, r, "x.slow.test", DNS_TYPE_A);
        CHECK_INT(o.status, DNS_TEMPFAIL);

        /* Cancel: the callback of a cancelled query never runs, the others do. */
        Outcome c1 = { 0 }, c2 = { 0 };
        DnsQuery *q1;
        CHECK_INT(dns_query(r, "mail.good.test", DNS_TYPE_A, on_done, &c1, &q1), 0);
        CHECK_INT(dns_query(r, "good.test", DNS_TYPE_MX, on_done, &c2, NULL), 0);
        dns_query_cancel(q1);
        outstanding = 1;
        run_until_done(e);
        CHECK(!c1.called);
        CHECK(c2.called);
        /* Let a possibly running cancelled query come back and be freed silently. */
        for (int i = 0; i < 5; i++)
                CHECK(sd_event_run(e, 100 * 1000) >= 0);
        CHECK(!c1.called);

        /* The queue is bounded: one worker busy with the black hole, one slot. */
        _cleanup_(dns_resolver_freep) DnsResolver *small = NULL;
        Outcome s[3] = { 0 };
        int rs[3];
        CHECK_INT(dns_resolver_new(e, 1, 1, &small), 0);
        for (int i = 0; i < 3; i++)
                rs[i] = dns_query(small, "y.slow.test", DNS_TYPE_A, on_done, &s[i], NULL);
        CHECK_INT(rs[0], 0);
        CHECK(rs[1] == -EAGAIN || rs[2] == -EAGAIN);
        outstanding = (rs[1] == 0) + (rs[2] == 0) + 1;
        run_until_done(e);
        CHECK_INT(s[0].status, DNS_TEMPFAIL);

        /* Freeing the resolver with queries in flight drops them without callbacks. */
        Outcome f = { 0 };
        CHECK_INT(dns_query(small, "z.slow.test", DNS_TYPE_A, on_done, &f, NULL), 0);
        small = dns_resolver_free(small);
        CHECK(!f.called);
        return 0;
}
