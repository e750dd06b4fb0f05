# The two commands of README.md's quick start. Each installs what it needs
# from Debian's packages first (through sudo when not root), so they work on a
# fresh Debian 12 machine with R.
#   make demo   install dependencies, build diffrank with its vignettes and install it,
#               run the demo on the embedded data
#   make test   install test dependencies, run the C++ tests of the core, build the
#               package and run R CMD check
#   make cpp-test  the standalone C++ tests of the core alone (CMake, GoogleTest)
#   make bench  install test dependencies and diffrank, run the scripts in bench/
#   make site   build the pkgdown web site into docs/ (offline)
#   make sanitize  build diffrank with AddressSanitizer and UndefinedBehaviorSanitizer
#               into sanitize-lib/ and run the tests, examples and vignettes against it
#               (tools/sanitize.sh); fails on any sanitizer report
#   make release-checks  with diffrank installed: valgrind on every family
#               (tools/valgrind.sh), rounds of 2,000 calls of each main function with the
#               resident memory sampled (tools/memory_loop.R), and SIGINT during a
#               long call of each family (tools/interrupts.R), and every export called with
#               adversarial arguments in child processes (tools/fuzz.R: no crash, hang,
#               silent non-finite result, unclear error or modified input)

R ?= R
RSCRIPT ?= Rscript
# parallel compile jobs of test, sanitize and install (make test JOBS=1)
JOBS ?= 2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VERSION := $(shell sed -n 's/^Version: *//p' DESCRIPTION)
TARBALL := diffrank_$(VERSION).tar.gz

# Debian packages: the build toolchain, the package's dependencies, the
# packages the tests, vignettes and benchmarks compare diffrank with, and gcc's
# sanitizer runtimes for make sanitize.
DEPS_RUN := make r-base-dev r-cran-rcpp r-cran-rcppeigen r-cran-rcppparallel r-cran-cli \
  r-cran-rspectra
# The C++ tests of the core (make cpp-test) need CMake and GoogleTest, and
# those of suquan.hpp the Eigen headers of RcppEigen (found with Rscript).
DEPS_CPP := cmake libgtest-dev r-cran-rcppeigen
DEPS_TEST := $(DEPS_RUN) $(DEPS_CPP) r-cran-testthat r-cran-knitr r-cran-rmarkdown pandoc \
  r-bioc-preprocesscore r-bioc-limma r-bioc-summarizedexperiment r-cran-kernlab \
  r-cran-pcapp r-cran-withr r-bioc-all r-bioc-biobase r-cran-bench r-cran-glmnet \
  r-cran-igraph r-cran-mlbench r-cran-rcppml r-cran-nmf libasan8 libubsan1 \
  r-bioc-multtest r-bioc-impute r-cran-th.data r-bioc-bladderbatch \
  r-bioc-delayedarray r-bioc-hdf5array r-bioc-biocparallel r-cran-matrix
DEPS_DEV := $(DEPS_TEST) r-cran-roxygen2 r-cran-pkgbuild r-cran-pkgdown qpdf

.PHONY: demo test sanitize bench deps-run deps-test deps-dev install document release-checks site

# The demo installs the built tarball, so that the vignettes are installed
# too (vignette(package = "diffrank")); building them needs the test packages.
demo: deps-test
	rm -f $(TARBALL)
	$(R) CMD build .
	MAKEFLAGS=-j$(JOBS) $(R) CMD INSTALL --no-multiarch $(TARBALL)
	$(RSCRIPT) demo/diffrank.R

# The headers of inst/include/diffrank tested without R (tests/cpp):
# configure, build and run with CMake, GoogleTest and CTest, in a build folder
# that is git-ignored (tests/cpp is left out of the R build).
.PHONY: cpp-test
CPP_BUILD := tests/cpp/build
cpp-test:
	cmake -S tests/cpp -B $(CPP_BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CPP_BUILD) --parallel 2
	ctest --test-dir $(CPP_BUILD) --output-on-failure --parallel 2

# NOT_CRAN=true: the tests skipped on CRAN (slower ones, help-page checks) run here.
test: deps-test
	$(MAKE) --no-print-directory cpp-test
	rm -rf diffrank.Rcheck $(TARBALL)
	$(R) CMD build .
	MAKEFLAGS=-j$(JOBS) _R_CHECK_FORCE_SUGGESTS_=true NOT_CRAN=true $(R) CMD check --no-manual $(TARBALL); \
	  status=$$?; sh tools/check-summary.sh diffrank.Rcheck || status=1; exit $$status

# Takes about as long as make test; see tools/sanitize.sh for what it runs.
sanitize: deps-test
	MAKEFLAGS=-j$(JOBS) sh tools/sanitize.sh

# Before a release, not in CI (about 30 minutes): see README.md.
release-checks: deps-test install
	$(SUDO) apt-get install -y -qq --no-install-recommends valgrind
	sh tools/valgrind.sh
	$(RSCRIPT) tools/memory_loop.R
	$(RSCRIPT) tools/interrupts.R
	$(RSCRIPT) tools/fuzz.R

bench: deps-test install
	for f in bench/*.R; do echo "== $$f"; $(RSCRIPT) $$f || exit 1; done

deps-run:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEPS_RUN)

deps-test:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEPS_TEST)

deps-dev:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEPS_DEV)

install:
	MAKEFLAGS=-j$(JOBS) $(R) CMD INSTALL --preclean --no-multiarch .

# The web site (_pkgdown.yml) into docs/: the reference grouped by family,
# with its examples run, and the vignettes as articles. Builds offline.
site: deps-dev
	$(RSCRIPT) -e 'options(pkgdown.internet = FALSE); pkgdown::build_site(".", new_process = FALSE, install = TRUE)'

# Regenerate NAMESPACE, man/ and the Rcpp exports after changing R/ or src/.
# roxygen2 compiles src/ without optimization: remove those objects so that no
# later install reuses them.
document: deps-dev
	$(RSCRIPT) -e 'Rcpp::compileAttributes(); roxygen2::roxygenise()'
	rm -f src/*.o src/*.so
