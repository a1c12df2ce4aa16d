/* test-generator-access.c — the access drop-ins: LoadCredential= for exactly the TLS files the
 * daemons' user cannot read (main.cf's and a master.cf listener's, each once, "%" escaped), none
 * when all are readable; ReadWritePaths= for a moved queue_directory on every queue-writing unit
 * and for virtual_mailbox_base outside postern-local's writable directories; postern-local's
 * network opened for its tables in a database server reached over the network (not ldapi://). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "generator-access.h"
#include "basic/tests.h"

static char dir[] = "/tmp/postern-genaccess.XXXXXX";

static void write_text(const char *name, const char *text) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* Readable: what lies under /etc/ssl/certs. */
static bool fake_readable(const char *path, void *ud) {
        (*(int *) ud)++;
        return strncmp(path, "/etc/ssl/certs/", 15) == 0;
}

static const char *find(const GeneratorDropins *d, const char *unit) {
        for (size_t i = 0; i < d->n; i++)
                if (streq(d->v[i].unit, unit))
                        return d->v[i].text;
        return NULL;
}

static Conf *load(const char *main_cf) {
        char path[256];
        write_text("main.cf", main_cf);
        snprintf(path, sizeof path, "%s/main.cf", dir);
        Conf *c = NULL;
        char **msgs = NULL;
        CHECK_INT(conf_load(path, &c, &msgs), 0);
        for (char **m = msgs; m && *m; m++)
                free(*m);
        free(msgs);
        return c;
}

int main(void) {
        CHECK(mkdtemp(dir));
        char text[1024];
        snprintf(text, sizeof text,
                 "config_directory = %s\n"
                 "smtpd_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem\n"
                 "smtpd_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key\n"
                 "submission/smtpd_tls_chain_files = /etc/ssl/private/ssl-cert-snakeoil.key, /etc/postern/100%%.pem\n"
                 "queue_directory = /srv/postern-queue\n"
                 "virtual_mailbox_base = /srv/vmail\n"
                 "mail_spool_directory = /var/spool/mail\n", dir);
        write_text("master.cf", "10587 inet n - n - - smtpd\n  -o smtpd_tls_key_file=/etc/ssl/private/other.key\n");
        Conf *c = load(text);
        int calls = 0;
        GeneratorDropins d = {};
        CHECK_INT(generator_access_dropins(c, "/etc/postern/main.cf", fake_readable, &calls, &d), 0);
        CHECK_INT(calls, 4);    /* each file once */
        const char *smtpd = find(&d, "postern-smtpd.service");
        CHECK(smtpd && strstr(smtpd, "[Service]\n"));
        CHECK(strstr(smtpd, "LoadCredential=etc-ssl-private-ssl_2dcert_2dsnakeoil.key:"
                            "/etc/ssl/private/ssl-cert-snakeoil.key\n"));
        CHECK(strstr(smtpd, "LoadCredential=etc-postern-100_25.pem:/etc/postern/100%%.pem\n"));
        CHECK(strstr(smtpd, "LoadCredential=etc-ssl-private-other.key:/etc/ssl/private/other.key\n"));
        CHECK(!strstr(smtpd, "snakeoil.pem"));
        CHECK(strstr(smtpd, "ReadWritePaths=-/srv/postern-queue\n"));
        for (const char *u = "postern-qmgr.service"; u; u = streq(u, "postern-qmgr.service") ? "postern-smtp.service" : NULL)
                CHECK(find(&d, u) && strstr(find(&d, u), "ReadWritePaths=-/srv/postern-queue\n"));
        const char *local = find(&d, "postern-local.service");
        CHECK(local && strstr(local, "ReadWritePaths=-/srv/postern-queue\nReadWritePaths=-/srv/vmail\n"));
        CHECK(!strstr(local, "/var/spool/mail"));      /* postern-local may write there already */
        CHECK(!find(&d, "postern-anvil.service"));
        generator_dropins_done(&d);
        conf_free(c);

        /* the shipped units are right: no drop-in at all */
        snprintf(text, sizeof text, "config_directory = %s/none\nsmtpd_tls_cert_file = /etc/ssl/certs/a.pem\n"
                 "virtual_mailbox_base = /var/vmail\n", dir);
        c = load(text);
        CHECK_INT(generator_access_dropins(c, "main.cf", fake_readable, &calls, &d), 0);
        CHECK_INT(d.n, 0);
        conf_free(c);

        /* a postern-local table in an LDAP or SQL server over the network: its network is opened;
         * on the server's local socket only (ldapi://, unix:), or in smtpd's tables only: not */
        static const struct {
                const char *cf, *param, *prefix, *file, *suffix;
                bool network;
        } nets[] = {
                { "server_host = ldap://ldap.example.org\n", "virtual_mailbox_maps", "ldap:", "l.cf", "", true },
                { "search_base = dc=x\n", "alias_maps", "proxy:ldap:", "l.cf", "", true },   /* default localhost */
                { "server_host = ldapi://%%2Frun%%2Fslapd%%2Fldapi\n", "virtual_mailbox_maps", "ldap:", "l.cf", "", false },
                { "server_host = ldap://ldap.example.org\n", "virtual_alias_maps", "ldap:", "l.cf", "", false },
                { "server_host = ldap://ldap.example.org\n", "virtual_uid_maps",
                  "unionmap:{static:1, ldap:", "l.cf", "}", true },
                { "", "virtual_gid_maps", "pgsql:", "pg.cf", "", true },
                { "hosts = unix:/run/postgresql\nquery = x\n", "virtual_mailbox_maps", "pgsql:", "l.cf", "", false },
                { "hosts = unix:/run/mysqld/mysqld.sock db.example\nquery = x\n", "virtual_mailbox_maps",
                  "proxy:mysql:", "l.cf", "", true },
        };
        for (size_t i = 0; i < ELEMENTSOF(nets); i++) {
                write_text("l.cf", nets[i].cf);
                char spec[300];
                snprintf(spec, sizeof spec, "%s%s/%s%s", nets[i].prefix, dir, nets[i].file, nets[i].suffix);
                snprintf(text, sizeof text, "config_directory = %s/none\n%s = %s\n", dir, nets[i].param, spec);
                c = load(text);
                CHECK_INT(generator_access_dropins(c, "main.cf", fake_readable, &calls, &d), 0);
                const char *l = find(&d, "postern-local.service");
                if (nets[i].network) {
                        CHECK(l && strstr(l, "PrivateNetwork=no\nIPAddressDeny=\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n"));
                        CHECK_INT(d.n, 1);
                } else
                        CHECK_INT(d.n, 0);
                generator_dropins_done(&d);
                conf_free(c);
        }

        char path[256];
        snprintf(path, sizeof path, "%s/l.cf", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/main.cf", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/master.cf", dir);
        unlink(path);
        rmdir(dir);
        return 0;
}
