#' Supervised quantile normalization (SUQUAN)
#'
#' Learns the target distribution of quantile normalization together with a
#' linear model on the normalized data (Le Morvan and Vert 2017). A sample x
#' (a column of `x`) is quantile-normalized to a target f, then scored by
#' \deqn{g(x) = w^\top \Psi_f(x) + b,}
#' where \eqn{\Psi_f(x)_j} is f at the quantile level of \eqn{x_j}. The
#' function minimizes
#' \deqn{\frac{1}{n}\sum_i \ell(y_i, g(x_i)) + \lambda \|w\|^2}
#' over the model (w, b) and over the targets f that are non-decreasing with
#' norm at most that of `f_init` (the bound removes the scale that f and w
#' share). The loss is the logistic loss (`family = "binomial"`) or half the
#' squared error (`"gaussian"`).
#'
#' @section Methods:
#' * `"bnd"` alternates two convex problems: the ridge-penalized model with f
#'   fixed (solved exactly by Newton steps in the n-dimensional span of the
#'   samples), and f with the model fixed (accelerated projected gradient; the
#'   projection is isotonic regression by pool adjacent violators followed by
#'   a rescaling into the ball). Each step starts from the previous solution
#'   and is kept only if it does not raise the objective, so the objective
#'   recorded in `history` never increases. It stops when f or the objective
#'   changes by less than `tol` (relative) in an alternation, or after
#'   `max_iter` alternations.
#' * `"svd"` takes f from the leading singular pair of the label-weighted sum
#'   of the samples' permutation matrices \eqn{\sum_i (y_i - \bar y)\Pi_i} (an
#'   LDA-like estimate), by power iteration without ever forming a p x p
#'   matrix; f is made non-decreasing and rescaled, then the model is fitted
#'   with f fixed. Faster, usually less accurate than `"bnd"`.
#' * `"fixed"` keeps f = `f_init` and fits the model only: plain quantile
#'   normalization to `f_init` followed by ridge-penalized regression, the
#'   baseline that SUQUAN improves on.
#'
#' @section Ranks, ties and missing values:
#' Ranks are computed by the same code in fitting and prediction. Tied values
#' in a sample share the target at their mean rank (the `"midrank"` rule of
#' [normalize_quantiles()]); a sample with missing values is normalized as in
#' [normalize_quantiles()], and a missing value contributes the target's
#' median to the model (a neutral value, so that `predict()` works on samples
#' with missing values).
#'
#' @param x Features x samples: a numeric matrix or data frame, or a
#'   `SummarizedExperiment` (see `assay`).
#' @param y One label per sample (column of `x`). For `"binomial"`: a factor
#'   with two levels, a logical, or numbers 0 and 1 (the second level, `TRUE`
#'   or 1 is the positive class). For `"gaussian"`: numbers.
#' @param family `"binomial"` (logistic regression) or `"gaussian"` (least
#'   squares).
#' @param method `"bnd"`, `"svd"` or `"fixed"`; see the section Methods.
#' @param lambda Ridge penalty on w, a positive number; choose it with
#'   [cv_suquan()].
#' @param f_init Starting target: `"mean"` (the mean quantiles of `x`, as in
#'   [quantile_target()]), `"normal"` (standard normal quantiles) or a numeric
#'   vector of target values (sorted and interpolated onto `nrow(x)` levels).
#'   Its norm bounds the norm of the learned f.
#' @param max_iter Maximum number of alternations (`"bnd"`) or, times 20, of
#'   power iterations (`"svd"`).
#' @param tol Relative tolerance of the stopping rule.
#' @param verbose Print the objective after every step.
#' @param threads Number of threads for the ranks; see [diffrank_threads()].
#' @param assay For a `SummarizedExperiment`, the assay to use.
#' @return An object of class `suquan`: a list with `f` (the learned target,
#'   length `nrow(x)`), `w` (named weights), `b`, `f_init`, `mean_target`,
#'   `fitted` (the link on the training samples), `history` (a data frame of
#'   every step with the objective and the relative change of f),
#'   `converged`, `iterations`, and the settings. Methods: `print()`,
#'   `summary()`, `coef()`, `predict()`, `plot()`.
#' @references Le Morvan M, Vert J-P (2017). Supervised quantile
#'   normalisation. arXiv:1706.00244.
#' @seealso [cv_suquan()] to choose `lambda` by cross-validation.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(50 * 60), 50)
#' truth <- ifelse(seq_len(50) > 40, 1, 0)  # only the top ranks matter
#' score <- colSums(x[1:5, ] > apply(x, 2, sort)[40, ])
#' y <- factor(ifelse(score + rnorm(60, sd = 0.5) > 1, "high", "low"))
#' fit <- suquan(x, y, lambda = 0.01)
#' fit
#' head(predict(fit, x, type = "class"))
#' plot(fit)
suquan <- function(x, y, family = c("binomial", "gaussian"), method = c("bnd", "svd", "fixed"),
                   lambda = 0.01, f_init = "mean", max_iter = 50L, tol = 1e-3,
                   verbose = FALSE, threads = diffrank_threads(), assay = 1L) {
  family <- match.arg(family)
  method <- match.arg(method)
  lambda <- check_number(lambda, "lambda", lower = 0, allow_lower = FALSE)
  max_iter <- check_whole(max_iter, "max_iter")
  tol <- check_number(tol, "tol", lower = 0, allow_lower = FALSE)
  verbose <- check_flag(verbose, "verbose")
  threads <- check_threads(threads)
  m <- suquan_matrix(x, assay)
  labels <- suquan_labels(y, family, ncol(m))
  mean_target <- qn_fit_target(m, threads)
  start <- suquan_start(f_init, m, mean_target)

  position <- suquan_positions(m, threads)
  raw <- suquan_fit_cpp(position, labels$y, start, family, method, lambda, max_iter, tol, verbose)
  fitted <- suquan_link(position, raw$f, raw$w, raw$b)
  names(fitted) <- colnames(m)
  structure(
    list(f = raw$f, w = stats::setNames(raw$w, rownames(m)), b = raw$b,
         family = family, method = method, lambda = lambda, levels = labels$levels,
         f_init = start, mean_target = mean_target, fitted = fitted, y = labels$y,
         history = raw$history, converged = raw$converged, iterations = raw$iterations,
         n_samples = ncol(m), n_features = nrow(m), features = rownames(m),
         call = match.call()),
    class = "suquan"
  )
}

