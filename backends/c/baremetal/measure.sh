#!/bin/sh
# Measure one emitted model on the emulated Cortex-M4 (qemu-system-arm -M mps2-an386).
#
# usage: measure.sh DIR NAME [EXTRA_CFLAGS...]
#   DIR holds NAME.h and NAME.c (qc_cgen::emit) and main.c (qc_cgen::test_main: a
#   driver that calls NAME_run_quantized, or NAME_run when the model has no quantized
#   boundaries, once). Build products go to DIR/build.
#
# Prints, for the entry point ENTRY (NAME_run_quantized if the header declares it):
#   text/rodata/data/bss  sections of NAME.o alone (no libc, no driver), and the part
#                         of .text/.rodata that the linked image keeps (--gc-sections
#                         drops functions ENTRY never reaches, e.g. the float NAME_run)
#   arena                 NAME_ARENA_BYTES
#   stack_static          deepest path from ENTRY in gcc's call graph with
#                         -fstack-usage frame sizes (-fcallgraph-info=su); library
#                         callees (memcpy) count 0 and are listed
#   stack_measured        high-water mark of one ENTRY call (painted stack, measure.c)
#   instructions          instructions executed by one ENTRY call under -icount:
#                         deterministic, identical on every run (measure.c explains how)
#   float_routines        soft-float routines (__aeabi_f*/__aeabi_d*, ...) in the image
#
# Needs arm-none-eabi-gcc, libnewlib-arm-none-eabi and qemu-system-arm (Debian
# packages of the same names). Exit status: 0 if the program ran and exited 0.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR NAME [EXTRA_CFLAGS...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
name=$2
shift 2
cc=arm-none-eabi-gcc
# Soft-float ABI, no FPU: a fully quantized model must not need one.
cpu="-mcpu=cortex-m4 -mthumb -mfloat-abi=soft"
out=$dir/build
mkdir -p "$out"

entry=${name}_run_quantized
grep -q "${entry}[[:space:]]*(" "$dir/$name.h" || entry=${name}_run

# shellcheck disable=SC2086 # word splitting of the flag lists is intended
$cc $cpu -O2 -std=c99 -Wall -Wextra -Werror -pedantic -ffunction-sections -fdata-sections \
    -fstack-usage -fcallgraph-info=su -I"$dir" "$@" \
    -c "$dir/$name.c" -o "$out/$name.o"

# Section totals of the model object, by section-name prefix (function/data sections).
sections=$(arm-none-eabi-size -A "$out/$name.o" | awk '
    $1 ~ /^\.text/   { t += $2 }
    $1 ~ /^\.rodata/ { r += $2 }
    $1 ~ /^\.data/   { d += $2 }
    $1 ~ /^\.bss/    { b += $2 }
    END { printf "text=%d rodata=%d data=%d bss=%d", t, r, d, b }')

arena=$(sed -n "s/^#define[[:space:]]*${name}_ARENA_BYTES[^0-9]*\([0-9][0-9]*\).*/\1/Ip" "$dir/$name.h")

# Worst-case stack from ENTRY over the call graph (the emitted code has no recursion;
# a cycle would be reported, not followed).
ci=$(ls "$out"/*.ci 2>/dev/null | head -n 1)
stack_static=$(awk -v entry="$entry" '
    /^node:/ {
        t = $0; sub(/.*title: "/, "", t); sub(/".*/, "", t)
        l = $0; sub(/.*label: "/, "", l); sub(/".*/, "", l)
        b = 0; q = ""
        if (match(l, /[0-9]+ bytes \([a-z,]+\)/)) {
            s = substr(l, RSTART, RLENGTH); split(s, f, " "); b = f[1]; q = f[3]
        } else { ext[t] = 1 }
        bytes[t] = b
        if (q != "" && q != "(static)") qual = qual " " t q
        n = split(l, parts, "\\\\n"); fname[parts[1]] = t
    }
    /^edge:/ {
        s = $0; sub(/.*sourcename: "/, "", s); sub(/".*/, "", s)
        d = $0; sub(/.*targetname: "/, "", d); sub(/".*/, "", d)
        nout[s]++; succ[s, nout[s]] = d
    }
    function deepest(v,    i, best, x) {
        if (v in memo) return memo[v]
        if (onpath[v]) { cyc = cyc " " v; return 0 }
        onpath[v] = 1; best = 0
        for (i = 1; i <= nout[v]; i++) { x = deepest(succ[v, i]); if (x > best) best = x }
        onpath[v] = 0
        if (v in ext) libs[v] = 1
        memo[v] = bytes[v] + best
        return memo[v]
    }
    END {
        if (!(entry in bytes)) { print "unknown(no " entry " in call graph)"; exit }
        r = deepest(entry); lst = ""
        for (v in libs) lst = lst (lst == "" ? "" : ",") v
        printf "%d", r
        if (lst != "") printf " (+%s)", lst
        if (qual != "") printf " (non-static frames:%s)", qual
        if (cyc != "") printf " (recursion:%s)", cyc
    }' "$ci")

