/* smtpd-screen.c — the screening stage: Postfix's postscreen(8) as a phase of a port-25 session
 * of postern-smtpd, before "connect from", the client name lookup, postern-anvil and the
 * greeting. The socket never leaves the process: a client that passes simply becomes an SMTP
 * session (docs/architecture.md, "Screening clients", says why).
 *
 * Entry points (smtpd.h): smtpd_screen_start() at connect, after the PROXY header if any, when
 * postern_postscreen_enable is on for the listener (smtp listeners only); smtpd_screen_on_io()
 * and smtpd_screen_timeout() while the session is in PHASE_SCREEN; smtpd_screen_session_free()
 * when a session ends during the stage. It owns the per-session SmtpdScreen state and the
 * server's cache of passed clients (smtpd-screen-cache.c) with its cleanup timer.
 *
 * Order, as postscreen's: postscreen_access_list (permit: ALLOWLISTED, straight on; reject:
 * DENYLISTED and postscreen_denylist_action), then the cache (all tests still valid: PASS OLD,
 * straight on), then the DNS lists (smtpd-screen-dnsbl.c: asked in parallel, scored when the
 * wait ends) and the pregreet test: the "220-" teaser of postscreen_greet_banner, and a
 * timer of postscreen_greet_wait on the event loop (no other session waits for it). A client that
 * sends anything before the wait ends is logged as PREGREET and met with
 * postscreen_greet_action. At the end of the wait a DNSBL score at the threshold is logged
 * (DNSBL rank) and met with postscreen_dnsbl_action; a client that passed everything is cached
 * (PASS NEW) and becomes a session; one that failed an "enforce" test
 * becomes a session whose every RCPT is refused with the test's 550 (Postfix's dummy SMTP
 * engine does the same: the client never delivers); "drop" answers 521 at once and closes.
 * What the client sent before the greeting is discarded, as postscreen does.
 * When a deep protocol test (pipelining, non-SMTP command, bare newline) is enabled and its
 * cached pass has expired, the client goes to the stage's SMTP engine (smtpd-screen-engine.c)
 * instead of the session: straight after the cache when only deep tests are due, else after the
 * wait; the engine reports back through smtpd_screen_deep_done() (cache, PASS NEW) at RCPT.
 * The limits (postscreen_client_connection_count_limit, _post_queue_limit before the access
 * list, _pre_queue_limit after the cache, as postscreen) count Server.screen_stage/screen_post.
 *
 * Log lines (postscreen's words, the client as [ADDR]:PORT):
 *   CONNECT from [ADDR]:PORT to [SERVER]:PORT
 *   ALLOWLISTED [ADDR]:PORT / DENYLISTED [ADDR]:PORT
 *   PASS OLD [ADDR]:PORT / PASS NEW [ADDR]:PORT
 *   PREGREET 11 after 0.12 from [ADDR]:PORT: EHLO x\r\n
 *   DNSBL rank 3 for [ADDR]:PORT
 *   HANGUP after 1.2 from [ADDR]:PORT in tests before SMTP handshake
 *   DISCONNECT [ADDR]:PORT          (the stage closed the connection, or the client did)
 *   cache /var/spool/postern/postscreen_cache.db full cleanup: dropped=N entries */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <strings.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtpd.h"
#include "conf/conf-fields.h"
#include "conf/params.h"
#include "log/log.h"

#define CLEANUP_BATCH 1000
#define PREGREET_KEEP 512   /* bytes of a pregreet kept for the log line; the rest is dropped */


struct SmtpdScreen {
        usec_t started;                 /* CLOCK_MONOTONIC at connect */
        char peer[96];                  /* "[ADDR]:PORT" */
        bool pregreet;                  /* the client talked before the greeting */
        bool failed;                    /* a test failed (no PASS NEW, nothing cached) */
        char *refusal;                  /* an "enforce" failure: every RCPT gets this */
        ScreenDnsbl *dnsbl;             /* the DNS list lookups (smtpd-screen-dnsbl.c), or NULL */
        ScreenEntry entry;              /* the client's cache entry (zero: none), updated as it passes */
        unsigned deep_todo;             /* the deep tests it must take (SCREEN_TEST_*) */
        ScreenEngine *engine;           /* while they run (smtpd-screen-engine.c), else NULL */
        bool no_cache;                  /* connected to an address off postscreen_allowlist_interfaces */
};

static void *mfree(void *p) {
        free(p);
        return NULL;
}

