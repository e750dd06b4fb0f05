#' Quantile normalization
#'
#' Makes the distribution of every sample (column) of a features x samples
#' matrix identical: the value of rank k in a column is replaced by the k-th
#' quantile of a target distribution, by default the mean of the sorted
#' columns (Bolstad et al. 2003). With `ties = "midrank"` the results are those
#' of `preprocessCore::normalize.quantiles()` and `limma::normalizeQuantiles()`.
#'
#' @section Ties:
#' A block of tied values in a column always gets one value:
#' * `"midrank"`: the target interpolated at the block's mean rank, as
#'   Bioconductor does (a pair tied at ranks 3 and 4 gets the mean of the
#'   3rd and 4th target values).
#' * `"average"`: the mean of the target over the ranks the block occupies.
#'   It differs from `"midrank"` for blocks of three or more values, where the
#'   target is not linear over the block.
#' * `"first"`: ties are broken by position in the column (like
#'   `rank(ties.method = "first")`), so tied values may get different outputs.
#'
#' @section Missing values:
#' `NA` and `NaN` are both missing; they stay missing in the output. A column
#' with q < p observed values is compared with the target at the q quantile
#' levels `(k - 1) / (q - 1)` (the target is linearly interpolated between its
#' p values), and its quantile function at the p levels enters the mean target
#' in the same way. So a missing value in one column changes the other
#' columns only through its column's contribution to the target. A column with
#' one observed value maps it to the target's median. Infinite values and
#' columns with no observed value are errors.
#'
#' @param x A numeric (double or integer) matrix or numeric data frame with
#'   features in rows and samples in columns, a numeric vector (one sample; then
#'   `target` is needed for anything but the identity), or a
#'   `SummarizedExperiment`. A time series (`ts`) is taken as its values;
#'   other classed vectors (dates, times) are errors.
#' @section Large data:
#' A `DelayedMatrix` `x` (for example an HDF5-backed `HDF5Matrix`, or the
#' assay of a `SummarizedExperiment`) or a sparse matrix of the Matrix
#' package is processed in column blocks, never whole, with identical results:
#' see [diffrank_blocks] and the arguments `BPPARAM` and `filepath`. `subset`
#' and `blocks` need an ordinary matrix. This holds for `normalize_quantiles()`,
#' `quantile_target()` (without `weights`, `trim`, `geometric` or `subset`)
#' and `predict()` of a target, and for [normalize_quantiles_robust()] and
#' [normalize_quantiles_groups()].
#' @param target `NULL` to use the mean quantiles of `x`; a numeric vector of
#'   target values of any length (sorted, then interpolated onto `nrow(x)`
#'   levels); or a [quantile_target()] fitted on other samples (checked: an
#'   edited object whose target is not a sorted vector of finite numbers is
#'   an error).
#' @param ties How tied values are treated: `"midrank"` (the default,
#'   Bioconductor's rule), `"average"` or `"first"`. See the section Ties of [normalize_quantiles()].
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param assay.type For a `SummarizedExperiment`, the assay to use (a name
#'   or an index), as in Bioconductor's scuttle and scran.
#' @param name For a `SummarizedExperiment`, the name of the assay the
#'   normalized values are stored in.
#' @param BPPARAM For a `DelayedMatrix` or sparse `x` (for example an
#'   HDF5-backed assay): `NULL` (the default) to process its column blocks one
#'   after another in this process, or a BiocParallel back-end
#'   (`BiocParallel::SerialParam()`, `MulticoreParam()`, `SnowParam()`,
#'   `BatchtoolsParam()`) over whose workers the blocks are spread; the result
#'   does not depend on it. Ignored for ordinary matrices, which use `threads`.
#'   See [diffrank_blocks].
#' @param filepath For a `DelayedMatrix` or sparse `x`: `NULL`, or the HDF5
#'   file the normalized values are written to. By default they go to an HDF5
#'   file of HDF5Array's dump directory when `x` is stored on disk, else to
#'   memory; see [diffrank_blocks].
#' @param ... Must be empty (an error names any argument given there).
#' @return A double matrix of the shape of `x` with its dimnames (a vector for
#'   a vector `x`); for a `SummarizedExperiment`, the object with one more
#'   assay, `name`. For a `DelayedMatrix` or sparse `x`, a `DelayedMatrix`
#'   (on disk or in memory, see [diffrank_blocks]) with identical values. `x`
#'   itself is never modified.
#' @references Bolstad BM, Irizarry RA, Astrand M, Speed TP (2003). A
#'   comparison of normalization methods for high density oligonucleotide
#'   array data based on variance and bias. *Bioinformatics* 19(2), 185-193.
#' @seealso [quantile_target()] to fit a target once and normalize new
#'   samples against it later.
#' @export
#' @examples
#' x <- matrix(c(5, 2, 3, 4,  4, 1, 4, 2,  3, 4, 6, 8), nrow = 4,
#'             dimnames = list(paste0("gene", 1:4), c("s1", "s2", "s3")))
#' normalize_quantiles(x)
#' normalize_quantiles(x, ties = "first")
#' # against a fixed target distribution, e.g. standard normal quantiles
#' normalize_quantiles(x, target = qnorm(ppoints(100)))
normalize_quantiles <- function(x, ...) {
  UseMethod("normalize_quantiles")
}

#' @rdname normalize_quantiles
#' @export
normalize_quantiles.default <- function(x, target = NULL,
                                        ties = c("midrank", "average", "first"),
                                        threads = diffrank_threads(), subset = NULL,
                                        blocks = NULL, BPPARAM = NULL, filepath = NULL, ...) {
  check_dots_empty(...)
  ties <- match_choice(ties, c("midrank", "average", "first"), "ties")
  threads <- check_threads(threads)
  note_orientation(x)
  if (is_block_input(x)) {
    return(normalize_quantiles_blocks(x, target, ties, threads, subset, blocks, filepath,
                                      BPPARAM))
  }
  check_block_args(BPPARAM, filepath)
  m <- check_expression_matrix(x)
  warn_feature_mismatch(target, m)
  if (is.null(subset) && inherits(target, "quantile_target") && !is.null(target$subset)) {
    subset <- fitted_subset(target, m)
  }
  if (!is.null(subset) || !is.null(blocks)) {
    return(restore_shape(normalize_variant(m, target, subset, blocks, ties, threads), x, m))
  }
  target <- target_values(target)
  out <- qn_normalize(m, target, ties, threads)
  restore_shape(out, x, m)
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(normalize_quantiles) <- formals(normalize_quantiles.default)

#' @rdname normalize_quantiles
#' @export
normalize_quantiles.SummarizedExperiment <- assay_method("normalize_quantiles.default",
                                                         name = "qnorm")

#' Fit a quantile normalization target
#'
#' Computes the reference distribution of quantile normalization, the mean of
#' the samples' quantile functions (the mean of the sorted columns when
#' nothing is missing; each level's mean is the exact sum of the samples'
#' quantiles divided by their number and rounded once, so it does not depend
#' on the order of the samples, on threads or on blocks), and keeps it as an
#' object that normalizes new samples
#' later with [predict()], like preprocessCore's
#' `normalize.quantiles.determine.target()` and
#' `normalize.quantiles.use.target()`. The object can be saved with
#' [saveRDS()].
#'
#' @inheritParams normalize_quantiles
#' @param object,x A `quantile_target` (for the methods).
#' @param ... Only the former name `target_length` of `n_quantiles` (with a
#'   warning, for one release); anything else is an error.
#' @param newdata New samples: a matrix, data frame or vector as `x` of
#'   [normalize_quantiles()] (a `DelayedMatrix` too: then `BPPARAM` and
#'   `filepath` may be given), or a `SummarizedExperiment`. Its features may
#'   differ from the training data's: a warning says how many differ, and the
#'   target is interpolated (see the section Feature names).
#' @return `quantile_target()` returns an object of class `quantile_target`, a
#'   list with `target` (the sorted target values), `n_samples` and
#'   `n_features` of the training data, `n_missing`, its number of missing
#'   values, `features`, its row names (or `NULL`), `subset` and `weights`
#'   (`NULL` unless given) and `summary`, how the samples' quantiles were
#'   averaged. `predict()` returns what [normalize_quantiles()] returns.
#' @seealso [normalize_quantiles()] for the missing-value and tie rules.
#' @export
#' @examples
#' set.seed(1)
#' train <- matrix(rexp(200), nrow = 50)
#' ref <- quantile_target(train)
#' ref
#' new_samples <- matrix(rexp(100, rate = 2), nrow = 50)
#' normalized <- predict(ref, new_samples)
#' all.equal(sort(normalized[, 1]), ref$target)
#' # identical to normalizing the training data directly
#' all.equal(predict(ref, train), normalize_quantiles(train))
quantile_target <- function(x, ...) {
  UseMethod("quantile_target")
}

#' @rdname quantile_target
#' @export
quantile_target.default <- function(x, threads = diffrank_threads(), weights = NULL, trim = 0,
                                    geometric = FALSE, subset = NULL, n_quantiles = NULL,
                                    BPPARAM = NULL, ...) {
  do.call(check_dots_empty,
          take_renamed(list(...), "target_length", "n_quantiles", "quantile_target()"))
  threads <- check_threads(threads)
  note_orientation(x)
  if (is_block_input(x)) {
    return(quantile_target_blocks(x, threads, weights, trim, geometric, subset, n_quantiles,
                                  BPPARAM))
  }
  check_block_args(BPPARAM)
  m <- check_expression_matrix(x)
  new_quantile_target(m, weights, trim, geometric, subset, n_quantiles, threads)
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(quantile_target) <- formals(quantile_target.default)

#' @rdname quantile_target
#' @export
quantile_target.SummarizedExperiment <- assay_method("quantile_target.default")

#' @rdname quantile_target
#' @export
predict.quantile_target <- function(object, newdata, ties = c("midrank", "average", "first"),
                                    threads = diffrank_threads(), ...) {
  if (missing(newdata)) abort("`newdata` is missing: give the samples to normalize.")
  check_quantile_target(object)
  check_common_features(object, newdata, "newdata")
  with_arg_names(normalize_quantiles(newdata, target = object, ties = ties, threads = threads, ...),
                 c(x = "newdata"))
}

#' @rdname quantile_target
#' @export
print.quantile_target <- function(x, ...) {
  cat(sprintf("<quantile_target> %d values, fitted on %d samples x %d features",
              length(x$target), x$n_samples, x$n_features))
  if (x$n_missing > 0) cat(sprintf(" (%d missing values)", x$n_missing))
  cat("\n")
  q <- stats::quantile(x$target, c(0, 0.25, 0.5, 0.75, 1), names = FALSE, type = 7)
  cat(sprintf("  min %.4g  Q1 %.4g  median %.4g  Q3 %.4g  max %.4g\n", q[1], q[2], q[3], q[4], q[5]))
  print_target_variant(x)
  invisible(x)
}

#' @rdname quantile_target
#' @param main,xlab,ylab Plot labels.
#' @export
plot.quantile_target <- function(x, main = "Quantile normalization target",
                                 xlab = "Quantile level", ylab = "Target value", ...) {
  levels <- if (length(x$target) > 1L) seq(0, 1, length.out = length(x$target)) else 0.5
  graphics::plot(levels, x$target, type = "l", main = main, xlab = xlab, ylab = ylab, ...)
  invisible(x)
}

# A numeric matrix fit for normalization, or an error that says what is wrong.
check_expression_matrix <- function(x, arg = "x") {
  m <- as_numeric_matrix(x, arg)
  if (nrow(m) == 0L || ncol(m) == 0L) {
    abort("`%s` must have at least one row and one column, not %d x %d.", arg, nrow(m), ncol(m))
  }
  check_expression_values(m, arg)
  m
}

# The value checks of check_expression_matrix() on a double matrix, in one
# pass without allocating is.na(m); returns (invisibly) its number of missing
# values, an integer as sum(is.na(m)) while it fits in one.
check_expression_values <- function(m, arg = "x") {
  scan <- expression_matrix_scan(m)
  if (scan[[1L]] > 0) {
    abort("`%s` must not contain infinite values; use NA for values that are missing.", arg)
  }
  if (scan[[2L]] > 0) {
    first <- scan[[3L]]
    label <- if (!is.null(colnames(m))) colnames(m)[first] else first
    abort("`%s` has %d column(s) with no observed value (the first is %s); drop them first.",
          arg, scan[[2L]], label)
  }
  missing <- scan[[4L]]
  invisible(if (missing <= .Machine$integer.max) as.integer(missing) else missing)
}

# The sorted target values from NULL, a numeric vector or a quantile_target.
target_values <- function(target) {
  if (is.null(target)) return(NULL)
  if (inherits(target, "quantile_target")) return(check_quantile_target(target))

  if (!is.numeric(target) || is.object(target) || length(target) == 0L) {
    abort("`target` must be NULL, a numeric vector or a quantile_target, not %s.",
          describe(target))
  }
  if (anyNA(target) || any(is.infinite(target))) {
    abort("`target` must contain only finite values.")
  }
  sort(as.double(target))
}

# The target values of a quantile_target object, checked: objects can be
# edited or restored from files written by other versions.
check_quantile_target <- function(object) {
  values <- if (is.list(object)) object[["target"]] else NULL
  problem <- if (!(is.numeric(values) || is.logical(values)) || is.object(values) ||
                   !is.null(dim(values))) {
    sprintf("its `target` is %s, not a numeric vector", describe(values))
  } else if (length(values) == 0L) {
    "its `target` is empty"
  } else if (anyNA(values)) {
    "its `target` contains missing values"
  } else if (any(is.infinite(values))) {
    "its `target` contains infinite values"
  } else if (is.unsorted(values)) {
    "its `target` is not sorted in increasing order"
  }
  if (!is.null(problem)) {
    abort("`target` is not a valid quantile_target: %s; fit it again with quantile_target().",
          problem)
  }
  as.double(values)
}
