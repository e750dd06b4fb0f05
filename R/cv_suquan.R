# Cross-validation of SUQUAN (cv_suquan()): the penalty path, the rounds and
# the smoothness chosen on held-out folds, and the methods of its result. The
# fits themselves are in suquan.R.

#' Cross-validation of SUQUAN's penalty, rounds and smoothness
#'
#' Chooses `lambda`, the number of `rounds` and the roughness penalty
#' `smooth` of [suquan()] together by k-fold cross-validation, then fits the
#' model on all samples with the best values. As in glmnet, the `lambda`
#' path is built from the data: `nlambda` values from `lambda_max` (computed
#' on all samples) down to `lambda_max * lambda_min_ratio`, on a log scale.
#' In every fold, the path is followed from the largest `lambda` down with
#' warm starts, and every round of every fit is scored, so the rounds cost
#' nothing beyond the largest one. The starting target is computed from the
#' training samples of each fold only. Folds are drawn with R's random number
#' generator (call [set.seed()] first for reproducible folds), stratified by
#' class for `"binomial"` and `"multinomial"`, unless `folds` gives them.
#'
#' When the best value is at the smallest `lambda` of a path built from the
#' data, the path is followed further down with the same spacing, a quarter
#' of its length at a time, up to `nlambda` more values (`extend = FALSE`
#' turns this off), and not beyond a penalty at which the fits of every
#' training fold explain 99.9% of its null deviance (where glmnet stops its
#' path: on separable classes, smaller penalties only make the model more
#' confident). A message says when the best value is still at the end of the
#' path, and why (with a given `lambda` too).
#'
#' As in glmnet, two fits on all samples are kept: at `lambda_min`, the best
#' `lambda`, and at `lambda_1se`, the largest `lambda` whose measure is within
#' one standard error of the best, with the same rounds and smoothness (the
#' one-standard-error rule of Hastie, Tibshirani and Friedman 2009, section
#' 7.10); `predict()` and `coef()` choose with `s`.
#'
#' Ties in the cross-validated measure go to the larger `smooth`, then to the
#' fewer rounds, then to the larger `lambda`. `rounds = 0` (the
#' default grid includes it) is plain quantile normalization followed by
#' penalized regression, so cross-validation may also choose not to learn
#' the target.
#'
#' @inheritParams suquan
#' @param lambda Candidate penalties (positive numbers), or `NULL` (the
#'   default) for the path built from the data.
#' @param nlambda Length of the path.
#' @param lambda_min_ratio Ratio of the smallest to the largest value of the
#'   path; `NULL` for 1e-4 with the ridge penalty (whose `lambda_max` uses
#'   `max(alpha, 0.001)`, as glmnet does) and otherwise, as glmnet, 1e-2 when
#'   there are fewer samples than features and 1e-4 when there are not. A
#'   path whose best value is at its end is extended (see Details).
#' @param rounds Candidate numbers of rounds of `"bnd"` (whole numbers from 0,
#'   or `Inf` for running to convergence); ignored for `"svd"` and `"fixed"`.
#' @param smooth Candidate roughness penalties (from 0 to 1e12).
#' @param nfolds Number of folds, from 2 to the number of samples.
#' @param folds `NULL`, or the fold (1, 2, ...) of every sample.
#' @param measure `"deviance"` (the default: binomial or multinomial deviance,
#'   -2 times the mean log-likelihood, or the mean squared error for
#'   `"gaussian"`), `"class"` (misclassification rate), `"auc"` (area under
#'   the ROC curve of each test fold, ties counting one half; binomial only,
#'   every fold must hold both classes; the largest is best) or `"mse"` (mean
#'   squared error, gaussian). The AUC judges the ranking of the scores only:
#'   on easy data many penalties rank every test fold perfectly, the tie goes
#'   to the largest, and its class predictions can all be the majority class
#'   (as with glmnet's `type.measure = "auc"`); for class predictions prefer
#'   the deviance.
#' @param extend Follow the path further down when the best value is at its
#'   smallest `lambda` (only for a path built from the data, `lambda = NULL`).
#' @param progress Show a progress bar (when the work takes more than a few
#'   seconds).
#' @param x Features x samples, as for [suquan()], except that a
#'   `DelayedMatrix` (for example an `HDF5Matrix` assay) or a sparse matrix is
#'   realized as an ordinary matrix, within option `diffrank.memory_limit`:
#'   the folds are fitted on the data whole in memory (see
#'   [diffrank_blocks]). For `print()` and `plot()`, a `cv_suquan` object.
#' @param ... For `plot()`, graphical parameters passed on to
#'   [graphics::plot()]; otherwise must be empty (an error names any argument
#'   given there).
#' @return An object of class `cv_suquan`: `lambda` (the path, extension
#'   included), `rounds`, `smooth` (the candidates), `cvm` (the mean measure
#'   over folds, an array lambda x rounds x smooth), `cvsd` (its standard
#'   error), `lambda_min`, `rounds_min`, `smooth_min` (the best values),
#'   `lambda_1se`, `lambda_max`, `extended` (the number of values added to the
#'   path), `measure`, `folds` (the fold of each sample), `errors` (per fold),
#'   `fit`, the [suquan()] fit on all samples with the best values, and
#'   `fit_1se`, the same at `lambda_1se`. Methods: `print()`, `summary()`,
#'   `coef()`, `predict()`, `plot()`.
#' @references Hastie T, Tibshirani R, Friedman J (2009). *The Elements of
#'   Statistical Learning*, 2nd edition. Springer.
#' @export
#' @examples
#' set.seed(2)
#' x <- matrix(rnorm(30 * 40), 30)
#' y <- factor(ifelse(colSums(x[1:3, ]) > 0, "a", "b"))
#' cv <- cv_suquan(x, y, nlambda = 5, rounds = 0:2, nfolds = 3)
#' cv
#' plot(cv)
#' head(predict(cv, x, type = "class", s = "lambda_1se"))
cv_suquan <- function(x, ...) {
  UseMethod("cv_suquan")
}

