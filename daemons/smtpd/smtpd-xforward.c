/* smtpd-xforward.c — XFORWARD (Postfix's XFORWARD_README): a content filter's reinjection, from a
 * client in smtpd_authorized_xforward_hosts, names the original client (NAME, ADDR, PORT, PROTO,
 * HELO, IDENT, SOURCE) before MAIL. Those values then stand in for the filter in the
 * transaction's log lines ("client="), its Received: header and its queue record (client
 * address, name, HELO, protocol); access control still judges the real client, as in Postfix.
 * They last until the transaction ends (SmtpdTransaction.xforward). Values are xtext;
 * "[UNAVAILABLE]" and "[TEMPUNAVAIL]" leave an attribute unknown.
 *
 *   smtpd_xforward_offered(s)     EHLO's "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"
 *   smtpd_xforward_command(s, a)  the command: 250, or 501/503/550 with Postfix's texts
 *   smtpd_client_view(s)          what the transaction shows of its client */
#include <ctype.h>
#include <strings.h>

#include "smtpd.h"
#include "log/log.h"
#include "mail/xtext.h"

#define XFORWARD_VALUE_MAX 255

static const char *const attr_names[] = { "NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE" };

void smtpd_xforward_done(SmtpdXforward *x) {
        for (size_t i = 0; i < ELEMENTSOF(x->attr); i++)
                free(x->attr[i]);
        *x = (SmtpdXforward) {};
}

bool smtpd_xforward_offered(Session *s) {
        return s->listener->kind != LISTENER_SUBMIT && s->settings->xforward_hosts.n > 0 &&
               smtpd_netlist_match(&s->settings->xforward_hosts, &s->client) > 0;
}

static bool value_ok(const char *v) {
        if (!*v || strlen(v) > XFORWARD_VALUE_MAX)
                return false;
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if (*p <= ' ' || *p >= 0x7f)
                        return false;
        return true;
}

bool smtpd_xforward_command(Session *s, char *arg) {
        SmtpdXforward x = {};
        if (!smtpd_xforward_offered(s)) {
                session_reply(s, "550 5.7.0 Error: insufficient authorization");
                return false;
        }
        if (s->tx.in_mail) {
                session_reply(s, "503 5.5.1 Error: MAIL transaction in progress");
                return false;
        }
        char *save = NULL;
        bool any = false;
        for (char *w = strtok_r(arg, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
                char *eq = strchr(w, '=');
                size_t k = ELEMENTSOF(attr_names);
                if (eq)
                        for (k = 0; k < ELEMENTSOF(attr_names); k++)
                                if (strlen(attr_names[k]) == (size_t) (eq - w) && strncasecmp(w, attr_names[k], eq - w) == 0)
                                        break;
                if (!eq || k == ELEMENTSOF(attr_names)) {
                        smtpd_xforward_done(&x);
                        session_reply(s, "501 5.5.4 Bad XFORWARD attribute name: %.40s", w);
                        return false;
                }
                _cleanup_free_ char *v = NULL;
                size_t n = 0;
                if (xtext_decode(eq + 1, strlen(eq + 1), &v, &n) < 0 || strlen(v) != n || !value_ok(v)) {
                        smtpd_xforward_done(&x);
                        session_reply(s, "501 5.5.4 Bad XFORWARD attribute value: %.40s", w);
                        return false;
                }
                any = true;
                free(x.attr[k]);
                x.attr[k] = NULL;
                if (!streq(v, "[UNAVAILABLE]") && !streq(v, "[TEMPUNAVAIL]"))
                        x.attr[k] = TAKE_PTR(v);
        }
        if (!any) {
                session_reply(s, "501 5.5.4 Syntax: XFORWARD attribute=value...");
                return false;
        }
        /* attributes add up over several commands (Postfix's filters send them in groups) */
        for (size_t i = 0; i < ELEMENTSOF(x.attr); i++)
                if (x.attr[i]) {
                        free(s->tx.xforward.attr[i]);
                        s->tx.xforward.attr[i] = TAKE_PTR(x.attr[i]);
                }
        s->tx.xforward.set = true;
        session_reply(s, "250 2.0.0 Ok");
        return true;
}

SmtpdClientView smtpd_client_view(const Session *s) {
        const SmtpdXforward *x = &s->tx.xforward;
        const char *addr = x->attr[XFORWARD_ADDR];
        SmtpdClientView v = {
                .name = s->client.name, .addr = s->client.addr, .helo = s->client.helo,
                .proto = s->client.esmtp ? "ESMTP" : "SMTP", .ipv6 = s->client.family == AF_INET6,
                .id_text = s->client.id_text,
        };
        if (!x->set)
                return v;
        if (addr) {
                v.ipv6 = strncasecmp(addr, "IPv6:", 5) == 0;
                v.addr = v.ipv6 ? addr + 5 : addr;
        } else
                v.addr = "unknown";
        v.name = x->attr[XFORWARD_NAME] ? x->attr[XFORWARD_NAME] : "unknown";
        v.helo = x->attr[XFORWARD_HELO];
        v.proto = x->attr[XFORWARD_PROTO] ? x->attr[XFORWARD_PROTO] : v.proto;
        v.id_text = NULL;   /* the caller formats name[addr] */
        return v;
}
