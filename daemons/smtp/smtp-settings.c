/* smtp-settings.c — postern-smtp's settings (SmtpConfig): the smtp_* side, the lmtp_* side, and
 * one variant per master.cf transport whose command is smtp or lmtp and whose "-o name=value"
 * overrides postern-smtp applies.
 *
 * A variant is the same loader run in the transport's context: each -o becomes the main.cf
 * override "<transport>/<name> = value" (common/conf/conf.h, the way listener overrides work),
 * so "$name" references inside other values see it too. The loader records every parameter it
 * reads; an -o naming one it did not read (a parameter of another daemon, or process-wide like
 * queue_directory and inet_interfaces, or a scheduling limit such as
 * <transport>_destination_concurrency_limit, which postern-qmgr reads from main.cf) or one Postern
 * does not know is "not supported" — a warning, the transport still works. An -o with an
 * invalid value makes the transport unavailable: its deliveries are deferred with 4.3.5 and that
 * text. syslog_name is not supported: every line postern-smtp logs carries the journal
 * identifier postern/smtp.
 *
 * smtp_config_load() is also what `posternctl check` runs, so both report the same problems.
 * Deliveries find their settings with smtp_config_settings() by side and transport name. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "conf/master-cf.h"
#include "log/log.h"
#include "smtp.h"

void smtp_settings_done(SmtpSettings *s) {
        free(s->transport);
        free(s->unavailable);
        free(s->queue_directory);
        free(s->myhostname);
        free(s->helo_name);
        free(s->bind_address);
        free(s->inet_interfaces);
        free(s->lmtp_socket_directory);
        free(s->sts_ca_file);
        strv_free(s->read);
        smtp_tls_free(s->tls);
        smtp_sasl_free(s->sasl);
        strv_free(s->notes);
        *s = (SmtpSettings) {};
}

/* Adds name to the parameters s was loaded from (only while a variant is loaded). */
static void note_read(SmtpSettings *s, const char *name) {
        if (!s->recording || s->record_error)
                return;
        size_t n = 0;
        for (; s->read && s->read[n]; n++)
                if (streq(s->read[n], name))
                        return;
        char **v = realloc(s->read, (n + 2) * sizeof(char *));
        if (!v || !(v[n] = strdup(name))) {
                if (v)
                        s->read = v;
                s->record_error = true;
                return;
        }
        v[n + 1] = NULL;
        s->read = v;
}

/* A side's parameter name: "<prefix>_<name>", recorded as read. */
const char *smtp_conf_name(char *buf, size_t size, SmtpSettings *s, const char *name) {
        snprintf(buf, size, "%s_%s", s->prefix, name);
        note_read(s, buf);
        return buf;
}

const char *smtp_conf_get(Conf *c, SmtpSettings *s, const char *name) {
        char p[128];
        return conf_get_listener(c, s->transport, smtp_conf_name(p, sizeof(p), s, name));
}

long long smtp_conf_int(Conf *c, SmtpSettings *s, const char *name) {
        char p[128];
        return conf_get_int(c, s->transport, smtp_conf_name(p, sizeof(p), s, name));
}

bool smtp_conf_bool(Conf *c, SmtpSettings *s, const char *name) {
        char p[128];
        return conf_get_bool(c, s->transport, smtp_conf_name(p, sizeof(p), s, name));
}

usec_t smtp_conf_usec(Conf *c, SmtpSettings *s, const char *name) {
        char p[128];
        return (usec_t) conf_get_time(c, s->transport, smtp_conf_name(p, sizeof(p), s, name)) * USEC_PER_SEC;
}

char **smtp_conf_list(Conf *c, SmtpSettings *s, const char *name) {
        char p[128];
        return conf_get_list(c, s->transport, smtp_conf_name(p, sizeof(p), s, name));
}

/* A parameter without the side's prefix (myhostname), in the transport's context. */
const char *smtp_conf_global(Conf *c, SmtpSettings *s, const char *name) {
        note_read(s, name);
        return conf_get_listener(c, s->transport, name);
}

bool smtp_conf_global_bool(Conf *c, SmtpSettings *s, const char *name) {
        note_read(s, name);
        return conf_get_bool(c, s->transport, name);
}

/* One side's settings into *n (prefix and transport set by the caller): "smtp" (smtp_*) or
 * "lmtp" (lmtp_*, where HELO is LHLO). On failure logs, frees and returns <0. */
