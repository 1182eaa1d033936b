#!/bin/bash
# Builds mtprotod twice -- normally, and with AddressSanitizer +
# UndefinedBehaviorSanitizer -- and runs every test (unit and end to end)
# in both, inside a network namespace that has only loopback; then runs each fuzz target for a bounded time; then runs the
# clang static analyzer (`make analyze`); then checks that
# `make distcheck` works. Any failure or sanitizer report fails the
# run. Prints "N passed, N failed" at the end.
set -u
cd "$(dirname "$0")/.."
SRC=$(pwd)
JOBS=$(nproc 2>/dev/null || echo 2)
OUT=${OUT:-$SRC/build-tests}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
rm -rf "$OUT"
mkdir -p "$OUT"
passed=0
failed=0
failures=()

T0=$SECONDS
step() { echo; echo "=== $* (at $((SECONDS - T0)) s)"; }
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); failures+=("$1"); echo "FAILED: $1"; }

if [ ! -x configure ]; then
	step "autoreconf"
	autoreconf -fi || { echo "autoreconf failed"; exit 1; }
fi

# count_trs DIR: add the results of automake's .trs files to the totals.
count_trs() {
	local p f
	p=$(grep -h '^:test-result: PASS' $(find "$1" -name '*.trs') 2>/dev/null | wc -l)
	f=$(grep -h '^:test-result: \(FAIL\|ERROR\|XPASS\)' $(find "$1" -name '*.trs') 2>/dev/null | wc -l)
	# A skipped test, or one expected to fail, has shown nothing: both
	# count as failures here.
	s=$(grep -h '^:test-result: \(SKIP\|XFAIL\)' $(find "$1" -name '*.trs') 2>/dev/null | wc -l)
	passed=$((passed + p))
	failed=$((failed + f + s))
	[ "$s" -eq 0 ] || failures+=("$1: $s skipped or expected-to-fail tests (each is a failure here)")
}

