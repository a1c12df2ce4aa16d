/* posternctl-tlsrpt.c — `posternctl tlsrpt send [--day YYYY-MM-DD]` and `posternctl tlsrpt show
 * [--day …]`: the daily TLSRPT (RFC 8460) reports made from $queue_directory/tlsrpt.db (what
 * postern-smtp counted with smtp_tlsrpt_enable). For each policy domain with results that day
 * (yesterday, UTC, by default): the TXT record _smtp._tls.<domain> ("v=TLSRPTv1; rua=…") names
 * where reports go; the JSON report is gzipped and mailed to its mailto: addresses as RFC 8460 5.3
 * says (multipart/report; report-type="tlsrpt"), handed to postern-sendmail (execv, no shell),
 * and POSTed to its https: addresses as RFC 8460 3 says (application/tlsrpt+gzip; certificate
 * verified against smtp_tlsrpt_CAfile or the system store; no redirects; a 2xx is success; the
 * client is common/tls/https.c). A day is forgotten once every report went out; any failure keeps
 * it for the next run. postern-tlsrpt.timer runs `send` daily. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <gnutls/gnutls.h>
#include <zlib.h>

#include "config.h"
#include "basic/io-util.h"
#include "conf/conf.h"
#include "dns/dns.h"
#include "posternctl.h"
#include "tls/https.h"
#include "tls/tlsrpt.h"

static size_t list_length(char **l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

static bool list_has(char **l, const char *s) {
        for (; l && *l; l++)
                if (strcasecmp(*l, s) == 0)
                        return true;
        return false;
}

/* gzip (RFC 1952) of n bytes into *ret. */
static int gzip_bytes(const void *p, size_t n, unsigned char **ret, size_t *ret_len) {
        z_stream z = {};
        if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return -ENOMEM;
        size_t cap = deflateBound(&z, (uLong) n);
        unsigned char *out = malloc(cap);
        if (!out) {
                deflateEnd(&z);
                return -ENOMEM;
        }
        z.next_in = (unsigned char *) p;
        z.avail_in = (uInt) n;
        z.next_out = out;
        z.avail_out = (uInt) cap;
        int r = deflate(&z, Z_FINISH);
        *ret_len = z.total_out;
        deflateEnd(&z);
        if (r != Z_STREAM_END) {
                free(out);
                return -EIO;
        }
        *ret = out;
        return 0;
}

/* An address we put on a command line and in To:: local@domain of plain characters only. */
static bool plain_address(const char *a) {
        if (!*a || *a == '-' || !strchr(a, '@') || strlen(a) > 254)
                return false;
        for (const char *c = a; *c; c++)
                if (!(('a' <= *c && *c <= 'z') || ('A' <= *c && *c <= 'Z') || ('0' <= *c && *c <= '9') ||
                      strchr(".!#$&'*+/=^_`{|}~@-", *c)))
                        return false;
        return true;
}

static int list_add(char ***l, const char *s) {
        if (list_has(*l, s))
                return 0;
        char *a = strdup(s);
        return a ? strv_consume(l, a) : -ENOMEM;
}

/* The mailto: addresses and https: URIs of domain's TLSRPT record, NULL-terminated, in *ret and
 * *ret_https (none: empty lists); -ENOENT without a record, -EAGAIN on a DNS failure. */