static int settings_load(Conf *c, SmtpSettings *n) {
        const char *prefix = n->prefix;
        bool lmtp = streq(prefix, "lmtp");
        const char *helo = smtp_conf_get(c, n, lmtp ? "lhlo_name" : "helo_name");
        const char *myhostname = strempty(smtp_conf_global(c, n, "myhostname"));
        /* Process-wide (smtp_resolve_configure(), the queue): not read per transport. */
        n->queue_directory = strdup(strempty(conf_get(c, "queue_directory")));
        n->inet_interfaces = strdup(strempty(conf_get(c, "inet_interfaces")));
        n->lmtp_socket_directory = strdup(strempty(conf_get(c, "postern_lmtp_socket_directory")));
        n->myhostname = strdup(myhostname);
        n->helo_name = strdup(isempty(helo) ? myhostname : helo);
        n->bind_address = strdup(strempty(smtp_conf_get(c, n, "bind_address")));
        if (!n->queue_directory || !n->myhostname || !n->helo_name || !n->bind_address || !n->inet_interfaces ||
            !n->lmtp_socket_directory) {
                smtp_settings_done(n);
                return log_oom();
        }
        n->connect_timeout = smtp_conf_usec(c, n, "connect_timeout");
        n->tcp_port = (unsigned) smtp_conf_int(c, n, "tcp_port");
        n->helo_timeout = smtp_conf_usec(c, n, lmtp ? "lhlo_timeout" : "helo_timeout");
        n->mail_timeout = smtp_conf_usec(c, n, "mail_timeout");
        n->rcpt_timeout = smtp_conf_usec(c, n, "rcpt_timeout");
        n->data_init_timeout = smtp_conf_usec(c, n, "data_init_timeout");
        n->data_xfer_timeout = smtp_conf_usec(c, n, "data_xfer_timeout");
        n->data_done_timeout = smtp_conf_usec(c, n, "data_done_timeout");
        n->rset_timeout = smtp_conf_usec(c, n, "rset_timeout");
        n->quit_timeout = smtp_conf_usec(c, n, "quit_timeout");
        n->cache_time_limit = smtp_conf_usec(c, n, "connection_cache_time_limit");
        n->reuse_time_limit = smtp_conf_usec(c, n, "connection_reuse_time_limit");
        n->reuse_count_limit = (unsigned) smtp_conf_int(c, n, "connection_reuse_count_limit");
        n->mx_session_limit = (unsigned) smtp_conf_int(c, n, "mx_session_limit");
        n->send_xforward = smtp_conf_bool(c, n, "send_xforward_command");
        note_read(n, "requiretls_enable");
        n->requiretls = conf_get_bool(c, n->transport, "requiretls_enable");
        const char *target = strempty(smtp_conf_get(c, n, "address_verify_target"));
        if (!streq(target, "rcpt") && !streq(target, "data")) {
                log_error("%s%s%s_address_verify_target = %s: expected rcpt or data", strempty(n->transport),
                          n->transport ? "/" : "", prefix, target);
                smtp_settings_done(n);
                return -EINVAL;
        }
        n->verify_target_data = streq(target, "data");
        if (smtp_sts_load(c, n) < 0 || smtp_tls_load(c, n, &n->tls) < 0) {
                smtp_settings_done(n);
                return -ENOMEM;
        }
        unsigned char ab[16];
        if (!isempty(n->bind_address) && inet_pton(AF_INET, n->bind_address, ab) != 1 &&
            inet_pton(AF_INET6, n->bind_address, ab) != 1) {
                log_error("%s%s%s_bind_address = %s: not a numeric IPv4 or IPv6 address", strempty(n->transport),
                          n->transport ? "/" : "", prefix, n->bind_address);
                smtp_settings_done(n);
                return -EINVAL;
        }
        int r = smtp_resolve_load(c, n);
        if (r >= 0)
                r = smtp_dane_load(c, n);
        if (r >= 0)
                r = smtp_sasl_load(c, n, &n->sasl, &n->notes);
        if (r < 0) {
                smtp_settings_done(n);
                return r;
        }
        return 0;
}