build_and_check() {
	local name=$1; shift
	local dir=$OUT/$name
	step "$name build: configure $*"
	mkdir -p "$dir"
	# The benchmark programs are built too (never run here), so that
	# they cannot rot unnoticed.
	if ! (cd "$dir" && "$SRC/configure" -q "$@" && make -j"$JOBS" >make.out 2>&1 &&
	    make -j"$JOBS" bench >>make.out 2>&1); then
		tail -40 "$dir/make.out" 2>/dev/null
		bad "$name build"
		return
	fi
	ok "$name build"
	step "$name: make check"
	mkdir -p "$dir/sanitizer-reports"
	# In a network namespace with only loopback: a bug that reaches
	# for a real address (a built-in DC, a public resolver) fails a
	# test instead of leaving the machine.
	(cd "$dir" && \
	    ASAN_OPTIONS="log_path=$dir/sanitizer-reports/asan:detect_leaks=1:abort_on_error=1" \
	    UBSAN_OPTIONS="log_path=$dir/sanitizer-reports/ubsan:print_stacktrace=1:halt_on_error=1" \
	    unshare --net -- sh -c 'ip link set lo up && exec make -j"$1" check' \
	    sh "$((JOBS + 1))" >check.out 2>&1)
	local rc=$?
	grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS|XFAIL):' "$dir/check.out"
	if [ $rc -ne 0 ]; then
		for log in $(grep -l -E '^(FAIL|ERROR)' $(find "$dir/tests" -name '*.log') 2>/dev/null); do
			echo "--- $log"; tail -60 "$log"
		done
		failures+=("$name: make check exited $rc")
	fi
	count_trs "$dir"
	if [ -n "$(ls -A "$dir/sanitizer-reports" 2>/dev/null)" ]; then
		for r in "$dir"/sanitizer-reports/*; do echo "--- $r"; head -60 "$r"; done
		bad "$name: sanitizer reports"
	fi
}

step "formatting (.clang-format)"
files=$(git ls-files '*.c' '*.h' 2>/dev/null)
[ -n "$files" ] || files=$(find common supervisor worker dcpool tests -name '*.[ch]')
if clang-format --dry-run --Werror $files >"$OUT/format.out" 2>&1; then
	ok "formatting"
else
	head -30 "$OUT/format.out"
	bad "formatting (run: clang-format -i on the files above)"
fi

build_and_check normal
build_and_check sanitizers --enable-sanitizers

step "fuzz targets, ${FUZZ_SECONDS}s each (the worker's 45s)"
# The stateful worker target gets longer: it has far more to explore.
if FUZZ_BUILD="$OUT/fuzz" FUZZ_SECONDS_worker=${FUZZ_SECONDS_worker:-45} \
    tests/run-fuzz.sh "$FUZZ_SECONDS" >"$OUT/fuzz.out" 2>&1; then
	grep '^fuzz ' "$OUT/fuzz.out"
	ok "fuzzing"
else
	tail -60 "$OUT/fuzz.out"
	bad "fuzzing"
fi

# Zero reports from clang's analyzer over everything the tree builds.
step "static analysis (make analyze)"
if (cd "$OUT/normal" && make -j"$JOBS" analyze >analyze.out 2>&1); then
	grep 'scan-build:' "$OUT/normal/analyze.out" | tail -2
	ok "static analysis"
else
	grep -E 'warning:|error:|scan-build:' "$OUT/normal/analyze.out" | sort -u | head -60
	bad "static analysis (reports in $OUT/normal/analyze/report)"
fi

# The tarball builds, installs and passes its unit tests out of tree; the
# end-to-end suites already ran twice above, so distcheck skips them.
step "make distcheck"
units=$(cd "$OUT/normal" && make -s -f Makefile -f - print-units <<'MK'
print-units:
	@echo $(UNIT_TESTS)
MK
)
if (cd "$OUT/normal" && make -j"$JOBS" distcheck TESTS="$units" \
    >distcheck.out 2>&1); then
	grep -E 'archives ready|\.tar\.gz' "$OUT/normal/distcheck.out" | head -3
	ok "distcheck"
else
	tail -60 "$OUT/normal/distcheck.out"
	bad "distcheck"
fi

# make install under a prefix of its own (paths substituted, the config
# kept, the systemd unit verified, the SysV script driving a daemon, the
# man pages lint-clean): tests/e2e/test_install.py.
step "make install and the installed files"
inst=$OUT/install
if (mkdir -p "$inst/build" && cd "$inst/build" &&
    "$SRC/configure" -q --prefix="$inst/prefix" \
	--with-systemdsystemunitdir="$inst/prefix/lib/systemd/system" &&
    make -j"$JOBS" >make.out 2>&1 &&
    make -j"$JOBS" tests/peers/tclient tests/peers/fake_dc >>make.out 2>&1 &&
    make install >install.out 2>&1); then
	(cd "$inst/build" && INSTALL_PREFIX="$inst/prefix" \
	    INSTALL_UNITDIR="$inst/prefix/lib/systemd/system" \
	    INSTALL_BUILD="$inst/build" MTPROTOD="$inst/prefix/sbin/mtprotod" \
	    PEERS_DIR="$inst/build/tests/peers" SRCDIR="$SRC" \
	    unshare --net -- sh -c 'ip link set lo up && exec python3 "$1"' \
	    sh "$SRC/tests/e2e/test_install.py" >"$inst/test.out" 2>&1)
	grep -E '^(PASS|FAIL) ' "$inst/test.out"
	p=$(grep -c '^PASS ' "$inst/test.out")
	f=$(grep -c '^FAIL ' "$inst/test.out")
	passed=$((passed + p))
	failed=$((failed + f))
	if [ "$f" -ne 0 ] || [ "$p" -eq 0 ]; then
		tail -40 "$inst/test.out"
		failures+=("make install: tests/e2e/test_install.py")
	fi
else
	tail -40 "$inst/build/make.out" "$inst/build/install.out" 2>/dev/null
	bad "make install"
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
	echo "failures:"
	printf '  %s\n' "${failures[@]}"
fi
echo "tests: $passed passed, $failed failed ($((SECONDS - T0)) s)"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
