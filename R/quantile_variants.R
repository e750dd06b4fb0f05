# Variants of quantile normalization: robust targets, subsets of features
# (control probes), blocks of features, and group-aware normalization
# (qsmooth). The numerical work is in inst/include/diffrank/quantile_variants.hpp.

#' @rdname normalize_quantiles
#' @name normalize_quantiles
#' @param subset `NULL`, or the features that define the normalization (for
#'   example control probes): a logical vector with one value per feature,
#'   feature indices or row names. See the section Subsets of features.
#' @param blocks `NULL`, or a vector with one value per feature (a factor,
#'   character or integer vector) saying which block each feature belongs to:
#'   every block is quantile-normalized on its own, to the mean quantiles of
#'   its values, as `preprocessCore::normalize.quantiles.in.blocks()` does (for
#'   example perfect-match and mismatch probes, or probes of different types).
#'   It cannot be combined with `target` or `subset`.
#' @section Targets of another length:
#' A target given as a vector (or a [quantile_target()] fitted on another
#' number of features) keeps its own length: it is a quantile function, linear
#' between its values at the levels `(i - 1) / (length - 1)`, and the value of
#' rank k among q observed values takes it at the level `(k - 1) / (q - 1)`
#' (for a tied block, at the level of the block's mean rank with `"midrank"`).
#' This is the rule of `preprocessCore::normalize.quantiles.use.target()`, and
#' the results are identical to it.
#' @section Subsets of features:
#' With `subset`, the features of the subset define the normalization: in each
#' column they are quantile-normalized as a column of their own (the tie and
#' missing-value rules above), to `target`, or when `target` is `NULL` to the
#' mean quantiles of the subset, `quantile_target(x, subset = subset)`. Every
#' other feature is placed by its value among the subset's values of its
#' column: linear interpolation of their quantile levels (the mean rank of
#' tied values), the subset's lowest or highest level beyond its range; it
#' then takes the target at that level. These are the results of
#' `preprocessCore::normalize.quantiles.use.target(x, target, subset = )`,
#' with the target of `preprocessCore::normalize.quantiles.determine.target()`.
#' Every column needs at least one observed value in the subset. A target
#' fitted with a subset remembers it: it normalizes new data through the same
#' features (matched by row name, or by position when there are none) unless
#' another `subset` is given.
NULL

#' @rdname quantile_target
#' @name quantile_target
#' @param weights `NULL` (every sample counts the same), or one non-negative
#'   weight per sample: the target is the weighted mean of the samples'
#'   quantile functions; samples of weight 0 are left out. See
#'   [robust_weights()] to leave out the most extreme samples.
#' @param trim A number in `[0, 0.5]`: at each quantile level, the fraction of
#'   the samples' values dropped at each end before averaging, as
#'   `mean(trim = )`; `0.5` gives the median. Samples of weight 0 are left out;
#'   with `trim > 0` the other weights must be equal.
#' @param geometric If `TRUE`, the samples' quantiles are averaged on the log2
#'   scale and transformed back (a geometric mean; preprocessCore's
#'   `use.log2`). Needs positive values.
#' @param subset `NULL`, or the features the target is computed from (for
#'   example control probes): a logical vector with one value per feature,
#'   feature indices or row names. Each sample's quantile function is that of
#'   its observed values in the subset, as in
#'   `preprocessCore::normalize.quantiles.determine.target(subset = )`.
#' @param target_length The number of target values, by default the number of
#'   features; the target is interpolated onto that many levels
#'   (preprocessCore's `target.length`).
#' @section Feature names:
#' The object keeps the row names of the data it was fitted on (`$features`).
#' When it normalizes data with another set of features (other names, or
#' another number of features), a warning says how many features differ;
#' the target is then interpolated as [normalize_quantiles()] documents in the
#' section Targets of another length. The order of the features does not
#' matter.
NULL

