/* address.c — RFC 5321 envelope address parsing and normalisation (see address.h).
 *
 * The parser works on exact spans: address_parse_path() finds the mailbox between the angle
 * brackets (quote-aware), drops an obsolete source route, and hands the span to
 * address_parse_span(), which splits it into a Dot-string or Quoted-string local part and a
 * domain. Every failure yields a short static reason for the SMTP reply.
 *
 * Rules enforced: local part <= 64 octets (as written), domain <= 255, whole address <= 256;
 * control characters (0..31, 127) never; bytes >= 128 only with ADDRESS_SMTPUTF8 and only as
 * strictly valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF); hostnames are
 * LDH labels of 1..63 octets without leading or trailing '-', non-ASCII or "xn--" domains go
 * through libidn2 (IDNA 2008, non-transitional) and come out as lower-case A-labels; address
 * literals are IPv4 or "IPv6:" checked with inet_pton; General-address-literals are refused. */
#include <arpa/inet.h>
#include <errno.h>
#include <idn2.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"
#include "../basic/strbuf.h"

#define R(x) do { if (ret_reason) *ret_reason = (x); return -EINVAL; } while (0)

static bool is_ctl(unsigned char c) {
        return c < 32 || c == 127;
}

static bool is_atext(unsigned char c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return c && strchr("!#$%&'*+-/=?^_`{|}~", c);
}

static bool is_ldh(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when it is invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
        unsigned char c = s[0];
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;

        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                len = 3;
                if (c == 0xE0)
                        lo = 0xA0;          /* overlong */
                else if (c == 0xED)
                        hi = 0x9F;          /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4;
                if (c == 0xF0)
                        lo = 0x90;          /* overlong */
                else if (c == 0xF4)
                        hi = 0x8F;          /* > U+10FFFF */
        } else
                return 0;                   /* C0, C1, continuation byte, F5..FF */
        if (n < len)
                return 0;
        if (s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xBF)
                        return 0;
        return len;
}

bool utf8_is_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < n;) {
                size_t l = utf8_seq(p + i, n - i);
                if (l == 0)
                        return false;
                i += l;
        }
        return true;
}

/* Checks n bytes for control characters and non-ASCII use. */
static int check_bytes(const char *s, size_t n, bool allow_utf8, const char **ret_reason) {
        const unsigned char *p = (const unsigned char *) s;
        for (size_t i = 0; i < n;) {
                if (is_ctl(p[i]))
                        R("Control character in address");
                if (p[i] < 0x80) {
                        i++;
                        continue;
                }
                if (!allow_utf8)
                        R("Non-ASCII address requires SMTPUTF8");
                size_t l = utf8_seq(p + i, n - i);
                if (l == 0)
                        R("Invalid UTF-8 in address");
                i += l;
        }
        return 0;
}

static int domain_check_ldh(const char *d, const char **ret_reason) {
        size_t total = strlen(d);
        if (total == 0)
                R("Missing domain");
        if (total > ADDRESS_DOMAIN_MAX)
                R("Domain name too long");
        const char *label = d, *last = d;
        for (;;) {
                const char *dot = strchr(label, '.');
                size_t l = dot ? (size_t) (dot - label) : strlen(label);
                if (l == 0)
                        R("Empty label in domain");
                if (l > 63)
                        R("Domain label too long");
                if (label[0] == '-' || label[l - 1] == '-')
                        R("Domain label starts or ends with '-'");
                for (size_t i = 0; i < l; i++)
                        if (!is_ldh((unsigned char) label[i]))
                                R("Bad character in domain");
                last = label;
                if (!dot)
                        break;
                label = dot + 1;
        }
        bool numeric = true;
        for (const char *p = last; *p; p++)
                if (*p < '0' || *p > '9')
                        numeric = false;
        if (numeric)
                R("Numeric domain must be an address literal");
        return 0;
}