#' @rdname suquan
#' @param object A `suquan` fit.
#' @param newdata New samples (features x samples, same features as in
#'   fitting: matched by row name when both have row names, by position
#'   otherwise). Missing: the training samples.
#' @param type `"link"` (g(x)), `"response"` (the probability of the second
#'   class for `"binomial"`, g(x) for `"gaussian"`) or `"class"` (the
#'   predicted class, `"binomial"` only).
#' @param ... Unused.
#' @export
predict.suquan <- function(object, newdata, type = c("link", "response", "class"),
                           threads = diffrank_threads(), assay = 1L, ...) {
  type <- match.arg(type)
  threads <- check_threads(threads)
  if (missing(newdata)) {
    eta <- object$fitted
  } else {
    m <- suquan_matrix(newdata, assay, arg = "newdata")
    m <- match_features(m, object)
    eta <- suquan_link(suquan_positions(m, threads), object$f, object$w, object$b)
    names(eta) <- colnames(m)
  }
  if (type == "link") return(eta)
  if (object$family == "gaussian") {
    if (type == "class") abort("`type = \"class\"` is for binomial fits; this one is gaussian.")
    return(eta)
  }
  prob <- stats::plogis(eta)
  if (type == "response") return(prob)
  factor(object$levels[ifelse(prob > 0.5, 2L, 1L)], levels = object$levels)
}

#' @rdname suquan
#' @export
coef.suquan <- function(object, ...) {
  list(f = object$f, w = object$w, b = object$b)
}

#' @rdname suquan
#' @export
print.suquan <- function(x, ...) {
  cat(sprintf("<suquan> %s model, method \"%s\", lambda = %g\n", x$family, x$method, x$lambda))
  cat(sprintf("  %d samples x %d features; %s after %d iteration(s)\n", x$n_samples,
              x$n_features, if (x$converged) "converged" else "not converged", x$iterations))
  final <- utils::tail(x$history$objective, 1L)
  cat(sprintf("  objective %.6g", final))
  if (x$family == "binomial") {
    cat(sprintf("; training accuracy %.3f", mean((x$fitted > 0) == (x$y == 1))))
  } else {
    cat(sprintf("; training R^2 %.3f", 1 - sum((x$y - x$fitted)^2) / sum((x$y - mean(x$y))^2)))
  }
  cat("\n")
  invisible(x)
}

#' @rdname suquan
#' @export
summary.suquan <- function(object, ...) {
  top <- order(abs(object$w), decreasing = TRUE)[seq_len(min(10L, length(object$w)))]
  structure(list(fit = object, top_weights = object$w[top],
                 f_range = range(object$f),
                 correlation_with_mean_target = stats::cor(object$f, object$mean_target)),
            class = "summary.suquan")
}

