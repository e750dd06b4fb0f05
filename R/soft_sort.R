#' Soft ranks and soft sorts
#'
#' Differentiable versions of [rank()] and [sort()]: the projection of `x`
#' onto the permutahedron, the convex hull of all permutations of `1:n`,
#' regularized with strength `eps` (Blondel et al. 2020). As `eps` goes to 0
#' they become the hard rank (average ranks for ties) and the hard sort; as
#' `eps` grows the soft ranks all tend to `(n + 1) / 2` and the soft sort to
#' the mean of `x` (for `reg = "l2"`). Both are piecewise smooth in `x`, with exact derivatives
#' available through [soft_rank_fn()] and [soft_rank_vjp()] (see
#' [diffrank_operator] for the contract every differentiable family follows).
#'
#' @section Definition:
#' With `rho = (n, n - 1, ..., 1)`:
#' * `reg = "l2"`: the soft rank is the Euclidean projection of `x / eps`
#'   onto the permutahedron of `rho`; the soft sort is the projection of
#'   `rho / eps` onto the permutahedron of `x`, so it stays in the units of
#'   `x`. The soft ranks sum to `n (n + 1) / 2` and the soft sort to `sum(x)`.
#' * `reg = "kl"`: the same with a Kullback-Leibler (entropic) regularizer;
#'   soft ranks are positive and the values pooled in a block are shared in
#'   proportion to `exp(x / eps)`. For large `eps` the KL soft sort tends to
#'   `-log(mean(exp(-x)))` (ascending) or `log(mean(exp(x)))` (descending)
#'   rather than to `mean(x)`, and unlike the L2 one it does not scale with
#'   `x` (multiplying `x` by 10 does not multiply the soft sort by 10).
#'
#' Both reduce to one sort and one isotonic regression solved by pool
#' adjacent violators, O(n log n) in all. Values that the isotonic regression
#' pools into one block share rank mass; the other values keep their hard
#' rank. `decreasing = TRUE` ranks the largest value first (soft rank of
#' `-x`) or sorts in decreasing order, as in [sort()] and [order()].
#'
#' @section Choosing eps:
#' The L2 soft rank is the projection of `x / eps` (Definition), so `eps` is
#' compared with the gaps between neighbouring sorted values: a run of values
#' whose gaps are smaller than `eps` is pooled into one block, which shares
#' rank mass. Raw gaps differ by orders of magnitude between the dense centre
#' and the tails of a distribution and shrink like `1 / n`, so no single `eps`
#' in the units of `x` (nor in units of `sd(x)` or `sd(x) / n`) means the same
#' thing at every length and for every shape of data.
#'
#' By default (`scale = "local"`) `x` is therefore first mapped to *local rank
#' coordinates*: each gap between neighbouring distinct sorted values is
#' divided by the average gap per rank over the 19 gaps centred on it (fewer
#' at the ends), so that the coordinates grow by one per rank on average in
#' every neighbourhood. `eps` then counts typical local gaps, whatever `n`,
#' the scale or the shape of the distribution: a value is mixed with a
#' neighbour that is closer than `eps` typical gaps of its neighbourhood, and
#' with the values pooled with those. The map is monotone, exactly
#' differentiated, invariant under `a * x + b` (`a > 0`), and keeps ties tied.
#' Vectors with fewer than 20 distinct values have one neighbourhood, the
#' whole vector, whose unit is enlarged by `(19 / (k - 1))^(3/4)` for `k`
#' distinct values, so that short vectors get soft ranks too (among thousands
#' of random normal samples of each length from 3 to 30, none had a zero
#' derivative).
#'
#' The regimes, measured by `bench/soft_rank_regimes.R` on Gaussian, uniform
#' and log-normal samples (mean and largest absolute difference to
#' `rank(x)`, in ranks):
#'
#' | `eps` | n = 100 | n = 10,000 | n = 1,000,000 |
#' |---|---|---|---|
#' | 0.2 | 0.09 (0.8) | 0.09 (1.6) | 0.10 (2.6) |
#' | 0.5 (default) | 0.24-0.34 (1.3-2.4) | 0.26-0.27 (2.3-2.5) | 0.27 (3.6-4.0) |
#' | 1 | 1.3 (4) | 1.7 (9) | 14 (71) |
#' | 2 | 13 (26) | 1,250 (2,500) | 125,000 (250,000) |
#'
#' So `eps` below 1 is the useful range: each value mixes with a few
#' neighbours (more as `eps` approaches 1), and every soft rank stays
#' within a few ranks of the hard one at any `n`, with a non-zero derivative.
#' At `eps = 1` and above the local gaps no longer hold blocks apart and the
#' blocks grow with `n` towards the constant limit. At the default, vectors of
#' 3 to 10 values are within about half a rank of their hard ranks. Exact
#' ties share one rank; values on a grid (rounded data, `1:n`) are equally
#' spaced in their neighbourhood and stay hard below `eps = 1` once there are
#' more than 20 of them: no neighbour is closer than the typical gap.
#' [plot_soft_path()] shows the whole path for your data.
#'
#' The other scales divide `x` by one number: `scale = "spacing"` by
#' `sd(x) / n` (about the typical gap of normal data; the default of earlier
#' versions), `scale = "sd"` by `sd(x)`, `scale = "none"`
#' not at all (`eps` in the units of `x`). Under them, if `eps` is smaller
#' than the smallest gap the soft ranks *are* the hard ranks (zero
#' derivative), and if it is larger than the largest gap all values form one
#' block and the soft ranks are `(n + 1) / 2 + (x - mean(x)) / eps`.
#' A warning is given when a result is nearly constant (its standard deviation
#' below 1% of the hard result's), the rule every smoothed operator of the
#' package follows.
#'
#' *Soft sorts* (`reg = "l2"`) stay in the units of `x`: inside a block the
#' sorted values are `1 / eps` apart around the block's mean, so gaps wider
#' than about `1 / eps` (after scaling) are shrunk and narrower ones kept:
#' the soft sort is the hard sort when `1 / eps` exceeds the largest gap, and
#' all values are pooled near `mean(x)` when it is below the smallest gap. Its
#' default `scale = "spacing"` with `eps = 0.01` pools only gaps wider than
#' about 40 typical gaps, in the far tails of skewed data (`scale = "local"`
#' is for ranks only).
#'
#' The KL operators behave alike, with the pooled values shared in
#' proportion to an exponential weight; their blocks are compared with the
#' gaps of `log(rho)`, so the KL soft rank pools more among the largest ranks.
#'
#' `eps = 0` returns the hard operator, `rank(x, ties.method = "average")` or
#' `sort(x)`; as `eps` grows the soft ranks tend to `(n + 1) / 2`. Exact ties
#' always get exactly equal soft ranks. The Sinkhorn operators of
#' [sinkhorn_rank()] have a `scale` argument too, where the default
#' `scale = "squash"` maps `x` onto `(0, 1)`.
#'
#' @param x A numeric vector, a numeric matrix or a numeric data frame. A
#'   matrix is treated column by column (each column one vector). Missing and
#'   infinite values are errors.
#' @param eps Regularization strength, a single number `>= 0`; see the section
#'   Choosing eps of [soft_rank()].
#' @param reg Regularization: `"l2"` (quadratic) or `"kl"` (entropic).
#' @param decreasing `FALSE` (rank 1 for the smallest value, sort in
#'   increasing order) or `TRUE`.
#' @param scale For ranks `"local"` (local rank coordinates, the default),
#'   `"spacing"` (divide `x` by `sd(x) / n`), `"sd"` (divide by `sd(x)`) or
#'   `"none"`; for sorts one of the last three (default `"spacing"`). See the
#'   section Choosing eps of [soft_rank()].
#' @param threads Number of threads over the columns of a matrix; see
#'   [diffrank_threads()]. The result does not depend on it.
#' @return For `soft_rank()`, numbers of the shape of `x` (a vector for a
#'   vector, else a matrix) with its names or dimnames. For `soft_sort()`, the
#'   same shape, with column names only: sorted positions have no names.
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *Proceedings of the 37th International
#'   Conference on Machine Learning (ICML)*, PMLR 119, 950-959.
#'   \doi{10.48550/arXiv.2002.08871}
#' @seealso [soft_rank_fn()] and [soft_rank_vjp()] for derivatives,
#'   [spearman_loss()], [plot_soft_path()].
#' @export
#' @examples
#' x <- c(a = 0.5, b = 2.1, c = 2.0, d = -1)
#' soft_rank(x)                # close to rank(x), with a non-zero derivative
#' soft_rank(x, eps = 0)       # hard ranks
#' soft_rank(x, eps = 0.2, scale = "none")   # eps in the units of x
#' soft_rank(x, eps = 5)       # strongly smoothed
#' soft_rank(x, decreasing = TRUE, reg = "kl")
#' soft_sort(x)
#' # one eps means the same at every length: the mean distance to the hard ranks
#' y <- rlnorm(1e5, sdlog = 2)
#' mean(abs(soft_rank(y) - rank(y)))
#' mean(abs(soft_rank(y[1:100]) - rank(y[1:100])))
#' # a matrix: one vector per column
#' soft_rank(matrix(rnorm(12), 4, 3))
soft_rank <- operator_form("soft_rank", "value")