#' @rdname cv_suquan
#' @export
cv_suquan.default <- function(x, y, family = c("binomial", "gaussian", "multinomial"),
                              method = c("bnd", "svd", "fixed"), lambda = NULL, nlambda = 20L,
                              lambda_min_ratio = NULL, alpha = 0, rounds = 0:3, smooth = 0,
                              f_init = "mean", nfolds = 5L, folds = NULL,
                              measure = c("deviance", "class", "auc", "mse"), extend = TRUE,
                              max_iter = 50L, tol = 1e-3, progress = interactive(),
                              threads = diffrank_threads(), ...) {
  check_dots_whole("cv_suquan()", ...)
  family <- match_choice(family, c("binomial", "gaussian", "multinomial"), "family")
  method <- match_choice(method, c("bnd", "svd", "fixed"), "method")
  measure <- match_choice(measure, c("deviance", "class", "auc", "mse"), "measure")
  alpha <- check_number(alpha, "alpha", lower = 0, upper = 1)
  rounds <- if (method == "bnd") check_rounds(rounds, "rounds", several = TRUE) else 0
  smooth <- check_smooth_grid(smooth)
  extend <- check_flag(extend, "extend")
  max_iter <- check_whole(max_iter, "max_iter")
  tol <- check_number(tol, "tol", lower = 0, allow_lower = FALSE)
  progress <- check_flag(progress, "progress")
  threads <- check_threads(threads)
  note_orientation(x)
  m <- suquan_matrix(realize_block_input(x, "x", "cv_suquan() fits its data whole in memory."))
  labels <- suquan_labels(y, family, ncol(m))
  check_cv_measure(measure, family)
  folds <- suquan_folds(folds, nfolds, labels, family)
  if (measure == "auc") check_auc_folds(folds, labels)

  prep <- suquan_prepare(m, labels, f_init, threads)
  lambda_max <- suquan_lambda_max(prep$position, labels$Y, prep$f0, alpha, threads)
  from_data <- is.null(lambda)
  if (from_data) {
    nlambda <- check_whole(nlambda, "nlambda")
    lambda <- cv_lambda_path(lambda_max, nlambda, lambda_min_ratio, alpha, m, labels)
  } else {
    lambda <- check_lambda_grid(lambda)
  }
  # The rounds to run: the largest finite candidate, or until convergence (a
  # candidate beyond max_iter also runs until convergence or max_iter).
  run_rounds <- if (any(rounds > max_iter)) -1L else as.integer(max(rounds))
  # every fit keeps the links of all samples for every penalty and round
  n_rounds <- if (run_rounds < 0L) max_iter else run_rounds
  check_memory(8 * ncol(m) * ncol(labels$Y) * (length(lambda) + 1) * (n_rounds + 1),
               if (run_rounds < 0L) "max_iter" else "rounds",
               if (run_rounds < 0L) max_iter else max(rounds))
  cv <- list(m = m, labels = labels, position = prep$position, folds = folds,
             nfolds = max(folds), family = family, method = method, measure = measure,
             alpha = alpha, rounds = rounds, run_rounds = run_rounds, smooth = smooth,
             max_iter = max_iter, tol = tol, threads = threads,
             sign = if (measure == "auc") -1 else 1)
  cv$starts <- cv_fold_starts(cv, f_init)

  bar <- if (progress) {
    cli::cli_progress_bar("Cross-validating SUQUAN", total = cv$nfolds * length(smooth))
  }
  scored <- cv_path_scores(cv, lambda, bar = bar)
  if (progress) cli::cli_progress_done(id = bar)
  scored$lambda <- lambda
  scored$summary <- cv_summary(scored$errors, folds, cv$sign)
  scored$extended <- 0L
  if (from_data && extend && length(lambda) >= 2L) scored <- cv_extend_path(cv, scored, nlambda)
  lambda <- scored$lambda
  summary <- scored$summary
  extended <- scored$extended
  errors <- scored$errors
  best <- summary$best
  cvm <- summary$cvm
  cvsd <- summary$cvsd
  lambda_min <- lambda[best[1]]
  rounds_min <- rounds[best[2]]
  smooth_min <- smooth[best[3]]
  # The largest penalty whose measure is within one standard error of the
  # best, with the same rounds and smoothness (Hastie et al. 2009, sec. 7.10).
  curve <- cv$sign * cvm[, best[2], best[3]]
  within <- which(curve <= curve[best[1]] + cvsd[best[1], best[2], best[3]])
  lambda_1se <- lambda[min(within)]
  if (best[1L] == length(lambda) && length(lambda) >= 2L) {
    note_best_at_path_end(cv, scored, lambda_max)
  }
  call <- match.call()
  refit <- function(value) {
    fit <- suquan.default(m, y, family = family, method = method, lambda = value,
                          alpha = alpha, rounds = if (method == "bnd") rounds_min else 0,
                          smooth = smooth_min, f_init = f_init, max_iter = max_iter, tol = tol,
                          threads = threads)
    fit$call <- call
    fit
  }
  fit <- refit(lambda_min)
  fit_1se <- if (lambda_1se == lambda_min) fit else refit(lambda_1se)
  structure(
    list(lambda = lambda, rounds = rounds, smooth = smooth, cvm = cvm, cvsd = cvsd,
         lambda_min = lambda_min, lambda_1se = lambda_1se, rounds_min = rounds_min,
         smooth_min = smooth_min, lambda_max = lambda_max, extended = extended,
         measure = measure, family = family, method = method, folds = folds, errors = errors,
         fit = fit, fit_1se = fit_1se, call = call),
    class = "cv_suquan"
  )
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(cv_suquan) <- formals(cv_suquan.default)

#' @rdname cv_suquan
#' @export
cv_suquan.SummarizedExperiment <- assay_method("cv_suquan.default", columns = "y")

#' @rdname cv_suquan
#' @param object A `cv_suquan` object.
#' @param newdata,type As for [predict.suquan()] (a `DelayedMatrix` or sparse
#'   `newdata` is processed in column blocks).
#' @param BPPARAM For `predict()` of a `DelayedMatrix` or sparse `newdata`:
#'   `NULL` (the default) or a BiocParallel back-end over whose workers its
#'   blocks are spread, as for [predict.suquan()]. `cv_suquan()` itself has
#'   none: it fits its data whole in memory.
#' @param s Which fit on all samples predicts: `"lambda_min"` (the default,
#'   the fit at the best `lambda`) or `"lambda_1se"` (the fit at the largest
#'   `lambda` within one standard error of the best, with the same rounds and
#'   smoothness: a simpler model that is about as good). glmnet's spellings
#'   `"lambda.min"` and `"lambda.1se"` are accepted too.
#' @export
predict.cv_suquan <- function(object, newdata, type = c("link", "response", "class"),
                              s = c("lambda_min", "lambda_1se"), threads = diffrank_threads(),
                              assay.type = 1L, BPPARAM = NULL, ...) {
  check_dots_empty(...)
  predict.suquan(cv_suquan_fit(object, s), newdata, type = type, threads = threads,
                 assay.type = assay.type, BPPARAM = BPPARAM)
}

#' @rdname cv_suquan
#' @export
coef.cv_suquan <- function(object, s = c("lambda_min", "lambda_1se"), ...) {
  check_dots_empty(...)
  coef.suquan(cv_suquan_fit(object, s))
}

# The fit on all samples that `s` names.
cv_suquan_fit <- function(object, s) {
  choices <- c("lambda_min", "lambda_1se")
  glmnet <- c(lambda.min = "lambda_min", lambda.1se = "lambda_1se")
  if (is.character(s) && length(s) == 1L && s %in% names(glmnet)) s <- glmnet[[s]]
  s <- match_choice(s, choices, "s")
  if (s == "lambda_min") return(object$fit)
  if (is.null(object$fit_1se)) {
    abort("This `cv_suquan` object has no fit at `lambda_1se`; run cv_suquan() again.")
  }
  object$fit_1se
}

#' @rdname cv_suquan
#' @export
print.cv_suquan <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("<cv_suquan> %d-fold cross-validation of %d lambda value(s) x %d round setting(s) x %d smoothness value(s)\n",
              max(x$folds), length(x$lambda), length(x$rounds), length(x$smooth)))
  print(cv_table(x), row.names = FALSE)
  best <- if (x$measure == "auc") max(x$cvm) else min(x$cvm)
  cat(sprintf("best: lambda = %.4g (%.3g x lambda_max), rounds = %s, smooth = %g; %s %.4g\n",
              x$lambda_min, x$lambda_min / x$lambda_max, format(x$rounds_min), x$smooth_min,
              measure_label(x$measure, x$family), best))
  if (!is.null(x$lambda_1se)) {
    cat(sprintf("within one standard error: lambda_1se = %.4g (%.3g x lambda_max)\n",
                x$lambda_1se, x$lambda_1se / x$lambda_max))
  }
  if (isTRUE(x$extended > 0L)) {
    cat(sprintf("the path was extended by %d smaller lambda values (the best was at its end)\n",
                x$extended))
  }
  invisible(x)
}

