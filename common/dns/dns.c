/* dns.c — the asynchronous resolver (see dns.h): a worker pool around res_nquery(), answers
 * parsed with ns_initparse()/ns_parserr(), completions delivered to sd-event via an eventfd.
 *
 * A query lives on the pending list, then with one worker, then on the done list, and is freed
 * by the event loop after its callback ran (or without it, once cancelled). Cancelling a query
 * that still waits removes it at once; one that a worker holds is only marked. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <errno.h>
#include <idn2.h>
#include <netdb.h>
#include <pthread.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#undef MIN   /* <sys/param.h> (via nameser.h) has its own */
#undef MAX
#include "dns.h"


struct DnsQuery {
        DnsQuery *next;
        DnsResolver *resolver;
        DnsCallback cb;
        void *userdata;
        bool cancelled;
        DnsResult result;
};

struct DnsResolver {
        sd_event_source *io;
        int efd;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        DnsQuery *pending_head, *pending_tail;
        DnsQuery *done_head, *done_tail;
        size_t n_pending, max_pending;
        pthread_t *threads;
        unsigned n_threads;
        bool stopping;
};

const char *dns_status_to_string(DnsStatus s) {
        switch (s) {
        case DNS_FOUND:    return "found";
        case DNS_NXDOMAIN: return "NXDOMAIN";
        case DNS_NODATA:   return "no data";
        case DNS_TEMPFAIL: return "temporary failure";
        case DNS_INVALID:  return "invalid name";
        }
        return "?";
}

const char *dns_type_to_string(int type) {
        switch (type) {
        case DNS_TYPE_A:    return "A";
        case DNS_TYPE_AAAA: return "AAAA";
        case DNS_TYPE_MX:   return "MX";
        case DNS_TYPE_TXT:  return "TXT";
        case DNS_TYPE_TLSA: return "TLSA";
        case DNS_TYPE_PTR:  return "PTR";
        case DNS_TYPE_HOST: return "host";
        }
        return NULL;
}

int dns_reverse_name(int family, const uint8_t *addr, const char *suffix, char *buf, size_t size) {
        size_t n = 0;
        int k;

        if (family == AF_INET) {
                k = snprintf(buf, size, "%u.%u.%u.%u.%s", addr[3], addr[2], addr[1], addr[0], suffix);
                return k < 0 || (size_t) k >= size ? -ENOBUFS : 0;
        }
        if (family != AF_INET6)
                return -EAFNOSUPPORT;
        for (int i = 15; i >= 0; i--) {
                k = snprintf(buf + n, size - n, "%x.%x.", addr[i] & 0xf, addr[i] >> 4);
                if (k < 0 || (size_t) k >= size - n)
                        return -ENOBUFS;
                n += (size_t) k;
        }
        k = snprintf(buf + n, size - n, "%s", suffix);
        return k < 0 || (size_t) k >= size - n ? -ENOBUFS : 0;
}

bool dns_valid_hostname(const char *name) {
        size_t len = strlen(name), label = 0;
        bool alpha = false;

        if (len == 0 || len > 253)
                return false;
        for (const char *p = name; *p; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == '.') {
                        if (label == 0 || p[-1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (c == '-') {
                        if (label == 0)
                                return false;
                } else if (isalpha(c) || c == '_')
                        alpha = true;
                else if (!isdigit(c))
                        return false;
                if (++label > 63)
                        return false;
        }
        return alpha;   /* "1.2.3.4" is an address, not a host name */
}

int dns_name_to_alabel(const char *name, char *buf, size_t size) {
        size_t len = strlen(name);
        bool ascii = true;

        while (len > 1 && name[len - 1] == '.')
                len--;   /* a trailing root dot */
        if (len == 0 || len >= DNS_NAME_MAX)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) name[i] >= 0x80)
                        ascii = false;
        if (ascii) {
                if (len >= size)
                        return -ENOBUFS;
                for (size_t i = 0; i < len; i++) {
                        unsigned char c = (unsigned char) name[i];
                        if (c <= ' ' || c == 0x7f)
                                return -EINVAL;
                        buf[i] = (char) tolower(c);
                }
                buf[len] = '\0';
                return 0;
        }
        _cleanup_free_ char *copy = strndup(name, len);
        char *out = NULL;
        if (!copy)
                return -ENOMEM;
        if (idn2_lookup_u8((const uint8_t *) copy, (uint8_t **) &out,
                           IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) != IDN2_OK)
                return -EINVAL;
        int k = snprintf(buf, size, "%s", out);
        idn2_free(out);
        return k < 0 || (size_t) k >= size ? -ENOBUFS : 0;
}