#' @export
print.summary.suquan <- function(x, ...) {
  print(x$fit)
  cat(sprintf("  learned target from %.4g to %.4g; correlation with the mean-quantile target %.4f\n",
              x$f_range[1], x$f_range[2], x$correlation_with_mean_target))
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
  standardize <- function(v) if (stats::sd(v) > 0) (v - mean(v)) / stats::sd(v) else v - mean(v)
  curves <- cbind(standardize(x$f), standardize(x$mean_target),
                  standardize(stats::qnorm(stats::ppoints(p))))
  graphics::matplot(level, curves, type = "l", lty = c(1, 2, 3), lwd = c(2, 1, 1),
                    col = c("#d95f02", "black", "#7570b3"), main = main,
                    xlab = "Quantile level", ylab = "Target value (standardized)", ...)
  graphics::legend("topleft", c("SUQUAN", "mean quantiles", "normal quantiles"),
                   lty = c(1, 2, 3), lwd = c(2, 1, 1), col = c("#d95f02", "black", "#7570b3"),
                   bty = "n")
  invisible(x)
}

#' Cross-validation of SUQUAN's penalty
#'
#' Chooses `lambda` of [suquan()] by k-fold cross-validation, then fits the
#' model on all samples at the best value. Folds are drawn with R's random
#' number generator (call [set.seed()] first for reproducible folds), stratified
#' by class for binomial labels.
#'
#' @inheritParams suquan
#' @param lambda Candidate penalties (positive numbers).
#' @param nfolds Number of folds, from 2 to the number of samples.
#' @param measure `"deviance"` (mean logistic loss or squared error, the
#'   default), `"class"` (misclassification rate, binomial) or `"mse"` (mean
#'   squared error, gaussian).
#' @param progress Show a progress bar (when the work takes more than a few
#'   seconds).
#' @param ... Passed on to [suquan()] (for example `method`, `f_init`).
#' @return An object of class `cv_suquan`: `lambda`, `cvm` (the mean measure
#'   over folds), `cvsd` (its standard error), `lambda_min`, `measure`,
#'   `folds` (the fold of each sample) and `fit`, the [suquan()] fit on all
#'   samples at `lambda_min`. It has `print()`, `plot()` and `predict()`
#'   methods.
#' @export
#' @examples
#' set.seed(2)
#' x <- matrix(rnorm(30 * 40), 30)
#' y <- factor(ifelse(colSums(x[1:3, ]) > 0, "a", "b"))
#' cv <- cv_suquan(x, y, lambda = c(0.1, 0.01), nfolds = 3)
#' cv
#' plot(cv)
cv_suquan <- function(x, y, family = c("binomial", "gaussian"),
                      lambda = 10^seq(0, -4, length.out = 9), nfolds = 5L,
                      measure = c("deviance", "class", "mse"), progress = interactive(),
                      threads = diffrank_threads(), assay = 1L, ...) {
  family <- match.arg(family)
  measure <- match.arg(measure)
  if (!is.numeric(lambda) || length(lambda) == 0L || anyNA(lambda) ||
      any(!is.finite(lambda)) || any(lambda <= 0)) {
    abort("`lambda` must be positive numbers, not %s.", describe(lambda))
  }
  progress <- check_flag(progress, "progress")
  threads <- check_threads(threads)
  m <- suquan_matrix(x, assay)
  labels <- suquan_labels(y, family, ncol(m))
  nfolds <- check_whole(nfolds, "nfolds")
  if (nfolds < 2L || nfolds > ncol(m)) {
    abort("`nfolds` must be between 2 and the number of samples (%d), not %d.", ncol(m), nfolds)
  }
  if (measure == "class" && family != "binomial") abort("`measure = \"class\"` needs family = \"binomial\".")
  if (measure == "mse" && family != "gaussian") abort("`measure = \"mse\"` needs family = \"gaussian\".")
  lambda <- sort(lambda, decreasing = TRUE)
  folds <- draw_folds(labels$y, nfolds, stratify = family == "binomial")
  y_fit <- if (family == "binomial") factor(labels$levels[labels$y + 1], labels$levels) else labels$y

  score <- function(eta, truth) {
    switch(measure,
      deviance = if (family == "binomial") {
        mean(pmax(eta, 0) + log1p(exp(-abs(eta))) - truth * eta)
      } else mean((truth - eta)^2) / 2,
      class = mean((eta > 0) != (truth == 1)),
      mse = mean((truth - eta)^2))
  }
  errors <- matrix(NA_real_, nfolds, length(lambda))
  if (progress) {
    bar <- cli::cli_progress_bar("Cross-validating SUQUAN", total = nfolds * length(lambda))
  }
  for (k in seq_len(nfolds)) {
    train <- folds != k
    for (l in seq_along(lambda)) {
      fit <- suquan(m[, train, drop = FALSE], y_fit[train], family = family, lambda = lambda[l],
                    threads = threads, ...)
      eta <- stats::predict(fit, m[, !train, drop = FALSE], threads = threads)
      errors[k, l] <- score(eta, labels$y[!train])
      if (progress) cli::cli_progress_update(id = bar)
    }
  }
  if (progress) cli::cli_progress_done(id = bar)
  cvm <- colMeans(errors)
  cvsd <- apply(errors, 2, stats::sd) / sqrt(nfolds)
  best <- which.min(cvm)
  structure(
    list(lambda = lambda, cvm = cvm, cvsd = cvsd, lambda_min = lambda[best], measure = measure,
         folds = folds, errors = errors,
         fit = suquan(m, y_fit, family = family, lambda = lambda[best], threads = threads, ...)),
    class = "cv_suquan"
  )
}

