/* milter-proto.c — the milter protocol's packets: framing, the MTA's commands, the milter's
 * replies and option negotiation (see milter.h). Every length is checked before it is used;
 * strings in replies must end inside their packet. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "milter.h"

static void set_err(char err[MILTER_ERR_MAX], const char *fmt, ...) _printf_(2, 3);
static void set_err(char err[MILTER_ERR_MAX], const char *fmt, ...) {
        va_list ap;
        if (!err)
                return;
        va_start(ap, fmt);
        vsnprintf(err, MILTER_ERR_MAX, fmt, ap);
        va_end(ap);
}

static uint32_t get32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

char milter_macro_stage_cmd(MilterMacroStage st) {
        static const char cmds[_MILTER_M_MAX] = {
                [MILTER_M_CONNECT] = 'C', [MILTER_M_HELO] = 'H', [MILTER_M_MAIL] = 'M', [MILTER_M_RCPT] = 'R',
                [MILTER_M_DATA] = 'T', [MILTER_M_EOM] = 'E', [MILTER_M_EOH] = 'N', [MILTER_M_UNKNOWN] = 'U',
        };
        return (unsigned) st < _MILTER_M_MAX ? cmds[st] : 0;
}

int milter_frame_next(const void *buf, size_t len, char *ret_cmd, const uint8_t **ret_data,
                      size_t *ret_len, size_t *ret_used, char err[MILTER_ERR_MAX]) {
        const uint8_t *p = buf;
        if (len < 4)
                return 0;
        uint32_t n = get32(p);
        if (n == 0) {
                set_err(err, "packet of length 0 (no command byte)");
                return -EBADMSG;
        }
        if (n > MILTER_PACKET_MAX) {
                set_err(err, "packet of %u bytes exceeds the limit of %u", n, (unsigned) MILTER_PACKET_MAX);
                return -EBADMSG;
        }
        if (len - 4 < n)
                return 0;
        *ret_cmd = (char) p[4];
        *ret_data = p + 5;
        *ret_len = n - 1;
        *ret_used = 4 + (size_t) n;
        return 1;
}

int milter_put_packet(StrBuf *b, char cmd, const void *data, size_t n) {
        uint8_t h[5];
        if (n + 1 > MILTER_PACKET_MAX)
                return -EMSGSIZE;
        put32(h, (uint32_t) n + 1);
        h[4] = (uint8_t) cmd;
        int r = strbuf_append(b, h, sizeof h);
        if (r >= 0 && n > 0)
                r = strbuf_append(b, data, n);
        return r;
}

int milter_put_optneg(StrBuf *b, uint32_t version, uint32_t actions, uint32_t protocol) {
        uint8_t d[12];
        put32(d, version);
        put32(d + 4, actions);
        put32(d + 8, protocol);
        return milter_put_packet(b, MILTER_CMD_OPTNEG, d, sizeof d);
}

/* Appends s with its NUL to a packet being built. */
static int put_str(StrBuf *d, const char *s) {
        return strbuf_append(d, s ? s : "", strlen(s ? s : "") + 1);
}

int milter_put_macros(StrBuf *b, char cmd, char *const *names,
                      const char *(*get)(const char *name, void *userdata), void *userdata) {
        _cleanup_strbuf_ StrBuf d = STRBUF_INIT;
        bool any = false;
        int r = strbuf_putc(&d, cmd);
        for (char *const *n = names; r >= 0 && n && *n; n++) {
                const char *v = get(*n, userdata);
                if (!v)
                        continue;
                any = true;
                r = put_str(&d, *n);
                if (r >= 0)
                        r = put_str(&d, v);
        }
        if (r < 0 || !any)
                return r < 0 ? r : 0;
        return milter_put_packet(b, MILTER_CMD_MACRO, d.data, d.len);
}

int milter_put_connect(StrBuf *b, const char *hostname, char family, uint16_t port, const char *addr) {
        _cleanup_strbuf_ StrBuf d = STRBUF_INIT;
        int r = put_str(&d, hostname);
        if (r >= 0)
                r = strbuf_putc(&d, family);
        if (r >= 0 && family != 'U') {
                uint8_t pb[2] = { (uint8_t) (port >> 8), (uint8_t) port };
                r = strbuf_append(&d, pb, 2);
                if (r >= 0)
                        r = put_str(&d, addr);
        }
        return r < 0 ? r : milter_put_packet(b, MILTER_CMD_CONNECT, d.data, d.len);
}

