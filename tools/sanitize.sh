#!/bin/sh
# `make sanitize`: builds diffrank with gcc's AddressSanitizer and
# UndefinedBehaviorSanitizer into a private library (sanitize-lib/, ignored by
# git and by R CMD build), then runs against it, with the ASan runtime
# preloaded into R:
#   1. the whole testthat suite,
#   2. every help-page example (man/*.Rd, \donttest included),
#   3. the R code of every vignette (knitted, as R CMD build does),
# and fails on any test failure, any error and any sanitizer report.
# Logs are kept in sanitize-lib/logs/.
set -u
cd "$(dirname "$0")/.."
R=${R:-R}
RSCRIPT=${RSCRIPT:-Rscript}
root=$PWD
lib=$root/sanitize-lib
logs=$lib/logs
start=$(date +%s)

rm -rf "$lib"
mkdir -p "$lib/work" "$logs"

# -fsanitize=float-cast-overflow is not part of -fsanitize=undefined in gcc,
# so it is named in -fno-sanitize-recover too, which makes the first UBSan
# report fatal. -O1 keeps the build and the run reasonably fast while keeping
# stack traces usable.
cat > "$lib/Makevars" <<'EOF'
SAN = -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow
CFLAGS = -g -O1 $(SAN)
CXXFLAGS = -g -O1 $(SAN)
CXX17FLAGS = -g -O1 $(SAN)
LDFLAGS = $(SAN)
EOF

echo "== sanitize: building diffrank with ASan and UBSan into $lib"
t0=$(date +%s)
# --preclean and --clean: no sanitized object is left in src/ for a later
# ordinary install to pick up. --no-test-load: R cannot load the library
# without the ASan runtime preloaded, which is done below.
if ! R_MAKEVARS_USER="$lib/Makevars" MAKEFLAGS="${MAKEFLAGS:--j1}" \
  "$R" CMD INSTALL --preclean --clean --no-multiarch --no-test-load --library="$lib" . \
  >"$logs/install.log" 2>&1; then
  cat "$logs/install.log"
  echo "sanitize: the sanitized build failed" >&2
  exit 1
fi
echo "   (build: $(($(date +%s) - t0)) s)"
grep -q -- '-fsanitize=address' "$logs/install.log" || {
  echo "sanitize: the build did not use the sanitizer flags" >&2
  exit 1
}

cxx=$("$R" CMD config CXX17 | awk '{print $1}')
asan=$("$cxx" -print-file-name=libasan.so)
if [ ! -e "$asan" ]; then
  echo "sanitize: $cxx has no libasan.so (Debian: apt-get install libasan8)" >&2
  exit 1
fi

# Runtime options (found by running the suite: nothing else was needed; in
# particular RcppParallel's TBB reports no ODR violation or allocator
# mismatch, so those checks stay on):
# - detect_leaks=0: R itself never frees much of what it allocates (the
#   leaks that matter to diffrank are measured by tests/testthat/test-hardening.R
#   and test-threads.R in an ordinary build);
# - allocator_may_return_null=1: R asks malloc for vectors that cannot exist
#   (the tests do, on purpose) and turns a NULL into "cannot allocate
#   vector"; ASan's default is to abort with allocation-size-too-big;
# - log_path: every R process writes its reports to its own file, grepped
#   below, so that no report is lost in captured or discarded output.
# UBSan: halt_on_error with -fno-sanitize-recover makes a report fatal.
ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:log_path=$logs/asan"
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan"
export ASAN_OPTIONS UBSAN_OPTIONS
export R_LIBS="$lib${R_LIBS:+:$R_LIBS}"
# vignettes and examples must not start more threads than the machine has
export OMP_NUM_THREADS=1
# the whole suite, as make test runs it: the tests skipped on CRAN (slow
# ones, bad-input sweeps, block back-ends) are the ones most worth running
# under the sanitizers
export NOT_CRAN=true

run() {  # run <name> <R code>: one R process under the sanitizers
  name=$1
  shift
  echo "== sanitize: $name"
  t0=$(date +%s)
  (cd "$lib/work" && LD_PRELOAD="$asan" "$RSCRIPT" -e "$1") >"$logs/$name.log" 2>&1
  status=$?
  tail -n 5 "$logs/$name.log"
  echo "   ($name: $(($(date +%s) - t0)) s)"
  [ "$status" = 0 ] || { echo "sanitize: $name failed (exit $status), see $logs/$name.log" >&2; failed=1; }
}
failed=0

run load 'library(diffrank); stopifnot(grepl("sanitize-lib", find.package("diffrank")))'

run tests "
  res <- testthat::test_dir('$root/tests/testthat', package = 'diffrank',
                            load_package = 'installed', reporter = 'summary',
                            stop_on_failure = FALSE)
  df <- as.data.frame(res)
  cat(sprintf('\n%d passed, %d failed, %d skipped\n', sum(df\$passed),
              sum(df\$failed) + sum(df\$error), sum(df\$skipped)))
  quit(status = if (sum(df\$failed) + sum(df\$error) > 0) 1 else 0)
"

run examples "
  library(diffrank)
  grDevices::pdf(NULL)
  failures <- character()
  for (rd in sort(list.files('$root/man', pattern = '[.]Rd\$', full.names = TRUE))) {
    code <- tempfile(fileext = '.R')
    tools::Rd2ex(rd, code, commentDontrun = TRUE, commentDonttest = FALSE)
    if (!file.exists(code)) next
    cat('--', basename(rd), '\n')
    set.seed(1)
    ok <- tryCatch({ source(code, local = new.env(), echo = FALSE); TRUE },
                   error = function(e) { message(basename(rd), ': ', conditionMessage(e)); FALSE })
    if (!ok) failures <- c(failures, basename(rd))
  }
  if (length(failures)) stop('examples failed: ', paste(failures, collapse = ', '))
  cat('all examples ran\n')
"

# Vignettes are knitted as R CMD build does (not purled: chunk options such as
# eval = have_kernlab are then evaluated, so no chunk is silently dropped),
# with errors stopping the run.
for rmd in vignettes/*.Rmd; do
  [ -e "$rmd" ] || continue
  base=$(basename "$rmd" .Rmd)
  run "vignette-$base" "
    grDevices::pdf(NULL)
    knitr::opts_chunk\$set(error = FALSE)
    invisible(knitr::knit('$root/$rmd', output = '$lib/work/$base.md', envir = new.env(), quiet = TRUE))
    cat('vignette $base ran\\n')
  "
done

# Any report, fatal or not, in any log or any process's own report file.
reports=$(grep -l -E 'ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' \
  "$logs"/* 2>/dev/null)
if [ -n "$reports" ]; then
  echo "sanitize: sanitizer reports in:" >&2
  for f in $reports; do
    echo "---- $f" >&2
    grep -E -A 30 'ERROR: AddressSanitizer|runtime error:' "$f" | head -n 60 >&2
  done
  failed=1
fi

echo "== sanitize: $(($(date +%s) - start)) s"
if [ "$failed" != 0 ]; then
  echo "sanitize: FAILED" >&2
  exit 1
fi
echo "sanitize: no sanitizer report; tests, examples and vignettes passed"
