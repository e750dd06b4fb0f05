#' diffrank: differentiable ranks, sorts, quantile normalization and
#' permutation kernels
#'
#' Operators on ranks and sorts for statistics and machine learning, with a
#' header-only C++ core (`inst/include/diffrank/`) and multithreading through
#' RcppParallel. See `vignette(package = "diffrank")` for walkthroughs.
#'
#' @section Threads:
#' Every function that can use several threads has a `threads` argument whose
#' default is [diffrank_threads()], i.e. the option `diffrank.threads` (2 when
#' unset, the limit CRAN allows during checks). Raise it for a session with
#' `options(diffrank.threads = parallel::detectCores())`. Results are
#' identical for any number of threads.
#'
#' @keywords internal
#' @useDynLib diffrank, .registration = TRUE
#' @importFrom Rcpp sourceCpp
#' @importFrom RcppParallel RcppParallelLibs
"_PACKAGE"