static int rua_addresses(const char *domain, char ***ret, char ***ret_https) {
        char name[300];
        DnsResult res;
        snprintf(name, sizeof name, "_smtp._tls.%s", domain);
        if (dns_query_blocking(name, DNS_TYPE_TXT, &res) < 0)
                return -ENOMEM;
        int r = res.status == DNS_TEMPFAIL ? -EAGAIN : -ENOENT;
        _cleanup_strv_free_ char **l = NULL, **h = NULL;
        const char *rec = NULL;
        for (size_t i = 0; i < res.n_records; i++)
                if (res.records[i].type == DNS_TYPE_TXT && res.records[i].text &&
                    strncmp(res.records[i].text, "v=TLSRPTv1", 10) == 0) {
                        if (rec) {   /* RFC 8460 3: more than one record: none */
                                rec = NULL;
                                break;
                        }
                        rec = res.records[i].text;
                }
        if (rec) {
                r = 0;
                const char *rua = strstr(rec, "rua=");
                while (rua && rua != rec && rua[-1] != ';' && rua[-1] != ' ' && rua[-1] != '\t')
                        rua = strstr(rua + 1, "rua=");
                for (const char *p = rua ? rua + 4 : ""; *p && *p != ';';) {
                        size_t n = strcspn(p, ",;");
                        char uri[512];
                        snprintf(uri, sizeof uri, "%.*s", (int) MIN(n, sizeof uri - 1), p);
                        char *u = uri + strspn(uri, " \t");
                        u[strcspn(u, " \t")] = '\0';
                        if (strncasecmp(u, "mailto:", 7) == 0) {
                                u += 7;
                                u[strcspn(u, "?")] = '\0';
                                if (!plain_address(u))
                                        fprintf(stderr, "posternctl tlsrpt: %s: rua address \"%s\" skipped\n", domain, u);
                                else if (list_add(&l, u) < 0) {
                                        r = -ENOMEM;
                                        break;
                                }
                        } else if (strncasecmp(u, "https:", 6) == 0) {
                                char host[256], path[512];
                                unsigned port;
                                if (https_url_parse(u, host, sizeof host, &port, path, sizeof path) < 0)
                                        fprintf(stderr, "posternctl tlsrpt: %s: rua address \"%s\" skipped\n", domain, u);
                                else if (list_add(&h, u) < 0) {
                                        r = -ENOMEM;
                                        break;
                                }
                        } else if (*u)
                                fprintf(stderr, "posternctl tlsrpt: %s: not supported: rua %s (only mailto: and https: reports are sent)\n",
                                        domain, u);
                        p += n;
                        if (*p == ',')
                                p++;
                }
        }
        dns_result_done(&res);
        if (r == 0 && ((!l && !(l = calloc(1, sizeof(char *)))) || (!h && !(h = calloc(1, sizeof(char *))))))
                r = -ENOMEM;
        if (r == 0) {
                *ret = TAKE_PTR(l);
                *ret_https = TAKE_PTR(h);
        }
        return r;
}