/* The session leaves the stage (let on, or freed). */
static void screen_end(Session *s) {
        SmtpdScreen *sc = TAKE_PTR(s->screen);
        if (!sc)
                return;
        s->server->screen_stage--;
        screen_dnsbl_free(sc->dnsbl);
        screen_engine_free(sc->engine);
        free(sc->refusal);
        free(sc);
}

/* The stage lets the session on to its SMTP session. postscreen_post_queue_limit counts it unless
 * it failed an "enforce" test: postscreen holds such a client in its own engine, not in an smtpd
 * process, so a crowd of pregreeting bots never locks clean clients out. */
static void screen_let_on(Session *s) {
        screen_end(s);
        if (s->client.screen_refusal)
                return;
        s->screen_post = true;
        s->server->screen_post++;
}

/* Records the first "enforce" failure's reply. */
static void screen_refuse(SmtpdScreen *sc, const char *reply) {
        if (!sc->refusal && !(sc->refusal = strdup(reply)))
                log_oom();   /* the client is then let on: a refusal lost, never mail */
}

/* ---- settings ------------------------------------------------------------------------------ */

static const ConfFieldEnum action_values[] = {
        { "ignore", SCREEN_ACTION_IGNORE }, { "enforce", SCREEN_ACTION_ENFORCE }, { "drop", SCREEN_ACTION_DROP }, {},
};

#define F(...) CONF_FIELD(SmtpdSettings, __VA_ARGS__)
static const ConfField screen_fields[] = {
        F("postern_postscreen_enable", BOOL, screen.enable),
        F("postscreen_denylist_action", ENUM, screen.denylist_action, .values = action_values),
        F("postscreen_greet_action", ENUM, screen.greet_action, .values = action_values),
        F("postscreen_greet_banner", STRING, screen.greet_banner),
        F("postscreen_greet_wait", USEC, screen.greet_wait_usec),
        F("postscreen_greet_ttl", SECONDS, screen.greet_ttl),
        F("postscreen_cache_map", STRING, screen.cache_map),
        F("queue_directory", STRING, screen.queue_directory),
        F("postscreen_dnsbl_threshold", UINT, screen.dnsbl_threshold),
        F("postscreen_dnsbl_allowlist_threshold", INT, screen.dnsbl_allowlist_threshold),
        F("postscreen_dnsbl_action", ENUM, screen.dnsbl_action, .values = action_values),
        F("postscreen_dnsbl_min_ttl", SECONDS, screen.dnsbl_min_ttl),
        F("postscreen_dnsbl_max_ttl", SECONDS, screen.dnsbl_max_ttl),
        F("postscreen_dnsbl_timeout", USEC, screen.dnsbl_timeout_usec),
        F("postscreen_cache_retention_time", SECONDS, screen.cache_retention),
        F("postscreen_cache_cleanup_interval", SECONDS, screen.cache_cleanup_interval),
        F("postscreen_pipelining_enable", BOOL, screen.pipelining.enable),
        F("postscreen_pipelining_action", ENUM, screen.pipelining.action, .values = action_values),
        F("postscreen_pipelining_ttl", SECONDS, screen.pipelining.ttl),
        F("postscreen_non_smtp_command_enable", BOOL, screen.non_smtp.enable),
        F("postscreen_non_smtp_command_action", ENUM, screen.non_smtp.action, .values = action_values),
        F("postscreen_non_smtp_command_ttl", SECONDS, screen.non_smtp.ttl),
        F("postscreen_bare_newline_enable", BOOL, screen.bare_newline.enable),
        F("postscreen_bare_newline_action", ENUM, screen.bare_newline.action, .values = action_values),
        F("postscreen_bare_newline_ttl", SECONDS, screen.bare_newline.ttl),
        F("postscreen_forbidden_commands", LIST, screen.forbidden_commands),
        F("postscreen_command_count_limit", UINT, screen.command_count_limit),
        F("postscreen_command_time_limit", USEC, screen.command_time_limit_usec),
        F("postscreen_helo_required", BOOL, screen.helo_required),
        F("postscreen_disable_vrfy_command", BOOL, screen.disable_vrfy),
        F("postscreen_discard_ehlo_keywords", LIST, screen.discard_ehlo),
        F("postscreen_discard_ehlo_keyword_address_maps", TABLES, screen.ehlo_discard_maps),
        F("postscreen_command_filter", TABLES, screen.command_filter),
        F("postscreen_reject_footer", RAW, screen.reject_footer),
        F("postscreen_reject_footer_maps", TABLES, screen.reject_footer_maps),
        F("postscreen_client_connection_count_limit", UINT, screen.client_connection_count_limit),
        F("postscreen_pre_queue_limit", UINT, screen.pre_queue_limit),
        F("postscreen_post_queue_limit", UINT, screen.post_queue_limit),
};
#undef F

