/* fuzz-conf — main.cf parsing and $-expansion (common/conf/conf.c). The input is a main.cf:
 *
 *   1. it is written to a memfd and read with conf_load() (syntax, continuation lines,
 *      validation of every explicit setting and every default against the registry);
 *   2. on success every parameter of params.h's param_table is looked up with conf_get() and in
 *      a listener's context (exercising $name, ${name?...}, ${name:...}, loops, depth limits),
 *      through the typed getter for its type, and LIST parameters through conf_get_list();
 *   3. independently, each "name = value" line is applied with conf_set() to an empty Conf
 *      (invalid ones are refused one by one, so expansion runs on the valid rest), and the same
 *      lookups run there.
 * Lookups must never return NULL for a registered parameter. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "basic/macro.h"
#include "conf/conf.h"
#include "conf/params.h"
#include "log/log.h"

static const char *const listeners[] = { NULL, "smtp", "submission" };

static void lookup_all(Conf *c) {
        for (size_t l = 0; l < ELEMENTSOF(listeners); l++)
                for (size_t i = 0; i < param_table_size; i++) {
                        const ParamDef *p = &param_table[i];
                        const char *v = l == 0 ? conf_get(c, p->name) : conf_get_listener(c, listeners[l], p->name);
                        FUZZ_CHECK(v);
                        switch (p->type) {
                        case PARAM_INT:
                        case PARAM_SIZE:
                                (void) conf_get_int(c, listeners[l], p->name);
                                break;
                        case PARAM_BOOL:
                                (void) conf_get_bool(c, listeners[l], p->name);
                                break;
                        case PARAM_TIME:
                                (void) conf_get_time(c, listeners[l], p->name);
                                break;
                        case PARAM_LIST: {
                                char **list = conf_get_list(c, listeners[l], p->name);
                                FUZZ_CHECK(list);
                                for (char **e = list; *e; e++)
                                        FUZZ_CHECK(strlen(*e) <= strlen(v));   /* pieces of the value */
                                strv_free(list);
                                break;
                        }
                        default:
                                break;
                        }
                        bool expl;
                        FUZZ_CHECK(conf_get_raw(c, p->name, &expl));
                }
}

static void lookup_explicit(const char *name, const char *raw, void *ud) {
        Conf *c = ud;
        FUZZ_CHECK(name && raw);
        (void) conf_get(c, name);
        (void) conf_get_raw(c, name, NULL);
}

static void apply_lines(const char *text) {
        Conf *c = NULL;
        FUZZ_CHECK(conf_new(&c) == 0);
        char *copy = strdup(text);
        FUZZ_CHECK(copy);
        char *save = NULL;
        unsigned n = 0;
        for (char *line = strtok_r(copy, "\n", &save); line && n < 64; line = strtok_r(NULL, "\n", &save), n++) {
                char *eq = strchr(line, '=');
                if (!eq)
                        continue;
                *eq = '\0';
                char *name = line, *value = eq + 1;
                while (*name == ' ' || *name == '\t')
                        name++;
                for (char *e = name + strlen(name); e > name && (e[-1] == ' ' || e[-1] == '\t'); )
                        *--e = '\0';
                char *reason = NULL;
                int r = conf_set(c, name, value, &reason);
                FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOENT || r == -ENOMEM);
                if (r == 0)
                        FUZZ_CHECK(conf_get_raw(c, name, NULL));
                free(reason);
        }
        free(copy);
        lookup_all(c);
        conf_foreach_explicit(c, lookup_explicit, c);
        conf_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int fd = -1;
        static char path[64];

        if (size > 16384)
                return 0;
        if (fd < 0) {
                log_open("fuzz");
                if (!getenv("FUZZ_VERBOSE"))
                        log_set_max_level(-1);
                fd = memfd_create("main.cf", MFD_CLOEXEC);
                FUZZ_CHECK(fd >= 0);
                snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        }
        FUZZ_CHECK(ftruncate(fd, 0) == 0);
        FUZZ_CHECK(size == 0 || pwrite(fd, data, size, 0) == (ssize_t) size);

        Conf *c = NULL;
        char **messages = NULL;
        int r = conf_load(path, &c, &messages);
        FUZZ_CHECK(messages);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        if (r == 0) {
                FUZZ_CHECK(c);
                lookup_all(c);
                conf_foreach_explicit(c, lookup_explicit, c);
                conf_free(c);
        } else
                FUZZ_CHECK(!c && messages[0]);   /* a refused file always says why */
        strv_free(messages);

        char *text = fuzz_strndup(data, size);
        apply_lines(text);
        char **split = conf_split_list(text);
        FUZZ_CHECK(split);
        strv_free(split);
        free(text);
        return 0;
}
