# tests/system/lib.sh — shell functions shared by the system test (tests/system/run), the
# quick start (scripts/quickstart) and the benchmark: build and install Postern under /usr/local,
# boot a throwaway systemd in systemd-nspawn, run commands in it, and send/check test mail.
#
#   . tests/system/lib.sh
#   postern_install "$SRC" "$SRC/build-system"        # meson setup/compile/install, prefix /usr/local
#   container_boot postern-test                       # sets CONTAINER_PID (its PID 1)
#   cin systemctl enable --now postern.target         # a command inside the container
#   container_poweroff
#
# The container is `systemd-nspawn -D / --volatile=yes -b` (DESIGN.md §8): the host's /usr
# (so /usr/local with the installed Postern) under a fresh tmpfs root, /etc and /var empty but
# for what systemd's factory and tmpfiles/sysusers make at boot, the host's network shared.
# Nothing on the host changes except the files `meson install` puts under /usr/local.
# Needs bash, root, systemd-container (systemd-nspawn), util-linux (nsenter, setpriv).

POSTERN_PREFIX=${POSTERN_PREFIX:-/usr/local}
POSTERN_UNITDIR=$POSTERN_PREFIX/lib/systemd/system
CONTAINER_PID=
CONTAINER_NSPAWN_PID=
CONTAINER_NAME=
CONTAINER_LOG=

# Debian packages: to build Postern, and to run it under systemd-nspawn and talk to it.
POSTERN_BUILD_DEPS="meson ninja-build pkg-config gcc libc6-dev libsystemd-dev libgnutls28-dev
        libsqlite3-dev libidn2-dev zlib1g-dev libpcre2-dev libldap-dev liblmdb-dev libcdb-dev libdb-dev
        libpq-dev libmariadb-dev"
POSTERN_RUN_DEPS="systemd systemd-container util-linux iproute2 swaks"
# Real peers and clients the tests talk to (their system services are never started); strace
# plays a hanging filesystem (test_local.py); maildrop runs behind a pipe(8) transport
# (test_pipe.py); procmail is a mailbox_command (test_mailbox_command.py); haproxy sends the
# PROXY protocol to smtpd (test_smtpd_proxy.py; skipped without it); pflogsumm summarises the
# journal (tests/system/run); prometheus scrapes postern-metrics (test_metrics.py, run in the
# foreground with a configuration of its own); opendkim and rspamd are milters
# (test_smtpd_milter_*.py), python3-dkim checks opendkim's signatures. slapd and ldap-utils
# serve ldap: tables (test_table_ldap.py, its own slapd in a temporary directory; the package's
# service stays stopped); postfix-lmdb and postfix-cdb let postmap write the lmdb: and cdb: files
# test_table_postmap.py reads; postgresql and mariadb-server hold the pgsql: and mysql: tables
# (test_tables_sql.py runs its own servers); postfix-pgsql gives tests/bench/pgsql-tables' Postfix
# the same pgsql: tables. A missing one fails those tests (they do not skip).
# amavisd-new is the real after-queue filter of test_content_filter_amavis.py. unbound (the
# validating resolver) and ldnsutils (ldns-keygen, ldns-signzone) serve test_smtp_dane.py's
# signed zone.
POSTERN_TEST_PEERS="gnutls-bin testssl.sh dovecot-core dovecot-lmtpd postgrey dnsmasq prometheus
        python3-aiosmtpd strace maildrop procmail haproxy pflogsumm opendkim opendkim-tools
        python3-dkim rspamd amavisd-new slapd ldap-utils postfix-lmdb postfix-cdb postfix-pgsql postgresql
        postgresql-client mariadb-server mariadb-client unbound ldnsutils"
# To build the Debian package and test it (tests/package/run; man-db renders its manual pages).
# Its mail(1), bsd-mailx, needs an MTA: tests/run-all installs it once postfix is there (the
# package replaces it in the container).
POSTERN_PACKAGE_DEPS="dpkg-dev debhelper devscripts lintian fakeroot man-db"

lib_say() { printf '%s\n' "$*" >&2; }

