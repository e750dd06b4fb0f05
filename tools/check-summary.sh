#!/bin/sh
# Prints testthat's totals from an R CMD check folder as "N passed, N failed"
# and fails when the check ended with an ERROR or a WARNING.
dir=${1:-diffrank.Rcheck}
out=$(ls "$dir"/tests/testthat.Rout.fail "$dir"/tests/testthat.Rout 2>/dev/null | head -n 1)
line=$(grep -h '\[ FAIL [0-9]* | WARN [0-9]* | SKIP [0-9]* | PASS [0-9]* \]' "$out" 2>/dev/null | tail -n 1)
failed=$(echo "$line" | sed -n 's/.*FAIL \([0-9]*\).*/\1/p')
skipped=$(echo "$line" | sed -n 's/.*SKIP \([0-9]*\).*/\1/p')
passed=$(echo "$line" | sed -n 's/.*PASS \([0-9]*\).*/\1/p')
status=0
if [ -z "$line" ]; then
  echo "check-summary: no testthat totals found in $dir/tests" >&2
  passed=0; failed=1; skipped=0; status=1
fi
if ! grep -q '^Status: \(OK\|[0-9]* NOTEs\?\)$' "$dir/00check.log" 2>/dev/null; then
  echo "check-summary: R CMD check did not end cleanly:" >&2
  grep '^Status:' "$dir/00check.log" >&2 || echo "no 00check.log" >&2
  status=1
fi
[ "$failed" = 0 ] || status=1
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