# The fitted target values of a features x samples matrix `m`.
fit_target_values <- function(m, weights, trim, geometric, mask, target_length, threads) {
  plain <- is.null(weights) && trim == 0 && !geometric && is.null(mask)
  values <- if (plain) {
    qn_fit_target(m, threads)
  } else {
    if (is.null(weights)) weights <- rep(1, ncol(m))
    quantiles <- qn_column_quantiles(m, mask, nrow(m), threads)
    qn_summarize_levels(quantiles, weights, trim, geometric, threads)
  }
  if (target_length != length(values)) {
    values <- qn_column_quantiles(matrix(values, ncol = 1L), NULL, target_length, 1L)[, 1L]
  }
  values
}

# A quantile_target object fitted on the matrix `m` with the arguments of
# quantile_target().
new_quantile_target <- function(m, weights = NULL, trim = 0, geometric = FALSE, subset = NULL,
                                target_length = NULL, threads = 1L) {
  summary <- check_target_summary(weights, trim, geometric, m)
  weights <- summary$weights
  trim <- summary$trim
  geometric <- summary$geometric
  mask <- if (is.null(subset)) NULL else feature_mask(subset, m)
  if (!is.null(mask)) check_subset_observed(m, mask)
  if (geometric) check_positive_quantiles(m, weights, mask)
  target_length <- check_target_length(target_length, m)
  values <- fit_target_values(m, weights, trim, geometric, mask, target_length, threads)
  summary <- if (trim >= 0.5) "median" else if (trim > 0) sprintf("mean trimmed by %g", trim)
             else if (!is.null(weights)) "weighted mean" else "mean"
  quantile_target_object(
    values, ncol(m), nrow(m), check_expression_values(m), rownames(m),
    subset = if (is.null(mask)) NULL else stats::setNames(mask == 1L, rownames(m)),
    weights = if (is.null(weights)) NULL else stats::setNames(weights, colnames(m)),
    summary = paste0(if (geometric) "geometric " else "", summary))
}

# How the samples' quantiles are summarized into a target (quantile_target()'s
# `weights`, `trim` and `geometric`), checked for the samples of x.
check_target_summary <- function(weights, trim, geometric, x) {
  weights <- check_sample_weights(weights, x)
  trim <- check_number(trim, "trim", lower = 0, upper = 0.5)
  geometric <- check_flag(geometric, "geometric")
  if (trim > 0 && !is.null(weights) && length(unique(weights[weights > 0])) > 1L) {
    abort("With `trim` > 0 the samples kept count the same: `weights` must be 0 or one common value.")
  }
  list(weights = weights, trim = trim, geometric = geometric)
}

# The quantile_target object (also built block by block, R/blocks.R).
quantile_target_object <- function(values, n_samples, n_features, n_missing, features,
                                   subset = NULL, weights = NULL, summary = "mean") {
  structure(
    list(target = values, n_samples = n_samples, n_features = n_features,
         n_missing = n_missing, features = features, subset = subset, weights = weights,
         summary = summary),
    class = "quantile_target"
  )
}

# Extra lines of print.quantile_target() for the variants.
print_target_variant <- function(x) {
  if (!is.null(x$summary) && x$summary != "mean") {
    cat(sprintf("  %s of the samples' quantiles", x$summary))
    if (!is.null(x$weights)) cat(sprintf(" (%d of %d samples kept)", sum(x$weights > 0),
                                         length(x$weights)))
    cat("\n")
  }
  if (!is.null(x$subset)) {
    cat(sprintf("  from a subset of %d of the %d features\n", sum(x$subset), length(x$subset)))
  }
}

# Normalization with `subset` or `blocks` (see normalize_quantiles()).
normalize_variant <- function(m, target, subset, blocks, ties, threads) {
  if (!is.null(blocks)) {
    if (!is.null(target) || !is.null(subset)) {
      abort("`blocks` normalizes each block to its own mean quantiles: it cannot be combined with `target` or `subset`.")
    }
    b <- check_blocks(blocks, m)
    return(qn_normalize_blocks(m, b$rows, b$starts, ties, threads))
  }
  mask <- feature_mask(subset, m)
  check_subset_observed(m, mask)
  values <- if (is.null(target)) {
    fit_target_values(m, NULL, 0, FALSE, mask, nrow(m), threads)
  } else {
    target_values(target)
  }
  qn_normalize_subset(m, mask, values, ties, threads)
}