/* Hands msg to postern-sendmail for rcpts (argv, no shell); 0 when it exited 0. */
static int inject(const char *sender, char **rcpts, const char *msg, size_t len) {
        const char *sendmail = getenv("POSTERN_SENDMAIL");
        if (isempty(sendmail))
                sendmail = POSTERN_SBINDIR "/postern-sendmail";
        size_t n = list_length(rcpts);
        _cleanup_free_ char **argv = calloc(n + 6, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[0] = (char *) "postern-sendmail";
        argv[1] = (char *) "-i";
        argv[2] = (char *) "-f";
        argv[3] = (char *) sender;
        argv[4] = (char *) "--";
        memcpy(argv + 5, rcpts, n * sizeof(char *));
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0) {
                close(pfd[0]);
                close(pfd[1]);
                return -errno;
        }
        if (pid == 0) {
                if (dup2(pfd[0], STDIN_FILENO) < 0)
                        _exit(EX_OSERR);
                execv(sendmail, argv);
                _exit(EX_OSERR);
        }
        close(pfd[0]);
        int r = loop_write(pfd[1], msg, len);
        close(pfd[1]);
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (r < 0)
                return r;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/* POSTs the gzipped report to url (RFC 8460 3): 0 on a 2xx reply, <0 with the reason in why. */
static int post_report(const char *url, const void *gz, size_t gz_len, const char *ca_file, long long timeout,
                       char *why, size_t why_size) {
        char host[256], path[512];
        HttpsRequest req = { .method = "POST", .content_type = "application/tlsrpt+gzip", .body = gz,
                             .body_len = gz_len, .ca_file = ca_file, .host = host, .path = path,
                             .timeout_usec = (uint64_t) (timeout > 0 ? timeout : 1) * 1000000ULL,
                             .max_body = 65536 };
        if (https_url_parse(url, host, sizeof host, &req.port, path, sizeof path) < 0) {
                snprintf(why, why_size, "not an https URI");
                return -EINVAL;
        }
        HttpsReply reply;
        int r = https_request(&req, &reply, why, why_size);
        if (r < 0)
                return r;
        if (reply.status / 100 != 2) {
                snprintf(why, why_size, "HTTP status %d%s", reply.status,
                         reply.status / 100 == 3 ? " (redirects are not followed)" : "");
                r = -EPROTO;
        }
        https_reply_done(&reply);
        return r;
}

static int build_mail(const char *day, const char *domain, const char *submitter, const char *sender,
                      char **rcpts, const char *report_id, const unsigned char *gz, size_t gz_len, StrBuf *out) {
        int r;
        gnutls_datum_t in = { .data = (unsigned char *) gz, .size = (unsigned) gz_len }, b64 = {};
        if (gnutls_base64_encode2(&in, &b64) < 0)
                return -ENOMEM;
        struct tm tm = {};
        char date[64];
        time_t now = time(NULL), start;
        strptime(day, "%Y-%m-%d", &tm);
        start = timegm(&tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", gmtime_r(&now, &tm));
        char boundary[80];
        snprintf(boundary, sizeof boundary, "=_tlsrpt_%lld_%d", (long long) now, (int) getpid());

        r = strbuf_printf(out, "From: %s\nTo: ", sender);
        for (char **a = rcpts; r >= 0 && *a; a++)
                r = strbuf_printf(out, "%s%s", a == rcpts ? "" : ", ", *a);
        if (r >= 0)
                r = strbuf_printf(out,
                        "\nDate: %s\n"
                        "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\n"
                        "TLS-Report-Domain: %s\n"
                        "TLS-Report-Submitter: %s\n"
                        "MIME-Version: 1.0\n"
                        "Content-Type: multipart/report; report-type=\"tlsrpt\";\n\tboundary=\"%s\"\n"
                        "\n"
                        "This is a MIME-formatted message.\n"
                        "\n--%s\n"
                        "Content-Type: text/plain; charset=us-ascii\n"
                        "\n"
                        "This is an aggregate TLS report (RFC 8460) from %s for %s, %s (UTC).\n"
                        "\n--%s\n"
                        "Content-Type: application/tlsrpt+gzip\n"
                        "Content-Transfer-Encoding: base64\n"
                        "Content-Disposition: attachment;\n\tfilename=\"%s!%s!%lld!%lld!%s.json.gz\"\n"
                        "\n",
                        date, domain, submitter, report_id, domain, submitter, boundary, boundary,
                        submitter, domain, day, boundary, submitter, domain, (long long) start,
                        (long long) start + 86399, "0");
        for (unsigned i = 0; r >= 0 && i < b64.size; i += 76)
                r = strbuf_printf(out, "%.*s\n", (int) MIN(76u, b64.size - i), (const char *) b64.data + i);
        gnutls_free(b64.data);
        return r < 0 ? r : strbuf_printf(out, "\n--%s--\n", boundary);
}

int verb_tlsrpt(int argc, char *argv[]) {
        const char *verb = argc > 1 ? argv[1] : "";
        char day[11];
        tlsrpt_day(time(NULL) - 86400, day);
        if (argc == 4 && streq(argv[2], "--day") && strlen(argv[3]) == 10)
                snprintf(day, sizeof day, "%s", argv[3]);
        else if (argc != 2 || !(streq(verb, "send") || streq(verb, "show"))) {
                fprintf(stderr, "Usage: posternctl tlsrpt send|show [--day YYYY-MM-DD]\n");
                return EX_USAGE;
        }
        struct tm tm = {};
        if (!strptime(day, "%Y-%m-%d", &tm)) {
                fprintf(stderr, "posternctl tlsrpt: %s is not a day (YYYY-MM-DD)\n", day);
                return EX_USAGE;
        }
        _cleanup_(conf_freep) Conf *c = NULL;
        if (posternctl_load_main_cf(NULL, &c) < 0)
                return EX_CONFIG;
        _cleanup_free_ char *path = NULL, *why = NULL;
        if (asprintf(&path, "%s/tlsrpt.db", strempty(conf_get(c, "queue_directory"))) < 0)
                return EX_OSERR;
        if (access(path, F_OK) < 0) {
                printf("No TLSRPT results (%s does not exist; smtp_tlsrpt_enable = %s)\n", path,
                       strempty(conf_get(c, "smtp_tlsrpt_enable")));
                return EX_OK;
        }
        TlsrptStore *s = NULL;
        if (tlsrpt_open(path, &s, &why) < 0) {
                fprintf(stderr, "posternctl tlsrpt: %s: %s\n", path, strna(why));
                return EX_IOERR;
        }
        const char *submitter = strempty(conf_get(c, "mydomain"));
        const char *sender = strempty(conf_get(c, "smtp_tlsrpt_report_sender"));
        TlsrptReportInfo info = { .organization_name = conf_get(c, "smtp_tlsrpt_organization_name"),
                                  .contact_info = conf_get(c, "smtp_tlsrpt_contact_info") };
        _cleanup_strv_free_ char **domains = NULL;
        int ret = EX_OK, r = tlsrpt_domains(s, day, &domains);
        if (r < 0) {
                fprintf(stderr, "posternctl tlsrpt: %s: cannot read the results of %s\n", path, day);
                tlsrpt_free(s);
                return EX_IOERR;
        }
        for (char **d = domains; *d; d++) {
                char report_id[400];
                snprintf(report_id, sizeof report_id, "%sT00:00:00Z_%s@%s", day, *d, submitter);
                info.report_id = report_id;
                _cleanup_(strbuf_donep) StrBuf json = STRBUF_INIT, mail = STRBUF_INIT;
                if (tlsrpt_report_json(s, day, *d, &info, &json) < 0) {
                        fprintf(stderr, "posternctl tlsrpt: %s: cannot make the report of %s\n", *d, day);
                        ret = EX_SOFTWARE;
                        continue;
                }
                if (streq(verb, "show")) {
                        printf("%s\n", json.data);
                        continue;
                }
                _cleanup_strv_free_ char **rua = NULL, **https = NULL;
                r = rua_addresses(*d, &rua, &https);
                if (r == -ENOENT || (r == 0 && !rua[0] && !https[0])) {
                        printf("%s: no TLSRPT record with a mailto: or https: rua at _smtp._tls.%s; no report\n", *d, *d);
                        continue;
                }
                if (r < 0) {
                        fprintf(stderr, "posternctl tlsrpt: %s: %s; report not sent\n", *d,
                                r == -EAGAIN ? "DNS lookup failed" : strerror(-r));
                        ret = EX_TEMPFAIL;
                        continue;
                }
                _cleanup_free_ unsigned char *gz = NULL;
                size_t gz_len = 0;
                if (gzip_bytes(json.data, json.len, &gz, &gz_len) < 0) {
                        fprintf(stderr, "posternctl tlsrpt: %s: cannot gzip the report of %s\n", *d, day);
                        ret = EX_SOFTWARE;
                        continue;
                }
                for (char **u = https; *u; u++) {
                        char reason[400] = "";
                        r = post_report(*u, gz, gz_len, conf_get(c, "smtp_tlsrpt_CAfile"),
                                        conf_get_time(c, NULL, "smtp_tlsrpt_https_timeout"), reason, sizeof reason);
                        if (r < 0) {
                                fprintf(stderr, "posternctl tlsrpt: %s: report not sent to %s: %s\n", *d, *u,
                                        reason[0] ? reason : strerror(-r));
                                ret = EX_TEMPFAIL;
                        } else
                                printf("%s: report %s sent to %s\n", *d, report_id, *u);
                }
                if (!rua[0])
                        continue;
                r = build_mail(day, *d, submitter, sender, rua, report_id, gz, gz_len, &mail);
                if (r >= 0)
                        r = inject(sender, rua, mail.data, mail.len);
                if (r < 0) {
                        fprintf(stderr, "posternctl tlsrpt: %s: the report could not be handed to postern-sendmail: %s\n",
                                *d, strerror(-r));
                        ret = EX_TEMPFAIL;
                        continue;
                }
                printf("%s: report %s sent to %zu address(es)\n", *d, report_id, list_length(rua));
        }
        if (streq(verb, "send") && ret == EX_OK) {
                /* the day is done: keep only later days */
                char next[11];
                tlsrpt_day(timegm(&tm) + 86400, next);
                if (tlsrpt_forget_before(s, next) < 0)
                        fprintf(stderr, "posternctl tlsrpt: %s: cannot forget %s\n", path, day);
        }
        tlsrpt_free(s);
        return ret;
}
