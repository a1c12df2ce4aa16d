/* header-address.c — address-list parsing for address headers (see header-address.h).
 *
 * Two passes: a tokenizer turns the value into significant tokens (atoms, quoted strings,
 * domain literals, specials) with their byte spans, skipping whitespace and comments; a
 * recursive-descent parser over those tokens finds each addr-spec's first and last token. Only
 * when the whole value parsed is the function called and the output built, copying the bytes
 * between addresses as they were. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "header-address.h"

typedef enum TokType { TOK_ATOM, TOK_QSTRING, TOK_DLITERAL, TOK_SPECIAL } TokType;

typedef struct Tok {
        TokType type;
        char c;                  /* TOK_SPECIAL: the character */
        size_t start, end;       /* bytes [start, end) of the value */
} Tok;

typedef struct Span {
        size_t first, last;      /* token indexes of an addr-spec */
} Span;

typedef struct Parser {
        const char *v;
        Tok *toks;
        size_t n, cap, i;
        Span *spans;
        size_t n_spans, cap_spans;
} Parser;

static const struct { const char *name; HeaderAddressKind kind; } address_headers[] = {
        { "From", HEADER_ADDRESS_SENDER },
        { "Sender", HEADER_ADDRESS_SENDER },
        { "Reply-To", HEADER_ADDRESS_SENDER },
        { "Errors-To", HEADER_ADDRESS_SENDER },
        { "Return-Receipt-To", HEADER_ADDRESS_SENDER },
        { "Resent-From", HEADER_ADDRESS_SENDER },
        { "Resent-Sender", HEADER_ADDRESS_SENDER },
        { "Resent-Reply-To", HEADER_ADDRESS_SENDER },
        { "To", HEADER_ADDRESS_RECIPIENT },
        { "Cc", HEADER_ADDRESS_RECIPIENT },
        { "Bcc", HEADER_ADDRESS_RECIPIENT },
        { "Apparently-To", HEADER_ADDRESS_RECIPIENT },
        { "Resent-To", HEADER_ADDRESS_RECIPIENT },
        { "Resent-Cc", HEADER_ADDRESS_RECIPIENT },
        { "Resent-Bcc", HEADER_ADDRESS_RECIPIENT },
};

HeaderAddressKind header_address_kind(const char *name, size_t n) {
        for (size_t i = 0; i < sizeof(address_headers) / sizeof(address_headers[0]); i++)
                if (strlen(address_headers[i].name) == n && strncasecmp(name, address_headers[i].name, n) == 0)
                        return address_headers[i].kind;
        return HEADER_ADDRESS_NONE;
}

static bool is_special(unsigned char c) {
        return strchr("()<>[]:;@\\,.\"", c) != NULL && c != '\0';
}

