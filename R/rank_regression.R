#' Label ranking with perturbed Fenchel-Young losses
#'
#' Fits an affine model of label rankings: each sample \eqn{i}{i} (a column of
#' `x`) gets one score per label, \eqn{\theta_i = W x_i + c}{theta_i = W x_i + c}, and labels are
#' ranked by decreasing score. With `loss = "fy"` the model is trained with
#' the Fenchel-Young loss of the perturbed ranks ([fy_loss()] with the
#' `"rank"` solver: the label-ranking experiment of Berthet et al. 2020); with
#' `loss = "soft_rank"`, by least squares of the soft ranks of the scores
#' ([soft_rank()], projections onto the permutahedron) on the target ranks
#' (the label-ranking experiment of Blondel et al. 2020); with `loss =
#' "squared"`, the baseline, by least squares of the scores themselves on the
#' target ranks, one regression per label. All add the ridge penalty `lambda
#' * sum(W^2)`.
#'
#' @section Fitting:
#' Features are centred and scaled before fitting (coefficients are reported
#' on the original scale). The Fenchel-Young objective
#' \deqn{\frac{1}{n} \sum_i L_\varepsilon(\theta_i; y_i) + \lambda \|W\|^2}{
#' (1/n) sum_i L_eps(theta_i; y_i) + lambda ||W||^2}
#' is convex; it is estimated with `n_samples` normal draws per sample, made
#' once from R's generator (call [set.seed()] first to reproduce a fit) and
#' kept for the whole fit, so the objective is a fixed convex function whose
#' gradient is exact, minimized by [stats::optim()] (BFGS). The target
#' \eqn{y_i}{y_i} of a sample is the vertex of the permutahedron that ranks its
#' preferred label highest: `nrow(y) + 1 - y[, i]`. The squared
#' loss \eqn{\frac{1}{2n} \sum_i \|\theta_i - y_i\|^2}{(1/(2n)) sum_i ||theta_i - y_i||^2}
#' (with centred targets) is
#' minimized in closed form. The soft-rank loss
#' \eqn{\frac{1}{2n} \sum_i \|r_\varepsilon(\theta_i) - y_i\|^2}{(1/(2n)) sum_i ||r_eps(theta_i) - y_i||^2},
#' with \eqn{r_\varepsilon}{r_eps} the soft ranks of [soft_rank()] at `eps` on the
#' scores as they are (`scale = "none"`, so that the ridge penalty fixes the
#' scale of the scores), is not convex: it is minimized by BFGS from the
#' least-squares fit, with the exact gradient of the soft ranks' VJP.
#'
#' @param x Features x samples: a numeric matrix or data frame with one
#'   column per sample (use `t()` on a data frame with one row per
#'   observation). No missing values. A `DelayedMatrix` (for example an
#'   `HDF5Matrix` assay) or a sparse matrix is realized as an ordinary matrix,
#'   within option `diffrank.memory_limit`: the fit needs its data whole in
#'   memory (see [diffrank_blocks]). For `print()`, a `rank_regression`
#'   fit.
#' @param y The observed rankings, labels x samples: the ranking of the
#'   labels for each sample, 1 for the preferred label (as `rank(-score)`
#'   gives); each column must be a ranking of `1:nrow(y)`, with tied labels
#'   sharing their average rank. Row names, if any, name the labels. For
#'   `summary()`, those of `newdata`. Formerly `rankings`, still accepted
#'   with a warning for one release.
#' @param loss `"fy"` (perturbed Fenchel-Young loss), `"soft_rank"` (squared
#'   loss of the soft ranks) or `"squared"` (squared loss of the scores).
#' @param eps The smoothing of the ranks (`"fy"` and `"soft_rank"`), a
#'   positive number on the scale of the scores: for `"fy"` the size of the
#'   perturbation, for `"soft_rank"` the regularization of [soft_rank()].
#'   Labels whose scores differ by less than about `eps` are treated as
#'   exchangeable by the loss.
#' @param n_samples Number of draws per sample (`"fy"` only).
#' @param lambda Ridge penalty, a number `>= 0`.
#' @param max_iter Maximum number of BFGS iterations (`"fy"` and `"soft_rank"`).
#' @param threads Number of threads; see [diffrank_threads()].
#' @return An object of class `rank_regression`: a list with `coefficients`
#'   (labels x (1 + features), the intercept first), `fitted` (the training
#'   scores, labels x samples), the settings, and `optim`, what
#'   [stats::optim()] reported (`"fy"` and `"soft_rank"`). Methods: `print()`, `coef()`,
#'   `predict()` (rankings or scores of new samples) and `summary()`
#'   (Spearman and Kendall agreement with the observed rankings).
#' @references Berthet Q, Blondel M, Teboul O, Cuturi M, Vert JP, Bach F
#'   (2020). Learning with differentiable perturbed optimizers. *NeurIPS
#'   2020*. \doi{10.48550/arXiv.2002.08676}
#'
#'   Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast differentiable
#'   sorting and ranking. *Proceedings of the 37th International Conference
#'   on Machine Learning (ICML)*. \doi{10.48550/arXiv.2002.08871}
#'
#'   Cheng W, Hühn J, Hüllermeier E (2009). Decision tree and instance-based
#'   learning for label ranking. *Proceedings of the 26th International
#'   Conference on Machine Learning (ICML)*, 161-168.
#' @export
#' @examples
#' set.seed(1)
#' p <- 4; d <- 3; n <- 200
#' x <- matrix(rnorm(p * n), p, n)
#' w <- matrix(rnorm(d * p), d, p)
#' scores <- w %*% x + matrix(rnorm(d * n, sd = 0.5), d, n)
#' rankings <- apply(-scores, 2, rank)
#' rownames(rankings) <- c("red", "green", "blue")
#' fit <- rank_regression(x, rankings, n_samples = 20)
#' fit
#' predict(fit, x[, 1:3])
#' summary(fit)
rank_regression <- function(x, ...) {
  UseMethod("rank_regression")
}