static int domain_literal(const char *d, size_t n, char **ret, const char **ret_reason) {
        /* d = "[...]" */
        if (d[n - 1] != ']' || n < 2)
                R("Missing ']' in address literal");
        if (n == 2)
                R("Empty address literal");
        char inner[ADDRESS_DOMAIN_MAX + 1];
        size_t il = n - 2;
        if (il >= sizeof inner)
                R("Domain name too long");
        memcpy(inner, d + 1, il);
        inner[il] = '\0';

        unsigned char bin[16];
        char text[INET6_ADDRSTRLEN];
        StrBuf out = STRBUF_INIT;
        int r;

        if (strncasecmp(inner, "IPv6:", 5) == 0) {
                if (inet_pton(AF_INET6, inner + 5, bin) != 1)
                        R("Bad IPv6 address literal");
                if (!inet_ntop(AF_INET6, bin, text, sizeof text))
                        R("Bad IPv6 address literal");
                r = strbuf_printf(&out, "[IPv6:%s]", text);
        } else if (strchr(inner, ':'))
                R("Unsupported address literal");
        else {
                if (inet_pton(AF_INET, inner, bin) != 1)
                        R("Bad IPv4 address literal");
                r = strbuf_printf(&out, "[%s]", inner);
        }
        if (r < 0) {
                strbuf_done(&out);
                return r;
        }
        *ret = strbuf_steal(&out);
        return *ret ? 0 : -ENOMEM;
}

