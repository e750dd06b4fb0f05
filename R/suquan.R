#' Supervised quantile normalization (SUQUAN)
#'
#' Learns the target distribution of quantile normalization together with a
#' linear model on the normalized data (Le Morvan and Vert 2017). A sample x
#' (a column of `x`) is quantile-normalized to a target f, then scored by
#' \deqn{g_k(x) = w_k^\top \Psi_f(x) + b_k,}{g_k(x) = w_k' Psi_f(x) + b_k,}
#' where \eqn{\Psi_f(x)_j}{Psi_f(x)_j} is f at the quantile level of \eqn{x_j}{x_j} (one
#' score for `"gaussian"` and `"binomial"`, one per class for
#' `"multinomial"`). The function minimizes
#' \deqn{\frac{1}{n}\sum_i \ell(y_i, g(x_i)) + \lambda\left[(1 - \alpha)\|W\|^2 +
#'   \alpha \|W\|_1\right] + \mathrm{smooth} \cdot R(f)}{(1/n) sum_i loss(y_i, g(x_i)) +
#'   lambda [(1 - alpha) ||W||^2 + alpha ||W||_1] + smooth * R(f)}
#' over the model (W, b) and over the targets f in the set
#' \deqn{C = \{f \textrm{ non-decreasing}, \textstyle\sum_k f_k = 0,
#'   \frac{1}{p}\sum_k f_k^2 \le 1\}.}{C = {f non-decreasing, sum_k f_k = 0,
#'   (1/p) sum_k f_k^2 <= 1}.}
#' The loss is half the squared error (`family = "gaussian"`), the logistic
#' loss (`"binomial"`) or the multinomial logistic loss (`"multinomial"`).
#'
#' @section The constraint on f, and why lambda is scale-free:
#' The learned target is centred (the intercepts absorb any shift of f) and
#' has a mean square of at most 1 (the bound removes the scale that f and W
#' share). The starting target `f_init` is standardized in the same way (mean
#' 0, mean square 1). So every normalized sample has mean 0 and variance at
#' most 1, and the fit depends on the data only through the ranks within each
#' sample: multiplying `x` by 10 or adding 5 to it gives the same fit, and
#' `lambda` does not depend on the units of the data. The useful range of
#' `lambda` still depends on the numbers of features and samples and on the
#' labels; `lambda_max` (stored in the fit) is the smallest penalty at which
#' every weight of the lasso is zero, computed as glmnet does (divided by
#' `max(alpha, 0.001)`), and [cv_suquan()] searches a path of values from
#' `lambda_max` down.
#'
#' @section Methods:
#' * `"bnd"` alternates two convex problems, in rounds. Round 0 fits the
#'   model with f = `f_init`; each later round fits f with the model fixed,
#'   after (from round 2 on) refitting the model with f fixed. The model step
#'   is solved exactly: for ridge (`alpha = 0`) by Newton steps in the
#'   n-dimensional span of the samples, for the elastic net by coordinate
#'   descent on iteratively reweighted least squares (Friedman et al. 2010).
#'   The f step is solved by accelerated projected gradient (the projection
#'   is isotonic regression by pool adjacent violators, then a rescaling into
#'   the ball), on the blocks of equal values that the projection creates
#'   (an active-set scheme that costs a fraction of the full problem); with
#'   `smooth > 0` the proximal step is solved by ADMM on all p values. Each
#'   step is warm-started and kept only if it does not raise the objective,
#'   so the objective recorded in `history` never increases. The fit stops
#'   after `rounds` rounds, when f or the objective changes by less than `tol`
#'   (relative) in a round, or after `max_iter` rounds (with a warning).
#'   Running to convergence (`rounds = Inf`) solves the problem above; on
#'   data with many more features than samples it tends to drive f to a few
#'   levels and to overfit, and a small number of rounds acts as early
#'   stopping (Le Morvan and Vert stop after one update of f). Choose
#'   `rounds` with [cv_suquan()].
#' * `"svd"` takes f from the leading singular pair of the label-weighted sum
#'   of the samples' permutation matrices \eqn{\sum_i (y_i - \bar y)\Pi_i}{sum_i (y_i - mean(y)) Pi_i}
#'   (an LDA-like estimate; one block per class for `"multinomial"`), found
#'   by an implicitly restarted Lanczos method (RSpectra) on an operator that
#'   never forms the p x p matrix; f is made non-decreasing and standardized,
#'   then the model is fitted with f fixed. The two leading singular values
#'   are kept in the fit: when they are close (a small relative gap), the
#'   singular vector, and so f, is poorly determined. A warning is given
#'   when the Lanczos method does not converge. It is not faster than
#'   `"bnd"`: on the full ALL data (12,625 probe sets x 128 samples) the SVD
#'   takes longer than `"bnd"` run to convergence and several times longer
#'   than one round (2.2 s, 1.3 s and 0.3 s); and it is usually less
#'   accurate.
#' * `"fixed"` keeps f = `f_init` and fits the model only: plain quantile
#'   normalization to `f_init` followed by penalized regression, the baseline
#'   that SUQUAN improves on (the same as `rounds = 0`).
#'
#' @section Smoothness:
#' `smooth > 0` adds a roughness penalty on f on top of monotonicity
#' (smoothed monotone regression, Ramsay 1988; a difference penalty as in
#' Eilers and Marx 1996): \eqn{R(f) = \sum_k (f_{k+2} - 2f_{k+1} + f_k)^2 /
#' R_0}{R(f) = sum_k (f_{k+2} - 2 f_{k+1} + f_k)^2 / R_0}, where \eqn{R_0}{R_0} is the same sum for the standardized normal
#' quantiles of length p, so that a target as rough as the normal quantiles
#' costs `smooth` in units of the mean loss. It keeps f from collapsing onto
#' a few levels; as `smooth` grows, f tends to a straight line (a normalization
#' to the uniform distribution, i.e. to scaled ranks). At `smooth = 0` the
#' fit is that of `"bnd"`. Choose it with [cv_suquan()].
#'
#' @section Ranks, ties and missing values:
#' Ranks are computed by the same code in fitting and prediction. Tied values
#' in a sample share the target at their mean rank (the `"midrank"` rule of
#' [normalize_quantiles()]); a sample with missing values is normalized as in
#' [normalize_quantiles()], and a missing value contributes the target's
#' median to the model (a neutral value, so that `predict()` works on samples
#' with missing values). Features are matched by row name in `predict()`, so
#' row names must be unique and not missing (or absent altogether).
#'
#' @param x Features x samples: a numeric matrix or data frame (at least two
#'   features), or a `SummarizedExperiment` (see `assay.type`). A
#'   `DelayedMatrix` (for example an `HDF5Matrix`) or a sparse matrix is
#'   ranked in column blocks (see [diffrank_blocks]).
#' @param y One label per sample (column of `x`). For `"binomial"`: a factor
#'   with two levels, a logical, or numbers 0 and 1 (the second level, `TRUE`
#'   or 1 is the positive class). For `"multinomial"`: a factor (or character
#'   vector) with two or more classes. For `"gaussian"`: numbers.
#' @param family `"binomial"` (logistic regression), `"gaussian"` (least
#'   squares) or `"multinomial"` (multinomial logistic regression, one
#'   weight vector per class, one target f shared by all classes).
#' @param method `"bnd"`, `"svd"` or `"fixed"`; see the section Methods of [suquan()].
#' @param lambda Penalty on W, a positive number, or `NULL` (the default)
#'   for `lambda_max / 1000` with the ridge penalty and `lambda_max / 10`
#'   otherwise. With one round, `lambda_max / 1000` came third of 100 fixed
#'   settings (penalties from `lambda_max / 10` down to `lambda_max * 1e-7`,
#'   rounds 0 to 3) in mean test accuracy on six public two-class expression
#'   data sets (0.891 against 0.893 for the best; `bench/suquan_accuracy.R`
#'   with `SUQUAN_BENCH_GRID=1` in the package's source repository); choose
#'   it with [cv_suquan()].
#' @param alpha Elastic net mixing of the penalty on W, from 0 (ridge, the
#'   default) to 1 (lasso, which selects features).
#' @param rounds Number of rounds of `"bnd"` (a new f, after a new model from
#'   round 2 on): 0 is the same as `method = "fixed"`, 1 (the default) is one
#'   update of f, as Le Morvan and Vert's experiments do, and `Inf` runs to
#'   convergence. Choose it with [cv_suquan()].
#' @param smooth Weight of the roughness penalty on f (see the section
#'   Smoothness), from 0 to 1e12 (where f is a straight line to about 12
#'   digits).
#' @param f_init Starting target: `"mean"` (the mean quantiles of `x`, as in
#'   [quantile_target()]), `"normal"` (standard normal quantiles) or a numeric
#'   vector of target values (sorted and interpolated onto `nrow(x)` levels).
#'   It is standardized (mean 0, mean square 1); it must not be constant.
#' @param max_iter The most rounds of `"bnd"`, whatever `rounds` says (a fit
#'   that stops there before converging or reaching `rounds` gives a
#'   warning); for `"svd"`, the most restarts of the Lanczos method.
#' @param tol Relative tolerance of the stopping rule.
#' @param BPPARAM For a `DelayedMatrix` or sparse `x` (for example an
#'   HDF5-backed assay): `NULL` (the default) to process its column blocks one
#'   after another in this process, or a BiocParallel back-end
#'   (`BiocParallel::SerialParam()`, `MulticoreParam()`, `SnowParam()`,
#'   `BatchtoolsParam()`) over whose workers the blocks are spread; the result
#'   does not depend on it. Ignored for ordinary matrices, which use `threads`.
#'   See [diffrank_blocks].
#' @param verbose Print the objective after every step.
#' @param threads Number of threads; see [diffrank_threads()]. The result does
#'   not depend on it.
#' @param assay.type For a `SummarizedExperiment`, the assay to use (a name
#'   or an index), as in Bioconductor's scuttle and scran.
#' @param ... For `plot()`, graphical parameters passed on to
#'   [graphics::matplot()]; otherwise must be empty (an error names any
#'   argument given there).
#' @return An object of class `suquan`: a list with `f` (the learned target,
#'   length `nrow(x)`, standardized as described above), `w` (named weights;
#'   a features x classes matrix for `"multinomial"`), `b` (the intercept,
#'   one per class for `"multinomial"`), `f_init` (the standardized start),
#'   `mean_target` (the mean quantiles of `x`), `fitted` (the links on the
#'   training samples), `history` (a data frame of every step with the
#'   objective and the relative change of f), `iterations` (the rounds done),
#'   `converged`, `lambda`, `lambda_max`, `alpha`, `rounds`, `smooth`, `svd`
#'   (for `"svd"`: the two leading singular values, their relative gap
#'   \eqn{1 - \sigma_2/\sigma_1}{1 - sigma_2 / sigma_1}, `converged` and `iterations`), and the
#'   settings. Methods: `print()`, `summary()`, `coef()`, `predict()`,
#'   `plot()`.
#' @references Le Morvan M, Vert J-P (2017). Supervised quantile
#'   normalisation. \doi{10.48550/arXiv.1706.00244}.
#'
#'   Friedman J, Hastie T, Tibshirani R (2010). Regularization paths for
#'   generalized linear models via coordinate descent. *Journal of
#'   Statistical Software* 33(1), 1-22.
#'
#'   Ramsay JO (1988). Monotone regression splines in action. *Statistical
#'   Science* 3(4), 425-441.
#'
#'   Eilers PHC, Marx BD (1996). Flexible smoothing with B-splines and
#'   penalties. *Statistical Science* 11(2), 89-121.
#' @seealso [cv_suquan()] to choose `lambda`, `rounds` and `smooth` by
#'   cross-validation.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(50 * 60), 50, dimnames = list(paste0("g", 1:50), NULL))
#' # only the top ranks of the first genes matter
#' score <- colSums(x[1:5, ] > apply(x, 2, sort)[40, ])
#' y <- factor(ifelse(score + rnorm(60, sd = 0.5) > 1, "high", "low"))
#' fit <- suquan(x, y)
#' fit
#' head(predict(fit, x, type = "class"))
#' plot(fit)
suquan <- function(x, ...) {
  UseMethod("suquan")
}

