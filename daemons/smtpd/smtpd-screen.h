/* smtpd-screen.h — the screening stage (Postfix's postscreen(8)) of postern-smtpd: its settings,
 * its cache of passed clients (smtpd-screen-cache.c) and the pure parts of its decisions, which
 * unit tests reach without sockets. The stage itself (a session phase before "connect from") is
 * smtpd-screen.c; smtpd.h declares its entry points. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "basic/macro.h"
#include "conf/table.h"

/* postscreen_*_action */
enum { SCREEN_ACTION_IGNORE, SCREEN_ACTION_ENFORCE, SCREEN_ACTION_DROP };

/* The deep protocol tests after the greeting (smtpd-screen-engine.c), as bits. */
enum {
        SCREEN_TEST_PIPELINING = 1 << 0,
        SCREEN_TEST_NON_SMTP = 1 << 1,
        SCREEN_TEST_BARE_NEWLINE = 1 << 2,
};

/* One deep test's settings: postscreen_<test>_enable, _action, _ttl. */
typedef struct ScreenDeepTest {
        bool enable;
        int action;                     /* SCREEN_ACTION_* */
        long long ttl;                  /* seconds */
} ScreenDeepTest;

/* One element of postscreen_access_list: permit_mynetworks, or a table keyed by the client
 * address whose values are permit, reject or dunno. */
typedef struct ScreenAccess {
        bool mynetworks;
        Table *table;
} ScreenAccess;

/* The answer of postscreen_access_list for one client. */
typedef enum ScreenVerdict {
        SCREEN_DUNNO,          /* no element decided: run the tests */
        SCREEN_PERMIT,         /* allowlisted: straight to the SMTP session */
        SCREEN_REJECT,         /* denylisted: postscreen_denylist_action */
} ScreenVerdict;

/* One entry of postscreen_dnsbl_sites: domain[=filter][*weight]. */
typedef struct ScreenSite {
        char *domain;
        char *filter;                   /* NULL: any answer */
        int weight;
        size_t domain_index;            /* into SmtpdScreenSettings.dnsbl_domains */
} ScreenSite;

typedef struct SmtpdScreenSettings {
        bool enable;                    /* postern_postscreen_enable */
        ScreenAccess *access;           /* postscreen_access_list */
        size_t n_access;
        int denylist_action;            /* SCREEN_ACTION_*: postscreen_denylist_action */
        int greet_action;               /* postscreen_greet_action */
        char *greet_banner;             /* postscreen_greet_banner ("" none) */
        unsigned long long greet_wait_usec;
        long long greet_ttl;            /* seconds */
        char *cache_map;                /* postscreen_cache_map as written */
        char *queue_directory;          /* where the cache goes for Postfix's map types */
        long long cache_retention;      /* seconds */
        long long cache_cleanup_interval;
        ScreenSite *sites;              /* postscreen_dnsbl_sites */
        size_t n_sites;
        char **dnsbl_domains;           /* each site domain once (strv): one query each */
        size_t n_dnsbl_domains;
        unsigned dnsbl_threshold;
        int dnsbl_allowlist_threshold;
        int dnsbl_action;
        long long dnsbl_min_ttl, dnsbl_max_ttl;   /* seconds */
        unsigned long long dnsbl_timeout_usec;
        TableList *dnsbl_reply_map;     /* NULL: none */
        /* the deep tests and their SMTP engine (smtpd-screen-engine.c) */
        ScreenDeepTest pipelining, non_smtp, bare_newline;
        char **forbidden_commands;      /* postscreen_forbidden_commands (strv) */
        unsigned command_count_limit;
        unsigned long long command_time_limit_usec;
        bool helo_required;
        bool disable_vrfy;
        char **discard_ehlo;            /* postscreen_discard_ehlo_keywords (strv) */
        unsigned ehlo_discard;          /* ... as EHLO_* bits */
        TableList *ehlo_discard_maps;   /* postscreen_discard_ehlo_keyword_address_maps; NULL: none */
        TableList *command_filter;      /* postscreen_command_filter; NULL: none */
        char *reject_footer;            /* postscreen_reject_footer, unexpanded */
        TableList *reject_footer_maps;  /* NULL: none */
        int tls_level;                  /* TLS_LEVEL_*: postscreen_tls_security_level */
        /* the stage's limits */
        unsigned client_connection_count_limit;   /* 0: none */
        unsigned pre_queue_limit, post_queue_limit;
} SmtpdScreenSettings;