#' @rdname soft_rank
#' @export
soft_sort <- operator_form("soft_sort", "value")

#' Derivatives of soft ranks and soft sorts
#'
#' `soft_rank_fn()` and `soft_sort_fn()` run the forward pass of [soft_rank()]
#' or [soft_sort()] once and return an object that gives the value and exact
#' derivatives without recomputing it. `soft_rank_vjp()` and `soft_sort_vjp()`
#' compute a vector-Jacobian product (the gradient of `sum(v * soft_rank(x))`
#' with respect to `x`) in one call, which is what a gradient-based optimizer
#' needs.
#'
#' @section Design:
#' The forward pass stores, for every vector, the sorting permutation, the
#' blocks of the isotonic regression as integer boundaries and, for
#' `reg = "kl"`, the softmax weights inside each block. In sorted coordinates
#' the Jacobian is block diagonal: for `"l2"` each block averages, for `"kl"`
#' each block takes a softmax-weighted mean. So `$jvp()` and `$vjp()` cost
#' O(n) per vector and never form an n x n matrix; `$jacobian()` builds the
#' full matrix (O(n^2)) for small problems. The state lives in C++ memory: an
#' object saved with [saveRDS()] keeps `$value` but its products fail after
#' reloading.
#'
#' The operators follow the contract of [diffrank_operator]. The derivative
#' is exact wherever the operator is differentiable, i.e.
#' wherever no two neighbouring blocks have equal values; at `eps = 0` it is the
#' derivative of the hard operator: zero for ranks, the sorting permutation for
#' sorts.
#'
#' @inheritParams soft_rank
#' @param v For the `_vjp()` functions, the vector (or matrix) to multiply the
#'   Jacobian with from the left: the shape of the output, i.e. of `x`.
#' @return `soft_rank_fn()` and `soft_sort_fn()` return a
#'   [diffrank_operator]:
#'   * `value`: what [soft_rank()] or [soft_sort()] returns;
#'   * `vjp(v, wrt = "x")`: `t(J) %*% v` for each vector, shaped like `x`;
#'   * `jvp(u)`: `J %*% u` for each vector (`u` shaped like `x`), shaped like
#'     `value`;
#'   * `jacobian()`: the n x n Jacobian `J[i, j] = d value[i] / d x[j]` (an
#'     n x n x ncol array for a matrix `x`).
#'
#'   Its `diagnostics$n_blocks` gives the number of isotonic blocks of each
#'   vector (n blocks means the hard operator).
#'
#'   `soft_rank_vjp()` and `soft_sort_vjp()` return the gradient, shaped like
#'   `x` with its names or dimnames.
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *ICML 2020*. \doi{10.48550/arXiv.2002.08871}
#' @export
#' @examples
#' x <- c(0.3, 1.2, 1.25, -0.7)
#' op <- soft_rank_fn(x, eps = 0.1)
#' op$value
#' op$jacobian()
#' op$vjp(c(1, 0, 0, 0))   # gradient of the first soft rank
#' # the same gradient in one call
#' soft_rank_vjp(x, c(1, 0, 0, 0), eps = 0.1)
#' # soft sort, entropic regularization
#' soft_sort_fn(x, eps = 0.05, reg = "kl")$jvp(c(1, 0, 0, 0))
soft_rank_fn <- operator_form("soft_rank", "fn")

