/* posternctl-import.c — `posternctl import DIR [--to DEST] [--force]`: copies a Postfix
 * configuration directory's main.cf and master.cf into Postern's (DEST, default the directory of
 * Postern's main.cf) line for line, with what Postern cannot use commented out and the reason on a
 * "# posternctl import: <verdict>: <name>: <why>" line above it. What is commented out is what
 * `posternctl check --postfix DIR` calls not supported, unknown or left out (the report of
 * posternctl-postfix.c); master.cf options that are not applied get a note and stay. The -o
 * options of the listeners Postern has (smtp, submission, submissions) are appended to main.cf as
 * "<fd name>/<name> = <value>", the per-listener settings that replace them. Nothing is
 * written when a destination file exists, unless --force; each file is replaced atomically.
 * Files the configuration names (tables, certificates) are not copied: their paths stay. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "basic/io-util.h"
#include "basic/strbuf.h"
#include "config.h"
#include "posternctl.h"
#include "posternctl-postfix.h"

/* The notes to write above line of file, and whether that line (and its continuation) goes. */
static int notes_for_line(const PostfixReport *r, const char *file, unsigned line, StrBuf *out, bool *ret_drop) {
        *ret_drop = false;
        for (size_t i = 0; i < r->n; i++) {
                const PostfixItem *it = &r->items[i];
                if (it->line != line || !streq(it->file, file) || !postfix_verdict_dropped(it->verdict))
                        continue;
                const char *what = it->verdict == POSTFIX_LEFT_OUT ? "left out" :
                                   it->verdict == POSTFIX_UNKNOWN ? "unknown" : "not supported";
                int e = strbuf_printf(out, "# posternctl import: %s: %s%s%s\n", what, it->name,
                                      it->detail ? ": " : "", strempty(it->detail));
                if (e < 0)
                        return e;
                if (!it->option)
                        *ret_drop = true;
        }
        return 0;
}

static bool line_blank_or_comment(const char *s) {
        s += strspn(s, " \t\r\n\f\v");
        return *s == '\0' || *s == '#';
}

/* The text of src with the report's dropped settings or entries commented out. */
static int import_text(const PostfixReport *r, const char *file, const char *src, StrBuf *out, unsigned *ret_dropped) {
        _cleanup_fclose_ FILE *f = fopen(src, "re");
        if (!f)
                return -errno;
        _cleanup_free_ char *buf = NULL;
        size_t sz = 0;
        unsigned lineno = 0, dropped = 0;
        bool dropping = false;
        int e = strbuf_printf(out, "# Imported from %s by posternctl import: what Postern cannot use is commented\n"
                              "# out below a \"# posternctl import:\" line saying why (posternctl check --postfix).\n",
                              src);
        while (e >= 0 && getline(&buf, &sz, f) >= 0) {
                lineno++;
                if (dropping && line_blank_or_comment(buf)) {
                        e = strbuf_puts(out, buf);
                        continue;
                }
                if (dropping && (buf[0] == ' ' || buf[0] == '\t')) {
                        e = strbuf_printf(out, "#%s", buf);
                        continue;
                }
                dropping = false;
                if (!line_blank_or_comment(buf) && (e = notes_for_line(r, file, lineno, out, &dropping)) < 0)
                        break;
                dropped += dropping;
                e = dropping ? strbuf_printf(out, "#%s", buf) : strbuf_puts(out, buf);
        }
        if (e >= 0 && ferror(f))
                e = -EIO;
        if (e >= 0 && out->len && out->data[out->len - 1] != '\n')
                e = strbuf_putc(out, '\n');
        /* main.cf gets the -o options of master.cf's listeners as per-listener settings */
        bool header = false;
        for (size_t i = 0; e >= 0 && streq(file, "main.cf") && i < r->n; i++) {
                if (!r->items[i].setting)
                        continue;
                if (!header)
                        e = strbuf_puts(out, "\n# posternctl import: the -o options of master.cf's listeners, as "
                                        "Postern's per-listener settings\n");
                header = true;
                if (e >= 0)
                        e = strbuf_printf(out, "%s\n", r->items[i].setting);
        }
        *ret_dropped = dropped;
        return e < 0 ? e : 0;
}