# The subset a fitted target remembers, for the features of `m`.
fitted_subset <- function(target, m) {
  chosen <- target$subset
  if (!is.null(target$features) && !is.null(rownames(m))) {
    found <- rownames(m) %in% target$features[chosen]
    if (!any(found)) {
      abort("The target was fitted on a subset of features, none of which is in the new data; give `subset`.")
    }
    return(found)
  }
  if (length(chosen) != nrow(m)) {
    abort("The target was fitted on a subset of %d features, but the new data have %d features and no row names to find them; give `subset`.",
          length(chosen), nrow(m))
  }
  unname(chosen)
}

# An error when the new data share no feature name with a fitted target:
# they are other data, or transposed (then their column names are the
# target's features).
check_common_features <- function(target, x, arg) {
  fitted <- target$features
  new <- rownames(x)
  if (!is.character(fitted) || is.null(new) || any(new %in% fitted)) return(invisible())
  abort("`%s` has no feature (row name) in common with the %s features of the quantile target.%s",
        arg, big(length(fitted)), transposed_hint(x, fitted, arg))
}

# A warning when `m` has another set of features than a fitted target.
warn_feature_mismatch <- function(target, m) {
  if (!inherits(target, "quantile_target")) return(invisible())
  check_common_features(target, m, "x")
  fitted <- target$features
  n_fitted <- target$n_features
  if (!is.numeric(n_fitted) || length(n_fitted) != 1L) return(invisible())
  new <- rownames(m)
  detail <- NULL
  if (is.character(fitted) && !is.null(new)) {
    absent <- sum(!fitted %in% new)
    added <- sum(!new %in% fitted)
    if (absent > 0L || added > 0L) {
      detail <- sprintf("%s of its %s features are absent from the new data, and %s of the new data's %s features were not in the fit",
                        big(absent), big(n_fitted), big(added), big(nrow(m)))
    }
  }
  if (is.null(detail) && nrow(m) != n_fitted) {
    detail <- sprintf("it was fitted on %s features and the new data have %s (%s %s)", big(n_fitted),
                      big(nrow(m)), big(abs(nrow(m) - n_fitted)),
                      if (nrow(m) < n_fitted) "fewer" else "more")
  }
  if (!is.null(detail)) {
    warning(simpleWarning(sprintf(
      "The new data do not have the features of the quantile target: %s. The target is interpolated onto the new data's quantile levels (see ?quantile_target).",
      detail), call = exported_caller()))
  }
  invisible()
}

# The length of a fitted target: the number of features, or a whole number
# whose quantiles (one column of them per sample) fit in memory_limit().
check_target_length <- function(target_length, x) {
  if (is.null(target_length)) return(nrow(x))
  target_length <- check_whole(target_length, "target_length")
  check_memory(8 * as.double(target_length) * (ncol(x) + 2), "target_length", target_length)
  target_length
}

big <- function(n) format(n, big.mark = ",", scientific = FALSE, trim = TRUE)

# `subset` as an integer 0/1 vector over the rows of `m`.
feature_mask <- function(subset, m, arg = "subset") {
  p <- nrow(m)
  if (is.logical(subset) && is.null(dim(subset))) {
    if (length(subset) != p || anyNA(subset)) {
      abort("A logical `%s` must have one TRUE or FALSE per feature (%d), not %s.", arg, p,
            describe(subset))
    }
    mask <- subset
  } else if (is.character(subset) && is.null(dim(subset))) {
    if (is.null(rownames(m))) abort("`%s` gives feature names, but `x` has no row names.", arg)
    unknown <- setdiff(subset, rownames(m))
    if (length(unknown) > 0L) {
      abort("`%s` names %d feature(s) that `x` does not have (the first is \"%s\").", arg,
            length(unknown), unknown[1L])
    }
    mask <- rownames(m) %in% subset
  } else if (is.numeric(subset) && is.null(dim(subset)) && !is.object(subset)) {
    if (anyNA(subset) || any(subset < 1 | subset > p | subset != round(subset))) {
      abort("Feature indices in `%s` must be whole numbers between 1 and %d.", arg, p)
    }
    mask <- seq_len(p) %in% subset
  } else {
    abort("`%s` must be a logical vector, feature indices or feature names, not %s.", arg,
          describe(subset))
  }
  if (!any(mask)) abort("`%s` selects no feature.", arg)
  as.integer(mask)
}

