/* fuzz-ipc — the IPC record codec (common/ipc/ipc-record.c). The input is a byte stream fed to
 * one IpcParser in chunks, as reads from a socket would deliver it:
 *
 *   byte 0        k = (byte & 7) + 1: how many chunk sizes follow
 *   bytes 1..k    chunk sizes, used in turn (0 means "everything that is left")
 *   rest          the stream
 *
 * Every complete record must be well-formed (valid names, values without NUL), format with
 * ipc_record_format(), and parse back — in one piece and byte by byte — to equal attributes.
 * After an error the parser is reset and fed the rest, as a server would do with a fresh one. */
#include <errno.h>

#include "fuzz.h"
#include "ipc/ipc.h"

static void check_equal(const IpcRecord *a, const IpcRecord *b) {
        FUZZ_CHECK(a->n == b->n);
        for (size_t i = 0; i < a->n; i++) {
                FUZZ_CHECK(strcmp(a->attrs[i].name, b->attrs[i].name) == 0);
                FUZZ_CHECK(strcmp(a->attrs[i].value, b->attrs[i].value) == 0);
        }
}

static void check_record(const IpcRecord *rec) {
        for (size_t i = 0; i < rec->n; i++) {
                const char *name = rec->attrs[i].name;
                size_t nl = strlen(name);
                FUZZ_CHECK(nl >= 1 && nl <= IPC_ATTR_NAME_MAX);
                FUZZ_CHECK(strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == nl);
                FUZZ_CHECK(rec->attrs[i].value);
                /* the first attribute of that name is what lookups return */
                const char *v = ipc_record_get(rec, name);
                FUZZ_CHECK(v);
                long long x;
                (void) ipc_record_get_int(rec, name, &x);
        }

        StrBuf wire = STRBUF_INIT;
        int r = ipc_record_format(rec, &wire);
        if (r == -EMSGSIZE) {
                /* literal '=' grows to "+3D": a record near the limit may not fit again */
                FUZZ_CHECK(wire.len == 0);
                strbuf_done(&wire);
                return;
        }
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(wire.len >= 1 && wire.data[wire.len - 1] == '\n');

        /* whole */
        IpcParser p = IPC_PARSER_INIT;
        IpcRecord back = IPC_RECORD_INIT;
        size_t used = 0;
        r = ipc_parser_feed(&p, wire.data, wire.len, &used, &back);
        FUZZ_CHECK(r == 1 && used == wire.len);
        check_equal(rec, &back);
        ipc_record_done(&back);

        /* byte by byte, reusing the parser */
        for (size_t i = 0; i < wire.len; i++) {
                used = 0;
                r = ipc_parser_feed(&p, wire.data + i, 1, &used, &back);
                FUZZ_CHECK(used == 1);
                FUZZ_CHECK(r == (i + 1 == wire.len ? 1 : 0));
        }
        check_equal(rec, &back);
        ipc_record_done(&back);
        ipc_parser_done(&p);
        strbuf_done(&wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1 || size > 1024 * 1024)
                return 0;
        size_t k = (size_t) (data[0] & 7) + 1;
        if (size < 1 + k)
                return 0;
        const uint8_t *sizes = data + 1;
        const char *stream = (const char *) data + 1 + k;
        size_t n = size - 1 - k, off = 0, turn = 0;
        IpcParser p = IPC_PARSER_INIT;

        while (off < n) {
                size_t chunk = sizes[turn++ % k];
                if (chunk == 0 || chunk > n - off)
                        chunk = n - off;
                while (chunk > 0) {
                        IpcRecord rec = IPC_RECORD_INIT;
                        size_t used = (size_t) -1;
                        int r = ipc_parser_feed(&p, stream + off, chunk, &used, &rec);
                        FUZZ_CHECK(used <= chunk);
                        off += used;
                        chunk -= used;
                        if (r == 1) {
                                check_record(&rec);
                                ipc_record_done(&rec);
                                continue;
                        }
                        FUZZ_CHECK(rec.n == 0 && !rec.attrs);
                        if (r == 0) {
                                FUZZ_CHECK(chunk == 0);
                                break;
                        }
                        FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE);
                        /* the parser was reset; a fresh stream starts after the bad line */
                        FUZZ_CHECK(p.size == 0 && p.cur.n == 0);
                        if (used == 0 && chunk > 0) {
                                /* nothing consumed: skip the rest of this chunk to make progress */
                                off += chunk;
                                chunk = 0;
                        }
                }
        }
        ipc_parser_done(&p);
        return 0;
}
