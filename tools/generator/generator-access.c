/* generator-access.c — LoadCredential= and ReadWritePaths= drop-ins from main.cf and master.cf
 * (generator-access.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generator-access.h"
#include "generator-units.h"
#include "basic/strbuf.h"
#include "conf/params.h"
#include "daemon/credential.h"

/* The TLS files postern-smtpd opens (with their listener forms "<listener>/<name>"). */
static const char *const tls_file_params[] = { "smtpd_tls_cert_file", "smtpd_tls_key_file", "smtpd_tls_chain_files" };

/* What postern-local.service may write already (units/postern-local.service.in). */
static const char *const local_writable[] = { "/var/mail", "/var/spool/mail", "/home", "/root", "/var/vmail" };

/* The roles whose units write the queue (ReadWritePaths=@queue_directory@). */
static const char *const queue_units[] = {
        "postern-smtpd.service", "postern-qmgr.service", "postern-smtp.service", "postern-local.service",
};

typedef struct Collect {
        char **names;           /* explicit "<listener>/<tls param>" names */
        size_t n;
        int r;
} Collect;

static bool is_tls_file_param(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(tls_file_params); i++)
                if (streq(name, tls_file_params[i]))
                        return true;
        return false;
}

static void collect_listener_forms(const char *name, const char *raw, void *ud) {
        Collect *c = ud;
        const char *slash = strchr(name, '/');
        if (c->r < 0 || !slash || !is_tls_file_param(slash + 1))
                return;
        if (strv_consume(&c->names, strdup(name)) < 0)
                c->r = -ENOMEM;
        else
                c->n++;
}

static bool strv_has(char **v, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (streq(v[i], s))
                        return true;
        return false;
}

/* Every absolute path that a TLS file parameter names, once. */
static int tls_paths(Conf *c, char ***ret, size_t *ret_n) {
        Collect col = {};
        conf_foreach_explicit(c, collect_listener_forms, &col);
        _cleanup_strv_free_ char **names = col.names;
        if (col.r < 0)
                return col.r;
        char **paths = NULL;
        size_t n = 0;
        int r = 0;
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(tls_file_params) + col.n; i++) {
                const char *name = i < ELEMENTSOF(tls_file_params) ? tls_file_params[i]
                                                                  : names[i - ELEMENTSOF(tls_file_params)];
                _cleanup_strv_free_ char **v = conf_split_list(strempty(conf_get(c, name)));
                if (!v) {
                        r = -ENOMEM;
                        break;
                }
                for (char **p = v; r >= 0 && *p; p++) {
                        if ((*p)[0] != '/' || strv_has(paths, n, *p))
                                continue;
                        r = strv_consume(&paths, strdup(*p));
                        n += r >= 0;
                }
        }
        if (r < 0) {
                strv_free(paths);
                return r;
        }
        *ret = paths;
        *ret_n = n;
        return 0;
}

static bool under(const char *path, const char *dir) {
        size_t l = strlen(dir);
        return strncmp(path, dir, l) == 0 && (path[l] == '\0' || path[l] == '/');
}

/* Appends "KEY=VALUE PATH" (PATH escaped for systemd's specifiers) to the drop-in for unit,
 * creating it with its header. */
static int add(GeneratorDropins *d, const char *unit, const char *source, const char *key, const char *value,
               const char *path) {
        _cleanup_strbuf_ StrBuf b = STRBUF_INIT;
        GeneratorDropin *found = NULL;
        int r = 0;
        for (size_t i = 0; i < d->n && !found; i++)
                if (streq(d->v[i].unit, unit))
                        found = &d->v[i];
        if (found)
                r = strbuf_puts(&b, found->text);
        else {
                r = strbuf_puts(&b, "# Written by postern-generator from ");
                if (r >= 0)
                        r = generator_put_escaped(&b, source);
                if (r >= 0)
                        r = strbuf_puts(&b, ": access to the files and directories\n"
                                        "# it names. Do not edit; change main.cf and run systemctl daemon-reload.\n"
                                        "[Service]\n");
        }
        if (r >= 0)
                r = strbuf_printf(&b, "%s=%s", key, value);
        if (r >= 0)
                r = generator_put_escaped(&b, path);
        if (r >= 0)
                r = strbuf_putc(&b, '\n');
        if (r < 0)
                return r;
        if (!found) {
                GeneratorDropin *grown = realloc(d->v, (d->n + 1) * sizeof(GeneratorDropin));
                if (!grown)
                        return -ENOMEM;
                d->v = grown;
                found = &d->v[d->n];
                *found = (GeneratorDropin) { .unit = strdup(unit) };
                if (!found->unit)
                        return -ENOMEM;
                d->n++;
        }
        free(found->text);
        found->text = strbuf_steal(&b);
        return found->text ? 0 : -ENOMEM;
}

int generator_access_dropins(Conf *c, const char *source, bool (*readable)(const char *path, void *ud), void *ud,
                             GeneratorDropins *ret) {
        GeneratorDropins d = {};
        _cleanup_strv_free_ char **paths = NULL;
        size_t n = 0;
        int r = tls_paths(c, &paths, &n);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (readable(paths[i], ud))
                        continue;
                _cleanup_free_ char *name = NULL, *value = NULL;
                r = credential_name_for_path(paths[i], &name);
                if (r == -EINVAL) {
                        r = 0;      /* a path too long for a credential name: smtpd says it cannot read it */
                        continue;
                }
                if (r >= 0 && asprintf(&value, "%s:", name) < 0)
                        r = -ENOMEM;
                if (r >= 0)
                        r = add(&d, "postern-smtpd.service", source, "LoadCredential", value, paths[i]);
        }

        const char *queue = conf_get(c, "queue_directory");
        const ParamDef *qdef = param_lookup("queue_directory");
        bool queue_set = false;   /* unset: the units' own (also an instance's /var/spool/postern-NAME) */
        (void) conf_get_raw(c, "queue_directory", &queue_set);
        if (r >= 0 && queue_set && !isempty(queue) && queue[0] == '/' && qdef && !streq(queue, param_default(qdef))) {
                /* "-": a directory that does not exist is no error */
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(queue_units); i++)
                        r = add(&d, queue_units[i], source, "ReadWritePaths", "-", queue);
        }
        static const char *const local_dirs[] = { "virtual_mailbox_base", "mail_spool_directory" };
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(local_dirs); i++) {
                const char *dir = conf_get(c, local_dirs[i]);
                if (isempty(dir) || dir[0] != '/' || (!isempty(queue) && under(dir, queue)))
                        continue;
                bool covered = false;
                for (size_t k = 0; k < ELEMENTSOF(local_writable); k++)
                        covered = covered || under(dir, local_writable[k]);
                if (covered)
                        continue;
                r = add(&d, "postern-local.service", source, "ReadWritePaths", "-", dir);
        }
        if (r < 0) {
                generator_dropins_done(&d);
                return r;
        }
        *ret = d;
        return 0;
}

void generator_dropins_done(GeneratorDropins *d) {
        for (size_t i = 0; i < d->n; i++) {
                free(d->v[i].unit);
                free(d->v[i].text);
        }
        free(d->v);
        *d = (GeneratorDropins) {};
}