int screen_access_value(const char *value, ScreenVerdict *ret) {
        static const struct { const char *word; ScreenVerdict v; } words[] = {
                { "permit", SCREEN_PERMIT }, { "reject", SCREEN_REJECT }, { "dunno", SCREEN_DUNNO },
        };
        for (size_t i = 0; i < ELEMENTSOF(words); i++) {
                size_t n = strlen(words[i].word);
                if (strncasecmp(value, words[i].word, n) == 0 && (value[n] == '\0' || isspace((unsigned char) value[n]))) {
                        *ret = words[i].v;
                        return 0;
                }
        }
        return -EINVAL;
}

char *screen_cache_path_for(const char *map, const char *queue_directory, bool *ret_replaced) {
        char *p = NULL;
        *ret_replaced = false;
        if (isempty(map))
                return strdup("");
        if (map[0] == '/')
                return strdup(map);
        if (startswith(map, "sqlite:"))
                return strdup(map + strlen("sqlite:"));
        *ret_replaced = true;
        return asprintf(&p, "%s/postscreen_cache.db", strempty(queue_directory)) < 0 ? NULL : p;
}

void screen_pregreet_text(const char *data, size_t n, char *buf, size_t size) {
        size_t k = 0;
        for (size_t i = 0; i < n && i < 100 && k + 5 < size; i++) {
                unsigned char c = (unsigned char) data[i];
                if (c == '\r')
                        k += (size_t) snprintf(buf + k, size - k, "\\r");
                else if (c == '\n')
                        k += (size_t) snprintf(buf + k, size - k, "\\n");
                else if (isprint(c) && c != '\\')
                        buf[k++] = (char) c;
                else
                        k += (size_t) snprintf(buf + k, size - k, "\\%03o", c);
        }
        buf[MIN(k, size - 1)] = '\0';
}

static int access_list_parse(Conf *c, const char *listener, SmtpdScreenSettings *s) {
        _cleanup_strv_free_ char **list = conf_get_list(c, listener, "postscreen_access_list");
        if (!list)
                return log_oom();
        for (char **i = list; *i; i++) {
                ScreenAccess a = {};
                if (streq(*i, "permit_mynetworks"))
                        a.mynetworks = true;
                else if (strchr(*i, ':')) {
                        _cleanup_free_ char *why = NULL;
                        int r = table_open(*i, 0, &a.table, &why);
                        if (r < 0)
                                return log_error_errno(r, "postscreen_access_list: cannot open table \"%s\": %s", *i,
                                                       why ? why : "failed");
                } else
                        return log_error_errno(-EINVAL, "postscreen_access_list: unsupported element \"%s\" "
                                               "(permit_mynetworks or type:table)", *i);
                ScreenAccess *v = reallocarray(s->access, s->n_access + 1, sizeof(ScreenAccess));
                if (!v) {
                        table_free(a.table);
                        return log_oom();
                }
                s->access = v;
                s->access[s->n_access++] = a;
        }
        return 0;
}

#define UNSUPPORTED_PREFIX "Accepted and ignored: not supported yet: "

/* A postscreen_* parameter that main.cf sets and the stage does not act on: said by every
 * snapshot that screens, with the registry's reason. */
static void note_unsupported(const char *name, const char *raw, void *userdata) {
        const char *slash = strchr(name, '/'), *base = slash ? slash + 1 : name;
        const ParamDef *p = startswith(base, "postscreen_") ? param_lookup(base) : NULL;
        const char *why = p ? startswith(p->description, UNSUPPORTED_PREFIX) : NULL;
        if (why)
                log_warning("not supported: %s (%.*s)", name, (int) strcspn(why, ";"), why);
}

/* postscreen_tls_security_level: left at its default, smtpd's level as smtpd-tls.c settled it
 * (with the obsolete smtpd_use_tls and smtpd_enforce_tls); else none (or empty), may, encrypt. */