check_subset_observed <- function(m, mask) {
  observed <- colSums(!is.na(m[mask == 1L, , drop = FALSE]))
  if (any(observed == 0L)) {
    empty <- which(observed == 0L)[1L]
    abort("Column %s of `x` has no observed value among the features of `subset`.",
          if (!is.null(colnames(m))) colnames(m)[empty] else empty)
  }
}

# `blocks` as the rows of each block one after another (0-based) and the
# start of each block.
check_blocks <- function(blocks, m) {
  check_labels(blocks, nrow(m), "blocks", "feature")
  index <- as.integer(factor(blocks))
  rows <- order(index, seq_along(index)) - 1L
  sizes <- tabulate(index)
  observed <- rowsum(1L * !is.na(m), index, reorder = TRUE)
  if (any(observed == 0L)) {
    where <- which(observed == 0L, arr.ind = TRUE)[1L, ]
    abort("Block \"%s\" has no observed value in column %s of `x`.",
          levels(factor(blocks))[where[1L]],
          if (!is.null(colnames(m))) colnames(m)[where[2L]] else where[2L])
  }
  list(rows = as.integer(rows), starts = as.integer(c(0L, cumsum(sizes))))
}

check_sample_weights <- function(weights, m) {
  if (is.null(weights)) return(NULL)
  if (!is.numeric(weights) || is.object(weights) || !is.null(dim(weights)) ||
      length(weights) != ncol(m)) {
    abort("`weights` must be a numeric vector with one weight per sample (%d), not %s.", ncol(m),
          describe(weights))
  }
  if (anyNA(weights) || any(!is.finite(weights)) || any(weights < 0)) {
    abort("`weights` must be finite and non-negative.")
  }
  if (!any(weights > 0)) abort("`weights` must keep at least one sample (a positive weight).")
  unname(as.double(weights))
}

check_positive_quantiles <- function(m, weights, mask) {
  kept <- if (is.null(weights)) seq_len(ncol(m)) else which(weights > 0)
  rows <- if (is.null(mask)) seq_len(nrow(m)) else which(mask == 1L)
  values <- m[rows, kept, drop = FALSE]
  if (any(values <= 0, na.rm = TRUE)) {
    abort("`geometric = TRUE` averages log2 values: the values of the samples kept must be positive.")
  }
}

# A vector of labels, one per feature or sample, without missing values.
check_labels <- function(labels, n, arg, per) {
  if (!(is.factor(labels) || is.character(labels) || is.numeric(labels) ||
        is.logical(labels)) || !is.null(dim(labels)) || length(labels) != n) {
    abort("`%s` must be a vector with one value per %s (%d), not %s.", arg, per, n,
          describe(labels))
  }
  if (anyNA(labels)) abort("`%s` must not contain missing values.", arg)
}

# Groups of samples as a factor without unused levels.
check_groups <- function(groups, m) {
  check_labels(groups, ncol(m), "groups", "sample")
  droplevels(as.factor(groups))
}

# A colData column named by a single string, for the SummarizedExperiment
# methods; any other value as it is.
se_column <- function(x, value, arg) {
  if (is.character(value) && length(value) == 1L && ncol(x) != 1L) {
    data <- SummarizedExperiment::colData(x)
    if (!value %in% names(data)) {
      abort("`%s` names no column of colData(x) (%s).", arg, paste(names(data), collapse = ", "))
    }
    return(data[[value]])
  }
  value
}

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

#' @rdname normalize_quantiles_robust
#' @export
normalize_quantiles_robust.SummarizedExperiment <- function(x, ..., assay.type = 1L,
                                                            name = "qnorm_robust") {
  se_add_assay(x, name, normalize_quantiles_robust.default(se_assay(x, assay.type, blocks = TRUE),
                                                           ...))
}

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

#' @rdname robust_weights
#' @export
robust_weights.SummarizedExperiment <- function(x, ..., assay.type = 1L) {
  robust_weights.default(se_assay(x, assay.type, blocks = TRUE), ...)
}

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