void dns_result_done(DnsResult *res) {
        for (size_t i = 0; i < res->n_records; i++) {
                free(res->records[i].text);
                free(res->records[i].data);
        }
        free(res->records);
        res->records = NULL;
        res->n_records = 0;
}

static void query_free(DnsQuery *q) {
        if (!q)
                return;
        dns_result_done(&q->result);
        free(q);
}

static int cmp_mx(const void *a, const void *b) {
        const DnsRecord *x = a, *y = b;
        if (x->preference != y->preference)
                return x->preference < y->preference ? -1 : 1;
        return strcmp(x->text, y->text);   /* a stable order for equal preferences */
}

/* Parses one answer record of the type asked for into rec; 0 when it was not one, <0 error. */
static int parse_rr(ns_msg *msg, ns_rr *rr, int type, DnsRecord *rec) {
        const unsigned char *rd = ns_rr_rdata(*rr);
        size_t len = ns_rr_rdlen(*rr);
        char name[NS_MAXDNAME];

        rec->type = type;
        rec->ttl = ns_rr_ttl(*rr);
        switch (type) {
        case DNS_TYPE_A:
        case DNS_TYPE_AAAA: {
                size_t alen = type == DNS_TYPE_A ? 4 : 16;
                char text[INET6_ADDRSTRLEN];
                if (len != alen)
                        return -EBADMSG;
                memcpy(rec->addr, rd, alen);
                inet_ntop(type == DNS_TYPE_A ? AF_INET : AF_INET6, rd, text, sizeof(text));
                rec->text = strdup(text);
                break;
        }
        case DNS_TYPE_MX:
                if (len < 3)
                        return -EBADMSG;
                rec->preference = ns_get16(rd);
                if (ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), rd + 2, name, sizeof(name)) < 0)
                        return -EBADMSG;
                rec->text = strdup(name);
                break;
        case DNS_TYPE_PTR:
                if (ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), rd, name, sizeof(name)) < 0)
                        return -EBADMSG;
                rec->text = strdup(name);
                break;
        case DNS_TYPE_TXT: {
                char *t = malloc(len + 1);
                size_t n = 0;
                if (!t)
                        return -ENOMEM;
                for (size_t i = 0; i < len; ) {
                        size_t sl = rd[i++];
                        if (i + sl > len) {
                                free(t);
                                return -EBADMSG;
                        }
                        memcpy(t + n, rd + i, sl);
                        n += sl;
                        i += sl;
                }
                t[n] = '\0';
                for (size_t i = 0; i < n; i++)   /* never hand control characters to replies/logs */
                        if ((unsigned char) t[i] < ' ' || t[i] == 0x7f)
                                t[i] = ' ';
                rec->text = t;
                break;
        }
        case DNS_TYPE_TLSA:
                if (len < 3)
                        return -EBADMSG;
                rec->usage = rd[0];
                rec->selector = rd[1];
                rec->mtype = rd[2];
                rec->data_len = len - 3;
                if (!(rec->data = malloc(MAX(rec->data_len, 1))))
                        return -ENOMEM;
                memcpy(rec->data, rd + 3, rec->data_len);
                if (asprintf(&rec->text, "%u %u %u", rec->usage, rec->selector, rec->mtype) < 0)
                        rec->text = NULL;
                break;
        default:
                return -EINVAL;
        }
        return rec->text ? 1 : -ENOMEM;
}

