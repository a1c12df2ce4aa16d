/* local-mbox.c — appending one message to a UNIX mbox file, in a delivery child that already
 * runs as the recipient.
 *
 * Locks per mailbox_delivery_lock (dotlock "<mbox>.lock" created with O_EXCL, then fcntl and/or
 * flock on the open file), each tried deliver_lock_attempts times deliver_lock_delay apart; a
 * dotlock older than stale_lock_time is removed. When the user may not create files in the
 * mailbox's directory the dotlock is skipped and the kernel locks alone serialise deliveries
 * (every Postern delivery takes them). The message is written as "From sender  date", Return-Path:,
 * X-Original-To: (enable_original_recipient), Delivered-To:, the content with ">From " quoting,
 * and an empty line; any write or fsync error
 * truncates the file back to its previous size, so no partial message is ever left behind.
 * local_mbox_deliver_many() appends a batch under one lock with one fsync: a message whose write
 * fails is cut off again on its own, a failed fsync takes the whole batch back.
 * mailbox_size_limit is applied by the caller as RLIMIT_FSIZE (writes then fail with EFBIG). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "basic/io-util.h"
#include "local.h"

void delivery_result_set(DeliveryResult *r, const char *dsn, const char *fmt, ...) {
        va_list ap;
        snprintf(r->dsn, sizeof(r->dsn), "%s", dsn);
        va_start(ap, fmt);
        vsnprintf(r->diag, sizeof(r->diag), fmt, ap);
        va_end(ap);
}

const char *local_errno_dsn(int e) {
        switch (abs(e)) {
        case EDQUOT:
        case EFBIG:
                return "5.2.2";   /* mailbox full / over mailbox_size_limit */
        case ENOSPC:
                return "4.3.1";   /* mail system full */
        case EIO:
        case ENOMEM:
        case EMFILE:
        case ENFILE:
                return "4.3.0";
        default:
                return "4.2.0";   /* mailbox unavailable for now */
        }
}

void local_lock_pause(const LocalSettings *settings) {
        long long s = settings->lock_delay;
        struct timespec ts = { .tv_sec = s > 0 ? s : 0, .tv_nsec = s > 0 ? 0 : 200 * 1000 * 1000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Creates <path>.lock; 0, -EACCES/-EPERM/-EROFS when the directory is not ours to write, -EAGAIN
 * when still held by someone after all attempts, other negative errno on failure. */
static int dotlock_acquire(const LocalSettings *s, const char *lock) {
        for (long long i = 0; i < s->lock_attempts; i++) {
                int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        char pid[32];
                        int n = snprintf(pid, sizeof(pid), "%d\n", (int) getpid());
                        (void) !write(fd, pid, (size_t) n);
                        close(fd);
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
                struct stat st;
                if (lstat(lock, &st) == 0 && time(NULL) - st.st_mtime > s->stale_lock_time) {
                        (void) unlink(lock);
                        continue;
                }
                if (i + 1 < s->lock_attempts)
                        local_lock_pause(s);
        }
        return -EAGAIN;
}

static int kernel_lock(const LocalSettings *s, int fd, unsigned methods) {
        for (long long i = 0; i < s->lock_attempts; i++) {
                int r = 0;
                if (methods & LOCAL_LOCK_FCNTL) {
                        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
                        if (fcntl(fd, F_SETLK, &fl) < 0)
                                r = -errno;
                }
                if (r == 0 && (methods & LOCAL_LOCK_FLOCK) && flock(fd, LOCK_EX | LOCK_NB) < 0) {
                        r = -errno;
                        if (methods & LOCAL_LOCK_FCNTL) {
                                struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };
                                (void) fcntl(fd, F_SETLK, &fl);
                        }
                }
                if (r == 0)
                        return 0;
                if (r != -EAGAIN && r != -EACCES && r != -EWOULDBLOCK)
                        return r;
                if (i + 1 < s->lock_attempts)
                        local_lock_pause(s);
        }
        return -EAGAIN;
}

/* Postfix's order (mail_copy): Return-Path:, X-Original-To:, Delivered-To:. */
int local_format_headers(const DeliveryInput *in, StrBuf *out) {
        int r = strbuf_printf(out, "Return-Path: <%s>\n", in->sender);
        if (r >= 0 && !isempty(in->original_to))
                r = strbuf_printf(out, "X-Original-To: %s\n", in->original_to);
        return r < 0 ? r : strbuf_printf(out, "Delivered-To: %s\n", in->delivered_to);
}

/* The envelope lines that start a message handed to a mailbox or a command: the From_ line and
 * local_format_headers(). */
int local_format_envelope(const DeliveryInput *in, StrBuf *out) {
        char date[64];
        time_t now = time(NULL);
        struct tm tm;
        int r;

        if (!asctime_r(localtime_r(&now, &tm), date))
                snprintf(date, sizeof(date), "Thu Jan  1 00:00:00 1970\n");
        if ((r = strbuf_printf(out, "From %s  %s", isempty(in->sender) ? "MAILER-DAEMON" : in->sender, date)) < 0)
                return r;
        return local_format_headers(in, out);
}

/* The message as it goes into the mbox: envelope lines, quoted content, blank line. */
static int mbox_format(const DeliveryInput *in, StrBuf *out) {
        int r = local_format_envelope(in, out);
        if (r < 0)
                return r;
        const char *p = in->content, *end = in->content + in->content_len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t l = nl ? (size_t) (nl - p) + 1 : (size_t) (end - p);
                if (l >= 5 && memcmp(p, "From ", 5) == 0 && (r = strbuf_putc(out, '>')) < 0)
                        return r;
                if ((r = strbuf_append(out, p, l)) < 0)
                        return r;
                p += l;
        }
        if (in->content_len > 0 && in->content[in->content_len - 1] != '\n' && (r = strbuf_putc(out, '\n')) < 0)
                return r;
        return strbuf_putc(out, '\n');
}