#' @rdname cv_suquan
#' @export
summary.cv_suquan <- function(object, ...) {
  check_dots_empty(...)
  structure(list(cv = cv_table(object), measure = measure_label(object$measure, object$family),
                 fit = summary.suquan(object$fit)),
            class = "summary.cv_suquan")
}

#' @export
print.summary.cv_suquan <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("Cross-validated %s, best lambda for each number of rounds and smoothness:\n",
              x$measure))
  print(x$cv, row.names = FALSE)
  cat("Fit on all samples:\n")
  print(x$fit)
  invisible(x)
}

#' @rdname cv_suquan
#' @export
plot.cv_suquan <- function(x, ...) {
  combos <- expand.grid(r = seq_along(x$rounds), s = seq_along(x$smooth))
  palette <- c("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
               "#666666")
  colours <- rep_len(palette, nrow(combos))
  lo <- x$cvm - x$cvsd
  hi <- x$cvm + x$cvsd
  log_lambda <- log10(x$lambda)
  graphics::plot(range(log_lambda), range(lo, hi), type = "n", xlab = "log10(lambda)",
                 ylab = paste("Cross-validated", measure_label(x$measure, x$family)),
                 main = "SUQUAN cross-validation", ...)
  best <- arrayInd(which.min(if (identical(x$measure, "auc")) -x$cvm else x$cvm), dim(x$cvm))
  for (c in seq_len(nrow(combos))) {
    r <- combos$r[c]
    s <- combos$s[c]
    graphics::lines(log_lambda, x$cvm[, r, s], col = colours[c], type = "b", pch = 19, cex = 0.6)
    if (r == best[2] && s == best[3]) {
      graphics::arrows(log_lambda, lo[, r, s], log_lambda, hi[, r, s], angle = 90, code = 3,
                       length = 0.02, col = colours[c])
    }
  }
  graphics::abline(v = log10(c(x$lambda_min, x$lambda_1se)), lty = c(2, 3))
  labels <- sprintf("rounds %s", format(x$rounds[combos$r]))
  if (length(x$smooth) > 1L) labels <- paste0(labels, sprintf(", smooth %g", x$smooth[combos$s]))
  graphics::legend("topleft", labels, col = colours, lty = 1, pch = 19,
                   bty = "n", cex = 0.8)
  invisible(x)
}