#' @rdname soft_rank_fn
#' @export
soft_sort_fn <- operator_form("soft_sort", "fn")

#' @rdname soft_rank_fn
#' @export
soft_rank_vjp <- operator_form("soft_rank", "vjp")

#' @rdname soft_rank_fn
#' @export
soft_sort_vjp <- operator_form("soft_sort", "vjp")

#' Spearman loss with its gradient
#'
#' A differentiable Spearman loss for fitting models whose predictions should
#' *rank* the observations well: `1 - cor(soft_rank(pred), rank(response))`,
#' with the soft ranks of [soft_rank()] and its exact gradient with respect to
#' `pred`. The value lies in `[0, 2]`; it tends to one minus Spearman's
#' correlation as `eps` goes to 0.
#'
#' For a linear model `pred = X %*% beta` the gradient with respect to `beta`
#' is `crossprod(X, gradient)`, which `optim(method = "L-BFGS-B")` accepts
#' directly (see the example). With the default `scale = "spacing"` the loss
#' does not change when `pred` is multiplied by a positive constant, so the
#' fit does not drift towards ever larger coefficients to make the ranks
#' harder, and `eps = 1` is close to Spearman's correlation for any scale of
#' `pred`.
#'
#' @param pred Predictions, a numeric vector (or a one-column matrix), at least
#'   two values, not all equal.
#' @param response Observed values of the same length, not all equal; ranked
#'   with average ranks for ties.
#' @inheritParams soft_rank
#' @return A list with `value` (the loss) and `gradient` (its gradient with
#'   respect to `pred`, a vector with the names of `pred`).
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *ICML 2020*. \doi{10.48550/arXiv.2002.08871}
#' @export
#' @examples
#' set.seed(1)
#' n <- 100
#' X <- cbind(1, matrix(rnorm(n * 3), n, 3))
#' y <- exp(2 * X[, 2] - X[, 3]) + rnorm(n, sd = 0.1)  # monotone, skewed
#' loss <- function(beta) spearman_loss(X %*% beta, y)
#' fit <- optim(c(0, 1, 1, 1), function(b) loss(b)$value,
#'              function(b) drop(crossprod(X, loss(b)$gradient)),
#'              method = "L-BFGS-B")
#' cor(X %*% fit$par, y, method = "spearman")
#' cor(fitted(lm(y ~ X - 1)), y, method = "spearman")   # least squares
spearman_loss <- function(pred, response, eps = 0.5, reg = c("l2", "kl"),
                          scale = c("local", "spacing", "sd", "none"),
                          threads = diffrank_threads()) {
  pred <- check_numeric_vector(pred, "pred")
  response <- check_numeric_vector(response, "response")
  if (length(pred) != length(response)) {
    abort("`pred` and `response` must have the same length, not %d and %d.", length(pred),
          length(response))
  }
  if (length(pred) < 2L) abort("`pred` must have at least 2 values, not %d.", length(pred))
  response_rank <- rank(response)
  rc_response <- response_rank - mean(response_rank)
  response_norm <- sqrt(sum(rc_response^2))
  if (response_norm == 0) abort("`response` must not be constant: its ranks have no spread.")
  # no near-constant warning: a correlation does not depend on the scale of the ranks
  op <- withCallingHandlers(
    soft_rank_fn(pred, eps = eps, reg = reg, scale = scale, threads = threads),
    diffrank_near_constant = function(w) invokeRestart("muffleWarning"))
  r <- as.vector(op$value)
  rc <- r - mean(r)
  r_norm <- sqrt(sum(rc^2))
  if (!(r_norm > 0)) {
    if (length(unique(as.vector(pred))) > 1L) {
      abort("The soft ranks of `pred` are all equal: `eps` = %s is too large for these predictions (their soft ranks are flat); give a smaller `eps`.",
            format(eps))
    }
    abort("The soft ranks of `pred` are all equal (constant `pred`): Spearman's correlation is undefined; start from non-constant predictions.")
  }
  rho <- sum(rc * rc_response) / (r_norm * response_norm)
  d_rank <- rc_response / (r_norm * response_norm) - rho * rc / r_norm^2
  list(value = 1 - rho, gradient = -op$vjp(d_rank))
}