/* Opens (creating 0600 when missing) the mailbox for appending, refusing links and non-files. */
static int mbox_open(const char *path, bool owner_check, int *ret_fd, const char **ret_problem) {
        for (int attempt = 0; attempt < 3; attempt++) {
                int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
                if (fd < 0 && errno == ENOENT)
                        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
                if (fd < 0) {
                        if (errno == EEXIST)
                                continue;
                        if (errno == ELOOP) {
                                *ret_problem = "mailbox is a symbolic link";
                                return -ELOOP;
                        }
                        return -errno;
                }
                struct stat st;
                if (fstat(fd, &st) < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                *ret_problem = !S_ISREG(st.st_mode) ? "mailbox is not a regular file" :
                               st.st_nlink != 1 ? "mailbox has more than one hard link" :
                               owner_check && st.st_uid != geteuid() ? "mailbox is not owned by the recipient" : NULL;
                if (*ret_problem) {
                        close(fd);
                        return -EPERM;
                }
                (void) fcntl(fd, F_SETFL, O_WRONLY | O_APPEND);
                *ret_fd = fd;
                return 0;
        }
        return -EAGAIN;
}

/* Sets the same result for all n messages. */
static void results_set_all(DeliveryResult *res, size_t n, const char *dsn, const char *fmt, ...) _printf_(4, 5);
static void results_set_all(DeliveryResult *res, size_t n, const char *dsn, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        snprintf(res[0].dsn, sizeof(res[0].dsn), "%s", dsn);
        vsnprintf(res[0].diag, sizeof(res[0].diag), fmt, ap);
        va_end(ap);
        for (size_t i = 1; i < n; i++)
                res[i] = res[0];
}

void local_mbox_deliver(const LocalSettings *s, const DeliveryInput *in, const char *path,
                        bool may_dotlock, bool owner_check, DeliveryResult *res) {
        local_mbox_deliver_many(s, in, 1, path, may_dotlock, owner_check, res);
}

void local_mbox_deliver_many(const LocalSettings *s, const DeliveryInput *in, size_t n,
                             const char *path, bool may_dotlock, bool owner_check,
                             DeliveryResult *res) {
        _cleanup_free_ char *lock = NULL;
        _cleanup_free_ bool *written = NULL;
        _cleanup_close_ int fd = -1;
        _cleanup_strbuf_ StrBuf out = STRBUF_INIT;
        const char *user_hint = in[0].delivered_to;
        const char *problem = NULL;
        bool have_dotlock = false;
        int r;

        if (n == 0)
                return;
        if (asprintf(&lock, "%s.lock", path) < 0) {
                lock = NULL;
                results_set_all(res, n, "4.3.0", "out of memory");
                return;
        }
        written = calloc(n, sizeof(bool));
        if (!written) {
                results_set_all(res, n, "4.3.0", "out of memory");
                return;
        }

        if ((s->lock_methods & LOCAL_LOCK_DOTLOCK) && may_dotlock) {
                r = dotlock_acquire(s, lock);
                if (r == 0)
                        have_dotlock = true;
                else if (r != -EACCES && r != -EPERM && r != -EROFS) {
                        results_set_all(res, n, local_errno_dsn(r),
                                        "cannot update mailbox %s for %s. unable to create lock file %s: %s",
                                        path, user_hint, lock,
                                        r == -EAGAIN ? "lock file is held by another process" : strerror(-r));
                        return;
                }
                /* else: the directory is not writable for the user; fcntl/flock protect us. */
        }

        r = mbox_open(path, owner_check, &fd, &problem);
        if (r < 0) {
                /* A mailbox an admin must look at (link, wrong owner): keep the mail queued. */
                results_set_all(res, n, problem ? "4.2.0" : local_errno_dsn(r), "cannot update mailbox %s for %s. %s",
                                path, user_hint, problem ? problem : strerror(-r));
                goto unlock;
        }

        /* Kernel locks are always taken: they also serialise against deliveries without dotlock. */
        unsigned kl = s->lock_methods & (LOCAL_LOCK_FCNTL | LOCAL_LOCK_FLOCK);
        if (!kl)
                kl = LOCAL_LOCK_FCNTL;
        r = kernel_lock(s, fd, kl);
        if (r < 0) {
                results_set_all(res, n, local_errno_dsn(r),
                                "cannot update mailbox %s for %s. unable to lock for exclusive access: %s",
                                path, user_hint, strerror(-r));
                goto unlock;
        }

        struct stat st;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                results_set_all(res, n, local_errno_dsn(r), "cannot update mailbox %s for %s. %s",
                                path, user_hint, strerror(-r));
                goto unlock;
        }
        /* Each message on its own: one that fails (too big for mailbox_size_limit, disk full) is
         * cut off again and the others still go in. */
        off_t end = st.st_size;
        size_t n_written = 0;
        bool broken = false;
        for (size_t i = 0; i < n; i++) {
                strbuf_reset(&out);
                r = broken ? -EIO : mbox_format(&in[i], &out);
                if (r < 0) {
                        delivery_result_set(&res[i], "4.3.0", "cannot format message: %s", strerror(-r));
                        continue;
                }
                res[i].mbox_offset = (long long) end;   /* for biff */
                r = loop_write(fd, out.data, out.len);
                if (r < 0) {
                        if (ftruncate(fd, end) < 0)
                                broken = true;   /* nothing more goes after a partial message */
                        delivery_result_set(&res[i], local_errno_dsn(r),
                                            "cannot update mailbox %s for %s. error writing message: %s",
                                            path, in[i].delivered_to, strerror(-r));
                        continue;
                }
                end += (off_t) out.len;
                written[i] = true;
                n_written++;
        }
        r = 0;
        if (n_written > 0 || end != st.st_size)
                r = fsync(fd) < 0 ? -errno : 0;
        if (r < 0 || broken) {
                /* No partial message stays behind, and none that is not durable is reported. */
                if (ftruncate(fd, st.st_size) == 0)
                        (void) fsync(fd);
                for (size_t i = 0; i < n; i++)
                        if (written[i] || broken)
                                delivery_result_set(&res[i], local_errno_dsn(r < 0 ? r : -EIO),
                                                    "cannot update mailbox %s for %s. error writing message: %s",
                                                    path, in[i].delivered_to, strerror(r < 0 ? -r : EIO));
                goto unlock;
        }
        for (size_t i = 0; i < n; i++)
                if (written[i])
                        delivery_result_set(&res[i], "2.0.0", "delivered to mailbox");

unlock:
        if (fd >= 0) {
                struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };
                (void) fcntl(fd, F_SETLK, &fl);
                (void) flock(fd, LOCK_UN);
        }
        if (have_dotlock)
                (void) unlink(lock);
}