# Helpers of cv_suquan.default() -------------------------------------------

# The smoothness values to try, largest first.
check_smooth_grid <- function(smooth) {
  if (!is.numeric(smooth) || length(smooth) == 0L || anyNA(smooth) || any(!is.finite(smooth)) ||
      any(smooth < 0) || any(smooth > max_smooth)) {
    abort("`smooth` must be numbers from 0 to %s, not %s.", format(max_smooth), describe(smooth))
  }
  sort(unique(as.double(smooth)), decreasing = TRUE)
}

# The penalties given by the user, largest first.
check_lambda_grid <- function(lambda) {
  if (!is.numeric(lambda) || length(lambda) == 0L || anyNA(lambda) ||
      any(!is.finite(lambda)) || any(lambda <= 0)) {
    abort("`lambda` must be positive numbers, not %s.", describe(lambda))
  }
  sort(unique(as.double(lambda)), decreasing = TRUE)
}

check_cv_measure <- function(measure, family) {
  if (measure == "class" && family == "gaussian") {
    abort("`measure = \"class\"` needs family = \"binomial\" or \"multinomial\".")
  }
  if (measure == "auc" && family != "binomial") {
    abort("`measure = \"auc\"` needs family = \"binomial\", not \"%s\".", family)
  }
  if (measure == "mse" && family != "gaussian") abort("`measure = \"mse\"` needs family = \"gaussian\".")
}