static int tls_level_parse(Conf *c, const char *listener, SmtpdSettings *s) {
        int explicit_level = conf_is_explicit(c, listener, "postscreen_tls_security_level");
        if (explicit_level < 0)
                return log_oom();
        const char *v = conf_get_listener(c, listener, "postscreen_tls_security_level");
        if (!explicit_level || streq(strempty(v), strempty(conf_get_listener(c, listener, "smtpd_tls_security_level"))))
                s->screen.tls_level = s->tls_level;
        else if (isempty(v) || streq(v, "none"))
                s->screen.tls_level = TLS_LEVEL_NONE;
        else if (streq(v, "may"))
                s->screen.tls_level = TLS_LEVEL_MAY;
        else if (streq(v, "encrypt"))
                s->screen.tls_level = TLS_LEVEL_ENCRYPT;
        else
                return log_error_errno(-EINVAL, "postscreen_tls_security_level = %s: none, may or encrypt", v);
        return 0;
}

int smtpd_screen_settings(Conf *c, const char *listener, SmtpdSettings *s) {
        int r = conf_fields_load(c, listener, screen_fields, ELEMENTSOF(screen_fields), s);
        if (r < 0)
                return r;
        if (s->screen.enable)   /* said by the snapshot that screens (once, as a rule) */
                conf_foreach_explicit(c, note_unsupported, NULL);
        if ((r = access_list_parse(c, listener, &s->screen)) < 0)
                return r;
        s->screen.ehlo_discard = command_ehlo_mask(s->screen.discard_ehlo);
        if ((r = tls_level_parse(c, listener, s)) < 0)
                return r;
        _cleanup_strv_free_ char **ifs = conf_get_list(c, listener, "postscreen_allowlist_interfaces");
        if (!ifs)
                return log_oom();
        if ((r = smtpd_netlist_parse("postscreen_allowlist_interfaces", ifs, &s->screen_allowlist_if)) < 0)
                return r;
        return smtpd_screen_dnsbl_settings(c, listener, &s->screen);
}

void smtpd_screen_settings_done(SmtpdSettings *s) {
        conf_fields_done(screen_fields, ELEMENTSOF(screen_fields), s);
        smtpd_netlist_done(&s->screen_allowlist_if);
        for (size_t i = 0; i < s->screen.n_access; i++)
                table_free(s->screen.access[i].table);
        free(s->screen.access);
        s->screen.access = NULL;
        s->screen.n_access = 0;
        smtpd_screen_dnsbl_settings_done(&s->screen);
}

/* ---- the cache of passed clients ------------------------------------------------------------ */

static int64_t now_seconds(void) {
        return (int64_t) time(NULL);
}

static int on_cleanup(sd_event_source *src, uint64_t usec, void *userdata) {
        Server *srv = userdata;
        const SmtpdScreenSettings *st = &srv->screen_settings->screen;
        int n = screen_cache_cleanup_batch(srv->screen_cache, now_seconds(), st->cache_retention, CLEANUP_BATCH);
        if (n < 0)
                log_warning("cache %s cleanup failed: %s", screen_cache_path(srv->screen_cache),
                            screen_cache_errmsg(srv->screen_cache));
        else
                srv->screen_dropped += (unsigned) n;
        usec_t next = (usec_t) st->cache_cleanup_interval * USEC_PER_SEC;
        if (n == CLEANUP_BATCH)
                next = USEC_PER_SEC / 10;   /* more to delete: soon, after other work */
        else {
                log_info("cache %s full cleanup: dropped=%u entries", screen_cache_path(srv->screen_cache),
                         srv->screen_dropped);
                srv->screen_dropped = 0;
        }
        (void) sd_event_source_set_time_relative(src, next);
        (void) sd_event_source_set_enabled(src, SD_EVENT_ONESHOT);
        return 0;
}

/* The cache the session's settings name, opened on first use (and again when a reload names
 * another file); NULL when it cannot be used: the tests then run for every client. */