#' Group-aware quantile normalization (qsmooth)
#'
#' Quantile normalization that keeps differences between biological groups.
#' With `weight = 0` every group is quantile-normalized on its own (each to
#' the mean quantiles of its samples); with `weight = 1` all samples are
#' normalized to one target, as [normalize_quantiles()]; by default the
#' weight is estimated at each quantile level as in smooth quantile
#' normalization (qsmooth, Hicks et al. 2018), see [qsmooth_weights()], so
#' that quantiles where the groups differ keep their group's reference and
#' the others are normalized globally.
#'
#' At quantile level u the reference of a sample of group g is
#' `w(u) * F(u) + (1 - w(u)) * F_g(u)`, where `F` is the mean of all samples'
#' quantile functions, `F_g` that of the samples of group g, and `w(u)` the
#' weight. The sample's value of rank k then takes its reference at level
#' `(k - 1) / (q - 1)`, q being the number of observed values of the
#' column, with the tie and missing-value rules of [normalize_quantiles()].
#'
#' @inheritParams normalize_quantiles
#' @param x A numeric (double or integer) matrix or numeric data frame with
#'   features in rows and samples in columns, or a `SummarizedExperiment`.
#'   Missing values stay missing, with the rules of [normalize_quantiles()]
#'   (its section Missing values).
#' @param ties How a block of tied values in a column is treated: `"midrank"`
#'   (the default, Bioconductor's rule: the block gets its reference
#'   interpolated at its mean rank), `"average"` (the mean of the reference
#'   over the ranks the block occupies) or `"first"` (ties broken by position
#'   in the column, so tied values may get different values), as in
#'   [normalize_quantiles()].
#' @param ... For the `SummarizedExperiment` method, arguments of the default
#'   method; for the default method, must be empty.
#' @param groups The biological group of each sample (a factor, character or
#'   integer vector with one value per column); for a `SummarizedExperiment`
#'   also the name of a column of its `colData`.
#' @param weight `NULL` to estimate the weights with [qsmooth_weights()], or
#'   a number in `[0, 1]`, or one number per quantile level (one per feature,
#'   from the lowest level to the highest): the weight of the global target.
#' @param window The width of the running median that smooths the weights, as
#'   a fraction of the number of features (qsmooth's default, 0.05); `0` for
#'   no smoothing. Used only when `weight` is `NULL`.
#' @param endrule How the running median treats the levels within half a
#'   window of either end: `"constant"` (qsmooth's rule: the median of the
#'   first or last window, repeated) or `"median"` (medians of shrinking
#'   windows, [stats::runmed()]'s default). Used only when `weight` is `NULL`.
#' @return What [normalize_quantiles()] returns (a `DelayedMatrix` for a
#'   `DelayedMatrix` or sparse `x`). With `weight = NULL`,
#'   `ties = "average"` and complete data the result equals qsmooth's
#'   (`qsmoothData()` of the qsmooth package) to rounding.
#' @section Large data:
#' A `DelayedMatrix` `x` (an HDF5-backed assay, ...) or a sparse matrix is
#' processed in column blocks with identical results: one pass for the
#' references, one for the weights (when `weight` is `NULL`) and one that
#' writes the result; see [diffrank_blocks].
#' @references Hicks SC, Okrah K, Paulson JN, Quackenbush J, Irizarry RA,
#'   Bravo HC (2018). Smooth quantile normalization. *Biostatistics* 19(2),
#'   185-198.
#' @export
#' @examples
#' set.seed(1)
#' groups <- rep(c("A", "B"), each = 3)
#' x <- cbind(matrix(rnorm(600), 200), matrix(rnorm(600, mean = 2, sd = 2), 200))
#' smooth <- normalize_quantiles_groups(x, groups)
#' # group B keeps its own distribution
#' tapply(colMeans(smooth), groups, mean)
#' tapply(colMeans(normalize_quantiles(x)), groups, mean)
normalize_quantiles_groups <- function(x, ...) {
  UseMethod("normalize_quantiles_groups")
}