check_auc_folds <- function(folds, labels) {
  for (k in seq_len(max(folds))) {
    if (length(unique(labels$y[folds == k])) < 2L) {
      abort("`measure = \"auc\"` needs both classes in every fold; fold %d has only \"%s\".", k,
            labels$levels[labels$y[folds == k][1L] + 1L])
    }
  }
}

# nlambda penalties from lambda_max down to lambda_max * lambda_min_ratio,
# evenly spaced on the log scale.
cv_lambda_path <- function(lambda_max, nlambda, lambda_min_ratio, alpha, m, labels) {
  # each fold keeps the links of every sample for every penalty
  check_memory(8 * ncol(m) * ncol(labels$Y) * (nlambda + 1), "nlambda", nlambda)
  if (is.null(lambda_min_ratio)) {
    lambda_min_ratio <- if (alpha == 0 || ncol(m) >= nrow(m)) 1e-4 else 1e-2
  }
  lambda_min_ratio <- check_number(lambda_min_ratio, "lambda_min_ratio", lower = 0,
                                   upper = 1, allow_lower = FALSE)
  lambda_max * lambda_min_ratio^seq(0, 1, length.out = nlambda)
}

# The training targets of every fold (they do not depend on lambda).
cv_fold_starts <- function(cv, f_init) {
  m <- cv$m
  lapply(seq_len(cv$nfolds), function(k) {
    train <- cv$folds != k
    f0 <- suquan_start(f_init, nrow(m), cv$threads,
                       qn_fit_target(m[, train, drop = FALSE], cv$threads))$f0
    if (cv$method == "svd") {
      suquan_svd_target(cv$position[, train, drop = FALSE], cv$labels$Y[train, , drop = FALSE],
                        f0, cv$max_iter)$f
    } else f0
  })
}

# The measure of every fold, lambda, rounds and smoothness for the penalties
# `values`, following them down from `warm` (a larger penalty whose fit
# starts the path and is not scored) when it is given; and the share of the
# null deviance of the training samples that each fit explains.
cv_path_scores <- function(cv, values, warm = NULL, bar = NULL) {
  labels <- cv$labels
  position <- cv$position
  path <- c(warm, values)
  skip <- length(warm)
  rounds <- cv$rounds
  shape <- c(cv$nfolds, length(values), length(rounds), length(cv$smooth))
  errors <- explained <- array(NA_real_, shape)
  for (s in seq_along(cv$smooth)) {
    options <- suquan_options(1, cv$alpha, if (cv$method == "bnd") cv$run_rounds else 0L,
                              cv$smooth[s], nrow(cv$m), cv$max_iter, cv$tol)
    for (k in seq_len(cv$nfolds)) {
      test <- cv$folds == k
      train <- !test
      # the links of the test samples, then of the training samples
      links <- suquan_path_cpp(position[, train, drop = FALSE],
                               labels$Y[train, , drop = FALSE], cv$starts[[k]], path, cv$family,
                               options, position[, c(which(test), which(train)), drop = FALSE],
                               cv$threads)
      last <- dim(links)[4L]
      rows_test <- seq_len(sum(test))
      null <- null_deviance(labels, train, cv$family)
      for (r in seq_along(rounds)) {
        index <- if (is.infinite(rounds[r])) last else min(rounds[r] + 1L, last)
        for (l in seq_along(values)) {
          eta <- links[, , l + skip, index]
          eta <- matrix(eta, nrow = dim(links)[1L])
          errors[k, l, r, s] <- cv_score(eta[rows_test, , drop = FALSE], labels, test,
                                         cv$family, cv$measure)
          explained[k, l, r, s] <- 1 - cv_score(eta[-rows_test, , drop = FALSE], labels,
                                                train, cv$family, "deviance") / null
        }
      }
      if (!is.null(bar)) cli::cli_progress_update(id = bar)
    }
  }
  list(errors = errors, explained = explained)
}

