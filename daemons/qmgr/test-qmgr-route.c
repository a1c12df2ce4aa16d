/* test-qmgr-route.c — table-driven unit tests for routing by address class
 * (qmgr_route_transport): local, virtual alias (bounced), virtual mailbox (virtual_transport,
 * next hop the domain), relay, default; relocated_maps bounces in every class and is not
 * overridden by transport_maps; transport_maps still overrides the class's transport; relayhost
 * applies to relay and default routes only; master.cf error, discard and unknown entries; a table
 * that fails is an error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "basic/tests.h"
#include "qmgr.h"

#define S(x) ((char *) (x))

static void settings(QmgrSettings *s, const char *transport_maps, const char *relayhost) {
        char *local[] = { S("postern.test"), S("localhost"), NULL };
        char *valias[] = { S("alias.test"), NULL };
        char *vmailbox[] = { S("mbox.test"), NULL };
        char *relay[] = { S("relayed.test"), NULL };
        char **const lists[ADDR_CLASS_LISTS] = { local, valias, vmailbox, relay };
        *s = (QmgrSettings) {
                .myhostname = S("mx.postern.test"), .myorigin = S("origin.test"),
                .local_transport = S("local:mx.postern.test"), .virtual_transport = S("virtual"),
                .relay_transport = S("relay"), .default_transport = S("smtp"),
                .relayhost = S(relayhost), .recipient_delimiter = S("+"),
        };
        CHECK_INT(addr_classes_init(&s->classes, lists, NULL, NULL), 0);
        CHECK_INT(table_list_open("inline:{ { moved@mbox.test = new@elsewhere.test }, "
                                  "{ olduser = a street address }, { @gone.test = gone.example } }",
                                  0, &s->relocated_maps, NULL), 0);
        if (transport_maps)
                CHECK_INT(table_list_open(transport_maps, 0, &s->transport_maps, NULL), 0);
}

static void settings_done(QmgrSettings *s) {
        addr_classes_done(&s->classes);
        table_list_free(s->relocated_maps);
        table_list_free(s->transport_maps);
}

static void check(QmgrSettings *s, const char *address, const char *transport, const char *nexthop) {
        _cleanup_free_ char *t = NULL, *n = NULL;
        int r = qmgr_route_transport(s, NULL, address, &t, &n);
        if (r < 0 || !streq(t, transport) || !streq(n, nexthop)) {
                fprintf(stderr, "%s: got %d %s:%s, expected %s:%s\n", address, r, strempty(t), strempty(n),
                        transport, nexthop);
                exit(1);
        }
}

int main(void) {
        QmgrSettings s;
        settings(&s, NULL, "");
        check(&s, "bob@postern.test", "local", "mx.postern.test");
        check(&s, "bob", "local", "mx.postern.test");
        check(&s, "bob@alias.test", "error", "5.1.1 User unknown in virtual alias table");
        check(&s, "bob@mbox.test", "virtual", "mbox.test");
        check(&s, "bob@relayed.test", "relay", "relayed.test");
        check(&s, "bob@sub.relayed.test", "relay", "sub.relayed.test");
        check(&s, "bob@elsewhere.test", "smtp", "elsewhere.test");
        /* relocated_maps: user@domain, user (local domains and $myorigin only), @domain */
        check(&s, "moved@mbox.test", "error", "5.1.6 User has moved to new@elsewhere.test");
        check(&s, "moved+ext@mbox.test", "error", "5.1.6 User has moved to new@elsewhere.test");
        check(&s, "olduser@postern.test", "error", "5.1.6 User has moved to a street address");
        check(&s, "olduser@origin.test", "error", "5.1.6 User has moved to a street address");
        check(&s, "olduser@elsewhere.test", "smtp", "elsewhere.test");
        check(&s, "anyone@gone.test", "error", "5.1.6 User has moved to gone.example");
        check(&s, "anyone@alias.test", "error", "5.1.1 User unknown in virtual alias table");
        settings_done(&s);

        /* relayhost: relay and default routes, not virtual mailbox or local ones */
        settings(&s, NULL, "[smarthost.test]:2525");
        check(&s, "bob@mbox.test", "virtual", "mbox.test");
        check(&s, "bob@relayed.test", "relay", "[smarthost.test]:2525");
        check(&s, "bob@elsewhere.test", "smtp", "[smarthost.test]:2525");
        check(&s, "bob@postern.test", "local", "mx.postern.test");
        settings_done(&s);

        /* virtual_transport with a next hop (Dovecot over LMTP) */
        settings(&s, NULL, "");
        s.virtual_transport = S("lmtp:unix:/run/dovecot/lmtp");
        check(&s, "bob@mbox.test", "lmtp", "unix:/run/dovecot/lmtp");
        settings_done(&s);

        /* transport_maps overrides a class's transport, but not the class's bounces */
        settings(&s, "inline:{ { mbox.test = smtp:[127.0.0.1]:2525 }, { alias.test = local: }, "
                     "{ moved@mbox.test = local: } }", "");
        check(&s, "bob@mbox.test", "smtp", "[127.0.0.1]:2525");
        check(&s, "bob@alias.test", "error", "5.1.1 User unknown in virtual alias table");
        check(&s, "moved@mbox.test", "error", "5.1.6 User has moved to new@elsewhere.test");
        settings_done(&s);

        /* master.cf transports: error and discard entries become those transports, "retry"
         * defers, an unknown command is a 4.3.5 deferral; smtp entries keep their name */
        settings(&s, "inline:{ { a.test = bouncer:5.7.1 go away }, { b.test = retry:4.4.0 later }, "
                     "{ c.test = trash: }, { d.test = policy: }, { e.test = smtp-amavis:[127.0.0.1]:10024 } }", "");
        MasterCf m = {};
        _cleanup_free_ char *merr = NULL;
        Conf *c = NULL;
        CHECK_INT(conf_new(&c), 0);
        CHECK_INT(master_cf_parse("bouncer unix - - n - - error\nretry unix - - n - - error\n"
                                  "trash unix - - n - - discard\npolicy unix - n n - 0 spawn\n"
                                  "smtp-amavis unix - - n - 2 smtp\n", "master.cf", &m, &merr), 0);
        CHECK_INT(qmgr_sched_settings_load(&s.sched, c, &m), 0);
        check(&s, "x@a.test", "error", "5.7.1 go away");
        check(&s, "x@b.test", "retry", "4.4.0 later");
        check(&s, "x@c.test", "discard", "c.test");
        check(&s, "x@d.test", "retry", "4.3.5 mail transport unavailable: master.cf entry policy (line 4) runs "
                                       "\"spawn\", which is not a delivery agent Postern has");
        check(&s, "x@e.test", "smtp-amavis", "[127.0.0.1]:10024");
        qmgr_sched_settings_done(&s.sched);
        master_cf_done(&m);
        conf_free(c);
        settings_done(&s);

        /* a table that fails: an error, never a route */
        settings(&s, NULL, "");
        table_list_free(s.relocated_maps);
        CHECK_INT(table_list_open("texthash:/nonexistent/relocated", 0, &s.relocated_maps, NULL), -ENOENT);
        s.relocated_maps = NULL;
        char *broken[] = { S("texthash:/nonexistent/vmailbox"), NULL }, *none[] = { NULL };
        char *local[] = { S("postern.test"), NULL };
        char **const lists[ADDR_CLASS_LISTS] = { local, none, broken, none };
        addr_classes_done(&s.classes);
        CHECK_INT(addr_classes_init(&s.classes, lists, NULL, NULL), 0);
        _cleanup_free_ char *t = NULL, *n = NULL;
        CHECK_INT(qmgr_route_transport(&s, NULL, "bob@elsewhere.test", &t, &n), -EIO);
        check(&s, "bob@postern.test", "local", "mx.postern.test");
        settings_done(&s);
        return 0;
}