#' @rdname cv_suquan
#' @param object A `cv_suquan` object.
#' @param newdata As for [predict.suquan()]; `...` may give its `type`.
#' @export
predict.cv_suquan <- function(object, newdata, ...) {
  stats::predict(object$fit, newdata, ...)
}

#' @export
print.cv_suquan <- function(x, ...) {
  cat(sprintf("<cv_suquan> %d-fold cross-validation of %d lambda values (%s)\n",
              max(x$folds), length(x$lambda), x$measure))
  print(data.frame(lambda = signif(x$lambda, 4), cvm = signif(x$cvm, 4), cvsd = signif(x$cvsd, 3)),
        row.names = FALSE)
  cat(sprintf("lambda_min = %g\n", x$lambda_min))
  invisible(x)
}

#' @rdname cv_suquan
#' @export
plot.cv_suquan <- function(x, ...) {
  lo <- x$cvm - x$cvsd
  hi <- x$cvm + x$cvsd
  graphics::plot(log10(x$lambda), x$cvm, ylim = range(lo, hi), pch = 19,
                 xlab = "log10(lambda)", ylab = paste("cross-validated", x$measure),
                 main = "SUQUAN cross-validation", ...)
  graphics::arrows(log10(x$lambda), lo, log10(x$lambda), hi, angle = 90, code = 3,
                   length = 0.03)
  graphics::abline(v = log10(x$lambda_min), lty = 2)
  invisible(x)
}

# Helpers -----------------------------------------------------------------

suquan_matrix <- function(x, assay, arg = "x") {
  if (methods::is(x, "SummarizedExperiment")) x <- se_assay(x, assay)
  check_expression_matrix(x, arg)
}

# Labels as numbers (0/1 for binomial) with the class names.
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
    return(list(y = as.double(y), levels = NULL))
  }
  if (is.logical(y)) {
    y <- factor(y, levels = c(FALSE, TRUE))
  } else if (is.numeric(y)) {
    if (!all(y %in% c(0, 1))) {
      abort("A numeric `y` for family = \"binomial\" must contain only 0 and 1.")
    }
    y <- factor(y, levels = c(0, 1))
  } else if (is.character(y)) {
    y <- factor(y)
  } else if (!is.factor(y)) {
    abort("`y` must be a factor, logical, character or 0/1 vector, not %s.", describe(y))
  }
  y <- droplevels(y)
  if (nlevels(y) != 2L) {
    abort("`y` must have exactly two classes for family = \"binomial\", not %d (%s).",
          nlevels(y), paste(levels(y), collapse = ", "))
  }
  list(y = as.double(as.integer(y) - 1L), levels = levels(y))
}

suquan_start <- function(f_init, m, mean_target) {
  p <- nrow(m)
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
  if (p > 1L && diff(range(start)) == 0) {
    abort("`f_init` must not be constant: it would map every sample to the same values.")
  }
  if (sqrt(sum(start^2)) == 0) abort("`f_init` must not be all zeros: its norm bounds the target.")
  start
}

match_features <- function(m, object) {
  if (!is.null(rownames(m)) && !is.null(object$features)) {
    missing_features <- setdiff(object$features, rownames(m))
    if (length(missing_features) > 0L) {
      abort("`newdata` lacks %d of the model's features (the first is %s).",
            length(missing_features), missing_features[1L])
    }
    return(m[object$features, , drop = FALSE])
  }
  if (nrow(m) != object$n_features) {
    abort("`newdata` must have %d rows (features), as the training data, not %d.",
          object$n_features, nrow(m))
  }
  m
}

draw_folds <- function(y, nfolds, stratify) {
  folds <- integer(length(y))
  groups <- if (stratify) split(seq_along(y), y) else list(seq_along(y))
  offset <- 0L
  for (members in groups) {
    assigned <- (offset + seq_along(members) - 1L) %% nfolds + 1L
    folds[members] <- assigned[sample.int(length(members))]
    offset <- offset + length(members)
  }
  folds
}