#' @rdname rank_regression
#' @export
rank_regression.default <- function(x, y, loss = c("fy", "soft_rank", "squared"), eps = 1,
                                    n_samples = 100L, lambda = 1e-3, max_iter = 500L,
                                    threads = diffrank_threads(), ...) {
  rest <- take_renamed(list(...), "rankings", "y", "rank_regression()")
  do.call(check_dots_whole, c(list("rank_regression()"), rest))
  if (missing(y)) abort("`y` is missing: give the observed rankings (labels x samples).")
  loss <- match_choice(loss, c("fy", "soft_rank", "squared"), "loss")
  lambda <- check_number(lambda, "lambda", lower = 0)
  max_iter <- check_whole(max_iter, "max_iter")
  x <- realize_block_input(x, "x", "rank_regression() fits its data whole in memory.")
  m <- as_numeric_matrix(x, "x")
  if (anyNA(m) || any(is.infinite(m))) abort("`x` must contain only finite values.")
  if (nrow(m) == 0L || ncol(m) < 2L) {
    abort("`x` must have at least one feature (row) and two samples (columns), not %d x %d.",
          nrow(m), ncol(m))
  }
  r <- check_rankings(y, ncol(m))
  features <- rownames(m) %||% paste0("x", seq_len(nrow(m)))
  centre <- rowMeans(m)
  spread <- sqrt(rowMeans((m - centre)^2))
  spread[!(spread > 0)] <- 1
  xs <- (m - centre) / spread
  target <- nrow(r) + 1 - r
  fit <- switch(loss,
    fy = {
      spec <- perturbed_spec("rank", eps, n_samples, "normal", TRUE, list(), threads)
      fit_rank_fy(xs, target, spec, lambda, max_iter)
    },
    soft_rank = {
      eps <- check_number(eps, "eps", lower = 0, allow_lower = FALSE)
      fit_rank_soft(xs, target, eps, lambda, max_iter, check_threads(threads))
    },
    squared = fit_rank_squared(xs, target, lambda)
  )
  w <- fit$w / rep(spread, each = nrow(fit$w))
  coefficients <- cbind(fit$c - drop(w %*% centre), w)
  dimnames(coefficients) <- list(rownames(r), c("(Intercept)", features))
  fitted <- fit$w %*% xs + fit$c
  dimnames(fitted) <- list(rownames(r), colnames(m))
  structure(
    list(coefficients = coefficients, fitted = fitted, rankings = r, loss = loss,
         eps = if (loss != "squared") eps else NULL,
         n_samples = if (loss == "fy") n_samples else NULL,
         lambda = lambda, optim = fit$optim, n_features = nrow(m), features = rownames(m),
         labels = rownames(r), call = match.call()),
    class = "rank_regression"
  )
}