int milter_put_strings(StrBuf *b, char cmd, const char *const *args) {
        _cleanup_strbuf_ StrBuf d = STRBUF_INIT;
        int r = 0;
        for (const char *const *a = args; r >= 0 && a && *a; a++)
                r = put_str(&d, *a);
        return r < 0 ? r : milter_put_packet(b, cmd, d.data, d.len);
}

int milter_put_header(StrBuf *b, const char *name, const char *value) {
        return milter_put_strings(b, MILTER_CMD_HEADER, (const char *const[]) { name, value, NULL });
}

/* A packet written in place: its header first, the length filled in by packet_end(). */
static int packet_begin(StrBuf *b, char cmd, size_t *ret_off) {
        uint8_t h[5] = { 0, 0, 0, 0, (uint8_t) cmd };
        *ret_off = b->len;
        return strbuf_append(b, h, sizeof h);
}

static int packet_end(StrBuf *b, size_t off, int r) {
        size_t n = b->len - off - 4;   /* the command byte and the data */
        if (r >= 0 && n > MILTER_PACKET_MAX)
                r = -EMSGSIZE;
        if (r < 0) {
                b->len = off;   /* nothing of the packet stays */
                if (b->data)
                        b->data[off] = '\0';
                return r;
        }
        put32((uint8_t *) b->data + off, (uint32_t) n);
        return 0;
}

int milter_put_header_n(StrBuf *b, const char *name, size_t name_len, const char *value, size_t value_len) {
        size_t off;
        int r = packet_begin(b, MILTER_CMD_HEADER, &off);
        if (r < 0)
                return r;
        if ((r = strbuf_append(b, name, name_len)) >= 0 && (r = strbuf_putc(b, '\0')) >= 0 &&
            (r = strbuf_append(b, value, value_len)) >= 0)
                r = strbuf_putc(b, '\0');
        return packet_end(b, off, r);
}

int milter_put_body_crlf(StrBuf *b, const char *p, size_t len, size_t *ret_used) {
        size_t off, i = 0, n = 0;
        int r = packet_begin(b, MILTER_CMD_BODY, &off);
        /* a line at a time; a chunk ends once it holds MILTER_CHUNK_MAX - 1 bytes or more */
        while (r >= 0 && i < len && n < MILTER_CHUNK_MAX - 1) {
                size_t room = MILTER_CHUNK_MAX - 1 - n, take = MIN(len - i, room);
                const char *nl = memchr(p + i, '\n', take);
                size_t seg = nl ? (size_t) (nl - (p + i)) : take;
                if ((r = strbuf_append(b, p + i, seg)) < 0)
                        break;
                n += seg;
                i += seg;
                if (nl) {
                        if ((r = strbuf_append(b, "\r\n", 2)) < 0)
                                break;
                        n += 2;
                        i++;
                }
        }
        *ret_used = i;
        return packet_end(b, off, r);
}

int milter_put_body(StrBuf *b, const void *p, size_t n) {
        const char *c = p;
        for (size_t off = 0; off < n; off += MILTER_CHUNK_MAX) {
                int r = milter_put_packet(b, MILTER_CMD_BODY, c + off, MIN(n - off, (size_t) MILTER_CHUNK_MAX));
                if (r < 0)
                        return r;
        }
        return 0;
}

void milter_neg_done(MilterNeg *n) {
        for (size_t i = 0; i < _MILTER_M_MAX; i++) {
                free(n->symlist[i]);
                n->symlist[i] = NULL;
        }
}