#' Regularization path of soft ranks or soft sorts
#'
#' Plots the soft ranks (or the soft sort) of `x` against `eps` on a log
#' scale, from the hard operator (small `eps`) to the fully pooled one (large
#' `eps`). Use it to choose `eps` for your data.
#'
#' @inheritParams soft_rank
#' @param scale `NULL` (the default: `"local"` for ranks, `"spacing"` for
#'   sorts) or one of the choices of [soft_rank()].
#' @param x A numeric vector (finite values, at least two).
#' @param eps Values of `eps` (positive); by default 100 values spanning the
#'   hard operator to the fully pooled one: with `scale = "local"` from 0.01
#'   to 100 (dotted lines mark the default, 0.5, and 1, above which blocks
#'   grow with the length of `x`; see [soft_rank()]); otherwise for ranks from half the smallest
#'   gap between distinct values of `x` to twice its range, for sorts from the
#'   inverse of twice the range to twice the inverse of the smallest gap (in
#'   the units of the scaled `x`).
#' @param operator `"rank"` or `"sort"`.
#' @param plot `FALSE` to compute the path without plotting it.
#' @param legend Whether to add a legend with the names of `x` (by default
#'   when `x` has names and at most 12 values).
#' @param main,xlab,ylab,col,lty Plot title, labels, colours and line types,
#'   passed to [graphics::matplot()].
#' @param ... Other arguments passed to [graphics::matplot()].
#' @return Invisibly, a list with `eps` and `values`, a `length(eps)` x
#'   `length(x)` matrix (column names from `x` for ranks).
#' @export
#' @examples
#' set.seed(2)
#' x <- round(rnorm(8), 1)
#' plot_soft_path(x)
#' path <- plot_soft_path(x, operator = "sort", reg = "kl", plot = FALSE)
#' dim(path$values)
plot_soft_path <- function(x, eps = NULL, operator = c("rank", "sort"), reg = c("l2", "kl"),
                           decreasing = FALSE, scale = NULL,
                           plot = TRUE, legend = !is.null(names(x)) && length(x) <= 12L,
                           main = NULL, xlab = "eps (log scale)", ylab = NULL,
                           col = NULL, lty = 1, ...) {
  operator <- match_choice(operator, c("rank", "sort"), "operator")
  reg <- match_choice(reg, c("l2", "kl"), "reg")
  decreasing <- check_flag(decreasing, "decreasing")
  if (is.null(scale)) scale <- if (operator == "rank") "local" else "spacing"
  scale <- match_choice(scale, soft_scales(operator), "scale")
  plot <- check_flag(plot, "plot")
  legend <- check_flag(legend, "legend")
  if (!is.numeric(x) || is.object(x) || !is.null(dim(x)) || length(x) < 2L) {
    abort("`x` must be a numeric vector with at least 2 values, not %s.", describe(x))
  }
  if (anyNA(x) || any(is.infinite(x))) abort("`x` must contain only finite values.")
  labels <- names(x)
  x <- as.double(x)
  if (is.null(eps)) {
    eps <- default_eps_path(x, operator, scale)
  } else if (!is.numeric(eps) || length(eps) == 0L || anyNA(eps) || any(!is.finite(eps)) ||
               any(eps <= 0)) {
    abort("`eps` must be a vector of positive finite numbers, not %s.", describe(eps))
  }
  values <- t(vapply(eps, function(e) {
    a <- soft_args(operator, x, e, reg, decreasing, scale, 1L)
    out <- soft_forward_cpp(a$m, a$shape$nrow, a$options, 1L)
    as.vector(out)   # the path goes to the pooled limit on purpose: no warning
  }, numeric(length(x))))
  if (operator == "rank") colnames(values) <- labels
  if (plot) {
    if (is.null(main)) main <- sprintf("Soft %s path (%s)", operator, reg)
    if (is.null(ylab)) ylab <- if (operator == "rank") "soft rank" else "soft sort"
    if (is.null(col)) col <- grDevices::hcl.colors(length(x), "Dark 3")
    show_legend <- isTRUE(legend) && !is.null(labels) && operator == "rank"
    if (show_legend) {
      # the legend goes in a right margin of its own, never over the curves
      width <- max(graphics::strwidth(labels, units = "inches", cex = 0.8)) + 0.6
      old <- graphics::par(mai = graphics::par("mai") + c(0, 0, 0, width))
      on.exit(graphics::par(old), add = TRUE)
    }
    graphics::matplot(eps, values, type = "l", log = "x", main = main, xlab = xlab,
                      ylab = ylab, col = col, lty = lty, ...)
    if (operator == "rank" && scale == "local") {
      # the regimes of ?soft_rank: a few neighbours below eps = 1, blocks that
      # grow with n above
      graphics::abline(v = c(0.5, 1), lty = 3, col = "grey40")
      graphics::mtext(c("default", "blocks grow with n"), side = 3, line = 0.1,
                      at = c(0.5, 1), adj = c(1.05, -0.05), cex = 0.7, col = "grey40")
    }
    if (show_legend) {
      graphics::legend(graphics::par("usr")[2L], graphics::par("usr")[4L], legend = labels,
                       col = rep_len(col, length(labels)), lty = lty, bty = "n", cex = 0.8,
                       xpd = TRUE, xjust = 0, yjust = 1)
    }
  }
  invisible(list(eps = eps, values = values))
}