# the generic shows the default method's arguments (R/args_of_generics.R)
formals(rank_regression) <- formals(rank_regression.default)

#' @rdname rank_regression
#' @param assay.type For a `SummarizedExperiment`, the assay (name or number)
#'   whose features x samples matrix is `x`.
#' @export
rank_regression.SummarizedExperiment <- assay_method("rank_regression.default")

#' @rdname rank_regression
#' @param object A `rank_regression` fit.
#' @param newdata New samples (features x samples, with the training
#'   features: matched by row name when both have row names, by position
#'   otherwise; a `DelayedMatrix` or sparse matrix is realized in memory,
#'   within option `diffrank.memory_limit`). Missing: the training samples.
#' @param type `"ranking"` (1 for the preferred label, ties in order of the
#'   labels) or `"score"` (the scores \eqn{\theta}{theta}, higher is preferred).
#' @param ... For `rank_regression()` and `summary()`, only the former name
#'   `rankings` of `y` (with a warning, for one release); otherwise must be
#'   empty (an error names any argument given there).
#' @export
predict.rank_regression <- function(object, newdata, type = c("ranking", "score"), ...) {
  check_dots_empty(...)
  type <- match_choice(type, c("ranking", "score"), "type")
  scores <- if (missing(newdata)) object$fitted else rank_scores(object, newdata)
  if (type == "score") return(scores)
  ranks_by_column(-scores)
}

#' @rdname rank_regression
#' @export
coef.rank_regression <- function(object, ...) {
  check_dots_empty(...)
  object$coefficients
}

#' @rdname rank_regression
#' @export
print.rank_regression <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("<rank_regression> %s, lambda = %g\n", rank_loss_label(x), x$lambda))
  cat(sprintf("  %d labels, %d features, %d samples", nrow(x$coefficients), x$n_features,
              ncol(x$fitted)))
  if (!is.null(x$optim)) {
    cat(sprintf("; BFGS %s after %d evaluations",
                if (x$optim$convergence == 0L) "converged" else "stopped", x$optim$counts[[1L]]))
  }
  agreement <- rank_agreement(stats::predict(x), x$rankings)
  cat(sprintf("\n  training agreement: Spearman %.3f, Kendall %.3f\n",
              mean(agreement$spearman, na.rm = TRUE), mean(agreement$kendall, na.rm = TRUE)))
  invisible(x)
}

#' @rdname rank_regression
#' @export
summary.rank_regression <- function(object, newdata = NULL, y = NULL, ...) {
  do.call(check_dots_empty, take_renamed(list(...), "rankings", "y", "summary()"))
  if (is.null(newdata) != is.null(y)) {
    abort("Give both `newdata` and `y` (to evaluate on new samples), or neither.")
  }
  if (is.null(newdata)) {
    predicted <- stats::predict(object)
    observed <- object$rankings
    data <- "training"
  } else {
    predicted <- stats::predict(object, newdata)
    observed <- check_rankings(y, ncol(predicted))
    data <- "new"
  }
  agreement <- rank_agreement(predicted, observed)
  structure(list(fit = object, data = data, n = ncol(predicted), spearman = agreement$spearman,
                 kendall = agreement$kendall, exact = mean(agreement$exact)),
            class = "summary.rank_regression")
}

#' @export
print.summary.rank_regression <- function(x, ...) {
  check_dots_empty(...)
  cat(sprintf("<rank_regression> %s, lambda = %g\n", rank_loss_label(x$fit), x$fit$lambda))
  cat(sprintf("Agreement of the predicted and observed rankings, %d %s samples:\n", x$n, x$data))
  quartiles <- function(v) stats::quantile(v, c(0.25, 0.5, 0.75), na.rm = TRUE)
  table <- rbind(Spearman = c(mean = mean(x$spearman, na.rm = TRUE), quartiles(x$spearman)),
                 Kendall = c(mean = mean(x$kendall, na.rm = TRUE), quartiles(x$kendall)))
  print(round(table, 4))
  cat(sprintf("Rankings predicted exactly: %.1f%%\n", 100 * x$exact))
  invisible(x)
}