# The driver prints with iprintf (newlib's integer-only printf) so that stdio adds no
# float formatting code and the float check below is about the model.
# shellcheck disable=SC2086
$cc $cpu -O2 -std=c99 -ffunction-sections -fdata-sections -I"$dir" -Dprintf=iprintf "$@" \
    --specs=rdimon.specs -nostartfiles -T "$here/mps2_an386.ld" \
    -Wl,--gc-sections -Wl,-Map="$out/app.map" -Wl,--wrap="$entry" -DQC_ENTRY="$entry" \
    -o "$out/app.elf" \
    "$here/startup.c" "$here/measure.c" "$here/measure_wrap.S" "$dir/main.c" "$out/$name.o"

# Bytes of the model object's input sections that the link kept.
linked=$(awk -v obj="$name.o" '
    function hex(h,    i, c, v) {
        v = 0; h = tolower(substr(h, 3))
        for (i = 1; i <= length(h); i++) { c = index("0123456789abcdef", substr(h, i, 1)); v = v * 16 + c - 1 }
        return v
    }
    function take(sec, size, file) {
        if (file ~ ("(^|/)" obj "$")) {
            if (sec ~ /^\.text/) t += hex(size)
            else if (sec ~ /^\.rodata/) r += hex(size)
        }
    }
    # Discarded input sections are listed before this line.
    /^Linker script and memory map/ { kept = 1; next }
    !kept { next }
    /^ \.[a-zA-Z_.0-9$]+$/ { pending = $1; next }
    pending != "" && /^[[:space:]]+0x[0-9a-f]+[[:space:]]+0x[0-9a-f]+[[:space:]]/ {
        take(pending, $2, $3); pending = ""; next }
    /^ \.[a-zA-Z_.0-9$]+[[:space:]]+0x[0-9a-f]+[[:space:]]+0x[0-9a-f]+[[:space:]]/ {
        take($1, $3, $4); pending = ""; next }
    { pending = "" }
    END { printf "linked_text=%d linked_rodata=%d", t, r }' "$out/app.map")

floats=$(arm-none-eabi-nm "$out/app.elf" | awk '
    { s = $NF }
    s ~ /^__aeabi_(f|d|cf|cd)/ || s ~ /^__aeabi_[a-z]*2[fd]$/ ||
    s ~ /^__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord|float|floatun|fix|fixuns|extend|trunc)[a-z]*(sf|df)[0-9a-z]*$/ {
        printf "%s%s", (n++ ? "," : ""), s }
    END { if (!n) printf "none" }')

set +e
timeout 300 qemu-system-arm -M mps2-an386 -nographic -semihosting -icount shift=3 \
    -kernel "$out/app.elf" >"$out/stdout.txt" 2>"$out/stderr.txt"
status=$?
set -e
meas=$(sed -n 's/^qc-measure: //p' "$out/stdout.txt")
get() { echo "$meas" | tr ' ' '\n' | sed -n "s/^$1=//p"; }

echo "model=$name entry=$entry cflags=\"$cpu $*\""
echo "  object:   $sections"
echo "  image:    $linked"
echo "  arena=${arena:-unknown}"
echo "  stack_static=$stack_static stack_measured=$(get stack_bytes)"
echo "  instructions=$(get instructions) (harness overhead subtracted: $(get overhead_instructions); calibration $(get calib_ticks) ticks for $(get calib_instructions))"
echo "  float_routines=$floats"
echo "  exit_status=$status"
exit "$status"
