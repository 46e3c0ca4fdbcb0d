#!/usr/bin/env bash
# Check scripts/kernels/run.sh end to end: builds scripts/kernels/selfcheck
# (a program and a `go test -c` binary, both static) and runs them in the VM,
# checking output, exit status propagation, argument quoting and the timeout.
# Usage: scripts/kernels/selfcheck.sh [run.sh options, e.g. --kernel-image PATH]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
run=$repo/scripts/kernels/run.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/gonetscope-selfcheck.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/payload"

cd "$repo"
export CGO_ENABLED=0
go build -o "$tmp/payload/selfcheck" ./scripts/kernels/selfcheck
go test -c -tags vmselfcheck -o "$tmp/payload/selfcheck.test" ./scripts/kernels/selfcheck

passed=0 failed=0
# expect NAME WANT_STATUS GREP_PATTERN -- run.sh arguments...
expect() {
	local name=$1 want=$2 pattern=$3
	shift 4
	local got=0 start=$SECONDS
	"$run" "$@" >"$tmp/out" 2>&1 || got=$?
	if [[ $got == "$want" ]] && grep -q -- "$pattern" "$tmp/out"; then
		echo "PASS $name ($((SECONDS - start)) s)"
		passed=$((passed + 1))
	else
		echo "FAIL $name: status $got (want $want), output wanted /$pattern/:"
		sed 's/^/    /' "$tmp/out"
		failed=$((failed + 1))
	fi
}
p=$tmp/payload
expect "selfcheck passes, status 0" 0 'ok   fentry tcp_connect' -- "$@" "$p" -- selfcheck
expect "selfcheck status 3 propagates" 3 'all checks passed, exiting 3' -- "$@" "$p" -- selfcheck -exit 3
expect "go test -c binary passes" 0 '--- PASS: TestInVM' -- "$@" "$p" -- ./selfcheck.test -test.v
expect "failing go test fails" 1 '--- FAIL: TestFailOnRequest' -- "$@" "$p" -- selfcheck.test -test.v -selfcheck.fail
# shellcheck disable=SC2016 # $1 and $HOME are for the VM's shell
expect "arguments survive quoting" 0 "\[it's \$HOME \"x\"\]" -- "$@" "$p" -- sh -c 'echo "[$1]"' sh "it's \$HOME \"x\""
expect "timeout exits 124" 124 'timed out after 3s' -- "$@" --timeout 3 "$p" -- sleep 60
echo "$passed passed, $failed failed"
((failed == 0))