# Whether every training fold is fit almost perfectly at the smallest
# penalty (99.9 % of the null deviance explained, where glmnet stops its
# path): smaller penalties would only scale the model up.
cv_saturated <- function(scored) {
  best <- scored$summary$best
  isTRUE(all(scored$explained[, length(scored$lambda), best[2L], best[3L]] >= 0.999))
}

# A minimum at the smallest penalty of a path built from the data: follow
# the path further down, with the same spacing, a quarter of its length at
# a time, up to as many values again, unless the fits are saturated.
cv_extend_path <- function(cv, scored, nlambda) {
  lambda <- scored$lambda
  step <- lambda[2L] / lambda[1L]
  chunk <- as.integer(max(1, ceiling(nlambda / 4)))
  while (scored$summary$best[1L] == length(scored$lambda) && scored$extended < nlambda &&
         !cv_saturated(scored)) {
    lambda <- scored$lambda
    more <- as.integer(min(chunk, nlambda - scored$extended))
    values <- lambda[length(lambda)] * step^seq_len(more)
    more_scored <- cv_path_scores(cv, values, warm = lambda[length(lambda)])
    scored$errors <- abind_lambda(scored$errors, more_scored$errors)
    scored$explained <- abind_lambda(scored$explained, more_scored$explained)
    scored$lambda <- c(lambda, values)
    scored$extended <- scored$extended + more
    scored$summary <- cv_summary(scored$errors, cv$folds, cv$sign)
  }
  scored
}

# The message when the best penalty is the smallest of the path.
note_best_at_path_end <- function(cv, scored, lambda_max) {
  lambda_min <- scored$lambda[scored$summary$best[1L]]
  where <- sprintf(
    "The cross-validated %s is best at the smallest lambda of the path (%.3g x lambda_max)%s",
    measure_label(cv$measure, cv$family), lambda_min / lambda_max,
    if (scored$extended > 0L) {
      sprintf(", after extending the path by %d values", scored$extended)
    } else "")
  message(if (cv_saturated(scored)) {
    paste0(where, "; there every training fold is fit almost perfectly (99.9% of its null ",
           "deviance explained), and smaller penalties would only make the model more confident.")
  } else {
    paste0(where, "; smaller penalties may do better: give a smaller `lambda_min_ratio` ",
           "or `lambda`.")
  })
}

# Helpers -----------------------------------------------------------------

