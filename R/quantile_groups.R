# Group-aware quantile normalization (qsmooth; Hicks et al. 2018): each
# group's own target, blended with the overall target by quantile level.
# normalize_quantiles_groups(), qsmooth_weights() and the plot of the weights.

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
#' @param ... Must be empty (an error names any argument given there).
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

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(normalize_quantiles_groups) <- formals(normalize_quantiles_groups.default)

#' @rdname normalize_quantiles_groups
#' @export
normalize_quantiles_groups.SummarizedExperiment <- assay_method(
  "normalize_quantiles_groups.default", name = "qsmooth", columns = "groups")

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
#' @param ... Must be empty (an error names any argument given there).
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

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(qsmooth_weights) <- formals(qsmooth_weights.default)

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
qsmooth_weights.SummarizedExperiment <- assay_method("qsmooth_weights.default",
                                                     columns = "groups")

# The references of qsmooth and its weights come from sums over the samples'
# quantile functions, added block after block (exact sums, src/quantile.cpp),
# so that a matrix read in blocks gives the values it gives whole.

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