#' Isotonic regression
#'
#' Least-squares projection of `y` onto non-decreasing (or non-increasing)
#' sequences, optionally weighted, by pool adjacent violators in O(n). The
#' unweighted result equals `stats::isoreg(y)$yf`.
#'
#' @param y A numeric vector of finite values.
#' @param weights `NULL` or positive finite weights, one per value.
#' @param decreasing `TRUE` for a non-increasing fit.
#' @return The fitted values, a vector like `y` with its names.
#' @references Barlow RE, Bartholomew DJ, Bremner JM, Brunk HD (1972).
#'   *Statistical Inference under Order Restrictions*. Wiley.
#' @export
#' @examples
#' y <- c(1, 3, 2, 4, 3.5, 5)
#' isotonic_regression(y)
#' isotonic_regression(y, weights = c(1, 1, 5, 1, 1, 1))
isotonic_regression <- function(y, weights = NULL, decreasing = FALSE) {
  decreasing <- check_flag(decreasing, "decreasing")
  if (!(is.numeric(y) || is.logical(y)) || is.object(y) || !is.null(dim(y))) {
    abort("`y` must be a numeric vector, not %s.", describe(y))
  }
  if (anyNA(y) || any(is.infinite(y))) abort("`y` must contain only finite values.")
  if (!is.null(weights)) {
    if (!is.numeric(weights) || length(weights) != length(y) || anyNA(weights) ||
          any(!is.finite(weights)) || any(weights <= 0)) {
      abort("`weights` must be NULL or %d positive finite numbers, not %s.", length(y),
            describe(weights))
    }
    weights <- as.double(weights)
  }
  out <- isotonic_cpp(as.double(y), weights, decreasing)
  names(out) <- names(y)
  out
}