#' @rdname normalize_quantiles_groups
#' @export
normalize_quantiles_groups.default <- function(x, groups, weight = NULL, window = 0.05,
                                               endrule = c("constant", "median"),
                                               ties = c("midrank", "average", "first"),
                                               threads = diffrank_threads(), BPPARAM = NULL,
                                               filepath = NULL, ...) {
  check_dots_empty(...)
  ties <- match_choice(ties, c("midrank", "average", "first"), "ties")
  # checked even when `weight` is given (and they are not used), so that a
  # wrong value is an error whatever the call
  window <- check_window(window)
  endrule <- match_choice(endrule, c("constant", "median"), "endrule")
  threads <- check_threads(threads)
  note_orientation(x)
  if (is_block_input(x)) {
    return(normalize_quantiles_groups_blocks(x, groups, weight, window, endrule, ties, threads,
                                             filepath, BPPARAM))
  }
  check_block_args(BPPARAM, filepath)
  m <- check_expression_matrix(x)
  groups <- check_groups(groups, m)
  if (!is.null(weight)) weight <- check_mixture_weight(weight, nrow(m))
  quantiles <- qn_column_quantiles(m, NULL, nrow(m), threads)
  refs <- group_references(add_reference_sums(NULL, quantiles, groups, threads), groups)
  if (is.null(weight)) {
    weight <- qsmooth_from_sums(add_deviation_sums(NULL, quantiles, refs, threads), refs, groups,
                                window, endrule)
  }
  restore_shape(qn_normalize_columns(m, group_targets(refs, weight, groups), ties, threads), x, m)
}

#' @rdname normalize_quantiles_groups
#' @export
normalize_quantiles_groups.SummarizedExperiment <- function(x, groups, ..., assay.type = 1L,
                                                            name = "qsmooth") {
  groups <- se_column(x, groups, "groups")
  se_add_assay(x, name, normalize_quantiles_groups.default(se_assay(x, assay.type, blocks = TRUE),
                                                           groups, ...))
}

#' Weights of smooth quantile normalization (qsmooth)
#'
#' The weight of the global target at each quantile level in
#' [normalize_quantiles_groups()], as in smooth quantile normalization (Hicks
#' et al. 2018). At each level, the samples' quantiles are split into the
#' variation between the groups (`SSB`, the sum over groups of the group size
#' times the squared difference between the group mean and the overall mean)
#' and the total (`SST`); the rough weight is `1 - SSB / SST` (1 where
#' `SST < 1e-6`, as in qsmooth: the samples agree there), then a running median of width `window`
#' smooths it ([stats::runmed()], with qsmooth's `endrule = "constant"` by
#' default). A weight near 0 means the groups differ at that level, so each
#' keeps its own reference; near 1, they do not. The defaults reproduce
#' qsmooth's `qsmoothWeights()` (Hicks et al. 2018) to rounding;
#' [plot_qsmooth_weights()] draws them.
#'
#' @inheritParams normalize_quantiles_groups
#' @param x A numeric (double or integer) matrix or numeric data frame with
#'   features in rows and samples in columns, or a `SummarizedExperiment`.
#'   Missing values are allowed: a column's quantile function is taken from
#'   its observed values, as in [normalize_quantiles()].
#' @param window The width of the running median that smooths the weights, as
#'   a fraction of the number of features (qsmooth's default, 0.05); `0` for
#'   the rough weights, unsmoothed.
#' @param endrule `"constant"` (qsmooth's rule) or `"median"`; see
#'   [normalize_quantiles_groups()].
#' @param ... For the `SummarizedExperiment` method, arguments of the default
#'   method; for the default method, must be empty.
#' @return A numeric vector with one weight in `[0, 1]` per quantile level
#'   (one per feature), from the lowest level to the highest. A
#'   `DelayedMatrix` or sparse `x` is read in column blocks, twice, with
#'   identical weights (see [diffrank_blocks]).
#' @references Hicks SC, Okrah K, Paulson JN, Quackenbush J, Irizarry RA,
#'   Bravo HC (2018). Smooth quantile normalization. *Biostatistics* 19(2),
#'   185-198.
#' @export
#' @examples
#' set.seed(1)
#' groups <- rep(c("A", "B"), each = 3)
#' x <- cbind(matrix(rnorm(600), 200), matrix(rnorm(600, mean = 2, sd = 2), 200))
#' w <- qsmooth_weights(x, groups)
#' plot_qsmooth_weights(w, rough = qsmooth_weights(x, groups, window = 0))
qsmooth_weights <- function(x, ...) {
  UseMethod("qsmooth_weights")
}