/* The directory Postern reads main.cf from: $POSTERN_CONFIG's, else the default. */
static char *default_destination(void) {
        const char *e = getenv("POSTERN_CONFIG");
        if (isempty(e))
                return strdup(POSTERN_SYSCONFDIR);
        const char *slash = strrchr(e, '/');
        return slash ? strndup(e, slash == e ? 1 : (size_t) (slash - e)) : strdup(".");
}

int verb_import(int argc, char *argv[]) {
        static const struct option options[] = {
                { "to", required_argument, NULL, 't' },
                { "force", no_argument, NULL, 'f' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        static const char *const files[] = { "main.cf", "master.cf" };
        _cleanup_free_ char *dest = NULL;
        bool force = false;
        int opt;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "t:fh", options, NULL)) >= 0)
                switch (opt) {
                case 't':
                        free(dest);
                        dest = strdup(optarg);
                        if (!dest)
                                return fprintf(stderr, "posternctl: out of memory\n"), 1;
                        break;
                case 'f':
                        force = true;
                        break;
                case 'h':
                        printf("Usage: posternctl import DIR [--to DEST] [--force]\n"
                               "Copies DIR/main.cf and DIR/master.cf (a Postfix configuration) to DEST (default: the\n"
                               "directory of Postern's main.cf), commenting out what Postern cannot use. Existing\n"
                               "files are kept unless --force.\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind + 1 != argc) {
                fprintf(stderr, "posternctl: import takes one directory (a Postfix configuration such as /etc/postfix)\n");
                return 2;
        }
        const char *dir = argv[optind];
        if (!dest && !(dest = default_destination()))
                return fprintf(stderr, "posternctl: out of memory\n"), 1;

        bool have[ELEMENTSOF(files)] = {};
        char *src[ELEMENTSOF(files)] = {}, *dst[ELEMENTSOF(files)] = {};
        int ret = 0;
        _cleanup_(postfix_report_done) PostfixReport r = {};
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                if (asprintf(&src[i], "%s/%s", dir, files[i]) < 0 || asprintf(&dst[i], "%s/%s", dest, files[i]) < 0) {
                        fprintf(stderr, "posternctl: out of memory\n");
                        ret = 1;
                        goto done;
                }
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                have[i] = access(src[i], F_OK) == 0;
                if (have[i] && !force && access(dst[i], F_OK) == 0) {
                        fprintf(stderr, "posternctl: %s exists; nothing was written (--force replaces it)\n", dst[i]);
                        ret = 1;
                }
        }
        if (!have[0]) {
                fprintf(stderr, "posternctl: %s: %s\n", src[0], strerror(errno));
                ret = 1;
        }
        if (ret)
                goto done;
        int e = postfix_report_build(dir, &r);
        if (e < 0) {
                fprintf(stderr, "posternctl: %s: %s\n", dir, strerror(-e));
                ret = 1;
                goto done;
        }
        if (mkdir(dest, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "posternctl: %s: %s\n", dest, strerror(errno));
                ret = 1;
                goto done;
        }
        for (size_t i = 0; i < ELEMENTSOF(files) && !ret; i++) {
                if (!have[i])
                        continue;
                _cleanup_strbuf_ StrBuf text = STRBUF_INIT;
                unsigned dropped = 0;
                e = import_text(&r, files[i], src[i], &text, &dropped);
                if (e >= 0)
                        e = write_file_atomic(dst[i], text.data, text.len, 0644, (uid_t) -1, (gid_t) -1);
                if (e < 0) {
                        fprintf(stderr, "posternctl: %s: %s\n", e == -EIO || e == -ENOENT ? src[i] : dst[i], strerror(-e));
                        ret = 1;
                } else
                        printf("%s: written from %s, %u %s commented out\n", dst[i], src[i], dropped,
                               i == 0 ? "settings" : "entries");
        }
        if (!ret)
                printf("The reasons are in the files; files they name (tables, keys) keep their paths. "
                       "Next: posternctl check -c %s\n", dest);
done:
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                free(src[i]), free(dst[i]);
        return ret;
}
