/* header-checks.c — opening header_checks/body_checks tables, matching a header or body line
 * against them, and parsing the action found (Postfix header_checks(5) actions). See
 * header-checks.h. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../basic/macro.h"
#include "../conf/table.h"
#include "header-checks.h"
#include "rfc822.h"

struct HeaderChecks {
        TableList *tables;
        char *spec;
};

static const struct {
        const char *word;
        HeaderCheckType type;
        int arg;                 /* 0 optional text, 1 required, -1 none allowed */
} actions[] = {
        { "DUNNO",    HEADER_CHECK_DUNNO,    -1 },
        { "OK",       HEADER_CHECK_DUNNO,    -1 },
        { "REJECT",   HEADER_CHECK_REJECT,    0 },
        { "DISCARD",  HEADER_CHECK_DISCARD,   0 },
        { "HOLD",     HEADER_CHECK_HOLD,      0 },
        { "WARN",     HEADER_CHECK_WARN,      0 },
        { "INFO",     HEADER_CHECK_INFO,      0 },
        { "IGNORE",   HEADER_CHECK_IGNORE,   -1 },
        { "PREPEND",  HEADER_CHECK_PREPEND,   1 },
        { "REPLACE",  HEADER_CHECK_REPLACE,   1 },
        { "BCC",      HEADER_CHECK_BCC,       1 },
        { "REDIRECT", HEADER_CHECK_REDIRECT,  1 },
        { "FILTER",   HEADER_CHECK_FILTER,    1 },
};

void header_check_action_done(HeaderCheckAction *a) {
        if (!a)
                return;
        free(a->text);
        *a = (HeaderCheckAction) {};
}

const char *header_check_type_name(HeaderCheckType t) {
        static const char *const names[_HEADER_CHECK_MAX] = {
                [HEADER_CHECK_DUNNO] = "dunno",       [HEADER_CHECK_REJECT] = "reject",
                [HEADER_CHECK_DISCARD] = "discard",   [HEADER_CHECK_HOLD] = "hold",
                [HEADER_CHECK_WARN] = "warning",      [HEADER_CHECK_INFO] = "info",
                [HEADER_CHECK_IGNORE] = "ignore",     [HEADER_CHECK_PREPEND] = "prepend",
                [HEADER_CHECK_REPLACE] = "replace",   [HEADER_CHECK_BCC] = "bcc",
                [HEADER_CHECK_REDIRECT] = "redirect", [HEADER_CHECK_FILTER] = "filter",
        };
        return t >= 0 && t < _HEADER_CHECK_MAX ? names[t] : "unknown";
}

/* Checks an action's argument; NULL when it is acceptable. */
static const char *check_argument(HeaderCheckType t, const char *arg, bool for_header) {
        switch (t) {
        case HEADER_CHECK_PREPEND:
        case HEADER_CHECK_REPLACE:
                if (strchr(arg, '\n'))
                        return "the text contains a newline";
                if (for_header) {
                        const char *colon = strchr(arg, ':');
                        if (!colon || colon == arg || !rfc822_header_name_valid(arg, (size_t) (colon - arg)))
                                return "the text is not a message header (Name: value)";
                }
                return NULL;
        case HEADER_CHECK_BCC:
        case HEADER_CHECK_REDIRECT:
                for (const char *p = arg; *p; p++)
                        if (isspace((unsigned char) *p) || *p == '<' || *p == '>')
                                return "the argument is not a single address";
                if (!strchr(arg, '@'))
                        return "the address has no domain (user@domain)";
                return NULL;
        case HEADER_CHECK_FILTER: {
                const char *colon = strchr(arg, ':');
                if (!colon || colon == arg)
                        return "the argument is not transport:destination";
                for (const char *p = arg; *p; p++)
                        if (isspace((unsigned char) *p))
                                return "the argument is not transport:destination";
                return NULL;
        }
        default:
                return NULL;
        }
}

int header_check_parse(const char *value, bool for_header, HeaderCheckAction *ret, const char **ret_why) {
        const char *p = value ? value : "";
        while (isspace((unsigned char) *p))
                p++;
        size_t wl = 0;
        while (p[wl] && !isspace((unsigned char) p[wl]))
                wl++;
        const char *arg = p + wl;
        while (isspace((unsigned char) *arg))
                arg++;
        size_t al = strlen(arg);
        while (al > 0 && isspace((unsigned char) arg[al - 1]))
                al--;

        for (size_t i = 0; i < ELEMENTSOF(actions); i++) {
                if (strlen(actions[i].word) != wl || strncasecmp(p, actions[i].word, wl) != 0)
                        continue;
                if (actions[i].arg < 0 && al > 0) {
                        *ret_why = "this action takes no argument";
                        return -EINVAL;
                }
                if (actions[i].arg > 0 && al == 0) {
                        *ret_why = "this action needs an argument";
                        return -EINVAL;
                }
                _cleanup_free_ char *text = NULL;
                if (al > 0 && !(text = strndup(arg, al)))
                        return -ENOMEM;
                const char *why = text ? check_argument(actions[i].type, text, for_header) : NULL;
                if (why) {
                        *ret_why = why;
                        return -EINVAL;
                }
                *ret = (HeaderCheckAction) { .type = actions[i].type, .text = TAKE_PTR(text) };
                return 0;
        }
        *ret_why = "unknown action";
        return -EINVAL;
}

HeaderChecks *header_checks_free(HeaderChecks *h) {
        if (!h)
                return NULL;
        table_list_free(h->tables);
        free(h->spec);
        free(h);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(HeaderChecks *, header_checks_free);

const char *header_checks_spec(const HeaderChecks *h) {
        return h ? h->spec : "";
}

int header_checks_open(const char *specs, HeaderChecks **ret, char **ret_reason) {
        bool empty = true;
        for (const char *c = strempty(specs); *c; c++)
                if (!isspace((unsigned char) *c) && *c != ',')
                        empty = false;
        if (empty) {
                *ret = NULL;
                return 0;
        }
        _cleanup_(header_checks_freep) HeaderChecks *h = calloc(1, sizeof(HeaderChecks));
        if (!h)
                return -ENOMEM;
        h->spec = strdup(specs);
        if (!h->spec)
                return -ENOMEM;
        /* Header text and actions, not addresses: $number substitution stays free, as in Postfix. */
        int r = table_list_open(specs, 0, &h->tables, ret_reason);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(h);
        return 0;
}

int header_checks_match(HeaderChecks *h, const char *line, bool for_header, HeaderCheckAction *ret,
                        char **ret_value, const char **ret_why) {
        _cleanup_free_ char *value = NULL;

        if (!h)
                return 0;
        int r = table_list_lookup(h->tables, line, &value);
        if (r <= 0)
                return r;
        r = header_check_parse(value, for_header, ret, ret_why);
        if (r == -EINVAL && ret_value)
                *ret_value = TAKE_PTR(value);
        return r < 0 ? r : 1;
}