# At smooth = 1e12 f is already a straight line to about 12 digits (its
# largest deviation from the line is ~1e-13 of its range); far larger values
# overflow the penalty (smooth * roughness) and the proximal step.
max_smooth <- 1e12

#' @rdname suquan
#' @export
suquan.default <- function(x, y, family = c("binomial", "gaussian", "multinomial"),
                           method = c("bnd", "svd", "fixed"), lambda = NULL, alpha = 0,
                           rounds = 1, smooth = 0, f_init = "mean", max_iter = 50L, tol = 1e-3,
                           verbose = FALSE, threads = diffrank_threads(), BPPARAM = NULL, ...) {
  check_dots_empty(...)
  BPPARAM <- check_bpparam(BPPARAM)
  family <- match_choice(family, c("binomial", "gaussian", "multinomial"), "family")
  method <- match_choice(method, c("bnd", "svd", "fixed"), "method")
  alpha <- check_number(alpha, "alpha", lower = 0, upper = 1)
  rounds <- check_rounds(rounds, "rounds", several = FALSE)
  smooth <- check_number(smooth, "smooth", lower = 0, upper = max_smooth)
  max_iter <- check_whole(max_iter, "max_iter")
  tol <- check_number(tol, "tol", lower = 0, allow_lower = FALSE)
  verbose <- check_flag(verbose, "verbose")
  threads <- check_threads(threads)
  note_orientation(x)
  blocks <- is_block_input(x)
  m <- if (blocks) suquan_block_matrix(x) else suquan_matrix(x)
  labels <- suquan_labels(y, family, ncol(m))
  prep <- if (blocks) suquan_blocks_prepare(m, f_init, threads, BPPARAM) else
    suquan_prepare(m, labels, f_init, threads)
  lambda_max <- suquan_lambda_max(prep$position, labels$Y, prep$f0, alpha, threads)
  lambda <- if (is.null(lambda)) lambda_max * if (alpha == 0) 1e-3 else 0.1 else
    check_number(lambda, "lambda", lower = 0, allow_lower = FALSE)

  svd <- NULL
  f_start <- prep$f0
  if (method == "svd") {
    svd <- suquan_svd_target(prep$position, labels$Y, prep$f0, max_iter)
    f_start <- svd$f
    svd$f <- NULL
  }
  options <- suquan_options(lambda, alpha, if (method == "bnd") rounds else 0, smooth, nrow(m),
                            max_iter, tol)
  raw <- suquan_fit_cpp(prep$position, labels$Y, f_start, family, options, verbose, threads)
  if (raw$budget) {
    warning(sprintf(paste0("SUQUAN did not converge within %d iterations (relative change of f ",
                           "%.3g > tol = %.3g); increase `max_iter`, loosen `tol`, or ask for ",
                           "fewer `rounds`."),
                    max_iter, utils::tail(raw$history$change_f, 1L), tol), call. = FALSE)
  }
  history <- raw$history
  if (method == "svd") {
    history <- rbind(data.frame(round = 0L, step = "svd", objective = NA_real_,
                                change_f = NA_real_, stringsAsFactors = FALSE), history)
  }
  fitted <- suquan_link(prep$position, raw$f, raw$w, raw$b, threads)
  structure(
    list(f = raw$f, w = suquan_shape_w(raw$w, rownames(m), labels), b = suquan_shape_b(raw$b, labels),
         family = family, method = method, lambda = lambda, lambda_max = lambda_max,
         alpha = alpha, rounds = if (method == "bnd") rounds else 0, smooth = smooth,
         levels = labels$levels, f_init = prep$f0, mean_target = prep$mean_target,
         fitted = suquan_shape_link(fitted, colnames(m), labels), y = labels$y,
         history = history, converged = raw$converged, iterations = raw$rounds, svd = svd,
         n_samples = ncol(m), n_features = nrow(m), features = rownames(m),
         call = match.call()),
    class = "suquan"
  )
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(suquan) <- formals(suquan.default)

#' @rdname suquan
#' @export
suquan.SummarizedExperiment <- assay_method("suquan.default", columns = "y")

#' @rdname suquan
#' @param object A `suquan` fit.
#' @param newdata New samples: features x samples (a matrix, data frame or
#'   `SummarizedExperiment`) with the features of the training data, matched
#'   by row name when both have row names, by position otherwise (a
#'   `DelayedMatrix` or sparse matrix is processed in column blocks, see
#'   [diffrank_blocks]). Missing: the training samples.
#' @param type `"link"` (g(x); a samples x classes matrix for
#'   `"multinomial"`), `"response"` (the probability of the second class for
#'   `"binomial"`, of each class for `"multinomial"`, g(x) for `"gaussian"`)
#'   or `"class"` (the predicted class, not for `"gaussian"`).
#' @export
predict.suquan <- function(object, newdata, type = c("link", "response", "class"),
                           threads = diffrank_threads(), assay.type = 1L, BPPARAM = NULL, ...) {
  check_dots_empty(...)
  type <- match_choice(type, c("link", "response", "class"), "type")
  threads <- check_threads(threads)
  BPPARAM <- check_bpparam(BPPARAM)
  if (missing(newdata)) {
    eta <- object$fitted
  } else {
    if (methods::is(newdata, "SummarizedExperiment")) {
      newdata <- se_assay(newdata, assay.type, blocks = TRUE)
    }
    w <- if (is.matrix(object$w)) object$w else matrix(object$w)
    if (is_block_input(newdata)) {
      m <- match_features(suquan_block_matrix(newdata, "newdata"), object)
      eta <- suquan_blocks_link(m, object$f, w, as.double(object$b), threads, BPPARAM)
    } else {
      m <- match_features(suquan_matrix(newdata, "newdata"), object)
      eta <- suquan_link(suquan_positions(m, threads), object$f, w, as.double(object$b), threads)
    }
    eta <- suquan_shape_link(eta, colnames(m), list(levels = object$levels,
                                                    K = length(object$b)), object$family)
  }
  if (type == "link") return(eta)
  if (object$family == "gaussian") {
    if (type == "class") abort("`type = \"class\"` is for classification fits; this one is gaussian.")
    return(eta)
  }
  if (object$family == "binomial") {
    prob <- stats::plogis(eta)
    if (type == "response") return(prob)
    return(factor(object$levels[ifelse(prob > 0.5, 2L, 1L)], levels = object$levels))
  }
  if (type == "response") return(softmax_rows(eta))
  factor(object$levels[max.col(eta, ties.method = "first")], levels = object$levels)
}

#' @rdname suquan
#' @export
coef.suquan <- function(object, ...) {
  check_dots_empty(...)
  list(f = object$f, w = object$w, b = object$b)
}

#' @rdname suquan
#' @export
print.suquan <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("<suquan> %s model, method \"%s\", lambda = %.4g (%.3g x lambda_max), %s\n",
              x$family, x$method, x$lambda, x$lambda / x$lambda_max, penalty_label(x$alpha)))
  cat(sprintf("  %d samples x %d features; %s", x$n_samples, x$n_features, stop_label(x)))
  if (x$smooth > 0) cat(sprintf("; roughness penalty %.4g", x$smooth))
  cat("\n")
  final <- utils::tail(x$history$objective, 1L)
  cat(sprintf("  objective %.6g", final))
  if (x$alpha > 0) cat(sprintf("; %d nonzero weights", sum(x$w != 0)))
  cat(sprintf("; training %s\n", training_fit_label(x)))
  if (!is.null(x$svd)) {
    cat(sprintf("  leading singular values %s (relative gap %.3g)%s\n",
                paste(signif(x$svd$d, 4), collapse = ", "), x$svd$gap,
                if (is.finite(x$svd$gap) && x$svd$gap < 0.05) {
                  ": f is poorly determined"
                } else ""))
  }
  invisible(x)
}