#' Projection onto the permutahedron
#'
#' The point of the permutahedron of `w` (the convex hull of all permutations
#' of `w`) closest to `z`, in Euclidean distance (`reg = "l2"`) or, in log
#' space, in Kullback-Leibler divergence (`reg = "kl"`: the projection of
#' `exp(z)` onto the permutahedron of `exp(w)`, returned as a logarithm). The
#' soft ranks and sorts of [soft_rank()] are special cases (Blondel et al.
#' 2020).
#'
#' @param z,w Numeric vectors of finite values and equal length.
#' @param reg `"l2"` or `"kl"`.
#' @return A numeric vector like `z`, with its names.
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *ICML 2020*. \doi{10.48550/arXiv.2002.08871}
#' @export
#' @examples
#' project_permutahedron(c(0.1, 2, 1.9), 1:3)   # close to a permutation of 1:3
#' all.equal(project_permutahedron(c(0.3, 5, -2) / 0.5, 3:1),
#'           soft_rank(c(0.3, 5, -2), eps = 0.5))
project_permutahedron <- function(z, w, reg = c("l2", "kl")) {
  reg <- match_choice(reg, c("l2", "kl"), "reg")
  for (arg in c("z", "w")) {
    v <- get(arg)
    if (!(is.numeric(v) || is.logical(v)) || is.object(v) || !is.null(dim(v))) {
      abort("`%s` must be a numeric vector, not %s.", arg, describe(v))
    }
    if (anyNA(v) || any(is.infinite(v))) abort("`%s` must contain only finite values.", arg)
    if (any(abs(v) > 1e300)) abort("`%s` must not exceed 1e300 in magnitude.", arg)
  }
  if (length(z) != length(w)) {
    abort("`z` and `w` must have the same length, not %d and %d.", length(z), length(w))
  }
  out <- project_permutahedron_cpp(as.double(z), as.double(w), reg)
  names(out) <- names(z)
  out
}