# apt-get update + install of the packages named in the arguments (noninteractive, quiet).
apt_install() {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null &&
                apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Builds the tree in $1 into build dir $2 with prefix $POSTERN_PREFIX and installs it.
postern_install() {
        local src=$1 build=$2 logs=$2.logs
        mkdir -p "$logs"
        if [ ! -f "$build/build.ninja" ]; then
                meson setup "$build" "$src" --prefix="$POSTERN_PREFIX" \
                        -Dbuildtype=debugoptimized >"$logs/setup.log" 2>&1 ||
                        { cat "$logs/setup.log" >&2; return 1; }
        fi
        meson compile -C "$build" >"$logs/compile.log" 2>&1 ||
                { tail -50 "$logs/compile.log" >&2; return 1; }
        meson install -C "$build" --quiet >"$logs/install.log" 2>&1 ||
                { tail -50 "$logs/install.log" >&2; return 1; }
}

# Whether TCP port $1 is free on the host (the container shares the host's network).
port_free() {
        ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

# The first free port of the arguments.
pick_port() {
        local p
        for p in "$@"; do
                port_free "$p" && { echo "$p"; return 0; }
        done
        return 1
}

# The PID of the container's init: the process called systemd below the nspawn process.
container_find_init() {
        local pid child
        for child in $(pgrep -P "$CONTAINER_NSPAWN_PID" 2>/dev/null); do
                if [ "$(cat /proc/"$child"/comm 2>/dev/null)" = systemd ]; then
                        echo "$child"; return 0
                fi
                for pid in $(pgrep -P "$child" 2>/dev/null); do
                        if [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd ]; then
                                echo "$pid"; return 0
                        fi
                done
        done
        return 1
}

# Moves the calling process into cgroup $1 below the current one (where PID 1 is not systemd
# and the hierarchies are writable; elsewhere nothing happens and systemd-nspawn manages).
container_own_cgroup() {
        [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ] && return 0
        local line hier path dir
        while IFS=: read -r _ hier path; do
                case $hier in
                name=systemd) dir=/sys/fs/cgroup/systemd$path ;;
                "") dir=/sys/fs/cgroup/unified$path
                    [ -d /sys/fs/cgroup/unified ] || dir=/sys/fs/cgroup$path ;;
                *) continue ;;
                esac
                dir=${dir%/}/$1
                mkdir -p "$dir" 2>/dev/null && echo "$BASHPID" >"$dir/cgroup.procs" 2>/dev/null || true
        done </proc/self/cgroup
}

# Boots the container named $1 in the background and waits until its systemd has started up.
container_boot() {
        CONTAINER_NAME=$1
        CONTAINER_LOG=${CONTAINER_LOG:-/tmp/$CONTAINER_NAME.console.log}
        (
                # With --keep-unit and no systemd on the host, nspawn splits the cgroup it runs
                # in into supervisor/ and payload/; give each container a cgroup of its own so
                # two containers (a system test and a quick start) never share one.
                container_own_cgroup "postern-$CONTAINER_NAME-$BASHPID"
                # systemd.condition-first-boot=false: the empty /etc would otherwise count as
                # a first boot and `systemctl preset-all` would enable (and start) every unit of
                # the host's /usr — postern.target included, before our drop-ins exist.
                # CONTAINER_ROOT (default /) and CONTAINER_NSPAWN_ARGS (default --volatile=yes)
                # are for tests/package/run: a writable overlay of the host, a network of its
                # own. CONTAINER_BOOT_ARGS: more kernel command-line arguments (systemd.mask=).
                # shellcheck disable=SC2086
                exec systemd-nspawn -D "${CONTAINER_ROOT:-/}" ${CONTAINER_NSPAWN_ARGS:---volatile=yes} -b --register=no --keep-unit \
                        --machine="$CONTAINER_NAME" --console=read-only \
                        -- systemd.firstboot=off systemd.condition-first-boot=false systemd.show_status=0 \
                        ${CONTAINER_BOOT_ARGS:-}
        ) </dev/null >"$CONTAINER_LOG" 2>&1 &
        CONTAINER_NSPAWN_PID=$!
        local i state
        for i in $(seq 1 300); do
                CONTAINER_PID=$(container_find_init) && break
                kill -0 "$CONTAINER_NSPAWN_PID" 2>/dev/null ||
                        { lib_say "systemd-nspawn exited:"; tail -20 "$CONTAINER_LOG" >&2; return 1; }
                sleep 0.1
        done
        [ -n "$CONTAINER_PID" ] || { lib_say "container init not found"; return 1; }
        for i in $(seq 1 120); do
                state=$(cin systemctl is-system-running 2>/dev/null)
                case $state in
                running|degraded) return 0 ;;
                esac
                sleep 0.5
        done
        lib_say "container did not finish booting (state: $state)"
        return 1
}

