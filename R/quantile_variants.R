# Variants of quantile normalization: subsets of features (control probes),
# blocks of features, and what the robust (quantile_robust.R) and group-aware
# (quantile_groups.R) variants share. The numerical work is in
# inst/include/diffrank/quantile_variants.hpp.

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
#' @param n_quantiles The number of target values, by default the number of
#'   features; the target is interpolated onto that many levels
#'   (preprocessCore's `target.length`). Formerly `target_length`, still
#'   accepted with a warning for one release.
#' @section Feature names:
#' The object keeps the row names of the data it was fitted on (`$features`).
#' When it normalizes data with another set of features (other names, or
#' another number of features), a warning says how many features differ;
#' the target is then interpolated as [normalize_quantiles()] documents in the
#' section Targets of another length. The order of the features does not
#' matter.
NULL

# The fitted target values of a features x samples matrix `m`.
fit_target_values <- function(m, weights, trim, geometric, mask, n_quantiles, threads) {
  plain <- is.null(weights) && trim == 0 && !geometric && is.null(mask)
  values <- if (plain) {
    qn_fit_target(m, threads)
  } else {
    if (is.null(weights)) weights <- rep(1, ncol(m))
    quantiles <- qn_column_quantiles(m, mask, nrow(m), threads)
    qn_summarize_levels(quantiles, weights, trim, geometric, threads)
  }
  if (n_quantiles != length(values)) {
    values <- qn_column_quantiles(matrix(values, ncol = 1L), NULL, n_quantiles, 1L)[, 1L]
  }
  values
}

# A quantile_target object fitted on the matrix `m` with the arguments of
# quantile_target().
new_quantile_target <- function(m, weights = NULL, trim = 0, geometric = FALSE, subset = NULL,
                                n_quantiles = NULL, threads = 1L) {
  summary <- check_target_summary(weights, trim, geometric, m)
  weights <- summary$weights
  trim <- summary$trim
  geometric <- summary$geometric
  mask <- if (is.null(subset)) NULL else feature_mask(subset, m)
  if (!is.null(mask)) check_subset_observed(m, mask)
  if (geometric) check_positive_quantiles(m, weights, mask)
  n_quantiles <- check_n_quantiles(n_quantiles, m)
  values <- fit_target_values(m, weights, trim, geometric, mask, n_quantiles, threads)
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
check_n_quantiles <- function(n_quantiles, x) {
  if (is.null(n_quantiles)) return(nrow(x))
  n_quantiles <- check_whole(n_quantiles, "n_quantiles")
  check_memory(8 * as.double(n_quantiles) * (ncol(x) + 2), "n_quantiles", n_quantiles)
  n_quantiles
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