# ---------------------------------------------------------------------------
# helpers

# 100 values of eps from the hard operator to the fully pooled one (see
# ?soft_rank): for ranks from half the smallest gap between distinct values
# to twice the range, for sorts from the inverse of twice the range to twice
# the inverse of the smallest gap, in the units of the scaled x; kept within
# the range of finite doubles for denormal gaps.
default_eps_path <- function(x, operator, scale) {
  # local rank coordinates: eps counts typical local gaps, the same for any x
  if (scale == "local") return(10^seq(-2, 2, length.out = 100L))
  s <- stats::sd(x)
  unit <- if (scale == "none" || !(s > 0)) 1 else if (scale == "sd") s else s / length(x)
  gaps <- diff(sort(unique(x / unit)))
  span <- diff(range(x / unit))
  if (!(span > 0)) span <- 1
  small <- if (length(gaps) > 0L) min(gaps) else span / 100
  ends <- if (operator == "rank") c(small / 2, 2 * span) else c(1 / (2 * span), 2 / small)
  ends <- pmin(pmax(ends, 1e-300), 1e300)
  if (ends[1L] >= ends[2L]) ends <- ends[1L] * c(0.5, 2)
  10^seq(log10(ends[1L]), log10(ends[2L]), length.out = 100L)
}

# The choices of `scale`: the local rank coordinates are for ranks only.
soft_scales <- function(kind) {
  if (kind == "rank") c("local", "spacing", "sd", "none") else c("spacing", "sd", "none")
}

# The checked arguments of a soft operator: x as a double vector or matrix
# (passed to C++ without a copy), its shape, and the options list that the
# glue turns into the core's settings.
soft_args <- function(kind, x, eps, reg, decreasing, scale, threads, call = parent.frame()) {
  vector_x <- is.null(dim(x)) && !is.data.frame(x)
  if (vector_x && is.double(x) && !is.object(x)) {
    m <- x   # passed to C++ as it is: no copy into a one-column matrix
    if (length(x) > .Machine$integer.max) abort("`x` must have fewer than 2^31 values.")
    shape <- list(vector = TRUE, nrow = length(x), ncol = 1L, names = names(x), dimnames = NULL,
                  what = sprintf("a vector of length %d", length(x)))
  } else {
    m <- as_numeric_matrix(x, "x")
    shape <- input_shape(x, m)
  }
  bad <- nonfinite_kind_cpp(m)  # one pass for anyNA(m) and infinite values
  if (bad == 1L) {
    abort("`x` must not contain missing values (NA or NaN): soft ranks of missing values are undefined; remove them first.")
  }
  if (bad == 2L) abort("`x` must not contain infinite values.")
  options <- list(kind = kind, reg = match_choice(reg, c("l2", "kl"), "reg"),
                  decreasing = check_flag(decreasing, "decreasing"),
                  eps = check_number(eps, "eps", lower = 0),
                  scale = match_choice(scale, soft_scales(kind), "scale"))
  list(m = m, shape = shape, options = options, threads = check_threads(threads))
}

