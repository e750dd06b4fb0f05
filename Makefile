# The two commands of README.md's quick start. Each installs what it needs
# from Debian's packages first (through sudo when not root), so they work on a
# fresh Debian 12 machine with R.
#   make demo   install dependencies and diffrank, run the demo on the embedded data
#   make test   install test dependencies, build the package and run R CMD check
#   make bench  install test dependencies and diffrank, run the scripts in bench/

R ?= R
RSCRIPT ?= Rscript
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VERSION := $(shell sed -n 's/^Version: *//p' DESCRIPTION)
TARBALL := diffrank_$(VERSION).tar.gz

# Debian packages: the build toolchain, the package's dependencies, and the
# packages the tests, vignettes and benchmarks compare diffrank with.
DEPS_RUN := make r-base-dev r-cran-rcpp r-cran-rcppeigen r-cran-rcppparallel r-cran-cli \
  r-cran-rspectra
DEPS_TEST := $(DEPS_RUN) r-cran-testthat r-cran-knitr r-cran-rmarkdown pandoc \
  r-bioc-preprocesscore r-bioc-limma r-bioc-summarizedexperiment r-cran-kernlab \
  r-cran-pcapp r-cran-withr r-bioc-all r-bioc-biobase r-cran-bench r-cran-glmnet \
  r-bioc-multtest r-bioc-impute r-cran-th.data r-bioc-bladderbatch
DEPS_DEV := $(DEPS_TEST) r-cran-roxygen2 r-cran-pkgbuild

.PHONY: demo test bench deps-run deps-test deps-dev install document

demo: deps-run install
	$(RSCRIPT) demo/diffrank.R

test: deps-test
	rm -rf diffrank.Rcheck $(TARBALL)
	$(R) CMD build .
	MAKEFLAGS=-j2 _R_CHECK_FORCE_SUGGESTS_=true $(R) CMD check --no-manual $(TARBALL); \
	  status=$$?; sh tools/check-summary.sh diffrank.Rcheck || status=1; exit $$status

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
	MAKEFLAGS=-j2 $(R) CMD INSTALL --preclean --no-multiarch .

# Regenerate NAMESPACE, man/ and the Rcpp exports after changing R/ or src/.
# roxygen2 compiles src/ without optimization: remove those objects so that no
# later install reuses them.
document: deps-dev
	$(RSCRIPT) -e 'Rcpp::compileAttributes(); roxygen2::roxygenise()'
	rm -f src/*.o src/*.so
