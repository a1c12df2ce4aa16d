/* dns.h — an asynchronous DNS resolver for sd-event programs.
 *
 * Queries go through the system resolver (res_nquery with one resolver state per worker thread,
 * so /etc/resolv.conf applies); a small pool of worker threads runs them and hands completions
 * back to the event loop through an eventfd. Results say found / NXDOMAIN / no data / temporary
 * failure, with the records parsed (MX sorted by preference, TXT strings joined). Names are
 * converted to A-labels (libidn2) before they are sent.
 *
 *   dns_resolver_new(event, 0, 0, &r);
 *   dns_query(r, "example.org", DNS_TYPE_MX, on_done, userdata, &q);   // on_done runs in the loop
 *   dns_query_cancel(q);                    // before on_done: on_done is then never called
 *
 * The pending queue is bounded: dns_query() fails with -EAGAIN when it is full. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "basic/macro.h"

enum {
        DNS_TYPE_A = 1,
        DNS_TYPE_PTR = 12,
        DNS_TYPE_MX = 15,
        DNS_TYPE_TXT = 16,
        DNS_TYPE_AAAA = 28,
        DNS_TYPE_TLSA = 52,       /* RFC 6698 (DANE) */
        /* Not a DNS type: the system's own host lookup (getaddrinfo: /etc/hosts, then DNS, as
         * nsswitch.conf says), answered as A and AAAA records. */
        DNS_TYPE_HOST = 0x10000,
};

typedef enum DnsStatus {
        DNS_FOUND,        /* at least one record of the type asked for */
        DNS_NXDOMAIN,     /* the name does not exist */
        DNS_NODATA,       /* the name exists, without records of that type */
        DNS_TEMPFAIL,     /* SERVFAIL, timeout, refused, unparsable answer, queue full */
        DNS_INVALID,      /* the name cannot be asked for (not a valid domain name) */
} DnsStatus;

#define DNS_NAME_MAX 256
/* The largest answer a query reads (a TCP-sized DNS message). */
#define DNS_ANSWER_MAX 65536

typedef struct DnsRecord {
        int type;
        uint32_t ttl;
        unsigned preference;      /* MX */
        uint8_t addr[16];         /* A (4 bytes), AAAA (16 bytes) */
        char *text;               /* A/AAAA: printable address; MX/PTR: the name; TXT: strings joined;
                                   * TLSA: "usage selector mtype" */
        uint8_t usage, selector, mtype;   /* TLSA */
        uint8_t *data;            /* TLSA: the certificate association data */
        size_t data_len;
} DnsRecord;

typedef struct DnsResult {
        DnsStatus status;
        int type;
        char name[DNS_NAME_MAX];  /* the name as queried (A-label form) */
        DnsRecord *records;
        size_t n_records;
        /* The resolver set the AD bit: it validated the answer with DNSSEC (also for NXDOMAIN
         * and no data). Queries ask for it (RES_TRUSTAD: glibc keeps the bit only then), so this
         * is as trustworthy as the path to the resolver in /etc/resolv.conf (a local one). */
        bool secure;
} DnsResult;

typedef struct DnsResolver DnsResolver;
typedef struct DnsQuery DnsQuery;
/* Called in the event loop thread; the result belongs to the resolver (valid during the call). */
typedef void (*DnsCallback)(DnsQuery *q, const DnsResult *result, void *userdata);

/* n_threads 0: 4 workers; max_pending 0: 1024 queued queries. */
int dns_resolver_new(sd_event *event, unsigned n_threads, size_t max_pending, DnsResolver **ret);
/* Stops the workers (waits for running queries) and drops pending ones without callbacks. */
DnsResolver *dns_resolver_free(DnsResolver *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(DnsResolver *, dns_resolver_free);

/* Starts a query; the callback always runs later from the event loop, never inside this call.
 * ret may be NULL when the caller never cancels. Errors: -EINVAL (bad type), -EAGAIN (queue
 * full), -ENOMEM. A name that is not a valid domain name is answered DNS_INVALID. */
int dns_query(DnsResolver *r, const char *name, int type, DnsCallback cb, void *userdata,
              DnsQuery **ret);
/* Forgets a query whose callback has not run yet; the callback will not run. */
void dns_query_cancel(DnsQuery *q);

const char *dns_status_to_string(DnsStatus s);
const char *dns_type_to_string(int type);
/* The reversed form of an address under suffix: "4.3.2.1.suffix" for IPv4, nibbles for IPv6
 * ("in-addr.arpa"/"ip6.arpa" for PTR, a DNSBL zone for lists). -ENOBUFS if it does not fit. */
int dns_reverse_name(int family, const uint8_t *addr, const char *suffix, char *buf, size_t size);
/* Converts a domain name (UTF-8 or ASCII) to lower-case A-label form; -EINVAL if invalid. */
int dns_name_to_alabel(const char *name, char *buf, size_t size);
/* True for a syntactically valid host name (letters, digits, hyphens, dots; not all-numeric). */
bool dns_valid_hostname(const char *name);

/* The workers' answer parser on its own (for tests/fuzz/fuzz-dns): fills res (its type set by the
 * caller) from a raw response of len bytes; status FOUND, NODATA or TEMPFAIL. */
void dns_parse_answer(DnsResult *res, const unsigned char *answer, int len);
/* One query answered on the calling thread (for commands without an event loop): res->status
 * and records as a worker would give them; free with dns_result_done(). -ENOMEM. */
int dns_query_blocking(const char *name, int type, DnsResult *res);
/* Frees the records of a result that dns_parse_answer() filled. */
void dns_result_done(DnsResult *res);