int milter_neg_parse(const uint8_t *p, size_t n, uint32_t offered_actions, uint32_t offered_protocol,
                     MilterNeg *ret, char err[MILTER_ERR_MAX]) {
        MilterNeg neg = {};
        if (n < 12) {
                set_err(err, "option negotiation reply of %zu bytes (expected at least 12)", n);
                return -EBADMSG;
        }
        neg.version = get32(p);
        neg.actions = get32(p + 4);
        neg.protocol = get32(p + 8);
        if (neg.version < 2 || neg.version > MILTER_VERSION) {
                set_err(err, "milter protocol version %u not supported (2 to %d)", neg.version, MILTER_VERSION);
                return -EBADMSG;
        }
        if (neg.actions & ~offered_actions) {
                set_err(err, "milter asks for actions 0x%x that were not offered", neg.actions & ~offered_actions);
                return -EBADMSG;
        }
        if (neg.protocol & ~offered_protocol) {
                set_err(err, "milter asks for protocol steps 0x%x that were not offered",
                        neg.protocol & ~offered_protocol);
                return -EBADMSG;
        }
        for (size_t off = 12; off < n; ) {
                if (n - off < 5) {
                        set_err(err, "truncated macro list in option negotiation reply");
                        milter_neg_done(&neg);
                        return -EBADMSG;
                }
                uint32_t where = get32(p + off);
                const uint8_t *s = p + off + 4, *end = memchr(s, '\0', n - off - 4);
                /* the setsymlist stages are connect ... eoh; unknown has no index */
                if (where >= MILTER_M_UNKNOWN || !end || neg.symlist[where]) {
                        set_err(err, !end ? "macro list without NUL in option negotiation reply" :
                                     where >= MILTER_M_UNKNOWN ? "macro list for unknown stage %u" :
                                     "macro list for stage %u given twice", where);
                        milter_neg_done(&neg);
                        return -EBADMSG;
                }
                neg.symlist[where] = strndup((const char *) s, (size_t) (end - s));
                if (!neg.symlist[where]) {
                        milter_neg_done(&neg);
                        return -ENOMEM;
                }
                off = (size_t) (end - p) + 1;
        }
        *ret = neg;
        return 0;
}

void milter_reply_done(MilterReply *r) {
        free(r->storage);
        *r = (MilterReply) {};
}

const char *milter_reply_name(char cmd) {
        switch (cmd) {
        case MILTER_R_ADDRCPT: return "addrcpt";
        case MILTER_R_DELRCPT: return "delrcpt";
        case MILTER_R_ADDRCPT_PAR: return "addrcpt_par";
        case MILTER_R_ACCEPT: return "accept";
        case MILTER_R_REPLBODY: return "replbody";
        case MILTER_R_CONTINUE: return "continue";
        case MILTER_R_DISCARD: return "discard";
        case MILTER_R_CHGFROM: return "chgfrom";
        case MILTER_R_ADDHEADER: return "addheader";
        case MILTER_R_INSHEADER: return "insheader";
        case MILTER_R_SETSYMLIST: return "setsymlist";
        case MILTER_R_CHGHEADER: return "chgheader";
        case MILTER_R_PROGRESS: return "progress";
        case MILTER_R_QUARANTINE: return "quarantine";
        case MILTER_R_REJECT: return "reject";
        case MILTER_R_SKIP: return "skip";
        case MILTER_R_TEMPFAIL: return "tempfail";
        case MILTER_R_REPLYCODE: return "replycode";
        case MILTER_R_OPTNEG: return "optneg";
        default: return NULL;
        }
}

/* Splits the data into exactly want NUL-terminated strings (the last may be optional). */
static int split_strings(const char *what, const uint8_t *p, size_t n, char **storage, char **v,
                         size_t min, size_t max, char err[MILTER_ERR_MAX]) {
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
                if (p[i] == '\0')
                        count++;
        if (n == 0 || p[n - 1] != '\0') {
                set_err(err, "%s reply without terminating NUL", what);
                return -EBADMSG;
        }
        if (count < min || count > max) {
                set_err(err, "%s reply with %zu strings (expected %zu to %zu)", what, count, min, max);
                return -EBADMSG;
        }
        char *s = malloc(n);
        if (!s)
                return -ENOMEM;
        memcpy(s, p, n);
        *storage = s;
        for (size_t i = 0, off = 0; i < count; i++) {
                v[i] = s + off;
                off += strlen(s + off) + 1;
        }
        return 0;
}

