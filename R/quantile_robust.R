# Robust quantile normalization: targets that leave out or down-weight the
# most extreme samples, as preprocessCore::normalize.quantiles.robust().
# normalize_quantiles_robust() and robust_weights().

#' Robust quantile normalization
#'
#' Quantile normalization to a robust target, as
#' `preprocessCore::normalize.quantiles.robust()`: the target leaves out the
#' most extreme samples (by default the one whose variance differs most from
#' the others'), or weighs the samples, or takes a trimmed mean or the median
#' of the samples' quantiles instead of their mean. Every sample, including
#' those left out of the target, is then normalized to it.
#'
#' @inheritParams normalize_quantiles
#' @inheritParams quantile_target
#' @param ties How a block of tied values in a column is treated: `"midrank"`
#'   (the default, Bioconductor's rule), `"average"` or `"first"`; see the
#'   section Ties of [normalize_quantiles()].
#' @param weights `NULL` to choose the samples with `remove_extreme` and
#'   `n_remove`, or one non-negative weight per sample (then `remove_extreme`
#'   and `n_remove` must not be given).
#' @param remove_extreme,n_remove Which samples leave the target, see
#'   [robust_weights()]: the `n_remove` samples whose `"variance"` (the
#'   default), `"mean"` or `"both"` are the most extreme, or `"none"`.
#' @return What [normalize_quantiles()] returns (a `DelayedMatrix` for a
#'   `DelayedMatrix` or sparse `x`).
#' @section Large data:
#' A `DelayedMatrix` `x` (an HDF5-backed assay, ...) or a sparse matrix is
#' processed in column blocks with identical results: one pass for the
#' samples' means and variances (two for values beyond `2^256` in size), one
#' for the target and one that writes the result; see [diffrank_blocks].
#' With `trim > 0` the samples' quantile functions are held in memory at
#' once (the size of the data, within option `diffrank.memory_limit`).
#' @section Comparison with preprocessCore:
#' The results are those of `preprocessCore::normalize.quantiles.robust()`
#' with the same `weights`, `remove.extreme` and `n.remove` (`trim = 0`),
#' with `use.log2 = TRUE` (`geometric = TRUE`), and with `use.median = TRUE`
#' and `remove.extreme = "none"` (`trim = 0.5`). preprocessCore's median
#' ignores the weights, diffrank's leaves out the samples of weight 0.
#' preprocessCore has no rule for missing values here; diffrank applies that
#' of [normalize_quantiles()]. Its `weights = "huber"` is not offered.
#' @references Bolstad BM (2001-2021). preprocessCore: a collection of
#'   pre-processing functions. Bioconductor package.
#' @seealso [quantile_target()] to keep the robust target for new samples.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(400), 100)
#' x[, 4] <- 3 * x[, 4]             # one sample with a much larger spread
#' robust_weights(x)
#' normalized <- normalize_quantiles_robust(x)
#' # the median of the samples' quantiles, with every sample
#' normalize_quantiles_robust(x, remove_extreme = "none", trim = 0.5)[1:3, ]
normalize_quantiles_robust <- function(x, ...) {
  UseMethod("normalize_quantiles_robust")
}