#' @rdname suquan
#' @export
summary.suquan <- function(object, ...) {
  check_dots_empty(...)
  strength <- if (is.matrix(object$w)) apply(abs(object$w), 1, max) else abs(object$w)
  top <- order(strength, decreasing = TRUE)[seq_len(min(10L, length(strength)))]
  structure(list(fit = object,
                 top_weights = if (is.matrix(object$w)) object$w[top, , drop = FALSE] else object$w[top],
                 f_range = range(object$f), f_levels = length(unique(signif(object$f, 8))),
                 correlation_with_mean_target = stats::cor(object$f, object$mean_target)),
            class = "summary.suquan")
}

#' @export
print.summary.suquan <- function(x, ...) {
  check_dots_empty(...)
  print(x$fit)
  cat(sprintf(paste0("  learned target from %.4g to %.4g, %d distinct values; correlation with ",
                     "the mean-quantile target %.4f\n"),
              x$f_range[1], x$f_range[2], x$f_levels, x$correlation_with_mean_target))
  cat("  largest weights:\n")
  print(round(x$top_weights, 5))
  cat("  objective by step:\n")
  print(utils::tail(x$fit$history, 6L), row.names = FALSE)
  invisible(x)
}

#' @rdname suquan
#' @param main Plot title.
#' @export
plot.suquan <- function(x, main = "Learned quantile function", ...) {
  p <- length(x$f)
  level <- if (p > 1L) (seq_len(p) - 1) / (p - 1) else 0.5
  curves <- cbind(standardize_target(x$f), standardize_target(x$mean_target),
                  standardize_target(stats::qnorm(stats::ppoints(p))))
  graphics::matplot(level, curves, type = "l", lty = c(1, 2, 3), lwd = c(2, 1, 1),
                    col = c("#d95f02", "black", "#7570b3"), main = main,
                    xlab = "Quantile level", ylab = "Target value (standardized)", ...)
  graphics::legend("topleft", c("SUQUAN", "mean quantiles", "normal quantiles"),
                   lty = c(1, 2, 3), lwd = c(2, 1, 1), col = c("#d95f02", "black", "#7570b3"),
                   bty = "n")
  invisible(x)
}