static bool reply_code_ok(const char *l, int *ret_code, char *ret_sep) {
        if (!(l[0] == '4' || l[0] == '5') || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9')
                return false;
        if (l[3] != ' ' && l[3] != '-' && l[3] != '\0')
                return false;
        *ret_code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        *ret_sep = l[3];
        return true;
}

/* "550 5.7.1 text" or multi-line "550-5.7.1 a\r\n550 5.7.1 b": every line has the same 4xx/5xx
 * code, "-" on all but the last, an enhanced status (if any) of the same class. */
static int replycode_check(char *text, int *ret_code, char err[MILTER_ERR_MAX]) {
        int code = 0;
        for (char *l = text; ; ) {
                char *eol = strstr(l, "\r\n");
                size_t ln = eol ? (size_t) (eol - l) : strlen(l);
                int c;
                char sep;
                if (ln < 3 || !reply_code_ok(l, &c, &sep)) {
                        set_err(err, "replycode \"%.*s\" is not a 4xx or 5xx reply", (int) MIN(ln, (size_t) 60), l);
                        return -EBADMSG;
                }
                if (code && c != code) {
                        set_err(err, "replycode lines with different codes %d and %d", code, c);
                        return -EBADMSG;
                }
                code = c;
                if ((sep == '-') != (eol != NULL)) {
                        set_err(err, "replycode line \"%.*s\" %s", (int) MIN(ln, (size_t) 60), l,
                                eol ? "is followed by another line without \"-\"" : "ends the reply with \"-\"");
                        return -EBADMSG;
                }
                if (ln > 5 && (l[4] == '4' || l[4] == '5' || l[4] == '2') && l[5] == '.' && l[4] != l[0]) {
                        set_err(err, "replycode %d with enhanced status class %c", c, l[4]);
                        return -EBADMSG;
                }
                if (memchr(l, '\n', ln) || memchr(l, '\r', ln)) {
                        set_err(err, "replycode with a bare line break");
                        return -EBADMSG;
                }
                if (!eol)
                        break;
                l = eol + 2;
        }
        *ret_code = code;
        return 0;
}

int milter_reply_parse(char cmd, const uint8_t *p, size_t n, MilterReply *ret, char err[MILTER_ERR_MAX]) {
        MilterReply r = { .cmd = cmd };
        char *v[2] = {};
        int k = 0;

        switch (cmd) {
        case MILTER_R_ACCEPT: case MILTER_R_CONTINUE: case MILTER_R_DISCARD: case MILTER_R_REJECT:
        case MILTER_R_TEMPFAIL: case MILTER_R_PROGRESS: case MILTER_R_SKIP:
                if (n != 0) {
                        set_err(err, "%s reply with %zu unexpected data bytes", milter_reply_name(cmd), n);
                        return -EBADMSG;
                }
                break;
        case MILTER_R_REPLYCODE:
                k = split_strings("replycode", p, n, &r.storage, v, 1, 1, err);
                if (k >= 0) {
                        r.text = v[0];
                        k = replycode_check(r.text, &r.code, err);
                }
                break;
        case MILTER_R_QUARANTINE:
        case MILTER_R_DELRCPT:
        case MILTER_R_ADDRCPT:
                k = split_strings(milter_reply_name(cmd), p, n, &r.storage, v, 1, 1, err);
                r.text = v[0];
                if (k >= 0 && cmd != MILTER_R_QUARANTINE && !*r.text) {
                        set_err(err, "%s reply with an empty address", milter_reply_name(cmd));
                        k = -EBADMSG;
                }
                break;
        case MILTER_R_ADDRCPT_PAR:
        case MILTER_R_CHGFROM:
                k = split_strings(milter_reply_name(cmd), p, n, &r.storage, v, 1, 2, err);
                r.text = v[0];
                r.value = v[1];
                if (k >= 0 && cmd == MILTER_R_ADDRCPT_PAR && !*r.text) {
                        set_err(err, "addrcpt_par reply with an empty address");
                        k = -EBADMSG;
                }
                break;
        case MILTER_R_ADDHEADER:
        case MILTER_R_INSHEADER:
        case MILTER_R_CHGHEADER:
                if (cmd != MILTER_R_ADDHEADER) {
                        if (n < 4) {
                                set_err(err, "%s reply of %zu bytes has no index", milter_reply_name(cmd), n);
                                return -EBADMSG;
                        }
                        r.index = get32(p);
                        p += 4;
                        n -= 4;
                }
                k = split_strings(milter_reply_name(cmd), p, n, &r.storage, v, 2, 2, err);
                r.name = v[0];
                r.value = v[1];
                if (k >= 0) {
                        if (!*r.name) {
                                set_err(err, "%s reply with an empty header name", milter_reply_name(cmd));
                                k = -EBADMSG;
                        } else
                                for (const char *c = r.name; *c; c++)
                                        if (*c <= ' ' || *c == ':' || *c >= 127) {
                                                set_err(err, "%s reply with invalid header name \"%.60s\"",
                                                        milter_reply_name(cmd), r.name);
                                                k = -EBADMSG;
                                                break;
                                        }
                }
                break;
        case MILTER_R_REPLBODY:
                r.body = p;
                r.body_len = n;
                break;
        default:
                if (cmd >= ' ' && cmd < 127)
                        set_err(err, "unknown reply command '%c'", cmd);
                else
                        set_err(err, "unknown reply command 0x%02x", (unsigned) (uint8_t) cmd);
                return -EBADMSG;
        }
        if (k < 0) {
                free(r.storage);
                return k;
        }
        *ret = r;
        return 0;
}