static int domain_normalise_n(const char *d, size_t n, bool allow_utf8, char **ret, const char **ret_reason) {
        if (n == 0)
                R("Missing domain");
        if (n > ADDRESS_DOMAIN_MAX)
                R("Domain name too long");
        if (memchr(d, '@', n))
                R("Extra '@' in address");
        if (memchr(d, '\0', n))
                R("Control character in address");
        int r = check_bytes(d, n, allow_utf8, ret_reason);
        if (r < 0)
                return r;
        if (d[0] == '[')
                return domain_literal(d, n, ret, ret_reason);

        _cleanup_free_ char *copy = strndup(d, n);
        if (!copy)
                return -ENOMEM;

        bool ascii = true, ace = false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) copy[i] >= 0x80)
                        ascii = false;
        for (const char *p = copy; (p = strcasestr(p, "xn--")); p += 4)
                if (p == copy || p[-1] == '.')
                        ace = true;

        char *out;
        if (ascii) {
                /* check LDH before libidn2 so the reason is precise */
                r = domain_check_ldh(copy, ret_reason);
                if (r < 0)
                        return r;
        } else {
                /* empty labels and dots only, before libidn2 sees it */
                if (copy[0] == '.' || copy[n - 1] == '.' || strstr(copy, ".."))
                        R("Empty label in domain");
        }
        if (!ascii || ace) {
                uint8_t *o = NULL;
                int rc = idn2_lookup_u8((const uint8_t *) copy, &o, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
                if (rc == IDN2_MALLOC)
                        return -ENOMEM;
                if (rc != IDN2_OK) {
                        idn2_free(o);
                        R("Bad internationalised domain name");
                }
                out = strdup((const char *) o);
                idn2_free(o);
                if (!out)
                        return -ENOMEM;
        } else {
                out = TAKE_PTR(copy);
        }
        for (char *p = out; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        r = domain_check_ldh(out, ret_reason);
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        return 0;
}

/* Validates and normalises a domain or address literal. */
int domain_normalise(const char *domain, bool allow_utf8, char **ret, const char **ret_reason) {
        if (!domain)
                R("Missing domain");
        return domain_normalise_n(domain, strlen(domain), allow_utf8, ret, ret_reason);
}

/* A dot-atom: atext runs separated by single dots; bytes >= 128 count as atext (UTF-8). */
static bool is_dot_atom(const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        if (!*p || *p == '.')
                return false;
        for (; *p; p++) {
                if (*p == '.') {
                        if (p[1] == '.' || p[1] == '\0')
                                return false;
                } else if (!is_atext(*p) && *p < 0x80)
                        return false;
        }
        return true;
}

/* Quotes a local part for external form when it is not a dot-atom. */
char *address_quote_local(const char *local) {
        if (!local)
                return NULL;
        if (is_dot_atom(local))
                return strdup(local);
        StrBuf b = STRBUF_INIT;
        int r = strbuf_putc(&b, '"');
        for (const char *p = local; r >= 0 && *p; p++) {
                if (*p == '"' || *p == '\\')
                        r = strbuf_putc(&b, '\\');
                if (r >= 0)
                        r = strbuf_putc(&b, *p);
        }
        if (r >= 0)
                r = strbuf_putc(&b, '"');
        if (r < 0) {
                strbuf_done(&b);
                return NULL;
        }
        return strbuf_steal(&b);
}

/* Frees an address; accepts NULL. */
Address *address_free(Address *a) {
        if (a) {
                free(a->local);
                free(a->domain);
                free(a->external);
                free(a);
        }
        return NULL;
}

/* Builds an Address from an internal-form local part and an optional domain; "" and NULL make
 * the null address. */
int address_new(const char *local, const char *domain, Address **ret) {
        if (!local || !ret)
                return -EINVAL;
        _cleanup_address_free_ Address *a = calloc(1, sizeof *a);
        if (!a)
                return -ENOMEM;
        a->local = strdup(local);
        if (!a->local)
                return -ENOMEM;
        if (domain) {
                a->domain = strdup(domain);
                if (!a->domain)
                        return -ENOMEM;
        }
        if (!domain && local[0] == '\0')
                a->external = strdup("");
        else {
                _cleanup_free_ char *q = address_quote_local(local);
                if (!q)
                        return -ENOMEM;
                if (domain) {
                        if (asprintf(&a->external, "%s@%s", q, domain) < 0)
                                a->external = NULL;
                } else
                        a->external = TAKE_PTR(q);
        }
        if (!a->external)
                return -ENOMEM;
        *ret = TAKE_PTR(a);
        return 0;
}

/* Parses "local@domain" occupying exactly s[0..n). */
static int address_parse_span(const char *s, size_t n, AddressFlags flags, Address **ret,
                              const char **ret_reason) {
        bool utf8 = flags & ADDRESS_SMTPUTF8;
        size_t i = 0;

        if (n == 0) {
                if (flags & ADDRESS_ALLOW_EMPTY)
                        return address_new("", NULL, ret);
                R("Empty address");
        }
        if (n > ADDRESS_PATH_MAX)
                R("Address too long");
        if (memchr(s, '\0', n))
                R("Control character in address");
        int r = check_bytes(s, n, utf8, ret_reason);
        if (r < 0)
                return r;

        StrBuf local = STRBUF_INIT;
        local.limit = ADDRESS_LOCAL_MAX;
        if (s[0] == '"') {
                /* Quoted-string: qtextSMTP / quoted-pairSMTP */
                i = 1;
                for (;;) {
                        if (i >= n) {
                                strbuf_done(&local);
                                R("Unterminated quoted string");
                        }
                        unsigned char c = (unsigned char) s[i];
                        if (c == '"')
                                break;
                        if (c == '\\') {
                                if (i + 1 >= n) {
                                        strbuf_done(&local);
                                        R("Unterminated quoted string");
                                }
                                c = (unsigned char) s[++i];
                                if (c >= 0x80) {
                                        strbuf_done(&local);
                                        R("Bad quoted pair in local part");
                                }
                        }
                        r = strbuf_putc(&local, (char) c);
                        if (r < 0) {
                                strbuf_done(&local);
                                if (r == -EMSGSIZE)
                                        R("Local part too long");
                                return r;
                        }
                        i++;
                }
                i++;   /* closing quote */
                if (i < n && s[i] != '@') {
                        strbuf_done(&local);
                        R("Junk after quoted local part");
                }
        } else {
                size_t start = 0;
                for (; i < n && s[i] != '@'; i++) {
                        unsigned char c = (unsigned char) s[i];
                        if (c == '.') {
                                if (i == start) {
                                        strbuf_done(&local);
                                        R("Local part starts with '.'");
                                }
                                if (s[i - 1] == '.') {
                                        strbuf_done(&local);
                                        R("Consecutive dots in local part");
                                }
                        } else if (!is_atext(c) && c < 0x80) {
                                strbuf_done(&local);
                                R(c == '"' ? "Misplaced quote in local part" : "Bad character in local part");
                        }
                }
                if (i == 0) {
                        strbuf_done(&local);
                        R("Empty local part");
                }
                if (s[i - 1] == '.') {
                        strbuf_done(&local);
                        R("Local part ends with '.'");
                }
                if (i > ADDRESS_LOCAL_MAX) {
                        strbuf_done(&local);
                        R("Local part too long");
                }
                r = strbuf_append(&local, s, i);
                if (r < 0) {
                        strbuf_done(&local);
                        return r;
                }
        }
        if (i > ADDRESS_LOCAL_MAX) {
                strbuf_done(&local);
                R("Local part too long");
        }
        _cleanup_free_ char *lp = strbuf_steal(&local);
        if (!lp)
                return -ENOMEM;

        _cleanup_free_ char *domain = NULL;
        if (i >= n) {
                if (!(flags & ADDRESS_ALLOW_NO_DOMAIN))
                        R("Missing domain");
                /* A bare "" would be the null address in disguise (RCPT TO:<""> queued for <>). */
                if (lp[0] == '\0' && !(flags & ADDRESS_ALLOW_EMPTY))
                        R("Empty address");
        } else {
                /* s[i] == '@' */
                r = domain_normalise_n(s + i + 1, n - i - 1, utf8, &domain, ret_reason);
                if (r < 0)
                        return r;
        }

        _cleanup_address_free_ Address *a = NULL;
        r = address_new(lp, domain, &a);
        if (r < 0)
                return r;
        if (strlen(a->external) > ADDRESS_PATH_MAX)
                R("Address too long");
        *ret = TAKE_PTR(a);
        return 0;
}

/* Parses a bare address "local@domain" (no angle brackets). */
int address_parse(const char *s, AddressFlags flags, Address **ret, const char **ret_reason) {
        if (!s || !ret)
                return -EINVAL;
        return address_parse_span(s, strlen(s), flags, ret, ret_reason);
}

/* Skips an obsolete source route "@a,@b:" at *p (validating each domain); returns 0 with *p
 * after the ':' or <0. */
static int skip_source_route(const char **p, const char *end, const char **ret_reason) {
        const char *q = *p;
        for (;;) {
                if (q >= end || *q != '@')
                        R("Bad source route");
                q++;
                const char *d = q;
                while (q < end && *q != ',' && *q != ':')
                        q++;
                if (q >= end)
                        R("Bad source route");
                _cleanup_free_ char *norm = NULL;
                const char *why = NULL;
                if (domain_normalise_n(d, (size_t) (q - d), true, &norm, &why) < 0)
                        R("Bad domain in source route");
                if (*q == ':') {
                        *p = q + 1;
                        return 0;
                }
                q++;   /* ',' */
        }
}

/* Finds the end of a mailbox: the first '>' (or, without brackets, space) outside quotes. */
static const char *mailbox_end(const char *p, bool brackets) {
        bool quoted = false;
        for (; *p; p++) {
                if (quoted) {
                        if (*p == '\\' && p[1])
                                p++;
                        else if (*p == '"')
                                quoted = false;
                } else if (*p == '"')
                        quoted = true;
                else if (brackets ? *p == '>' : (*p == ' ' || *p == '\t'))
                        return p;
        }
        return brackets ? NULL : p;
}

/* Parses the argument of MAIL FROM:/RCPT TO:. */
int address_parse_path(const char *s, AddressFlags flags, Address **ret, const char **ret_params,
                       const char **ret_reason) {
        if (!s || !ret)
                return -EINVAL;
        while (*s == ' ' || *s == '\t')
                s++;

        const char *p = s, *end;
        bool brackets = *p == '<';
        if (brackets)
                p++;
        else if (!(flags & ADDRESS_ALLOW_NO_BRACKETS))
                R(*p ? "Missing '<'" : "Missing address");

        end = mailbox_end(p, brackets);
        if (!end)
                R("Missing closing '>'");
        if (*p == '@' && end > p) {
                int r = skip_source_route(&p, end, ret_reason);
                if (r < 0)
                        return r;
                if (p == end)
                        R("Missing mailbox after source route");
        }
        if (!brackets && p == end)
                R("Missing address");

        const char *after = end + (brackets ? 1 : 0);
        if (*after && *after != ' ' && *after != '\t')
                R(brackets ? "Missing space after '>'" : "Bad character after address");

        Address *a = NULL;
        int r = address_parse_span(p, (size_t) (end - p), flags, &a, ret_reason);
        if (r < 0)
                return r;
        while (*after == ' ' || *after == '\t')
                after++;
        *ret = a;
        if (ret_params)
                *ret_params = after;
        return 0;
}

/* Case-insensitive exact comparison of two domains. */
bool domain_equal(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcasecmp(a, b) == 0;
}

char *address_orcpt(const char *address) {
        bool utf8 = false;
        char *ret = NULL;
        for (const char *p = address; *p; p++)
                utf8 = utf8 || (unsigned char) *p >= 0x80;
        if (asprintf(&ret, "%s;%s", utf8 ? "utf-8" : "rfc822", address) < 0)
                return NULL;
        return ret;
}