# Helpers -----------------------------------------------------------------

# A numeric matrix of features x samples whose row names, when present, are
# unique and not missing (features are matched by name in predict()).
suquan_matrix <- function(x, arg = "x") {
  m <- check_expression_matrix(x, arg)
  check_feature_names(m, arg)
}

# A block input (R/blocks.R) with the checks of suquan_matrix() that do not
# need its values (the values are checked block by block).
suquan_block_matrix <- function(x, arg = "x") {
  check_feature_names(block_input(x, arg), arg)
}

check_feature_names <- function(m, arg) {
  names <- rownames(m)
  if (!is.null(names)) {
    if (anyNA(names)) {
      abort("`%s` has %d missing row name(s) (row %d is the first); name every feature, or none.",
            arg, sum(is.na(names)), which(is.na(names))[1L])
    }
    dup <- duplicated(names)
    if (any(dup)) {
      abort("`%s` has %d duplicated row name(s) (\"%s\" is the first); features must have unique names.",
            arg, sum(dup), names[dup][1L])
    }
  }
  m
}

# Labels as numbers (0/1 for binomial, class codes 1..K for multinomial), as
# the n x K matrix the core uses, with the class names.
suquan_labels <- function(y, family, n) {
  if (is.null(y) || length(y) != n) {
    abort("`y` must have one label per sample (column of `x`): %d, not %d.", n, length(y))
  }
  if (anyNA(y)) abort("`y` must not contain missing values.")
  if (family == "gaussian") {
    if (!is.numeric(y) || is.factor(y)) {
      abort("`y` must be numeric for family = \"gaussian\", not %s.", describe(y))
    }
    if (any(!is.finite(y))) abort("`y` must contain only finite values.")
    if (length(unique(y)) < 2L) abort("`y` must not be constant.")
    y <- as.double(y)
    return(list(y = y, Y = matrix(y), levels = NULL, K = 1L))
  }
  if (is.logical(y)) {
    y <- factor(y, levels = c(FALSE, TRUE))
  } else if (is.numeric(y) && family == "binomial") {
    if (!all(y %in% c(0, 1))) {
      abort("A numeric `y` for family = \"binomial\" must contain only 0 and 1.")
    }
    y <- factor(y, levels = c(0, 1))
  } else if (is.character(y) || is.numeric(y)) {
    y <- factor(y)
  } else if (!is.factor(y)) {
    abort("`y` must be a factor, logical, character or 0/1 vector, not %s.", describe(y))
  }
  y <- droplevels(y)
  if (family == "binomial") {
    if (nlevels(y) != 2L) {
      abort("`y` must have exactly two classes for family = \"binomial\", not %d (%s).",
            nlevels(y), paste(levels(y), collapse = ", "))
    }
    y01 <- as.double(as.integer(y) - 1L)
    return(list(y = y01, Y = matrix(y01), levels = levels(y), K = 1L))
  }
  if (nlevels(y) < 2L) {
    abort("`y` must have at least two classes for family = \"multinomial\", not %d.", nlevels(y))
  }
  codes <- as.integer(y)
  Y <- matrix(0, n, nlevels(y))
  Y[cbind(seq_len(n), codes)] <- 1
  list(y = codes, Y = Y, levels = levels(y), K = nlevels(y))
}

