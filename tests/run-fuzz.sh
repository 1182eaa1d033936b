#!/bin/bash
#
# Build every tests/fuzz/fuzz_*.c with libFuzzer, ASan and UBSan, and run
# each for SECONDS_PER_TARGET seconds (default 30), FUZZ_JOBS at a time
# (default: one per CPU), on a copy of its seed corpus
# tests/fuzz/corpus/NAME/.
#
# usage: tests/run-fuzz.sh [SECONDS_PER_TARGET]
# env:   CC (clang), SRCDIR (the source tree; default: this script's ..),
#        FUZZ_BUILD (output directory; default $SRCDIR/tests/fuzz/build),
#        FUZZ_ONLY (run only the target of that name, e.g. "worker"),
#        FUZZ_SECONDS_<name> (that target's own time, e.g.
#        FUZZ_SECONDS_worker=60), FUZZ_JOBS (targets side by side)
#
# fuzz_worker runs the worker's own code (worker/*.c) with the test peers'
# client helpers (tests/peers/peer.c); the other targets only common/.
#
# Prints "fuzz NAME: ok (N runs)" or "fuzz NAME: FAILED" per target and
# exits 1 if any target failed to build, crashed, leaked, timed out or
# reported a sanitizer error.

# Flag and object lists are split on purpose.
# shellcheck disable=SC2086

set -u

secs=${1:-30}
case $secs in
''|*[!0-9]*|0)
	echo "usage: $0 [SECONDS_PER_TARGET]" >&2
	exit 2
	;;
esac