void dns_parse_answer(DnsResult *res, const unsigned char *answer, int len) {
        ns_msg msg;
        ns_rr rr;

        if (ns_initparse(answer, len, &msg) < 0) {
                res->status = DNS_TEMPFAIL;
                return;
        }
        res->secure = ns_msg_getflag(msg, ns_f_ad);
        int count = ns_msg_count(msg, ns_s_an);
        res->records = calloc((size_t) MAX(count, 1), sizeof(DnsRecord));
        if (!res->records) {
                res->status = DNS_TEMPFAIL;
                return;
        }
        for (int i = 0; i < count; i++) {
                if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
                        goto bad;
                if ((int) ns_rr_type(rr) != res->type || ns_rr_class(rr) != ns_c_in)
                        continue;   /* CNAMEs on the way */
                int r = parse_rr(&msg, &rr, res->type, &res->records[res->n_records]);
                if (r < 0) {
                        free(res->records[res->n_records].text);
                        free(res->records[res->n_records].data);
                        res->records[res->n_records].text = NULL;
                        res->records[res->n_records].data = NULL;
                        goto bad;
                }
                res->n_records++;
        }
        res->status = res->n_records > 0 ? DNS_FOUND : DNS_NODATA;
        if (res->type == DNS_TYPE_MX && res->n_records > 1)
                qsort(res->records, res->n_records, sizeof(DnsRecord), cmp_mx);
        return;
bad:
        dns_result_done(res);
        res->status = DNS_TEMPFAIL;
}

/* DNS_TYPE_HOST: getaddrinfo(), addresses as A/AAAA records in the order it gives them. */
static void run_host_lookup(DnsResult *res) {
        struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
        struct addrinfo *ai = NULL;
        int e = getaddrinfo(res->name, NULL, &hints, &ai);
        if (e != 0) {
                res->status = e == EAI_NONAME ? DNS_NXDOMAIN :
#ifdef EAI_NODATA
                              e == EAI_NODATA ? DNS_NODATA :
#endif
                              DNS_TEMPFAIL;
                return;
        }
        size_t n = 0;
        for (struct addrinfo *p = ai; p; p = p->ai_next)
                n++;
        res->records = calloc(n, sizeof(DnsRecord));
        if (!res->records) {
                freeaddrinfo(ai);
                res->status = DNS_TEMPFAIL;
                return;
        }
        for (struct addrinfo *p = ai; p; p = p->ai_next) {
                DnsRecord *rec = &res->records[res->n_records];
                char text[INET6_ADDRSTRLEN];
                if (p->ai_family == AF_INET) {
                        rec->type = DNS_TYPE_A;
                        memcpy(rec->addr, &((struct sockaddr_in *) p->ai_addr)->sin_addr, 4);
                } else if (p->ai_family == AF_INET6) {
                        rec->type = DNS_TYPE_AAAA;
                        memcpy(rec->addr, &((struct sockaddr_in6 *) p->ai_addr)->sin6_addr, 16);
                } else
                        continue;
                inet_ntop(p->ai_family, rec->addr, text, sizeof(text));
                if (!(rec->text = strdup(text)))
                        break;
                res->n_records++;
        }
        freeaddrinfo(ai);
        res->status = res->n_records > 0 ? DNS_FOUND : DNS_NODATA;
}