# Positions (ranks) of every sample, the mean target and the standardized
# starting target.
suquan_prepare <- function(m, labels, f_init, threads) {
  check_two_features(nrow(m))
  start <- suquan_start(f_init, nrow(m), threads, qn_fit_target(m, threads))
  c(start, list(position = suquan_positions(m, threads)))
}

check_two_features <- function(p) {
  if (p < 2L) abort("`x` must have at least two features (rows), not %d.", p)
}

# The standardized starting target for p features and the mean target.
suquan_start <- function(f_init, p, threads, mean_target) {
  if (is.character(f_init) && length(f_init) == 1L && f_init %in% c("mean", "normal")) {
    start <- if (f_init == "mean") mean_target else stats::qnorm(stats::ppoints(p))
  } else if (is.numeric(f_init) && length(f_init) >= 1L && all(is.finite(f_init))) {
    start <- sort(as.double(f_init))
    if (length(start) != p) {
      start <- if (length(start) == 1L) rep(start, p) else
        stats::approx(seq(0, 1, length.out = length(start)), start, seq(0, 1, length.out = p))$y
    }
  } else {
    abort("`f_init` must be \"mean\", \"normal\" or a numeric vector of finite values, not %s.",
          describe(f_init))
  }
  if (diff(range(start)) == 0) {
    if (identical(f_init, "mean")) {
      abort("`x` has no spread: every sample is constant, so its mean quantiles (the starting target, `f_init` = \"mean\") are constant too.")
    }
    abort("`f_init` must not be constant: it would map every sample to the same values.")
  }
  list(f0 = standardize_target(start), mean_target = mean_target)
}