# ---------------------------------------------------------------------------
# helpers

# A labels x samples matrix of rankings (1 = preferred, average ranks for
# ties) with one column per sample.
check_rankings <- function(rankings, n, arg = "y") {
  if (is.data.frame(rankings)) rankings <- as.matrix(rankings)
  if (!is.matrix(rankings) || !(is.numeric(rankings) || is.logical(rankings))) {
    abort("`%s` must be a numeric matrix (labels x samples), not %s.", arg, describe(rankings))
  }
  if (ncol(rankings) != n) {
    abort("`%s` must have one column per sample (%d), not %d.", arg, n, ncol(rankings))
  }
  if (nrow(rankings) < 2L) abort("`%s` must rank at least 2 labels, not %d.", arg, nrow(rankings))
  if (anyNA(rankings)) abort("`%s` must not contain missing values.", arg)
  storage.mode(rankings) <- "double"
  valid <- colSums(abs(apply(rankings, 2L, rank) - rankings) > 1e-8) == 0
  if (!all(valid)) {
    abort("Column %d of `%s` is not a ranking of 1:%d (1 = preferred, average ranks for ties).",
          which(!valid)[1L], arg, nrow(rankings))
  }
  if (is.null(rownames(rankings))) rownames(rankings) <- paste0("label", seq_len(nrow(rankings)))
  rankings
}

# Minimizes the mean Fenchel-Young loss of the perturbed ranks plus the ridge
# penalty with BFGS, from zero, with one fixed set of draws (so that the
# objective is a fixed convex function and its gradient exact).
fit_rank_fy <- function(xs, target, spec, lambda, max_iter) {
  d <- nrow(target)
  p <- nrow(xs)
  n <- ncol(xs)
  z <- perturbed_draws(spec, d, n)
  last <- NULL
  evaluate <- function(par) {
    if (identical(par, last$par)) return(last)
    w <- matrix(par[seq_len(d * p)], d, p)
    theta <- w %*% xs + par[d * p + seq_len(d)]
    fw <- perturbed_forward(theta, spec, z)
    loss <- mean(perturbed_state_fy_cpp(fw$state, target, spec$threads))
    g <- (matrix(fw$value, d, n) - target) / n
    last <<- list(par = par, value = loss + lambda * sum(w^2),
                  gradient = c(g %*% t(xs) + 2 * (lambda * w), rowSums(g)))
    last
  }
  start <- evaluate(numeric(d * (p + 1L)))
  if (!is.finite(start$value) || !all(is.finite(start$gradient))) {
    abort("The Fenchel-Young loss is not finite at the start (eps = %s): give a smaller `eps`.",
          format(spec$eps))
  }
  opt <- stats::optim(numeric(d * (p + 1L)), function(par) evaluate(par)$value,
                      function(par) evaluate(par)$gradient, method = "BFGS",
                      control = list(maxit = max_iter))
  list(w = matrix(opt$par[seq_len(d * p)], d, p), c = opt$par[d * p + seq_len(d)], optim = opt)
}

# Minimizes the mean squared loss of the soft ranks (PAV, scale = "none") on
# the targets plus the ridge penalty with BFGS, from the least-squares fit
# (the soft ranks of all-zero scores are all equal, a poor start).
fit_rank_soft <- function(xs, target, eps, lambda, max_iter, threads) {
  d <- nrow(target)
  p <- nrow(xs)
  evaluate <- soft_rank_objective(xs, target, eps, lambda, threads)
  start <- fit_rank_squared(xs, target, lambda)
  opt <- stats::optim(c(start$w, start$c), function(par) evaluate(par)$value,
                      function(par) evaluate(par)$gradient, method = "BFGS",
                      control = list(maxit = max_iter))
  list(w = matrix(opt$par[seq_len(d * p)], d, p), c = opt$par[d * p + seq_len(d)], optim = opt)
}

