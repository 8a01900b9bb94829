#!/bin/sh
# Runs every test binary given, from the repository root, and sums their
# "N passed, N failed" lines into one. A binary that crashes or prints no
# summary counts as one failure. Exit status: 0 only when nothing failed.
# Tests run with passive OpenMP waits, as the duet binary does (see src/cli/duet.c).
: "${OMP_WAIT_POLICY:=PASSIVE}"
export OMP_WAIT_POLICY
total_pass=0
total_fail=0
for t in "$@"; do
    name=$(basename "$t")
    out=$("$t" 2>&1)
    rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -n 20
        echo "FAIL $name: exited $rc without a summary line"
        total_fail=$((total_fail + 1))
        continue
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    if [ "$f" -ne 0 ]; then
        printf '%s\n' "$out" | grep -E 'FAIL|error|ERROR|Sanitizer|runtime error' | head -n 30
        echo "FAIL $name: $line (exit $rc)"
    else
        echo "ok   $name: $line"
    fi
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