# Mean 0 and mean square 1 (the population standard deviation).
standardize_target <- function(f) {
  # The result does not depend on the scale of f: values beyond 2^+-256 are
  # brought into range by a power of two first (exact), so that the mean
  # square neither overflows (data near 1e308) nor underflows (subnormal data).
  largest <- max(abs(f))
  if (is.finite(largest) && largest > 0 && (largest > 2^256 || largest < 2^-256)) {
    f <- f / 2^floor(log2(largest))
  }
  centred <- f - mean(f)
  scale <- sqrt(mean(centred^2))
  if (scale > 0) centred / scale else centred
}

# The options list of the core; `smooth` is turned into the weight of the raw
# sum of squared second differences (see the section Smoothness).
suquan_options <- function(lambda, alpha, rounds, smooth, p, max_iter, tol) {
  weight <- 0
  if (smooth > 0 && p >= 3L) {
    reference <- sum(diff(standardize_target(stats::qnorm(stats::ppoints(p))), differences = 2)^2)
    weight <- smooth / reference
  }
  list(lambda = lambda, alpha = alpha, smooth = weight,
       rounds = if (rounds > max_iter) -1L else as.integer(rounds), max_iter = max_iter,
       tol = tol)
}

check_rounds <- function(rounds, arg, several) {
  ok <- is.numeric(rounds) && length(rounds) >= 1L && (several || length(rounds) == 1L) &&
    !anyNA(rounds) && all(rounds >= 0) && all(is.infinite(rounds) | rounds == round(rounds))
  if (!ok) {
    abort("`%s` must be %s, not %s.", arg,
          if (several) "whole numbers >= 0 (or Inf)" else "a whole number >= 0 (or Inf)",
          describe(rounds))
  }
  sort(unique(as.double(rounds)))
}

