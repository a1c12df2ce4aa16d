#!/bin/sh
# check-man-pages.sh — checks the manual pages given as arguments the way lintian's manual page
# checks do: each must render with man(1) without a single groff or man warning, have a NAME
# section lexgrog(1) can read (the whatis entry), and avoid what lintian and man(7) flag in the
# source: trailing white space, lines starting with an apostrophe (a control character),
# "\'" (acute accent), and an unescaped "-" starting an option word (write "\-").
# Exit status: 0 all clean, 1 any problem (each printed as FILE: ...), 77 (skip) without man(1).
#
#   man/check-man-pages.sh man/*.1 man/*.8 build/man/postern.conf.5
set -u

if [ "$#" -eq 0 ]; then
	echo "usage: $0 PAGE..." >&2
	exit 2
fi
if ! command -v man >/dev/null 2>&1; then
	echo "$0: man(1) is not installed; skipping" >&2
	exit 77
fi

status=0
problem() {
	echo "$1: $2"
	status=1
}

for page in "$@"; do
	if [ ! -r "$page" ]; then
		problem "$page" "cannot be read"
		continue
	fi
	# The warning check, with lintian's exact environment and options (Documentation/Manual.pm).
	out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$page" 2>&1 >/dev/null)
	if [ -n "$out" ]; then
		printf '%s\n' "$out" | while IFS= read -r line; do
			echo "$page: man: $line"
		done
		status=1
	fi
	if command -v lexgrog >/dev/null 2>&1 && ! LC_ALL=C.UTF-8 lexgrog "$page" >/dev/null 2>&1; then
		problem "$page" "lexgrog cannot parse the NAME section (bad whatis entry)"
	fi
	# Source checks; comment lines (.\") are exempt.
	lint=$(awk '
		/^\.\\"/ { next }
		/[ \t]$/ { printf "line %d: trailing white space\n", NR }
		/^'"'"'/ { printf "line %d: starts with an apostrophe (a control character)\n", NR }
		/\\'"'"'/ { printf "line %d: \\'"'"' (acute accent); write \\(aq or a plain apostrophe\n", NR }
		/(^|[ ("[|])-[A-Za-z0-9#-]/ { printf "line %d: unescaped minus sign starting an option; write \\-\n", NR }
	' "$page")
	if [ -n "$lint" ]; then
		printf '%s\n' "$lint" | while IFS= read -r line; do
			echo "$page: $line"
		done
		status=1
	fi
done
exit "$status"
