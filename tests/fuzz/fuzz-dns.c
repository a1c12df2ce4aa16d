/* fuzz-dns — the DNS answer parser of common/dns/dns.c: dns_parse_answer() (ns_initparse,
 * ns_parserr, and parse_rr() for A, AAAA, MX, TXT and PTR records) on a raw response packet, as
 * a worker hands it res_nquery()'s answer; the resolver's threads are never started.
 *
 * Input:
 *   byte 0  the type asked for: A, AAAA, MX, TXT, PTR (value modulo 5)
 *   rest    the response packet
 *
 * Checked: FOUND exactly when records were parsed, TEMPFAIL/NODATA without records; no more
 * records than the answer section counts; every record has the type asked for and a text; A and
 * AAAA texts are the printable form of their address bytes; MX and PTR names are non-empty,
 * shorter than NS_MAXDNAME and printable ASCII without spaces (special characters escaped);
 * TXT text has no control characters and is not longer than the packet; MX records come sorted
 * by preference. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <sys/socket.h>

#undef MIN   /* <sys/param.h> (via nameser.h) has its own */
#undef MAX
#include "fuzz.h"
#include "dns/dns.h"

static const int types[] = { DNS_TYPE_A, DNS_TYPE_AAAA, DNS_TYPE_MX, DNS_TYPE_TXT, DNS_TYPE_PTR, DNS_TYPE_TLSA };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > DNS_ANSWER_MAX + 1)
                return 0;
        int type = types[data[0] % ELEMENTSOF(types)];
        size_t len = size - 1;
        /* an exact-size copy: the parser must stay inside the packet */
        unsigned char *pkt = malloc(len ? len : 1);
        FUZZ_CHECK(pkt);
        if (len)
                memcpy(pkt, data + 1, len);

        DnsResult res = { .type = type };
        snprintf(res.name, sizeof res.name, "example.org");
        dns_parse_answer(&res, pkt, (int) len);

        switch (res.status) {
        case DNS_FOUND:
                FUZZ_CHECK(res.n_records > 0 && res.records);
                break;
        case DNS_NODATA:
        case DNS_TEMPFAIL:
                FUZZ_CHECK(res.n_records == 0);
                break;
        default:
                FUZZ_CHECK(!"dns_parse_answer() answers FOUND, NODATA or TEMPFAIL");
        }
        if (res.n_records > 0)
                FUZZ_CHECK(len >= 12 && res.n_records <= (size_t) (pkt[6] << 8 | pkt[7]));

        for (size_t i = 0; i < res.n_records; i++) {
                const DnsRecord *rec = &res.records[i];
                FUZZ_CHECK(rec->type == type && rec->text);
                size_t tl = strlen(rec->text);
                switch (type) {
                case DNS_TYPE_A:
                case DNS_TYPE_AAAA: {
                        uint8_t a[16];
                        FUZZ_CHECK(inet_pton(type == DNS_TYPE_A ? AF_INET : AF_INET6, rec->text, a) == 1);
                        FUZZ_CHECK(memcmp(a, rec->addr, type == DNS_TYPE_A ? 4 : 16) == 0);
                        break;
                }
                case DNS_TYPE_MX:
                case DNS_TYPE_PTR:
                        FUZZ_CHECK(tl > 0 && tl < NS_MAXDNAME);
                        for (size_t k = 0; k < tl; k++)
                                FUZZ_CHECK(rec->text[k] > ' ' && rec->text[k] < 0x7f);
                        if (type == DNS_TYPE_MX && i > 0)
                                FUZZ_CHECK(res.records[i - 1].preference <= rec->preference);
                        FUZZ_CHECK(rec->preference <= 0xffff);
                        break;
                case DNS_TYPE_TXT:
                        FUZZ_CHECK(tl <= len);
                        for (size_t k = 0; k < tl; k++)
                                FUZZ_CHECK((unsigned char) rec->text[k] >= ' ' && rec->text[k] != 0x7f);
                        break;
                case DNS_TYPE_TLSA:
                        FUZZ_CHECK(rec->data && rec->data_len + 3 <= len);
                        break;
                }
        }
        dns_result_done(&res);
        free(pkt);
        return 0;
}