# The objective of fit_rank_soft() and its gradient, as a function of the
# parameters c(W, c) (the last evaluation cached, for optim's two calls).
soft_rank_objective <- function(xs, target, eps, lambda, threads) {
  d <- nrow(target)
  p <- nrow(xs)
  n <- ncol(xs)
  last <- NULL
  function(par) {
    if (identical(par, last$par)) return(last)
    w <- matrix(par[seq_len(d * p)], d, p)
    theta <- w %*% xs + par[d * p + seq_len(d)]
    op <- soft_rank_fn(theta, eps = eps, scale = "none", threads = threads)
    residual <- op$value - target
    g <- op$vjp(residual) / n
    last <<- list(par = par, value = sum(residual^2) / (2 * n) + lambda * sum(w^2),
                  gradient = c(g %*% t(xs) + 2 * (lambda * w), rowSums(g)))
    last
  }
}

# Ridge least squares of the centred targets on the standardized features:
# W (xs xs' / n + 2 lambda I) = y xs' / n, and c the mean target.
fit_rank_squared <- function(xs, target, lambda) {
  n <- ncol(xs)
  y <- target - rowMeans(target)
  w <- if (is.finite(2 * lambda)) {
    gram <- tcrossprod(xs) / n + 2 * lambda * diag(nrow(xs))
    t(solve(gram, tcrossprod(xs, y) / n))
  } else {
    matrix(0, nrow(y), nrow(xs))  # a penalty beyond the doubles: W = 0 in the limit
  }
  list(w = w, c = rowMeans(target) - drop(w %*% rowMeans(xs)), optim = NULL)
}

rank_scores <- function(object, newdata) {
  newdata <- realize_block_input(newdata, "newdata",
                                 "predict() of a rank_regression fit scores them in memory.")
  m <- as_numeric_matrix(newdata, "newdata")
  if (anyNA(m) || any(is.infinite(m))) abort("`newdata` must contain only finite values.")
  m <- match_features(m, object)
  scores <- object$coefficients[, -1L, drop = FALSE] %*% m + object$coefficients[, 1L]
  dimnames(scores) <- list(rownames(object$coefficients), colnames(m))
  warn_nonfinite(scores, "newdata")
}

rank_loss_label <- function(fit) {
  if (fit$loss == "squared") return("squared loss on ranks")
  if (fit$loss == "soft_rank") return(sprintf("squared loss of soft ranks (eps = %g)", fit$eps))
  sprintf("Fenchel-Young loss of perturbed ranks (eps = %g, %d draws)", fit$eps, fit$n_samples)
}

# Spearman's and Kendall's (tau-b, from kendall_counts()) correlations between
# the predicted and observed rankings of each sample, and whether they agree
# exactly.
rank_agreement <- function(predicted, observed) {
  a <- predicted - rep(colMeans(predicted), each = nrow(predicted))
  b <- observed - rep(colMeans(observed), each = nrow(observed))
  spread <- sqrt(colSums(a^2) * colSums(b^2))
  spearman <- ifelse(spread > 0, colSums(a * b) / spread, NA_real_)
  kendall <- vapply(seq_len(ncol(predicted)), function(i) {
    counts <- kendall_counts(predicted[, i], observed[, i])
    denominator <- sqrt((counts[["n0"]] - counts[["tied_x"]]) * (counts[["n0"]] - counts[["tied_y"]]))
    if (denominator > 0) (counts[["concordant"]] - counts[["discordant"]]) / denominator else NA_real_
  }, 0)
  list(spearman = spearman, kendall = kendall, exact = colSums(predicted != observed) == 0)
}

# The ranks of every column of a matrix, 1 for the smallest, ties in order of
# appearance: one stable order() over (column, value) instead of a rank()
# call per column.
ranks_by_column <- function(values) {
  d <- nrow(values)
  position <- order(rep(seq_len(ncol(values)), each = d), values)
  out <- matrix(0, d, ncol(values), dimnames = dimnames(values))
  out[position] <- rep(seq_len(d), ncol(values))
  out
}
