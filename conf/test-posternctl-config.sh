#!/bin/sh
# test-posternctl-config.sh TOOL — drives `posternctl config` and `posternctl check` (through the
# build-time stand-in TOOL, which runs the same verb code) against a temporary main.cf.
set -u
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export POSTERN_CONFIG="$dir/main.cf"
fail() { echo "FAIL: $*" >&2; exit 1; }

# expect STATUS WANT_STDOUT ARGS... — runs the tool, compares exit status and stdout
expect() {
        want_rc=$1 want_out=$2
        shift 2
        out=$("$tool" "$@" 2>"$dir/stderr")
        rc=$?
        [ "$rc" = "$want_rc" ] || fail "$*: exit $rc, expected $want_rc ($(cat "$dir/stderr"))"
        [ "$out" = "$want_out" ] || fail "$*: printed [$out], expected [$want_out]"
}

printf '# test\nmyhostname = mx.example.org\nsubmission/smtpd_helo_required = yes\n' > "$POSTERN_CONFIG"

expect 0 "myhostname = mx.example.org
submission/smtpd_helo_required = yes" config -n
expect 0 'myorigin = $myhostname' config myorigin
expect 0 'myorigin = mx.example.org' config -x myorigin
expect 0 'smtpd_timeout = 300s' config -d smtpd_timeout
expect 0 'relay_domains =' config relay_domains
expect 1 '' config no_such_parameter
expect 2 '' config -n -d

# edits: validated first, then written, comments kept
expect 1 '' config smtpd_timeout=never
grep -q smtpd_timeout "$POSTERN_CONFIG" && fail "an invalid value was written"
expect 0 '' config 'relayhost = [smart.example]:587' smtpd_timeout=1m
expect 0 "myhostname = mx.example.org
relayhost = [smart.example]:587
smtpd_timeout = 1m
submission/smtpd_helo_required = yes" config -n
head -1 "$POSTERN_CONFIG" | grep -q '^# test$' || fail "comment lost"
expect 2 '' config smtpd_timeout=1m myorigin

# errors name file, line and parameter
printf 'smtpd_timeout = 1m\nmessage_size_limit = lots\n' > "$POSTERN_CONFIG"
expect 1 '' config -n
grep -q "main.cf:2: message_size_limit: invalid value \"lots\"" "$dir/stderr" || fail "no file:line error: $(cat "$dir/stderr")"
# ... and a broken main.cf can still be repaired
expect 0 '' config message_size_limit=20480000
expect 0 'message_size_limit = 20480000' config -n message_size_limit

# check: silent when all is well
mkdir "$dir/queue"
printf 'postmaster: root\n' > "$dir/aliases"
printf 'queue_directory = %s\nalias_maps = hash:%s\n' "$dir/queue" "$dir/aliases" > "$POSTERN_CONFIG"
expect 0 '' check
[ -s "$dir/stderr" ] && fail "check printed: $(cat "$dir/stderr")"
printf 'queue_directory = %s/none\nalias_maps = hash:%s/none nis:x\nfoo = 1\n' "$dir" "$dir" > "$POSTERN_CONFIG"
expect 1 '' check
for want in "foo: unknown parameter" "cannot open $dir/none" "unsupported lookup table type \"nis\"" "queue_directory: $dir/none"; do
        grep -qF "$want" "$dir/stderr" || fail "check did not report [$want]: $(cat "$dir/stderr")"
done
printf 'smtpd_timeout = x\n' > "$POSTERN_CONFIG"
expect 1 '' check
grep -q "main.cf:1: smtpd_timeout: invalid value" "$dir/stderr" || fail "check: $(cat "$dir/stderr")"
echo ok
