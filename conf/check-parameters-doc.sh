#!/bin/sh
# check-parameters-doc.sh GENERATOR DOC — fails when DOC differs from "GENERATOR config --markdown",
# i.e. when docs/parameters.md was not regenerated after the parameter registry changed.
set -eu
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$1" config --markdown > "$tmp"
if ! diff -u "$2" "$tmp"; then
        echo "$2 is out of date; regenerate it: ninja -C <builddir> update-parameters-doc" >&2
        exit 1
fi