#' @rdname qsmooth_weights
#' @export
qsmooth_weights.default <- function(x, groups, window = 0.05, endrule = c("constant", "median"),
                                    threads = diffrank_threads(), BPPARAM = NULL, ...) {
  check_dots_empty(...)
  threads <- check_threads(threads)
  window <- check_window(window)
  endrule <- match_choice(endrule, c("constant", "median"), "endrule")
  note_orientation(x)
  if (is_block_input(x)) {
    return(qsmooth_weights_blocks(x, groups, window, endrule, threads, BPPARAM))
  }
  check_block_args(BPPARAM)
  m <- check_expression_matrix(x)
  groups <- check_groups(groups, m)
  quantiles <- qn_column_quantiles(m, NULL, nrow(m), threads)
  refs <- group_references(add_reference_sums(NULL, quantiles, groups, threads), groups)
  qsmooth_from_sums(add_deviation_sums(NULL, quantiles, refs, threads), refs, groups, window,
                    endrule)
}

#' Plot qsmooth weights
#'
#' Draws the weights of [qsmooth_weights()] along the quantile levels as a
#' line, and the rough weights `1 - SSB / SST` (`window = 0`) as points. Levels where the line drops are those where the groups' distributions
#' differ, which [normalize_quantiles_groups()] keeps.
#'
#' @param weights What [qsmooth_weights()] returns, or any vector of weights
#'   in `[0, 1]`, one per quantile level.
#' @param rough `NULL`, or the unsmoothed weights of the same levels
#'   (`qsmooth_weights(x, groups, window = 0)`), drawn as points.
#' @param main,xlab,ylab Title and axis labels.
#' @param ... Other graphical arguments passed to [graphics::plot()].
#' @return `weights`, invisibly.
#' @export
#' @examples
#' set.seed(1)
#' groups <- rep(c("A", "B"), each = 3)
#' x <- cbind(matrix(rnorm(600), 200), matrix(rexp(600), 200))
#' plot_qsmooth_weights(qsmooth_weights(x, groups), rough = qsmooth_weights(x, groups, window = 0))
plot_qsmooth_weights <- function(weights, rough = NULL, main = "qsmooth weights",
                                 xlab = "Quantile level", ylab = "Weight of the global target",
                                 ...) {
  check_unit_weights <- function(w, arg) {
    if (!is.numeric(w) || !is.null(dim(w)) || length(w) < 1L || anyNA(w) || any(w < 0 | w > 1)) {
      abort("`%s` must be a vector of weights in [0, 1] (what qsmooth_weights() returns), not %s.",
            arg, describe(w))
    }
  }
  check_unit_weights(weights, "weights")
  if (!is.null(rough)) {
    check_unit_weights(rough, "rough")
    if (length(rough) != length(weights)) {
      abort("`rough` must have one weight per level of `weights` (%d), not %d.", length(weights),
            length(rough))
    }
  }
  level <- if (length(weights) > 1L) seq(0, 1, length.out = length(weights)) else 0.5
  graphics::plot(level, as.vector(weights), type = "n", ylim = c(0, 1), main = main, xlab = xlab,
                 ylab = ylab, ...)
  if (!is.null(rough)) graphics::points(level, rough, pch = 16, cex = 0.4, col = "grey60")
  graphics::lines(level, as.vector(weights), lwd = 2)
  if (!is.null(rough)) {
    graphics::legend("bottomleft", c("rough: 1 - SSB / SST", "smoothed"), pch = c(16, NA),
                     lty = c(NA, 1), lwd = c(NA, 2), col = c("grey60", "black"), bty = "n")
  }
  invisible(weights)
}

#' @rdname qsmooth_weights
#' @export
qsmooth_weights.SummarizedExperiment <- function(x, groups, ..., assay.type = 1L) {
  qsmooth_weights.default(se_assay(x, assay.type, blocks = TRUE), se_column(x, groups, "groups"),
                          ...)
}

