/* fuzz-milter-reply — the milter reply parser (common/milter/milter-proto.c): a byte stream as a
 * milter sends it, cut into packets by milter_frame_next(); the first packet is also offered to
 * milter_neg_parse() as an option negotiation reply, every packet to milter_reply_parse().
 * Milter replies come from a separate program over a socket and end up as SMTP replies, headers
 * and recipients.
 *
 * Checked: framing consumes exactly 4 + length bytes and refuses lengths 0 and above
 * MILTER_PACKET_MAX; an error always names what was wrong (err non-empty); a parsed replycode is
 * 4xx/5xx and its text starts with that code; header names are non-empty without ':', space or
 * control characters; negotiated actions and steps are within what was offered. */
#include <errno.h>

#include "fuzz.h"
#include "milter/milter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t off = 0;
        bool first = true;

        while (off < size) {
                char cmd = 0, err[MILTER_ERR_MAX] = "";
                const uint8_t *d = NULL;
                size_t n = 0, used = 0;
                int k = milter_frame_next(data + off, size - off, &cmd, &d, &n, &used, err);
                FUZZ_CHECK(k == 0 || k == 1 || k == -EBADMSG);
                if (k == -EBADMSG)
                        FUZZ_CHECK(err[0]);
                if (k <= 0)
                        break;
                FUZZ_CHECK(used == n + 5 && used <= size - off && n + 1 <= MILTER_PACKET_MAX);
                /* a copy of exactly the packet's size, so ASan sees reads past it */
                uint8_t *copy = malloc(n ? n : 1);
                FUZZ_CHECK(copy);
                memcpy(copy, d, n);
                if (first) {
                        MilterNeg neg = {};
                        uint32_t acts = MILTER_A_ALL & ~MILTER_A_CHGFROM, proto = MILTER_P_ALL & ~MILTER_P_SKIP;
                        int kn = milter_neg_parse(copy, n, acts, proto, &neg, err);
                        FUZZ_CHECK(kn == 0 || kn == -EBADMSG);
                        if (kn == 0) {
                                FUZZ_CHECK(neg.version >= 2 && neg.version <= MILTER_VERSION);
                                FUZZ_CHECK(!(neg.actions & ~acts) && !(neg.protocol & ~proto));
                                milter_neg_done(&neg);
                        } else
                                FUZZ_CHECK(err[0]);
                        first = false;
                }
                MilterReply r = {};
                err[0] = '\0';
                k = milter_reply_parse(cmd, copy, n, &r, err);
                FUZZ_CHECK(k == 0 || k == -EBADMSG);
                if (k < 0)
                        FUZZ_CHECK(err[0]);
                else {
                        FUZZ_CHECK(milter_reply_name(cmd));
                        if (cmd == MILTER_R_REPLYCODE) {
                                FUZZ_CHECK(r.code >= 400 && r.code <= 599);
                                FUZZ_CHECK(r.text[0] == '0' + r.code / 100);
                        }
                        if (r.name) {
                                FUZZ_CHECK(*r.name);
                                for (const char *c = r.name; *c; c++)
                                        FUZZ_CHECK(*c > ' ' && *c != ':' && *c < 127);
                                FUZZ_CHECK(r.value);
                        }
                        if (cmd == MILTER_R_REPLBODY)
                                FUZZ_CHECK(r.body_len == n);
                        milter_reply_done(&r);
                }
                free(copy);
                off += used;
        }
        return 0;
}