# The target of method "svd": the leading left singular vector of the
# operator, oriented like f0, made non-decreasing and standardized.
suquan_svd_target <- function(position, Y, f0, max_iter) {
  p <- nrow(position)
  if (p < 3L) abort("`method = \"svd\"` needs at least three features, not %d.", p)
  C <- sweep(Y, 2L, colMeans(Y)) / nrow(Y)
  result <- withCallingHandlers(
    RSpectra::svds(function(v, args) suquan_svd_times(position, C, v), k = 2L, nu = 1L, nv = 0L,
                   Atrans = function(t, args) suquan_svd_times_transpose(position, C, t),
                   dim = c(p, p * ncol(Y)), opts = list(maxitr = max_iter)),
    warning = function(w) invokeRestart("muffleWarning"))
  found <- length(result$d)
  converged <- found >= 2L
  if (!converged) {
    warning(sprintf(paste0("SUQUAN's singular value decomposition did not converge within %d ",
                           "iterations (%d of 2 singular values found); increase `max_iter`%s."),
                    max_iter, found,
                    if (found == 0L) "; the starting target is used" else ""), call. = FALSE)
  }
  f <- f0
  if (found >= 1L) {
    u <- result$u[, 1L]
    if (sum(u * f0) < 0) u <- -u
    u <- isotonic_regression(u - mean(u))
    if (diff(range(u)) > 0) f <- standardize_target(u)
  }
  d <- c(result$d, rep(NA_real_, 2L - found))
  list(f = f, d = d, gap = 1 - d[2] / d[1], converged = converged, iterations = result$niter)
}