static ScreenCache *cache_for(Session *s) {
        Server *srv = s->server;
        const SmtpdScreenSettings *st = &s->settings->screen;
        bool replaced;
        _cleanup_free_ char *path = screen_cache_path_for(st->cache_map, st->queue_directory, &replaced);
        if (!path) {
                log_oom();
                return NULL;
        }
        if (srv->screen_cache && streq(screen_cache_path(srv->screen_cache), path))
                return srv->screen_cache;
        if (srv->screen_cache_failed && streq(srv->screen_cache_failed, path))
                return NULL;
        smtpd_screen_shutdown(srv);
        if (replaced)
                log_notice("not supported: postscreen_cache_map type of \"%s\" (Postern keeps the cache in SQLite): "
                           "using %s", st->cache_map, path);
        _cleanup_free_ char *why = NULL;
        int r = screen_cache_open(path, &srv->screen_cache, &why);
        if (r < 0) {
                log_error("postscreen_cache_map: cannot use %s: %s; every client is tested at every connection",
                          *path ? path : "(memory)", why ? why : strerror(-r));
                srv->screen_cache_failed = TAKE_PTR(path);
                return NULL;
        }
        srv->screen_settings = smtpd_settings_ref(s->settings);
        if (st->cache_cleanup_interval > 0 &&
            sd_event_add_time_relative(srv->event, &srv->screen_cleanup, CLOCK_MONOTONIC,
                                       (usec_t) st->cache_cleanup_interval * USEC_PER_SEC, USEC_PER_SEC,
                                       on_cleanup, srv) < 0)
                log_warning("postscreen_cache_cleanup_interval: cannot start the cleanup timer");
        return srv->screen_cache;
}

void smtpd_screen_shutdown(Server *srv) {
        srv->screen_cleanup = sd_event_source_disable_unref(srv->screen_cleanup);
        srv->screen_cache = screen_cache_free(srv->screen_cache);
        srv->screen_settings = smtpd_settings_unref(srv->screen_settings);
        srv->screen_cache_failed = mfree(srv->screen_cache_failed);
        srv->screen_dropped = 0;
}

/* ---- the stage ------------------------------------------------------------------------------ */

void smtpd_screen_log(Session *s, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        log_fields(LOG_INFO, &(LogFields) { .client_address = s->client.addr }, "%s", buf);
}
#define screen_log smtpd_screen_log

const char *smtpd_screen_peer(Session *s) {
        return s->screen->peer;
}

/* Seconds since connect as postscreen writes them: "0.12", "1.2", "12". */
void smtpd_screen_elapsed(Session *s, char *buf, size_t n) {
        double t = (double) (now_usec(CLOCK_MONOTONIC) - s->screen->started) / USEC_PER_SEC;
        snprintf(buf, n, t < 1 ? "%.2f" : t < 10 ? "%.1f" : "%.0f", t);
}

/* Ends the stage: the session goes on to "connect from" and the greeting, carrying an
 * "enforce" refusal if a test failed that way. May free the session. */
static void screen_pass(Session *s) {
        s->client.screen_refusal = TAKE_PTR(s->screen->refusal);
        screen_let_on(s);
        session_screen_done(s);
}

/* "drop": 521 now, then close (DISCONNECT is logged when the session is freed). */
void smtpd_screen_drop(Session *s, const char *reply) {
        session_reply(s, "%s", reply);
        session_close_after_flush(s);
        (void) session_flush(s);
}
#define screen_drop smtpd_screen_drop

/* A connect-time limit refuses the client: the log line and 421, then close. */
static void screen_limit(Session *s, const char *why, const char *reply) {
        screen_log(s, "NOQUEUE: reject: CONNECT from %s: %s", s->screen->peer, why);
        screen_drop(s, reply);
}

/* How many connections of the client are in the stage (this one included). */
static unsigned client_concurrency(Session *s) {
        unsigned n = 0;
        for (Session *i = s->server->sessions; i; i = i->next)
                if (i->screen && streq(i->client.addr, s->client.addr))
                        n++;
        return n;
}

/* The shortest of the tests' TTLs: how long an "ignore" failure of a deep test is passed. */
static int64_t min_ttl(const SmtpdScreenSettings *st) {
        int64_t t = MIN(st->greet_ttl, st->dnsbl_max_ttl);
        t = MIN(t, MIN(st->pipelining.ttl, st->non_smtp.ttl));
        return MIN(t, st->bare_newline.ttl);
}

static void cache_store(Session *s) {
        if (s->screen->no_cache)
                return;   /* not on postscreen_allowlist_interfaces: tested again next time */
        ScreenCache *cache = cache_for(s);
        if (cache && screen_cache_put(cache, s->client.addr, &s->screen->entry) < 0)
                log_warning("cache %s update for %s failed: %s", screen_cache_path(cache), s->client.addr,
                            screen_cache_errmsg(cache));
}