# The folds given by the user, checked, or drawn (stratified by class).
suquan_folds <- function(folds, nfolds, labels, family) {
  n <- length(labels$y)
  if (is.null(folds)) {
    nfolds <- check_whole(nfolds, "nfolds")
    if (nfolds < 2L || nfolds > n) {
      abort("`nfolds` must be between 2 and the number of samples (%d), not %d.", n, nfolds)
    }
    folds <- draw_folds(labels$y, nfolds, stratify = family != "gaussian")
  } else {
    if (!is.numeric(folds) || length(folds) != n || anyNA(folds) || any(folds != round(folds)) ||
        any(folds < 1) || length(unique(folds)) < 2L || max(folds) != length(unique(folds))) {
      abort("`folds` must give each of the %d samples a fold 1, 2, ..., K (K >= 2, none empty), not %s.",
            n, describe(folds))
    }
    folds <- as.integer(folds)
  }
  if (family != "gaussian") {
    for (k in seq_len(max(folds))) {
      absent <- setdiff(seq_along(labels$levels), unique(labels$y[folds != k] + (family == "binomial")))
      if (length(absent) > 0L) {
        abort("The training samples of fold %d lack class \"%s\"; use fewer folds.", k,
              labels$levels[absent[1L]])
      }
    }
  }
  folds
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

# The measure on the test samples `test` from their links (n_test x K).
cv_score <- function(eta, labels, test, family, measure) {
  eta <- matrix(eta, nrow = sum(test))
  Y <- labels$Y[test, , drop = FALSE]
  if (family == "gaussian") return(mean((Y[, 1] - eta[, 1])^2))
  if (family == "binomial") {
    y <- Y[, 1]
    if (measure == "class") return(mean((eta[, 1] > 0) != (y == 1)))
    if (measure == "auc") return(auc_score(eta[, 1], y))
    return(2 * mean(pmax(eta[, 1], 0) + log1p(exp(-abs(eta[, 1]))) - y * eta[, 1]))
  }
  if (measure == "class") return(mean(max.col(eta, ties.method = "first") != labels$y[test]))
  top <- apply(eta, 1, max)
  lse <- top + log(rowSums(exp(eta - top)))
  2 * mean(lse - rowSums(Y * eta))
}

# The deviance of the intercept-only model on the samples `rows`, in the units
# of cv_score(): the mean squared error around the mean for "gaussian", -2
# times the mean log-likelihood of the class frequencies otherwise.
null_deviance <- function(labels, rows, family) {
  Y <- labels$Y[rows, , drop = FALSE]
  if (family == "gaussian") return(mean((Y[, 1] - mean(Y[, 1]))^2))
  share <- colMeans(Y)
  if (family == "binomial") share <- c(share, 1 - share)
  share <- share[share > 0]
  -2 * sum(share * log(share))
}

# The area under the ROC curve: the probability that a positive sample scores
# above a negative one, ties counting one half (the Mann-Whitney statistic).
auc_score <- function(score, y) {
  positive <- y == 1
  n1 <- sum(positive)
  n0 <- length(y) - n1
  (sum(rank(score)[positive]) - n1 * (n1 + 1) / 2) / (n1 * n0)
}

# The mean measure over folds (weighted by their sizes), its standard error
# and the best cell: the first minimum of sign * cvm in storage order (larger
# smooth, then fewer rounds, then larger lambda).
cv_summary <- function(errors, folds, sign) {
  nfolds <- dim(errors)[1L]
  weights <- tabulate(folds, nfolds)
  shape <- dim(errors)[-1L]
  cvm <- apply(errors, c(2, 3, 4), stats::weighted.mean, w = weights)
  cvsd <- apply(errors, c(2, 3, 4), function(e) {
    sqrt(stats::weighted.mean((e - stats::weighted.mean(e, weights))^2, weights) / (nfolds - 1))
  })
  dim(cvm) <- dim(cvsd) <- shape
  list(cvm = cvm, cvsd = cvsd, best = arrayInd(which.min(sign * cvm), shape))
}

# Two arrays of errors (folds x lambda x rounds x smooth) joined along lambda.
abind_lambda <- function(a, b) {
  d <- dim(a)
  out <- array(NA_real_, c(d[1L], d[2L] + dim(b)[2L], d[3L], d[4L]))
  out[, seq_len(d[2L]), , ] <- a
  out[, d[2L] + seq_len(dim(b)[2L]), , ] <- b
  out
}

measure_label <- function(measure, family) {
  switch(measure,
         class = "misclassification rate",
         auc = "AUC",
         mse = "mean squared error",
         deviance = switch(family, gaussian = "mean squared error",
                           binomial = "binomial deviance", multinomial = "multinomial deviance"))
}

# The best lambda for every (rounds, smooth) pair.
cv_table <- function(x) {
  rows <- expand.grid(r = seq_along(x$rounds), s = seq_along(x$smooth))
  out <- do.call(rbind, lapply(seq_len(nrow(rows)), function(i) {
    values <- x$cvm[, rows$r[i], rows$s[i]]
    l <- if (identical(x$measure, "auc")) which.max(values) else which.min(values)
    data.frame(rounds = x$rounds[rows$r[i]], smooth = x$smooth[rows$s[i]],
               lambda = signif(x$lambda[l], 4), cvm = signif(values[l], 4),
               cvsd = signif(x$cvsd[l, rows$r[i], rows$s[i]], 3))
  }))
  names(out)[4] <- measure_label(x$measure, x$family)
  out
}