match_features <- function(m, object) {
  if (!is.null(rownames(m)) && !is.null(object$features)) {
    missing_features <- setdiff(object$features, rownames(m))
    if (length(missing_features) > 0L) {
      abort("`newdata` lacks %d of the model's features (the first is %s).%s",
            length(missing_features), missing_features[1L],
            transposed_hint(m, object$features))
    }
    return(m[object$features, , drop = FALSE])
  }
  if (nrow(m) != object$n_features) {
    abort("`newdata` must have %d rows (features), as the training data, not %d.",
          object$n_features, nrow(m))
  }
  m
}

suquan_shape_w <- function(w, features, labels) {
  if (labels$K == 1L) return(stats::setNames(w[, 1L], features))
  dimnames(w) <- list(features, labels$levels)
  w
}

suquan_shape_b <- function(b, labels) {
  if (labels$K == 1L) return(b[1L])
  stats::setNames(b, labels$levels)
}

suquan_shape_link <- function(eta, samples, labels, family = NULL) {
  if (labels$K == 1L && !identical(family, "multinomial")) {
    return(stats::setNames(eta[, 1L], samples))
  }
  dimnames(eta) <- list(samples, labels$levels)
  eta
}

softmax_rows <- function(eta) {
  top <- apply(eta, 1, max)
  e <- exp(eta - top)
  e / rowSums(e)
}

penalty_label <- function(alpha) {
  if (alpha == 0) "ridge" else if (alpha == 1) "lasso" else sprintf("elastic net, alpha = %g", alpha)
}

stop_label <- function(x) {
  if (x$method != "bnd") return("target fixed before fitting the model")
  if (x$converged) return(sprintf("converged after %d round(s)", x$iterations))
  if (is.finite(x$rounds) && x$iterations >= x$rounds) {
    return(sprintf("stopped after %d round(s), as asked", x$iterations))
  }
  sprintf("did not converge within %d round(s)", x$iterations)
}

training_fit_label <- function(x) {
  if (x$family == "gaussian") {
    return(sprintf("R^2 %.3f", 1 - sum((x$y - x$fitted)^2) / sum((x$y - mean(x$y))^2)))
  }
  predicted <- if (x$family == "binomial") as.numeric(x$fitted > 0) else
    max.col(x$fitted, ties.method = "first")
  sprintf("accuracy %.3f", mean(predicted == x$y))
}