void smtpd_screen_deep_done(Session *s, unsigned passed, unsigned ignored, bool failed) {
        SmtpdScreen *sc = s->screen;
        const SmtpdScreenSettings *st = &s->settings->screen;
        if (sc->failed || failed)
                return;   /* nothing is cached for a client that failed a test */
        int64_t now = now_seconds(), brief = now + min_ttl(st);
        ScreenEntry *e = &sc->entry;
        if (passed & SCREEN_TEST_PIPELINING)
                e->pipelining = ignored & SCREEN_TEST_PIPELINING ? brief : now + st->pipelining.ttl;
        if (passed & SCREEN_TEST_NON_SMTP)
                e->non_smtp = ignored & SCREEN_TEST_NON_SMTP ? brief : now + st->non_smtp.ttl;
        if (passed & SCREEN_TEST_BARE_NEWLINE)
                e->bare_newline = ignored & SCREEN_TEST_BARE_NEWLINE ? brief : now + st->bare_newline.ttl;
        for (unsigned bit = 1; bit <= SCREEN_TEST_BARE_NEWLINE; bit <<= 1)   /* ignored, not "passed" */
                if ((ignored & bit) && !(passed & bit)) {
                        if (bit == SCREEN_TEST_PIPELINING)
                                e->pipelining = brief;
                        else if (bit == SCREEN_TEST_NON_SMTP)
                                e->non_smtp = brief;
                        else
                                e->bare_newline = brief;
                }
        e->updated = now;
        cache_store(s);
        screen_log(s, "PASS NEW %s", sc->peer);
}

/* The deep tests begin: the engine answers from now on (the client never reaches the SMTP
 * session in this connection). False when it could not start (out of memory). */
static bool screen_deep_start(Session *s, bool greet) {
        SmtpdScreen *sc = s->screen;
        sc->dnsbl = screen_dnsbl_free(sc->dnsbl);
        sc->engine = screen_engine_start(s, sc->deep_todo, sc->refusal, greet);
        if (!sc->engine)
                return false;
        (void) session_flush(s);   /* the 220; may free the session */
        return true;
}

/* What the access list says: the first element that decides. A table that fails is logged and
 * ends the list undecided (the client is tested, neither allowed nor refused on a guess). */
static ScreenVerdict access_check(Session *s) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        for (size_t i = 0; i < st->n_access; i++) {
                const ScreenAccess *a = &st->access[i];
                if (a->mynetworks) {
                        int r = smtpd_netlist_match(&s->settings->mynetworks, &s->client);
                        if (r > 0)
                                return SCREEN_PERMIT;
                        if (r < 0)
                                return SCREEN_DUNNO;   /* logged by the match */
                        continue;
                }
                _cleanup_free_ char *v = NULL;
                int r = table_lookup(a->table, s->client.addr, &v);
                if (r < 0) {
                        log_warning("postscreen_access_list: %s: table lookup error for %s -- ignoring the remainder "
                                    "of this access list", table_spec(a->table), s->client.addr);
                        return SCREEN_DUNNO;
                }
                if (r == 0)
                        continue;
                ScreenVerdict verdict;
                if (screen_access_value(v, &verdict) < 0) {
                        log_warning("postscreen_access_list: %s: unknown action \"%s\" for %s (permit, reject or dunno) "
                                    "-- ignoring the remainder of this access list", table_spec(a->table), v,
                                    s->client.addr);
                        return SCREEN_DUNNO;
                }
                return verdict;   /* dunno too: the rest of the list is skipped, as in Postfix */
        }
        return SCREEN_DUNNO;
}

static void on_dnsbl_done(Session *s);

/* Whether the client connected to an address of postscreen_allowlist_interfaces (smtpd's address
 * list, matched against the server address; unknown: yes). */
static bool on_allowlist_interface(Session *s) {
        SmtpdClient server = { .family = AF_INET };
        if (inet_pton(AF_INET, s->client.server_addr, server.addr_bytes) != 1) {
                server.family = AF_INET6;
                if (inet_pton(AF_INET6, s->client.server_addr, server.addr_bytes) != 1)
                        return true;
        }
        snprintf(server.addr, sizeof(server.addr), "%s", s->client.server_addr);
        return smtpd_netlist_match(&s->settings->screen_allowlist_if, &server) > 0;
}