CC=${CC:-clang}
SRCDIR=${SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
SRCDIR=$(cd "$SRCDIR" && pwd) || exit 2
FUZZ_BUILD=${FUZZ_BUILD:-$SRCDIR/tests/fuzz/build}
mkdir -p "$FUZZ_BUILD" || exit 2
FUZZ_BUILD=$(cd "$FUZZ_BUILD" && pwd)

if [ ! -d "$SRCDIR/common" ] || [ ! -d "$SRCDIR/tests/fuzz" ]; then
	echo "run-fuzz: $SRCDIR is not the mtprotod source tree" >&2
	exit 2
fi

# autoconf.h: the source tree's (in-tree configure), the current
# directory's (a VPATH build), or a minimal one of our own.
if [ -f "$SRCDIR/autoconf.h" ]; then
	confdir=$SRCDIR
elif [ -f "$PWD/autoconf.h" ]; then
	confdir=$PWD
else
	confdir=$FUZZ_BUILD/include
	mkdir -p "$confdir"
	{
		echo '/* Minimal autoconf.h written by tests/run-fuzz.sh. */'
		echo '#define _GNU_SOURCE 1'
		echo '#define PACKAGE "mtprotod"'
		if [ "$(uname -s)" = Linux ]; then
			echo '#define HAVE_PRCTL 1'
			echo '#define HAVE_SYS_PRCTL_H 1'
			echo '#define HAVE_ACCEPT4 1'
			echo '#define HAVE_PIPE2 1'
		fi
	} >"$confdir/autoconf.h"
fi

# Every common file must link, whatever library it uses.
pkgs="openssl libconfig libevent libevent_openssl libqrencode zlib jansson"
if ! pkg_cflags=$(pkg-config --cflags $pkgs 2>/dev/null) ||
    ! pkg_libs=$(pkg-config --libs $pkgs 2>/dev/null); then
	echo "run-fuzz: pkg-config cannot find all of: $pkgs" >&2
	pkg_cflags='' pkg_libs=''
	for p in $pkgs; do
		pkg_cflags="$pkg_cflags $(pkg-config --cflags $p 2>/dev/null)"
		pkg_libs="$pkg_libs $(pkg-config --libs $p 2>/dev/null)"
	done
fi

extra_libs="-lpthread -lrt"
cflags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all
    -I$confdir -I$SRCDIR -I$SRCDIR/common $pkg_cflags"
san=address,undefined

# Sanitizer reports must end the process so libFuzzer counts them.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=0
sanitizer_errors='ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:'
sanitizer_errors="$sanitizer_errors|^==[0-9]+== ?ERROR: libFuzzer"

# The library objects, built once for all targets.
objdir=$FUZZ_BUILD/obj
rm -rf "$objdir"
mkdir -p "$objdir"
: >"$FUZZ_BUILD/build.log"
libok=1
objs=
for src in "$SRCDIR"/common/*.c; do
	[ -e "$src" ] || continue
	obj=$objdir/$(basename "$src" .c).o
	if ! $CC $cflags -fsanitize=fuzzer-no-link,$san -c "$src" -o "$obj" \
	    >>"$FUZZ_BUILD/build.log" 2>&1; then
		echo "run-fuzz: cannot compile $src" \
		    "(see $FUZZ_BUILD/build.log)" >&2
		libok=0
	fi
	objs="$objs $obj"
done

# The worker's objects, for fuzz_worker.
wobjs=
for src in "$SRCDIR"/worker/*.c "$SRCDIR"/tests/peers/peer.c; do
	obj=$objdir/w_$(basename "$src" .c).o
	if ! $CC $cflags -I"$SRCDIR/worker" -fsanitize=fuzzer-no-link,$san \
	    -c "$src" -o "$obj" >>"$FUZZ_BUILD/build.log" 2>&1; then
		echo "run-fuzz: cannot compile $src" \
		    "(see $FUZZ_BUILD/build.log)" >&2
		libok=0
	fi
	wobjs="$wobjs $obj"
done

# One target: build, run on a copy of its seeds, and write its verdict
# line to $FUZZ_BUILD/NAME.result (exit 1 if it failed).
fuzz_one() {
	local name=$1 src=$2
	local bin=$FUZZ_BUILD/fuzz_$name log=$FUZZ_BUILD/$name.log
	local result=$FUZZ_BUILD/$name.result
	local tobjs=$objs
	: >"$log"
	[ "$name" != worker ] || tobjs="$objs $wobjs"
	[ "$name" != simage ] || tobjs="$objs $objdir/w_simage.o"

	if [ $libok = 0 ] || ! $CC $cflags -fsanitize=fuzzer,$san "$src" \
	    $tobjs -o "$bin" $pkg_libs $extra_libs >"$log" 2>&1; then
		echo "fuzz $name: FAILED (build, see $log)" >"$result"
		return 1
	fi

	# Work on a copy: new inputs must never land in the committed seeds.
	local work=$FUZZ_BUILD/corpus-$name
	rm -rf "$work"
	mkdir -p "$work"
	if [ -d "$SRCDIR/tests/fuzz/corpus/$name" ]; then
		cp -R "$SRCDIR/tests/fuzz/corpus/$name/." "$work/"
	fi
	local artifacts=$FUZZ_BUILD/artifacts-$name
	rm -rf "$artifacts"
	mkdir -p "$artifacts"

	local t=$secs own=FUZZ_SECONDS_$name
	[ -z "${!own:-}" ] || t=${!own}
	# The outer timeout only catches a fuzzer that ignores its own.
	timeout -k 10 $((t * 2 + 60)) "$bin" -max_total_time="$t" \
	    -rss_limit_mb=2048 -timeout=25 -print_final_stats=1 \
	    -artifact_prefix="$artifacts/" "$work" >>"$log" 2>&1
	local rc=$?
	local runs
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
	    tail -n 1)
	if [ $rc -ne 0 ] || [ -z "$runs" ] ||
	    grep -Eq "$sanitizer_errors" "$log"; then
		{
			echo "fuzz $name: FAILED (exit $rc, see $log)"
			grep -E 'ERROR|runtime error|SUMMARY|Test unit written' \
			    "$log" | head -n 5 | sed 's/^/    /'
		} >"$result"
		return 1
	fi
	echo "fuzz $name: ok ($runs runs)" >"$result"
}

# FUZZ_JOBS targets side by side (default: one per CPU); each fuzzer is
# one process, so each still gets a whole CPU for its time. The longest
# (the worker's) starts first. Verdicts print in name order at the end.
jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
names=()
for src in "$SRCDIR"/tests/fuzz/fuzz_*.c; do
	[ -e "$src" ] || continue
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	[ -z "${FUZZ_ONLY:-}" ] || [ "$FUZZ_ONLY" = "$name" ] || continue
	names+=("$name")
done
targets=${#names[@]}
order=()
for name in "${names[@]}"; do
	[ "$name" != worker ] || order=("$name" "${order[@]}")
	[ "$name" = worker ] || order+=("$name")
done
running=0
for name in "${order[@]}"; do
	rm -f "$FUZZ_BUILD/$name.result"
	if [ "$running" -ge "$jobs_max" ]; then
		wait -n
		running=$((running - 1))
	fi
	fuzz_one "$name" "$SRCDIR/tests/fuzz/fuzz_$name.c" &
	running=$((running + 1))
done
wait
for name in "${names[@]}"; do
	if [ -f "$FUZZ_BUILD/$name.result" ]; then
		cat "$FUZZ_BUILD/$name.result"
		grep -q ': ok (' "$FUZZ_BUILD/$name.result" || failed=1
	else
		echo "fuzz $name: FAILED (no verdict)"
		failed=1
	fi
done

if [ $targets = 0 ]; then
	echo "run-fuzz: no tests/fuzz/fuzz_*.c in $SRCDIR" >&2
	exit 1
fi
exit $failed
