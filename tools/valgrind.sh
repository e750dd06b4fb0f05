#!/bin/sh
# valgrind check before a release (make release-checks): runs
# tools/valgrind.R (each family once, error paths included) under Debian's
# valgrind with R's debugger option, then fails on any invalid read or
# write, any use of uninitialised values in diffrank's code, or any
# "definitely lost" block allocated from diffrank's code. R's own
# allocations kept at exit are not diffrank's and are not counted.
#   sh tools/valgrind.sh        (diffrank installed; about 5 minutes)
set -u
log=${VALGRIND_LOG:-valgrind.log}
R -d "valgrind --leak-check=full --show-leak-kinds=definite --num-callers=30" --vanilla \
  -f tools/valgrind.R > "$log" 2>&1
status=$?
if [ $status -ne 0 ] || ! grep -q "every family ran" "$log"; then
  echo "tools/valgrind.R failed under valgrind (status $status); see $log"
  exit 1
fi
invalid=$(grep -c "Invalid read\|Invalid write\|Invalid free" "$log")
# Uninitialised values in R itself are known false positives (R's own
# memory manager); only those whose stack passes through diffrank count.
uninit=$(awk '/uninitialised|Uninitialised/ {rec = 1; hit = 0; next}
  rec && /diffrank/ {hit = 1}
  rec && /^==[0-9]+== $/ {if (hit) n++; rec = 0}
  END {print n + 0}' "$log")
lost=$(awk '/definitely lost in loss record/ {rec = 1; hit = 0; next}
  rec && /diffrank/ {hit = 1}
  rec && /^==[0-9]+== $/ {if (hit) n++; rec = 0}
  END {print n + 0}' "$log")
summary=$(grep "ERROR SUMMARY\|definitely lost:" "$log" | tail -2 | sed 's/^==[0-9]*== *//')
echo "valgrind: $invalid invalid reads/writes/frees, $uninit uses of uninitialised values in" \
  "diffrank, $lost definitely lost record(s) from diffrank"
echo "$summary"
[ "$invalid" -eq 0 ] && [ "$uninit" -eq 0 ] && [ "$lost" -eq 0 ]