bool smtpd_screen_start(Session *s) {
        const SmtpdScreenSettings *st = &s->settings->screen;
        if (!st->enable || s->listener->kind != LISTENER_SMTP || !s->client.family)
                return false;
        SmtpdScreen *sc = calloc(1, sizeof(SmtpdScreen));
        if (!sc) {
                log_oom();
                return false;   /* unscreened rather than refused */
        }
        sc->started = now_usec(CLOCK_MONOTONIC);
        snprintf(sc->peer, sizeof(sc->peer), "[%s]:%u", s->client.addr, s->client.port);
        s->screen = sc;
        s->server->screen_stage++;
        screen_log(s, "CONNECT from %s to [%s]:%u", sc->peer, s->client.server_addr, s->client.server_port);
        sc->no_cache = !on_allowlist_interface(s);

        if (st->client_connection_count_limit > 0 && client_concurrency(s) > st->client_connection_count_limit) {
                char reply[128];
                snprintf(reply, sizeof(reply), "421 4.7.0 Error: too many connections from %s", s->client.addr);
                screen_limit(s, "too many connections", reply);
                return true;
        }
        if (st->post_queue_limit > 0 && s->server->screen_post >= st->post_queue_limit) {
                screen_limit(s, "all server ports busy", "421 4.3.2 All server ports are busy");
                return true;
        }

        switch (access_check(s)) {
        case SCREEN_PERMIT:
                screen_log(s, "ALLOWLISTED %s", sc->peer);
                screen_let_on(s);
                return false;
        case SCREEN_REJECT:
                screen_log(s, "DENYLISTED %s", sc->peer);
                sc->failed = true;
                if (st->denylist_action == SCREEN_ACTION_DROP) {
                        screen_drop(s, "521 5.3.2 Service currently unavailable");
                        return true;
                }
                if (st->denylist_action == SCREEN_ACTION_ENFORCE)
                        screen_refuse(sc, "550 5.3.2 Service currently unavailable");
                break;
        case SCREEN_DUNNO:
                break;
        }

        ScreenCache *cache = sc->failed ? NULL : cache_for(s);
        bool early_fresh = false;
        int64_t now = now_seconds();
        if (cache) {
                int r = screen_cache_get(cache, s->client.addr, &sc->entry);
                if (r < 0)
                        log_warning("cache %s lookup for %s failed: %s", screen_cache_path(cache), s->client.addr,
                                    screen_cache_errmsg(cache));
                if (r <= 0)
                        sc->entry = (ScreenEntry) {};
                early_fresh = r > 0 && screen_cache_fresh(&sc->entry, st->n_sites > 0, now);
        }
        sc->deep_todo = screen_cache_deep_todo(early_fresh || sc->entry.updated ? &sc->entry : NULL,
                                               screen_deep_enabled(st), now);
        if (early_fresh && !sc->deep_todo) {
                screen_log(s, "PASS OLD %s", sc->peer);
                screen_let_on(s);
                return false;
        }

        if (st->pre_queue_limit > 0 && s->server->screen_stage > st->pre_queue_limit) {
                screen_limit(s, "all screening ports busy", "421 4.3.2 All screening ports are busy");
                return true;
        }
        if (early_fresh) {   /* only the deep tests are due: straight to the engine */
                if (!screen_deep_start(s, true)) {
                        screen_let_on(s);
                        return false;
                }
                return true;
        }

        sc->dnsbl = screen_dnsbl_start(s, on_dnsbl_done);   /* in parallel with the wait */
        if (!isempty(st->greet_banner)) {
                session_reply_raw(s, "220-");
                session_reply_raw(s, st->greet_banner);
                session_reply_raw(s, "\r\n");
        }
        session_enter_screen(s, st->greet_wait_usec);
        (void) session_flush(s);   /* the teaser; may free the session (the client is gone) */
        return true;
}

void smtpd_screen_on_io(Session *s) {
        SmtpdScreen *sc = s->screen;
        if (sc->engine) {
                screen_engine_on_io(s, sc->engine);   /* may free the session */
                return;
        }
        char buf[PREGREET_KEEP];
        ssize_t n = smtpd_io_read(s, buf, sizeof(buf));
        if (n == -EAGAIN || n == -EINTR)
                return;
        char t[16];
        smtpd_screen_elapsed(s, t, sizeof(t));
        if (n <= 0) {
                screen_log(s, "HANGUP after %s from %s in tests before SMTP handshake", t, sc->peer);
                session_free(s);
                return;
        }
        if (sc->pregreet)
                return;   /* logged and decided already; the rest is dropped */
        sc->pregreet = sc->failed = true;
        char text[512];
        screen_pregreet_text(buf, (size_t) n, text, sizeof(text));
        screen_log(s, "PREGREET %zd after %s from %s: %s", n, t, sc->peer, text);
        switch (s->settings->screen.greet_action) {
        case SCREEN_ACTION_DROP:
                screen_drop(s, "521 5.5.1 Protocol error");
                return;
        case SCREEN_ACTION_ENFORCE:
                screen_refuse(sc, "550 5.5.1 Protocol error");
                break;
        }
}

