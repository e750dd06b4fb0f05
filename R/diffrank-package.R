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
#' identical for any number of threads. `threads` are threads inside one R
#' process; processes and cluster nodes are BiocParallel's, through the
#' `BPPARAM` argument of the functions that process data in blocks (see
#' [diffrank_blocks]).
#'
#' @section Vocabulary:
#' One set of argument names runs through the package:
#' * data: `x` (features in rows, samples in columns); `y`, the observed
#'   outcome of a fit ([suquan()], [cv_suquan()], [rank_svm()],
#'   [rank_regression()]) or the second data set of a kernel
#'   ([kendall_kernel()]); `pred` and `response`, the predictions and the
#'   observed outcome of a loss ([spearman_loss()], [soft_quantile_loss()],
#'   [soft_topk_loss()], [fy_loss()]);
#' * smoothing: `eps` (regularization), `scale` (how `eps` is made
#'   unit-free), `decreasing` (sort order, as in [sort()]);
#' * distributions: `weights`, the masses of what is averaged: of the values
#'   of each column for the Sinkhorn operators, of the samples in a quantile
#'   target ([quantile_target()], [normalize_quantiles_robust()]), of the
#'   rankings aggregated ([aggregate_rankings()]); `target`
#'   and `target_weights`, a reference distribution and its masses; `probs`,
#'   quantile levels ([sinkhorn_quantile()], [soft_quantile_loss()]);
#' * sizes: `n_quantiles`, the levels of a quantile target
#'   ([quantile_target()], [qmf()]); `n_targets`, the targets of a transport
#'   (the Sinkhorn operators); `n_samples`, Monte-Carlo draws;
#' * `lambda`: the penalty of a fit ([suquan()], [cv_suquan()], [qmf()],
#'   [rank_regression()], as in glmnet), and the bandwidth of the Mallows
#'   kernel ([mallows_kernel()], as in Jiao and Vert 2015);
#' * `blocks` of [normalize_quantiles()]: groups of features normalized
#'   apart, as in preprocessCore's `normalize.quantiles.in.blocks()`; the
#'   column blocks of data processed block by block are those of
#'   DelayedArray ([diffrank_blocks], argument `BPPARAM`);
#' * reporting: `progress`, a progress line on long work; `verbose` (fits),
#'   the course of the objective as well;
#' * `threads`; `assay.type` for `SummarizedExperiment` inputs; `BPPARAM`
#'   (BiocParallel workers; `NULL`, the default, processes the blocks in
#'   this process without BiocParallel, as `BiocParallel::SerialParam()`
#'   does) and `filepath` (an HDF5 file for the result) for data processed
#'   in blocks ([diffrank_blocks]).
#'
#' Every differentiable operator has the forms `<op>()`, `<op>_fn()` (a
#' [diffrank_operator]) and `<op>_vjp(x, v, ...)`. Arguments renamed to
#' this vocabulary (`tau`, `target` of [fy_loss()], `labels`, `rankings`,
#' `target_length`) are still accepted under their former names, with a
#' warning, for one release.
#'
#' @section Orientation and memory:
#' Expression data are features (genes) in rows and samples in columns. The
#' normalizers, fits and kernels give a message (class `diffrank_orientation`)
#' when `x` has at least 200 columns and at least four times as many columns
#' as rows, which is most often a transposed matrix; `predict()` with new data
#' that share no feature name with the fit is an error, which says when the
#' new data look transposed. Size arguments (`n_targets`, `n_samples`,
#' `n_quantiles`) are checked against the option
#' `diffrank.memory_limit` (bytes, 4 GB when unset) before anything is
#' allocated.
#'
#' @evalRd export_table_rd()
#'
#' @keywords internal
#' @useDynLib diffrank, .registration = TRUE
#' @importFrom Rcpp sourceCpp
#' @importFrom RcppParallel RcppParallelLibs
"_PACKAGE"

# The table of the package-level help page: every exported function with its
# arguments, built from the namespace when the documentation is generated
# (the generics have their default method's arguments, R/args_of_generics.R).
export_table_rd <- function() {
  ns <- asNamespace("diffrank")
  exports <- sort(getNamespaceExports("diffrank"))
  exports <- exports[vapply(exports, function(f) is.function(get(f, ns)), TRUE)]
  rows <- vapply(exports, function(f) {
    args <- names(formals(get(f, ns)))
    sprintf("\\code{\\link{%s}} \\tab %s \\cr", f,
            gsub("_", "\\_", paste(args, collapse = ", "), fixed = TRUE))
  }, "")
  paste(c("\\section{Exported functions and their arguments}{", "\\tabular{ll}{",
          "\\strong{function} \\tab \\strong{arguments} \\cr", rows, "}}"), collapse = "\n")
}