static void run_query(struct __res_state *st, unsigned char *answer, DnsResult *res) {
        if (res->type == DNS_TYPE_HOST)
                return run_host_lookup(res);
        memset(answer, 0, NS_HFIXEDSZ);
        int len = res_nquery(st, res->name, ns_c_in, res->type, answer, DNS_ANSWER_MAX);
        if (len < 0) {
                switch (st->res_h_errno) {
                case HOST_NOT_FOUND: res->status = DNS_NXDOMAIN; break;
                case NO_DATA:        res->status = DNS_NODATA; break;
                default:             res->status = DNS_TEMPFAIL; break;   /* TRY_AGAIN, NO_RECOVERY */
                }
                /* A negative answer is still in the buffer (glibc copies it before it looks at
                 * the rcode): its AD bit says whether the denial was validated (DANE needs a
                 * secure "no TLSA"). Only a response whose rcode agrees counts. */
                const HEADER *h = (const HEADER *) answer;
                if (h->qr && ((res->status == DNS_NXDOMAIN && h->rcode == ns_r_nxdomain) ||
                              (res->status == DNS_NODATA && h->rcode == ns_r_noerror)))
                        res->secure = h->ad;
                return;
        }
        dns_parse_answer(res, answer, MIN(len, DNS_ANSWER_MAX));
}

int dns_query_blocking(const char *name, int type, DnsResult *res) {
        struct __res_state st = {};
        *res = (DnsResult) { .status = DNS_TEMPFAIL, .type = type };
        if (dns_name_to_alabel(name, res->name, sizeof res->name) < 0) {
                res->status = DNS_INVALID;
                return 0;
        }
        _cleanup_free_ unsigned char *answer = malloc(DNS_ANSWER_MAX);
        if (!answer)
                return -ENOMEM;
        if (res_ninit(&st) != 0)
                return 0;
        run_query(&st, answer, res);
        res_nclose(&st);
        return 0;
}

static void *worker(void *arg) {
        DnsResolver *r = arg;
        struct __res_state st;
        unsigned char *answer = malloc(DNS_ANSWER_MAX);
        bool ok = answer && res_ninit(&st) == 0;
#ifdef RES_TRUSTAD
        /* Ask for the AD bit and keep it (glibc >= 2.31 clears it otherwise): DANE trusts TLSA
         * answers only when the (local, validating) resolver vouches for them. */
        if (ok)
                st.options |= RES_TRUSTAD | RES_USE_EDNS0;
#endif

        pthread_mutex_lock(&r->lock);
        for (;;) {
                while (!r->stopping && !r->pending_head)
                        pthread_cond_wait(&r->cond, &r->lock);
                if (r->stopping)
                        break;
                DnsQuery *q = r->pending_head;
                r->pending_head = q->next;
                if (!r->pending_head)
                        r->pending_tail = NULL;
                q->next = NULL;
                r->n_pending--;
                pthread_mutex_unlock(&r->lock);

                if (ok)
                        run_query(&st, answer, &q->result);
                else
                        q->result.status = DNS_TEMPFAIL;

                pthread_mutex_lock(&r->lock);
                if (r->done_tail)
                        r->done_tail->next = q;
                else
                        r->done_head = q;
                r->done_tail = q;
                uint64_t one = 1;
                (void) !write(r->efd, &one, sizeof(one));
        }
        pthread_mutex_unlock(&r->lock);
        if (ok)
                res_nclose(&st);
        free(answer);
        return NULL;
}

static void push_done(DnsResolver *r, DnsQuery *q) {
        pthread_mutex_lock(&r->lock);
        if (r->done_tail)
                r->done_tail->next = q;
        else
                r->done_head = q;
        r->done_tail = q;
        pthread_mutex_unlock(&r->lock);
        uint64_t one = 1;
        (void) !write(r->efd, &one, sizeof(one));
}

static int on_eventfd(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        DnsResolver *r = userdata;
        uint64_t v;

        (void) !read(fd, &v, sizeof(v));
        pthread_mutex_lock(&r->lock);
        DnsQuery *list = r->done_head;
        r->done_head = r->done_tail = NULL;
        pthread_mutex_unlock(&r->lock);
        while (list) {
                DnsQuery *q = list;
                list = q->next;
                /* A callback may cancel queries that are still in this batch: mark them in the
                 * list we hold, which dns_query_cancel() sees through q->cancelled. */
                if (!q->cancelled) {
                        q->cancelled = true;   /* from now on a cancel is a no-op */
                        q->cb(q, &q->result, q->userdata);
                }
                query_free(q);
        }
        return 0;
}