/* The verdict at the end of the wait (or when the DNS lists allowlisted the client): the DNSBL
 * score, then PASS NEW and the cache for a client that failed nothing, or the deep tests. May
 * free the session. */
static void screen_verdict(Session *s) {
        SmtpdScreen *sc = s->screen;
        const SmtpdScreenSettings *st = &s->settings->screen;
        ScreenDnsblResult d = screen_dnsbl_result(sc->dnsbl);
        if (sc->dnsbl && d.site && d.score >= (int) st->dnsbl_threshold) {
                screen_log(s, "DNSBL rank %d for %s", d.score, sc->peer);
                sc->failed = true;
                _cleanup_free_ char *name = screen_dnsbl_display_name(st, d.site);
                char reply[512];
                snprintf(reply, sizeof(reply), "%s 5.7.1 Service unavailable; client [%s] blocked using %s",
                         st->dnsbl_action == SCREEN_ACTION_DROP ? "521" : "550", s->client.addr,
                         name ? name : d.site);
                if (st->dnsbl_action == SCREEN_ACTION_DROP) {
                        screen_drop(s, reply);
                        return;
                }
                if (st->dnsbl_action == SCREEN_ACTION_ENFORCE)
                        screen_refuse(sc, reply);
        }
        if (!sc->failed) {
                int64_t now = now_seconds();
                int64_t ttl = d.ttl < 0 ? st->dnsbl_max_ttl : MIN(MAX(d.ttl, st->dnsbl_min_ttl), st->dnsbl_max_ttl);
                sc->entry.greet = now + st->greet_ttl;
                sc->entry.dnsbl = st->n_sites > 0 && sc->dnsbl && d.complete ? now + ttl : 0;
                sc->entry.updated = now;
                if (st->dnsbl_allowlist_threshold < 0 && d.complete && d.score <= st->dnsbl_allowlist_threshold) {
                        /* allowlisted by the DNS lists: the deep tests are skipped, and passed as
                         * long as the lists' pass holds (as postscreen does) */
                        int64_t until = sc->entry.dnsbl ? sc->entry.dnsbl : now + ttl;
                        if (sc->deep_todo & SCREEN_TEST_PIPELINING)
                                sc->entry.pipelining = until;
                        if (sc->deep_todo & SCREEN_TEST_NON_SMTP)
                                sc->entry.non_smtp = until;
                        if (sc->deep_todo & SCREEN_TEST_BARE_NEWLINE)
                                sc->entry.bare_newline = until;
                        sc->deep_todo = 0;
                }
                cache_store(s);   /* the early passes hold even if the deep tests are not finished */
                if (!sc->deep_todo)
                        screen_log(s, "PASS NEW %s", sc->peer);
        }
        if (sc->deep_todo && screen_deep_start(s, !sc->pregreet))
                return;
        screen_pass(s);
}

/* The last DNS list answered: a client whose score reaches the allowlist threshold (negative,
 * DNSWL weights) does not wait out the greeting. */
static void on_dnsbl_done(Session *s) {
        SmtpdScreen *sc = s->screen;
        const SmtpdScreenSettings *st = &s->settings->screen;
        ScreenDnsblResult d = screen_dnsbl_result(sc->dnsbl);
        if (st->dnsbl_allowlist_threshold < 0 && !sc->failed && d.complete && d.score <= st->dnsbl_allowlist_threshold &&
            session_phase(s) == PHASE_SCREEN && !sc->engine)
                screen_verdict(s);
}

void smtpd_screen_tls_established(Session *s) {
        screen_engine_tls_established(s, s->screen->engine);
}

void smtpd_screen_timeout(Session *s) {
        if (s->screen->engine)
                screen_engine_timeout(s, s->screen->engine);   /* postscreen_command_time_limit */
        else
                screen_verdict(s);
}

void smtpd_screen_session_free(Session *s) {
        screen_log(s, "DISCONNECT %s", s->screen->peer);
        screen_end(s);
}