# Runs a command inside the container (all its namespaces, as root).
cin() {
        nsenter -t "$CONTAINER_PID" -a -- "$@"
}

# Runs a command inside the container as user $1 (no PAM needed).
cin_as() {
        local user=$1 uid gid; shift
        uid=$(cin id -u "$user") && gid=$(cin id -g "$user") || return 1
        cin setpriv --reuid="$uid" --regid="$gid" --init-groups --reset-env -- "$@"
}

# Writes stdin to file $1 inside the container.
cin_write() {
        cin sh -c "mkdir -p \"\$(dirname '$1')\" && cat > '$1'"
}

# Powers the container off and waits for systemd-nspawn to exit (kills it after 30 s).
container_poweroff() {
        [ -n "$CONTAINER_NSPAWN_PID" ] || return 0
        if kill -0 "$CONTAINER_NSPAWN_PID" 2>/dev/null; then
                cin systemctl poweroff --no-block >/dev/null 2>&1 || true
                local i
                for i in $(seq 1 300); do
                        kill -0 "$CONTAINER_NSPAWN_PID" 2>/dev/null || break
                        sleep 0.1
                done
                if kill -0 "$CONTAINER_NSPAWN_PID" 2>/dev/null; then
                        kill -TERM "$CONTAINER_NSPAWN_PID" 2>/dev/null
                        sleep 2
                        kill -KILL "$CONTAINER_NSPAWN_PID" 2>/dev/null || true
                fi
        fi
        wait "$CONTAINER_NSPAWN_PID" 2>/dev/null || true
        # Remove the (now empty) cgroups container_own_cgroup made.
        local d
        for d in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
                d=$(find "$d" -maxdepth 3 -type d -name "postern-$CONTAINER_NAME-$CONTAINER_NSPAWN_PID" 2>/dev/null | head -1)
                [ -n "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        done
        CONTAINER_NSPAWN_PID=
        CONTAINER_PID=
}

# Inside the container: what a fresh Debian system would have that the empty /etc lacks
# (/etc/aliases), drop-ins that put the SMTP sockets on 127.0.0.1:$1, 127.0.0.1:$2 and (the
# implicit-TLS submissions socket) 127.0.0.1:$3, then postern.target enabled and started.
container_start_postern() {
        local smtp_port=${1:-25} sub_port=${2:-587} subs_port=${3:-465}
        printf 'postmaster: root\nmailer-daemon: postmaster\n' | cin_write /etc/aliases
        # The container shares the host's network: listen on loopback only (drop-ins in the
        # container's own /etc, gone with it).
        printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$smtp_port" |
                cin_write /etc/systemd/system/postern-smtpd.socket.d/loopback.conf
        printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$sub_port" |
                cin_write /etc/systemd/system/postern-submission.socket.d/loopback.conf
        printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' "$subs_port" |
                cin_write /etc/systemd/system/postern-submissions.socket.d/loopback.conf
        cin systemctl daemon-reload &&
                cin systemctl try-restart postern-smtpd.socket postern-submission.socket \
                        postern-submissions.socket &&
                cin systemctl enable --now postern.target
}

# Waits until file $2 in the container contains regex $3 (timeout $1 seconds).
cin_wait_grep() {
        local timeout=$1 file=$2 re=$3 i
        for i in $(seq 1 $((timeout * 4))); do
                cin grep -qE -- "$re" "$file" 2>/dev/null && return 0
                sleep 0.25
        done
        return 1
}

# Runs "$@" every 0.25 s until it succeeds (0) or $1 seconds have passed (1): for a state the
# test asserts that arrives asynchronously (a log line, an empty queue), never a fixed sleep.
wait_until() {
        local timeout=$1 i
        shift
        for i in $(seq 1 $((timeout * 4))); do
                "$@" && return 0
                sleep 0.25
        done
        "$@"
}

# Prints journal lines of one message (POSTERN_QUEUE_ID=$1) inside the container.
cin_journal_for() {
        cin journalctl --sync >/dev/null 2>&1 || true
        cin journalctl --no-pager -q -o short-iso "POSTERN_QUEUE_ID=$1"
}

# Extracts the queue id from a "250 ... queued as ID" reply in stdin.
queued_id() {
        sed -nE 's/.*queued as ([0-9A-Za-z]+).*/\1/p' | tail -1
}