#' @rdname normalize_quantiles_robust
#' @export
normalize_quantiles_robust.default <- function(x, weights = NULL,
                                               remove_extreme = c("variance", "mean", "both", "none"),
                                               n_remove = 1, trim = 0, geometric = FALSE,
                                               ties = c("midrank", "average", "first"),
                                               threads = diffrank_threads(), BPPARAM = NULL,
                                               filepath = NULL, ...) {
  check_dots_empty(...)
  ties <- match_choice(ties, c("midrank", "average", "first"), "ties")
  threads <- check_threads(threads)
  if (!is.null(weights) && (!missing(remove_extreme) || !missing(n_remove))) {
    abort("Give either `weights` or `remove_extreme` and `n_remove`, which choose the weights.")
  }
  note_orientation(x)
  if (is_block_input(x)) {
    return(normalize_quantiles_robust_blocks(x, weights, remove_extreme, n_remove, trim,
                                             geometric, ties, threads, filepath, BPPARAM))
  }
  check_block_args(BPPARAM, filepath)
  m <- check_expression_matrix(x)
  if (is.null(weights)) weights <- extreme_weights(m, remove_extreme, n_remove, threads)
  fit <- new_quantile_target(m, weights = weights, trim = trim, geometric = geometric,
                             threads = threads)
  restore_shape(qn_normalize(m, fit$target, ties, threads), x, m)
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(normalize_quantiles_robust) <- formals(normalize_quantiles_robust.default)

#' @rdname normalize_quantiles_robust
#' @export
normalize_quantiles_robust.SummarizedExperiment <- assay_method(
  "normalize_quantiles_robust.default", name = "qnorm_robust")

#' Samples left out of a robust quantile normalization target
#'
#' Weights 1 for the samples kept and 0 for the `n_remove` samples whose
#' spread or level is the most extreme, chosen as preprocessCore's
#' `normalize.quantiles.robust()` chooses them. With `"variance"` a sample's
#' score is the sum over the other samples of `v_j / v_k + v_k / v_j` (`v` the
#' variances); with `"mean"` it is `|sum over the other samples of
#' (m_k - m_j)|` (`m` the means); the largest scores are removed. `"both"`
#' removes `ceiling(n_remove / 2)` samples by variance, then
#' `floor(n_remove / 2)` by mean among the others. Missing values are left out
#' of the means and variances.
#'
#' @inheritParams normalize_quantiles
#' @param remove_extreme `"variance"`, `"mean"`, `"both"` or `"none"`.
#' @param n_remove The number of samples to leave out, fewer than the samples.
#' @return A numeric vector of 0 and 1, one per sample, named by the columns.
#' @seealso [normalize_quantiles_robust()], and `weights` of [quantile_target()].
#' @export
#' @examples
#' x <- cbind(a = 1:10, b = 2:11, c = (1:10) * 5)
#' robust_weights(x)
#' robust_weights(x, "mean")
robust_weights <- function(x, ...) {
  UseMethod("robust_weights")
}

#' @rdname robust_weights
#' @export
robust_weights.default <- function(x, remove_extreme = c("variance", "mean", "both", "none"),
                                   n_remove = 1, threads = diffrank_threads(), BPPARAM = NULL,
                                   ...) {
  check_dots_empty(...)
  threads <- check_threads(threads)
  note_orientation(x)
  if (is_block_input(x)) return(robust_weights_blocks(x, remove_extreme, n_remove, threads, BPPARAM))
  check_block_args(BPPARAM)
  m <- check_expression_matrix(x)
  stats::setNames(extreme_weights(m, remove_extreme, n_remove, threads), colnames(m))
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(robust_weights) <- formals(robust_weights.default)

#' @rdname robust_weights
#' @export
robust_weights.SummarizedExperiment <- assay_method("robust_weights.default")

extreme_weights <- function(m, remove_extreme, n_remove, threads) {
  rule <- check_extreme_rule(remove_extreme, n_remove, ncol(m))
  if (rule$rule == "none") return(rep(1, ncol(m)))
  raw <- qn_column_moments(m, threads)
  unit <- power_of_two_unit(m)
  moments <- if (unit == 1) raw else qn_column_moments(m / unit, threads)
  weights_from_moments(moments, raw[3L, ] == 1, rule, colnames(m))
}

# remove_extreme and n_remove, checked for n samples.
check_extreme_rule <- function(remove_extreme, n_remove, n) {
  rule <- match_choice(remove_extreme, c("variance", "mean", "both", "none"), "remove_extreme")
  if (rule == "none") return(list(rule = rule, n_remove = 0L))
  n_remove <- check_whole(n_remove, "n_remove")
  if (n_remove >= n) {
    abort("`n_remove` must be smaller than the number of samples (%d), not %d.", n, n_remove)
  }
  list(rule = rule, n_remove = n_remove)
}

# Variances of values near 1e308 overflow and those of values near 1e-300
# underflow, and their ratios then pick the wrong samples: the scores are
# invariant to a common scale, so `moments` (qn_column_moments()) are those
# of the data in a power-of-two unit (exact); `spread` says which columns
# have two different values, in the data's own units.
weights_from_moments <- function(moments, spread, rule, labels) {
  if (rule$rule %in% c("variance", "both") && !all(spread)) {
    bad <- which(!spread)[1L]
    abort("Column %s of `x` is constant: variances cannot choose the extreme samples.",
          if (!is.null(labels)) labels[bad] else bad)
  }
  qn_extreme_from_moments(moments[1L, ], moments[2L, ], rule$rule, rule$n_remove)
}

# The largest absolute value of m, missing values left out (-Inf when none
# is observed).
largest_abs <- function(m) suppressWarnings(max(abs(range(m, na.rm = TRUE))))

# 1 for data of ordinary magnitude, else the power of two near the largest
# absolute value (missing values left out), so that sums of squares of
# m / unit stay within double precision.
power_of_two_unit <- function(m) unit_for_size(largest_abs(m))

# The unit of power_of_two_unit() for data whose largest absolute value is
# `size`. 2^1024 is not a double: values above 2^1023 are divided by 2^1023
# and stay below 2.
unit_for_size <- function(size) {
  if (!is.finite(size) || size == 0 || (size <= 2^256 && size >= 2^-256)) return(1)
  2^min(ceiling(log2(size)), 1023)
}