# The references of qsmooth and its weights come from sums over the samples'
# quantile functions, added block after block in column order (long double
# sums, src/quantile.cpp), so that a matrix read in blocks gives the values
# it gives whole.

# `sums` (NULL at first) with the quantile functions `quantiles` of samples
# of groups `groups` added: their sum overall and by group, and the largest
# absolute value seen.
add_reference_sums <- function(sums, quantiles, groups, threads) {
  if (is.null(sums)) sums <- list(global = NULL, groups = vector("list", nlevels(groups)), size = -Inf)
  sums$global <- qn_accumulate_sums(sums$global, quantiles, threads)
  codes <- as.integer(groups)
  for (g in unique(codes)) {
    sums$groups[[g]] <- qn_accumulate_sums(sums$groups[[g]], quantiles[, codes == g, drop = FALSE],
                                           threads)
  }
  sums$size <- max(sums$size, largest_abs(quantiles))
  sums
}

# The mean quantile function of all samples and of each group (columns in
# the order of the levels), and the power-of-two unit of the quantiles.
group_references <- function(sums, groups) {
  sizes <- tabulate(as.integer(groups), nlevels(groups))
  global <- qn_target_from_sums(sums$global, length(groups))
  by_group <- vapply(seq_len(nlevels(groups)), function(g) {
    qn_target_from_sums(sums$groups[[g]], sizes[g])
  }, numeric(length(global)))
  list(global = global, groups = matrix(by_group, nrow = length(global)),
       unit = unit_for_size(sums$size))
}

# Quantiles near 1e308 overflow the squares of SST and SSB: both are computed
# on the quantiles divided by the power-of-two unit of the references
# (exact), and SST is compared with qsmooth's threshold in the data's units.
# `sums` (NULL at first) with the squared deviations of `quantiles` from the
# global reference added (SST, summed over the samples).
add_deviation_sums <- function(sums, quantiles, refs, threads) {
  deviations <- if (refs$unit == 1) (quantiles - refs$global)^2 else
    (quantiles / refs$unit - refs$global / refs$unit)^2
  qn_accumulate_sums(sums, deviations, threads)
}

# qsmooth's weights (Hicks et al. 2018) from the SST sums: 1 - SSB / SST at
# each level, 1 where SST < 1e-6 (qsmooth's threshold), smoothed by a
# running median of the odd width floor(window * p) (+ 1), with runmed()'s
# `endrule`.
qsmooth_from_sums <- function(sst_sums, refs, groups, window, endrule = "constant") {
  unit <- refs$unit
  sst <- qn_target_from_sums(sst_sums, 1)
  sizes <- tabulate(as.integer(groups), nlevels(groups))
  ssb <- rowSums(sweep((refs$groups / unit - refs$global / unit)^2, 2L, sizes, `*`))
  agree <- if (unit == 1) sst < 1e-6 else sst == 0 | sst < 1e-6 / unit / unit
  weights <- ifelse(agree, 1, 1 - ssb / sst)
  weights <- pmin(pmax(weights, 0), 1)   # rounding only: 0 <= SSB <= SST
  k <- floor(window * length(weights))
  if (k %% 2 == 0) k <- k + 1
  k <- min(k, length(weights) - (length(weights) + 1) %% 2)
  if (k < 3) weights else as.vector(stats::runmed(weights, k, endrule = endrule))
}

# The reference of every sample of groups `groups` (one column each): the
# mixture `weight` of the global and group references.
group_targets <- function(refs, weight, groups) {
  weight * refs$global + (1 - weight) * refs$groups[, as.integer(groups), drop = FALSE]
}

check_window <- function(window) {
  check_number(window, "window", lower = 0, upper = 1)
}

check_mixture_weight <- function(weight, p) {
  if (!is.numeric(weight) || is.object(weight) || !is.null(dim(weight)) ||
      !(length(weight) %in% c(1L, p)) || anyNA(weight) || any(weight < 0 | weight > 1)) {
    abort("`weight` must be NULL, a number in [0, 1] or one such number per feature (%d), not %s.",
          p, describe(weight))
  }
  as.double(weight)
}