int dns_resolver_new(sd_event *event, unsigned n_threads, size_t max_pending, DnsResolver **ret) {
        DnsResolver *r = calloc(1, sizeof(DnsResolver));
        int k;

        if (!r)
                return -ENOMEM;
        r->max_pending = max_pending ? max_pending : 1024;
        r->n_threads = n_threads ? n_threads : 4;
        pthread_mutex_init(&r->lock, NULL);
        pthread_cond_init(&r->cond, NULL);
        r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (r->efd < 0) {
                k = -errno;
                goto fail;
        }
        k = sd_event_add_io(event, &r->io, r->efd, EPOLLIN, on_eventfd, r);
        if (k < 0)
                goto fail;
        r->threads = calloc(r->n_threads, sizeof(pthread_t));
        if (!r->threads) {
                k = -ENOMEM;
                goto fail;
        }
        for (unsigned i = 0; i < r->n_threads; i++) {
                k = -pthread_create(&r->threads[i], NULL, worker, r);
                if (k < 0) {
                        r->n_threads = i;
                        goto fail;
                }
        }
        *ret = r;
        return 0;
fail:
        dns_resolver_free(r);
        return k;
}

DnsResolver *dns_resolver_free(DnsResolver *r) {
        if (!r)
                return NULL;
        pthread_mutex_lock(&r->lock);
        r->stopping = true;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
        for (unsigned i = 0; i < r->n_threads; i++)
                pthread_join(r->threads[i], NULL);
        free(r->threads);
        for (DnsQuery *list = r->pending_head; list; ) {
                DnsQuery *q = list;
                list = q->next;
                query_free(q);
        }
        for (DnsQuery *list = r->done_head; list; ) {
                DnsQuery *q = list;
                list = q->next;
                query_free(q);
        }
        sd_event_source_disable_unref(r->io);
        safe_close(r->efd);
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r);
        return NULL;
}

int dns_query(DnsResolver *r, const char *name, int type, DnsCallback cb, void *userdata,
              DnsQuery **ret) {
        if (!dns_type_to_string(type) || !cb)
                return -EINVAL;
        DnsQuery *q = calloc(1, sizeof(DnsQuery));
        if (!q)
                return -ENOMEM;
        q->resolver = r;
        q->cb = cb;
        q->userdata = userdata;
        q->result.type = type;
        if (dns_name_to_alabel(name, q->result.name, sizeof(q->result.name)) < 0) {
                snprintf(q->result.name, sizeof(q->result.name), "%.*s", DNS_NAME_MAX - 1, name);
                q->result.status = DNS_INVALID;
                push_done(r, q);   /* answered from the loop, never from inside this call */
                if (ret)
                        *ret = q;
                return 0;
        }

        pthread_mutex_lock(&r->lock);
        if (r->n_pending >= r->max_pending) {
                pthread_mutex_unlock(&r->lock);
                free(q);
                return -EAGAIN;
        }
        if (r->pending_tail)
                r->pending_tail->next = q;
        else
                r->pending_head = q;
        r->pending_tail = q;
        r->n_pending++;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
        if (ret)
                *ret = q;
        return 0;
}

void dns_query_cancel(DnsQuery *q) {
        if (!q)
                return;
        DnsResolver *r = q->resolver;

        pthread_mutex_lock(&r->lock);
        /* Still waiting for a worker: take it out and free it now. */
        for (DnsQuery **p = &r->pending_head, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
                if (*p != q)
                        continue;
                *p = q->next;
                if (r->pending_tail == q)
                        r->pending_tail = prev;
                r->n_pending--;
                pthread_mutex_unlock(&r->lock);
                query_free(q);
                return;
        }
        /* With a worker or done: freed by the event loop, without its callback. */
        q->cancelled = true;
        pthread_mutex_unlock(&r->lock);
}