/* The deep tests that are enabled (SCREEN_TEST_* bits). */
unsigned screen_deep_enabled(const SmtpdScreenSettings *st);
/* Whether a command line fails the non-SMTP command test: its first word is one of forbidden
 * (postscreen_forbidden_commands, no case; "Word:" entries too), or it has the form of a message
 * header ("Label:", "Host: x", a label of printable characters but ':' and no space). */
bool screen_forbidden_command(char *const *forbidden, const char *line);

/* The value of an access list table ("permit", "reject", "dunno", any case, maybe followed by
 * text): the verdict, or -EINVAL for anything else. */
int screen_access_value(const char *value, ScreenVerdict *ret);
/* Parses one postscreen_dnsbl_sites entry into ret (domain and filter allocated; domain_index
 * left 0): -EINVAL with *ret_why for an empty domain, a filter that is not four dotted octet
 * patterns, or a weight that is not a whole number. */
int screen_site_parse(const char *text, ScreenSite *ret, const char **ret_why);
void screen_site_done(ScreenSite *s);
/* "sqlite:/path" or "/path" is used, "" is memory; other types (Postfix's btree:, hash:, lmdb:,
 * also behind proxy:) become $queue_directory/postscreen_cache.db (*ret_replaced set). Allocated. */
char *screen_cache_path_for(const char *map, const char *queue_directory, bool *ret_replaced);
/* The client text of the PREGREET log line: at most 100 bytes of what arrived, with CR, LF and
 * other non-printable bytes as C escapes ("EHLO x\r\n"). */
void screen_pregreet_text(const char *data, size_t n, char *buf, size_t size);

/* The cache: one row per client address. */
typedef struct ScreenEntry {
        int64_t greet;                  /* the pregreet pass holds until then (0: never passed) */
        int64_t dnsbl;                  /* the DNSBL pass holds until then (0: never passed) */
        int64_t updated;
        int64_t pipelining, non_smtp, bare_newline;   /* the deep tests' passes, likewise */
} ScreenEntry;
typedef struct ScreenCache ScreenCache;

/* Whether a cached client still skips the tests at now (dnsbl: DNS lists are configured, so
 * their pass must hold too). */
bool screen_cache_fresh(const ScreenEntry *e, bool dnsbl, int64_t now);
/* The enabled deep tests (SCREEN_TEST_* bits) whose pass does not hold at now (e NULL: all). */
unsigned screen_cache_deep_todo(const ScreenEntry *e, unsigned enabled, int64_t now);
/* Opens (creating) the cache at path ("" memory). -EIO with *ret_reason (allocated) when the file
 * is not a usable database, -ENOMEM. */
int screen_cache_open(const char *path, ScreenCache **ret, char **ret_reason);
ScreenCache *screen_cache_free(ScreenCache *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(ScreenCache *, screen_cache_free);
const char *screen_cache_path(const ScreenCache *c);
const char *screen_cache_errmsg(ScreenCache *c);
/* 1 with *ret filled, 0 when the address has no entry, -EIO. */
int screen_cache_get(ScreenCache *c, const char *address, ScreenEntry *ret);
int screen_cache_put(ScreenCache *c, const char *address, const ScreenEntry *e);
/* Deletes at most batch entries that expired before now - retention; how many, or -EIO. */
int screen_cache_cleanup_batch(ScreenCache *c, int64_t now, int64_t retention, unsigned batch);