# The warning of R/checks.R for the columns that src/soft_sort.cpp found near
# their constant limit; the count attribute is dropped.
warn_soft_near_constant <- function(out, a) {
  n_bad <- attr(out, "near_constant")
  attr(out, "near_constant") <- NULL
  warn_near_constant_count(n_bad, a$shape$ncol, sprintf("soft %s", a$options$kind),
                           a$options$eps)
  out
}

soft_operator <- function(kind, x, eps, reg, decreasing, scale, threads) {
  a <- soft_args(kind, x, eps, reg, decreasing, scale, threads)
  res <- soft_state_cpp(a$m, a$shape$nrow, a$options, a$threads)
  state <- res$state
  shape <- a$shape
  nthreads <- a$threads
  n_blocks <- soft_state_blocks_cpp(state)
  product <- function(direction, transpose, row_names) {
    shape_like_input(soft_state_product_cpp(state, direction, transpose, nthreads), shape,
                     row_names)
  }
  jacobian <- function() {
    n <- shape$nrow
    jac <- soft_state_jacobian_cpp(state, nthreads)
    in_names <- if (shape$vector) shape$names else shape$dimnames[[1L]]
    out_names <- if (kind == "rank") in_names else NULL
    if (shape$vector) {
      jac <- matrix(jac, n, n)
      if (!is.null(in_names)) dimnames(jac) <- list(out_names, in_names)
      return(jac)
    }
    if (!is.null(shape$dimnames)) dimnames(jac) <- list(out_names, in_names, shape$dimnames[[2L]])
    jac
  }
  new_operator(
    value = shape_like_input(warn_soft_near_constant(res$value, a), shape, kind == "rank"),
    input = shape,
    vjp_impl = function(v, wrt) {
      list(x = product_in_range(function(d) product(d, TRUE, TRUE), v, c("v", "x")))
    },
    jvp_impl = function(u) product_in_range(function(d) product(d, FALSE, kind == "rank"), u, c("u", "x")),
    jacobian_impl = jacobian,
    label = sprintf("soft_%s", kind),
    settings = a$options[c("eps", "reg", "decreasing", "scale")],
    details = block_summary(n_blocks, shape$nrow),
    diagnostics = list(n_blocks = n_blocks)
  )
}

block_summary <- function(blocks, n) {
  if (length(blocks) == 0L) return(character())
  if (min(blocks) == max(blocks)) {
    return(sprintf("%d isotonic block(s) per column of %d values", blocks[1L], n))
  }
  sprintf("%d to %d isotonic blocks per column of %d values", min(blocks), max(blocks), n)
}

soft_forward <- function(kind, x, eps, reg, decreasing, scale, threads) {
  # The common call (plain double x of finite values, well-formed options) is
  # checked and computed in one C++ call (src/soft_sort.cpp): R-level checks
  # cost more than the soft rank of a short vector. Anything else gives NULL
  # there and takes the full path below, whose checks name the argument.
  out <- .Call(`_diffrank_soft_forward_quick_cpp`, kind, x, eps, reg, decreasing, scale, threads)
  if (!is.null(out)) return(out)
  a <- soft_args(kind, x, eps, reg, decreasing, scale, threads)
  out <- soft_forward_cpp(a$m, a$shape$nrow, a$options, a$threads)
  shape_like_input(warn_soft_near_constant(out, a), a$shape, kind == "rank")
}

soft_vjp <- function(kind, x, v, eps, reg, decreasing, scale, threads) {
  a <- soft_args(kind, x, eps, reg, decreasing, scale, threads)
  like <- if (a$shape$vector) a$shape$nrow else c(a$shape$nrow, a$shape$ncol)
  v <- check_direction(v, like, "v", "`x`")
  product_in_range(function(d) {
    shape_like_input(soft_vjp_cpp(a$m, d, a$shape$nrow, a$options, a$threads), a$shape, TRUE)
  }, v, c("v", "x"))
}