static bool is_wsp(unsigned char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* atext (RFC 5322 §3.2.3) and any byte >= 0x80 (RFC 6532). */
static bool is_atext(unsigned char c) {
        return c >= 0x80 || (c > 0x20 && c < 0x7f && !is_special(c));
}

/* Makes room for one more element in *v (n used, *cap allocated, each size bytes). */
static int grow(void **v, size_t n, size_t *cap, size_t size) {
        if (n < *cap)
                return 0;
        size_t c = *cap ? *cap * 2 : 16;
        void *nv = reallocarray(*v, c, size);
        if (!nv)
                return -ENOMEM;
        *v = nv;
        *cap = c;
        return 0;
}

static int push_tok(Parser *p, TokType type, char c, size_t start, size_t end) {
        if (grow((void **) &p->toks, p->n, &p->cap, sizeof(Tok)) < 0)
                return -ENOMEM;
        p->toks[p->n++] = (Tok) { .type = type, .c = c, .start = start, .end = end };
        return 0;
}

/* Skips a quoted string, comment or domain literal that starts at *i; -EINVAL if unclosed. */
static int skip_delimited(const char *v, size_t n, size_t *i, char open, char close, bool nests) {
        unsigned depth = 0;
        for (; *i < n; (*i)++) {
                unsigned char c = (unsigned char) v[*i];
                if (c == '\\') {
                        if (++*i >= n)
                                return -EINVAL;
                } else if (c == '\0')
                        return -EINVAL;
                else if (nests && c == open && depth > 0)
                        depth++;
                else if (c == open && depth == 0)
                        depth = 1;
                else if (c == close && --depth == 0) {
                        (*i)++;
                        return 0;
                } else if (!nests && c == open)
                        return -EINVAL;   /* "[" inside a domain literal */
        }
        return -EINVAL;
}

static int tokenize(Parser *p, size_t n) {
        const char *v = p->v;
        size_t i = 0;
        int r;

        while (i < n) {
                unsigned char c = (unsigned char) v[i];
                size_t start = i;
                if (is_wsp(c)) {
                        i++;
                        continue;
                }
                if (c == '(') {
                        if ((r = skip_delimited(v, n, &i, '(', ')', true)) < 0)
                                return r;
                        continue;
                }
                if (c == '"') {
                        if ((r = skip_delimited(v, n, &i, '"', '"', false)) < 0)
                                return r;
                        r = push_tok(p, TOK_QSTRING, 0, start, i);
                } else if (c == '[') {
                        if ((r = skip_delimited(v, n, &i, '[', ']', false)) < 0)
                                return r;
                        r = push_tok(p, TOK_DLITERAL, 0, start, i);
                } else if (is_atext(c)) {
                        while (i < n && is_atext((unsigned char) v[i]))
                                i++;
                        r = push_tok(p, TOK_ATOM, 0, start, i);
                } else if (is_special(c) && c != ')' && c != ']' && c != '\\')
                        r = push_tok(p, TOK_SPECIAL, (char) c, start, ++i);
                else
                        return -EINVAL;   /* a control character, a stray ")", "]" or "\" */
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool at_special(const Parser *p, size_t i, char c) {
        return i < p->n && p->toks[i].type == TOK_SPECIAL && p->toks[i].c == c;
}

static bool is_word(const Parser *p, size_t i) {
        return i < p->n && (p->toks[i].type == TOK_ATOM || p->toks[i].type == TOK_QSTRING);
}

static int push_span(Parser *p, size_t first, size_t last) {
        if (grow((void **) &p->spans, p->n_spans, &p->cap_spans, sizeof(Span)) < 0)
                return -ENOMEM;
        p->spans[p->n_spans++] = (Span) { first, last };
        return 0;
}

static bool is_atom(const Parser *p, size_t i) {
        return i < p->n && p->toks[i].type == TOK_ATOM;
}

/* Items (is_item) and dots with no two items side by side and at least one item, as in a
 * local part (words) or a domain (atoms); consumes them. */
static int scan_dotted(Parser *p, bool (*is_item)(const Parser *, size_t)) {
        bool prev = false, any = false;
        while (is_item(p, p->i) || at_special(p, p->i, '.')) {
                bool item = is_item(p, p->i);
                if (item && prev)
                        return -EINVAL;
                prev = item;
                any = any || item;
                p->i++;
        }
        return any ? 0 : -EINVAL;
}

/* addr-spec = local-part ["@" domain]: words separated by dots, then atoms and dots or one
 * domain literal. Consumes tokens up to a separator; -EINVAL when they are not an addr-spec. */
static int parse_addr_spec(Parser *p) {
        size_t first = p->i;

        if (scan_dotted(p, is_word) < 0)
                return -EINVAL;
        if (at_special(p, p->i, '@')) {
                p->i++;
                if (p->i < p->n && p->toks[p->i].type == TOK_DLITERAL)
                        p->i++;
                else if (scan_dotted(p, is_atom) < 0)
                        return -EINVAL;
        }
        return push_span(p, first, p->i - 1);
}

/* "<" [route ":"] addr-spec ">" or "<>"; p->i is at "<". */
static int parse_angle(Parser *p) {
        size_t first = ++p->i;
        while (p->i < p->n && !at_special(p, p->i, '>')) {
                const Tok *t = &p->toks[p->i];
                if (t->type == TOK_SPECIAL && !strchr(".@,:", t->c))
                        return -EINVAL;
                p->i++;
        }
        if (p->i >= p->n)
                return -EINVAL;   /* no ">" */
        size_t end = p->i++;
        if (end == first)
                return 0;         /* "<>" */
        /* The part after a route must itself be an addr-spec. */
        size_t save = p->i, spec = first;
        for (size_t k = first; k < end; k++)
                if (at_special(p, k, ':'))
                        spec = k + 1;
        if (spec != first && !at_special(p, first, '@'))
                return -EINVAL;
        Parser sub = *p;
        sub.n = end;
        sub.i = spec;
        int r = parse_addr_spec(&sub);
        p->spans = sub.spans;
        p->n_spans = sub.n_spans;
        p->cap_spans = sub.cap_spans;
        if (r < 0)
                return r;
        if (sub.i != end)
                return -EINVAL;
        p->spans[p->n_spans - 1].first = first;   /* the route goes to the function too */
        p->i = save;
        return 0;
}

static int parse_list(Parser *p, bool in_group);

/* One address: a name-addr, a group (not inside a group) or an addr-spec. */
static int parse_address(Parser *p, bool in_group) {
        size_t j = p->i;
        while (is_word(p, j) || at_special(p, j, '.'))
                j++;
        if (at_special(p, j, '<')) {
                p->i = j;
                return parse_angle(p);
        }
        if (at_special(p, j, ':') && j > p->i && !in_group) {
                p->i = j + 1;
                int r = parse_list(p, true);
                if (r < 0)
                        return r;
                if (!at_special(p, p->i, ';'))
                        return -EINVAL;
                p->i++;
                return 0;
        }
        return parse_addr_spec(p);
}

/* address *("," address), empty elements allowed; in a group it ends before ";". */
static int parse_list(Parser *p, bool in_group) {
        for (;;) {
                if (p->i >= p->n)
                        return in_group ? -EINVAL : 0;
                if (in_group && at_special(p, p->i, ';'))
                        return 0;
                if (at_special(p, p->i, ',')) {
                        p->i++;
                        continue;
                }
                int r = parse_address(p, in_group);
                if (r < 0)
                        return r;
                if (p->i >= p->n)
                        continue;
                if (at_special(p, p->i, ','))
                        p->i++;
                else if (!(in_group && at_special(p, p->i, ';')))
                        return -EINVAL;
        }
}

int header_address_rewrite(const char *value, size_t n, HeaderAddressFn fn, void *userdata, StrBuf *out) {
        Parser p = { .v = value };
        StrBuf addr = STRBUF_INIT;
        size_t copied = 0;
        int r, changed = 0;

        r = tokenize(&p, n);
        if (r >= 0)
                r = parse_list(&p, false);
        for (size_t s = 0; r >= 0 && s < p.n_spans; s++) {
                const Span *sp = &p.spans[s];
                strbuf_reset(&addr);
                for (size_t k = sp->first; r >= 0 && k <= sp->last; k++)
                        r = strbuf_append(&addr, value + p.toks[k].start, p.toks[k].end - p.toks[k].start);
                if (r < 0)
                        break;
                char *repl = NULL;
                r = fn(addr.data ? addr.data : "", userdata, &repl);
                if (r <= 0)
                        continue;
                size_t a = p.toks[sp->first].start, b = p.toks[sp->last].end;
                r = strbuf_append(out, value + copied, a - copied);
                if (r >= 0)
                        r = strbuf_puts(out, repl);
                free(repl);
                copied = b;
                changed++;
        }
        if (r >= 0)
                r = strbuf_append(out, value + copied, n - copied);
        strbuf_done(&addr);
        free(p.toks);
        free(p.spans);
        return r < 0 ? r : changed;
}