void smtp_config_done(SmtpConfig *cfg) {
        smtp_settings_done(&cfg->side[0]);
        smtp_settings_done(&cfg->side[1]);
        for (size_t i = 0; i < cfg->n_variants; i++)
                smtp_settings_done(&cfg->variants[i]);
        free(cfg->variants);
        *cfg = (SmtpConfig) {};
}

static bool strv_has(char **v, const char *s) {
        for (; v && *v; v++)
                if (streq(*v, s))
                        return true;
        return false;
}

int smtp_note_add(char ***notes, char *note) {
        if (strv_has(*notes, note)) {
                free(note);
                return 0;
        }
        size_t n = 0;
        while (*notes && (*notes)[n])
                n++;
        char **v = realloc(*notes, (n + 2) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        v[n] = note;
        v[n + 1] = NULL;
        *notes = v;
        return 0;
}

static int notef(char ***notes, const char *fmt, ...) _printf_(2, 3);
static int notef(char ***notes, const char *fmt, ...) {
        char *s = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        r = smtp_note_add(notes, s);
        if (r < 0)
                free(s);
        return r;
}

/* Moves the notes a settings load left in s to *warnings. */
static int take_notes(SmtpSettings *s, char ***warnings) {
        for (char **n = s->notes; n && *n; n++) {
                int r = smtp_note_add(warnings, *n);
                if (r < 0)
                        return r;
                *n = NULL;
        }
        s->notes = strv_free(s->notes);
        return 0;
}

/* The variant of master.cf entry e of m (path: the file, for messages) into *ret; 0 when it has no
 * override postern-smtp applies (no variant needed), 1 with *ret filled. Problems go to *warnings
 * ("not supported") and *errors (the transport is unavailable). */
static int variant_load(Conf *c, const char *path, const MasterCf *m, const MasterEntry *e, SmtpSettings *ret,
                        char ***warnings, char ***errors) {
        SmtpSettings v = { .prefix = streq(e->command, "lmtp") ? "lmtp" : "smtp", .recording = true };
        size_t applied = 0;
        int r;

        if (!(v.transport = strdup(e->service)))
                return -ENOMEM;
        for (size_t i = 0; i < e->n_options; i++) {
                const MasterOption *o = &e->options[i];
                _cleanup_free_ char *name = NULL, *why = NULL;
                if (streq(o->name, "syslog_name")) {
                        r = notef(warnings, "%s:%u: %s: not supported: -o syslog_name on %s (postern-smtp logs "
                                  "every transport's deliveries as postern/smtp)", path, e->line, e->service,
                                  e->service);
                        if (r < 0)
                                goto fail;
                        continue;
                }
                if (master_cf_transport_param(m, o->name)) {
                        r = notef(warnings, "%s:%u: %s: not supported: -o %s on %s (a queue manager setting: "
                                  "postern-qmgr reads it from main.cf only; set it there)", path, e->line,
                                  e->service, o->name, e->service);
                        if (r < 0)
                                goto fail;
                        continue;
                }
                if (asprintf(&name, "%s/%s", e->service, o->name) < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = conf_set(c, name, o->value, &why);
                if (r == -ENOMEM)
                        goto fail;
                if (r == -ENOENT || (r == -EINVAL && why && streq(why, "invalid parameter name")))
                        r = notef(warnings, "%s:%u: %s: not supported: -o %s on %s (%s)", path, e->line,
                                  e->service, o->name, e->service, r == -ENOENT ? "a parameter Postern does not know" :
                                  "not a parameter name");
                else if (r < 0) {
                        r = notef(errors, "%s:%u: %s: -o %s=%s: %s", path, e->line, e->service, o->name, o->value,
                                  why ? why : "invalid value");
                        if (r >= 0 && !v.unavailable && asprintf(&v.unavailable, "mail transport unavailable: "
                                                                 "master.cf entry %s: -o %s=%s: %s", e->service,
                                                                 o->name, o->value, why ? why : "invalid value") < 0)
                                r = -ENOMEM;
                } else
                        applied++;
                if (r < 0)
                        goto fail;
        }
        if (v.unavailable) {
                *ret = v;
                return 1;
        }
        if (applied == 0) {
                smtp_settings_done(&v);
                return 0;
        }
        if (settings_load(c, &v) < 0) {
                /* settings_load() logged the value it rejected and freed v */
                v = (SmtpSettings) { .prefix = streq(e->command, "lmtp") ? "lmtp" : "smtp" };
                if (!(v.transport = strdup(e->service)) ||
                    asprintf(&v.unavailable, "mail transport unavailable: master.cf entry %s: its -o "
                             "settings are invalid", e->service) < 0) {
                        v.unavailable = NULL;
                        r = -ENOMEM;
                        goto fail;
                }
                if ((r = notef(errors, "%s:%u: %s: its -o settings are invalid (see above)", path, e->line,
                               e->service)) < 0)
                        goto fail;
                *ret = v;
                return 1;
        }
        if (v.record_error || take_notes(&v, warnings) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        for (size_t i = 0; i < e->n_options; i++) {
                const MasterOption *o = &e->options[i];
                char p[300];
                snprintf(p, sizeof(p), "%s/%s", e->service, o->name);
                /* Set but not read: another daemon's parameter, or a process-wide one. */
                if (!streq(o->name, "syslog_name") && conf_get_raw(c, p, NULL) && !strv_has(v.read, o->name) &&
                    (r = notef(warnings, "%s:%u: %s: not supported: -o %s on %s (postern-smtp does not read it "
                               "for an %s transport, or only for all transports together)", path, e->line,
                               e->service, o->name, e->service, e->command)) < 0)
                        goto fail;
        }
        v.read = strv_free(v.read);
        v.recording = false;
        *ret = v;
        return 1;
fail:
        smtp_settings_done(&v);
        return r;
}

/* Loads the plain sides and the variants of $config_directory/master.cf's smtp and lmtp
 * transports (a master.cf that does not parse: no variants, its error in *warnings).
 * *warnings and *errors receive NULL-terminated lists (possibly NULL) for the caller to log or
 * print; only a failure of the plain sides or memory fails the load. */
int smtp_config_load(Conf *c, SmtpConfig *ret, char ***warnings, char ***errors) {
        SmtpConfig n = { .side = { { .prefix = "smtp" }, { .prefix = "lmtp" } } };
        _cleanup_free_ char *path = NULL, *merr = NULL;
        MasterCf m = {};
        int r;

        *warnings = *errors = NULL;
        if ((r = settings_load(c, &n.side[0])) < 0)
                return r;
        if ((r = settings_load(c, &n.side[1])) < 0) {
                smtp_settings_done(&n.side[0]);
                return r;
        }
        if (take_notes(&n.side[0], warnings) < 0 || take_notes(&n.side[1], warnings) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        if (asprintf(&path, "%s/master.cf", strempty(conf_get(c, "config_directory"))) < 0) {
                path = NULL;
                r = -ENOMEM;
                goto fail;
        }
        r = master_cf_load(path, &m, &merr);
        if (r < 0 && r != -ENOENT && (r = notef(warnings, "%s; its smtp and lmtp transports are not used",
                                                merr ? merr : strerror(-r))) < 0)
                goto fail;
        for (size_t i = 0; i < m.n; i++) {
                const MasterEntry *e = &m.entries[i];
                if (e->kind != MASTER_TRANSPORT || (!streq(e->command, "smtp") && !streq(e->command, "lmtp")))
                        continue;
                SmtpSettings *grown = realloc(n.variants, (n.n_variants + 1) * sizeof(SmtpSettings));
                if (!grown) {
                        r = -ENOMEM;
                        goto fail;
                }
                n.variants = grown;
                r = variant_load(c, path, &m, e, &n.variants[n.n_variants], warnings, errors);
                if (r < 0)
                        goto fail;
                n.n_variants += r;
        }
        master_cf_done(&m);
        *ret = n;
        return 0;
fail:
        master_cf_done(&m);
        smtp_config_done(&n);
        *warnings = strv_free(*warnings);
        *errors = strv_free(*errors);
        return r == -ENOMEM ? log_oom() : r;
}

/* The settings for a delivery on that side for that transport: its variant, or the side's. */
SmtpSettings *smtp_config_settings(SmtpConfig *cfg, bool lmtp, const char *transport) {
        if (transport)
                for (size_t i = 0; i < cfg->n_variants; i++)
                        if (streq(cfg->variants[i].transport, transport) &&
                            streq(cfg->variants[i].prefix, lmtp ? "lmtp" : "smtp"))
                                return &cfg->variants[i];
        return &cfg->side[lmtp ? 1 : 0];
}
