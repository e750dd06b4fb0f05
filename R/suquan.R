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
#' @param ... For the generic, passed on to the methods; for the
#'   `SummarizedExperiment` method, passed on to the default method; for
#'   `plot()`, graphical parameters passed on to [graphics::matplot()];
#'   otherwise unused (an error names any argument given there).
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
#'   normalisation. arXiv:1706.00244.
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

#' @rdname suquan
#' @export
suquan.SummarizedExperiment <- function(x, y, ..., assay.type = 1L) {
  suquan.default(se_assay(x, assay.type, blocks = TRUE), se_column(x, y, "y"), ...)
}

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
#' @param ... For the generic, passed on to the methods; for the
#'   `SummarizedExperiment` method, passed on to the default method; for
#'   `plot()`, graphical parameters passed on to [graphics::plot()];
#'   otherwise unused (an error names any argument given there).
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
  if (!is.numeric(smooth) || length(smooth) == 0L || anyNA(smooth) || any(!is.finite(smooth)) ||
      any(smooth < 0) || any(smooth > max_smooth)) {
    abort("`smooth` must be numbers from 0 to %s, not %s.", format(max_smooth), describe(smooth))
  }
  smooth <- sort(unique(as.double(smooth)), decreasing = TRUE)
  extend <- check_flag(extend, "extend")
  max_iter <- check_whole(max_iter, "max_iter")
  tol <- check_number(tol, "tol", lower = 0, allow_lower = FALSE)
  progress <- check_flag(progress, "progress")
  threads <- check_threads(threads)
  note_orientation(x)
  m <- suquan_matrix(realize_block_input(x, "x", "cv_suquan() fits its data whole in memory."))
  labels <- suquan_labels(y, family, ncol(m))
  if (measure == "class" && family == "gaussian") {
    abort("`measure = \"class\"` needs family = \"binomial\" or \"multinomial\".")
  }
  if (measure == "auc" && family != "binomial") {
    abort("`measure = \"auc\"` needs family = \"binomial\", not \"%s\".", family)
  }
  if (measure == "mse" && family != "gaussian") abort("`measure = \"mse\"` needs family = \"gaussian\".")
  folds <- suquan_folds(folds, nfolds, labels, family)
  nfolds <- max(folds)
  if (measure == "auc") {
    for (k in seq_len(nfolds)) {
      if (length(unique(labels$y[folds == k])) < 2L) {
        abort("`measure = \"auc\"` needs both classes in every fold; fold %d has only \"%s\".", k,
              labels$levels[labels$y[folds == k][1L] + 1L])
      }
    }
  }

  prep <- suquan_prepare(m, labels, f_init, threads)
  lambda_max <- suquan_lambda_max(prep$position, labels$Y, prep$f0, alpha, threads)
  from_data <- is.null(lambda)
  if (from_data) {
    nlambda <- check_whole(nlambda, "nlambda")
    # each fold keeps the links of every sample for every penalty
    check_memory(8 * ncol(m) * ncol(labels$Y) * (nlambda + 1), "nlambda", nlambda)
    if (is.null(lambda_min_ratio)) {
      lambda_min_ratio <- if (alpha == 0 || ncol(m) >= nrow(m)) 1e-4 else 1e-2
    }
    lambda_min_ratio <- check_number(lambda_min_ratio, "lambda_min_ratio", lower = 0,
                                     upper = 1, allow_lower = FALSE)
    lambda <- lambda_max * lambda_min_ratio^seq(0, 1, length.out = nlambda)
  } else {
    if (!is.numeric(lambda) || length(lambda) == 0L || anyNA(lambda) ||
        any(!is.finite(lambda)) || any(lambda <= 0)) {
      abort("`lambda` must be positive numbers, not %s.", describe(lambda))
    }
    lambda <- sort(unique(as.double(lambda)), decreasing = TRUE)
  }
  # The rounds to run: the largest finite candidate, or until convergence (a
  # candidate beyond max_iter also runs until convergence or max_iter).
  run_rounds <- if (any(rounds > max_iter)) -1L else as.integer(max(rounds))
  # every fit keeps the links of all samples for every penalty and round
  n_rounds <- if (run_rounds < 0L) max_iter else run_rounds
  check_memory(8 * ncol(m) * ncol(labels$Y) * (length(lambda) + 1) * (n_rounds + 1),
               if (run_rounds < 0L) "max_iter" else "rounds",
               if (run_rounds < 0L) max_iter else max(rounds))
  # The training targets of every fold (they do not depend on lambda).
  starts <- lapply(seq_len(nfolds), function(k) {
    train <- folds != k
    f0 <- suquan_start(f_init, nrow(m), threads,
                       qn_fit_target(m[, train, drop = FALSE], threads))$f0
    if (method == "svd") {
      suquan_svd_target(prep$position[, train, drop = FALSE], labels$Y[train, , drop = FALSE],
                        f0, max_iter)$f
    } else f0
  })
  # The measure of every fold, lambda, rounds and smoothness for the penalties
  # `values`, following them down from `warm` (a larger penalty whose fit
  # starts the path and is not scored) when it is given; and the share of the
  # null deviance of the training samples that each fit explains.
  path_errors <- function(values, warm = NULL, bar = NULL) {
    path <- c(warm, values)
    skip <- length(warm)
    shape <- c(nfolds, length(values), length(rounds), length(smooth))
    errors <- explained <- array(NA_real_, shape)
    for (s in seq_along(smooth)) {
      options <- suquan_options(1, alpha, if (method == "bnd") run_rounds else 0L, smooth[s],
                                nrow(m), max_iter, tol)
      for (k in seq_len(nfolds)) {
        test <- folds == k
        train <- !test
        # the links of the test samples, then of the training samples
        links <- suquan_path_cpp(prep$position[, train, drop = FALSE],
                                 labels$Y[train, , drop = FALSE], starts[[k]], path, family,
                                 options, prep$position[, c(which(test), which(train)),
                                                        drop = FALSE], threads)
        last <- dim(links)[4L]
        rows_test <- seq_len(sum(test))
        null <- null_deviance(labels, train, family)
        for (r in seq_along(rounds)) {
          index <- if (is.infinite(rounds[r])) last else min(rounds[r] + 1L, last)
          for (l in seq_along(values)) {
            eta <- links[, , l + skip, index]
            eta <- matrix(eta, nrow = dim(links)[1L])
            errors[k, l, r, s] <- cv_score(eta[rows_test, , drop = FALSE], labels, test,
                                           family, measure)
            explained[k, l, r, s] <- 1 - cv_score(eta[-rows_test, , drop = FALSE], labels,
                                                  train, family, "deviance") / null
          }
        }
        if (!is.null(bar)) cli::cli_progress_update(id = bar)
      }
    }
    list(errors = errors, explained = explained)
  }
  bar <- if (progress) {
    cli::cli_progress_bar("Cross-validating SUQUAN", total = nfolds * length(smooth))
  }
  scored <- path_errors(lambda, bar = bar)
  if (progress) cli::cli_progress_done(id = bar)
  errors <- scored$errors
  explained <- scored$explained
  sign <- if (measure == "auc") -1 else 1
  summary <- cv_summary(errors, folds, sign)
  # Whether every training fold is fit almost perfectly at the smallest
  # penalty (99.9 % of the null deviance explained, where glmnet stops its
  # path): smaller penalties would only scale the model up.
  saturated <- function() {
    isTRUE(all(explained[, length(lambda), summary$best[2L], summary$best[3L]] >= 0.999))
  }
  # A minimum at the smallest penalty of a path built from the data: follow
  # the path further down, with the same spacing, a quarter of its length at
  # a time, up to as many values again, unless the fits are saturated.
  extended <- 0L
  if (from_data && extend && length(lambda) >= 2L) {
    step <- lambda[2L] / lambda[1L]
    chunk <- as.integer(max(1, ceiling(nlambda / 4)))
    while (summary$best[1L] == length(lambda) && extended < nlambda && !saturated()) {
      more <- as.integer(min(chunk, nlambda - extended))
      values <- lambda[length(lambda)] * step^seq_len(more)
      scored <- path_errors(values, warm = lambda[length(lambda)])
      errors <- abind_lambda(errors, scored$errors)
      explained <- abind_lambda(explained, scored$explained)
      lambda <- c(lambda, values)
      extended <- extended + more
      summary <- cv_summary(errors, folds, sign)
    }
  }
  best <- summary$best
  cvm <- summary$cvm
  cvsd <- summary$cvsd
  lambda_min <- lambda[best[1]]
  rounds_min <- rounds[best[2]]
  smooth_min <- smooth[best[3]]
  # The largest penalty whose measure is within one standard error of the
  # best, with the same rounds and smoothness (Hastie et al. 2009, sec. 7.10).
  curve <- sign * cvm[, best[2], best[3]]
  within <- which(curve <= curve[best[1]] + cvsd[best[1], best[2], best[3]])
  lambda_1se <- lambda[min(within)]
  if (best[1L] == length(lambda) && length(lambda) >= 2L) {
    where <- sprintf(
      "The cross-validated %s is best at the smallest lambda of the path (%.3g x lambda_max)%s",
      measure_label(measure, family), lambda_min / lambda_max,
      if (extended > 0L) sprintf(", after extending the path by %d values", extended) else "")
    message(if (saturated()) {
      paste0(where, "; there every training fold is fit almost perfectly (99.9% of its null ",
             "deviance explained), and smaller penalties would only make the model more confident.")
    } else {
      paste0(where, "; smaller penalties may do better: give a smaller `lambda_min_ratio` ",
             "or `lambda`.")
    })
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

#' @rdname cv_suquan
#' @export
cv_suquan.SummarizedExperiment <- function(x, y, ..., assay.type = 1L) {
  cv_suquan.default(se_assay(x, assay.type, blocks = TRUE), se_column(x, y, "y"), ...)
}

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
