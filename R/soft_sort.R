#' Soft ranks and soft sorts
#'
#' Differentiable versions of [rank()] and [sort()]: the projection of `x`
#' onto the permutahedron, the convex hull of all permutations of `1:n`,
#' regularized with strength `eps` (Blondel et al. 2020). As `eps` goes to 0
#' they become the hard rank (average ranks for ties) and the hard sort; as
#' `eps` grows the soft ranks all tend to `(n + 1) / 2` and the soft sort to
#' the mean of `x` (for `reg = "l2"`). Both are piecewise smooth in `x`, with exact derivatives
#' available through [soft_rank_fn()] and [soft_rank_vjp()].
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
#' rank. `direction = "descending"` ranks the largest value first (soft rank of
#' `-x`) or sorts in decreasing order.
#'
#' @section Choosing eps:
#' *Soft ranks* (`reg = "l2"`): `eps` is in the units of `x`. Inside a block
#' the soft rank is `x / eps` plus a constant, so `eps` is the change of `x`
#' that moves a rank by one, and neighbours closer than about `eps` are pooled.
#' If `eps` is smaller than the smallest gap between two neighbouring sorted
#' values the soft ranks *are* the hard ranks (and the derivative is zero); if
#' it is larger than the largest gap all values form one block and the soft
#' ranks are `(n + 1) / 2 + (x - mean(x)) / eps`, an affine function of `x`.
#' Useful values lie between, around the typical gap (about `2.5 * sd(x) / n`
#' for normal data).
#'
#' *Soft sorts* (`reg = "l2"`): `1 / eps` is in the units of `x`. Inside a
#' block the sorted values are `1 / eps` apart around the block's mean, so
#' gaps wider than about `1 / eps` are shrunk and narrower ones kept: the soft
#' sort is the hard sort when `1 / eps` exceeds the largest gap, and all values
#' are pooled near `mean(x)` when it is below the smallest gap.
#'
#' The KL operators behave alike, with the pooled values shared in
#' proportion to an exponential weight. [plot_soft_path()] shows the whole
#' path for your data.
#'
#' `scale = "sd"` makes `eps` unit-free: `x` is divided by its standard
#' deviation first (and, for sorts, the result multiplied back), so the
#' lengths above are in standard deviations and the result does not change
#' when `x` is multiplied by a positive constant (for ranks, nor when a
#' constant is added). The derivatives include the dependence of the standard
#' deviation on `x`. With n values and scaled ranks, `eps` near `1 / n` mixes
#' neighbours and `eps` near 1 makes the ranks almost affine. A constant `x`
#' is not rescaled.
#'
#' `eps = 0` returns the hard operator, `rank(x, ties.method = "average")` or
#' `sort(x)`. Exact ties always get exactly equal soft ranks.
#'
#' @param x A numeric vector, a numeric matrix or a numeric data frame. A
#'   matrix is treated column by column (each column one vector). Missing and
#'   infinite values are errors.
#' @param eps Regularization strength, a single number `>= 0`; see the section
#'   Choosing eps.
#' @param reg Regularization: `"l2"` (quadratic) or `"kl"` (entropic).
#' @param direction `"ascending"` (rank 1 for the smallest value, sort in
#'   increasing order) or `"descending"`.
#' @param scale `"none"` or `"sd"` (divide `x` by its standard deviation, so
#'   that `eps` has no unit).
#' @param threads Number of threads over the columns of a matrix; see
#'   [diffrank_threads()]. The result does not depend on it.
#' @return For `soft_rank()`, numbers of the shape of `x` (a vector for a
#'   vector, else a matrix) with its names or dimnames. For `soft_sort()`, the
#'   same shape, with column names only: sorted positions have no names.
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *Proceedings of the 37th International
#'   Conference on Machine Learning (ICML)*, PMLR 119, 950-959.
#'   <arXiv:2002.08871>
#' @seealso [soft_rank_fn()] and [soft_rank_vjp()] for derivatives,
#'   [spearman_loss()], [plot_soft_path()].
#' @export
#' @examples
#' x <- c(a = 0.5, b = 2.1, c = 2.0, d = -1)
#' soft_rank(x, eps = 0)      # hard ranks
#' soft_rank(x, eps = 0.2)    # b and c are closer than eps: they share rank mass
#' soft_rank(x, eps = 100)    # everything near (n + 1) / 2
#' soft_rank(x, eps = 0.5, direction = "descending", reg = "kl")
#' soft_sort(x, eps = 0.5)
#' # a matrix: one vector per column
#' soft_rank(matrix(rnorm(12), 4, 3), eps = 0.1, scale = "sd")
soft_rank <- function(x, eps = 1, reg = c("l2", "kl"),
                      direction = c("ascending", "descending"),
                      scale = c("none", "sd"), threads = diffrank_threads()) {
  soft_forward("rank", x, eps, match.arg(reg), match.arg(direction), match.arg(scale), threads)
}

#' @rdname soft_rank
#' @export
soft_sort <- function(x, eps = 1, reg = c("l2", "kl"),
                      direction = c("ascending", "descending"),
                      scale = c("none", "sd"), threads = diffrank_threads()) {
  soft_forward("sort", x, eps, match.arg(reg), match.arg(direction), match.arg(scale), threads)
}

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
#' The derivative is exact wherever the operator is differentiable, i.e.
#' wherever no two neighbouring blocks have equal values; at `eps = 0` it is the
#' derivative of the hard operator: zero for ranks, the sorting permutation for
#' sorts.
#'
#' @inheritParams soft_rank
#' @param v For the `_vjp()` functions, the vector (or matrix) to multiply the
#'   Jacobian with from the left: the shape of the output, i.e. of `x`.
#' @return `soft_rank_fn()` and `soft_sort_fn()` return an object of class
#'   `soft_operator`, a list with
#'   * `value`: what [soft_rank()] or [soft_sort()] returns;
#'   * `vjp(v)`: `t(J) %*% v` for each vector, shaped like `x`;
#'   * `jvp(u)`: `J %*% u` for each vector (`u` shaped like `x`), shaped like
#'     `value`;
#'   * `jacobian()`: the n x n Jacobian `J[i, j] = d value[i] / d x[j]` (an
#'     n x n x ncol array for a matrix `x`);
#'   * `n_blocks`: the number of isotonic blocks of each vector (n blocks means
#'     the hard operator).
#'
#'   `soft_rank_vjp()` and `soft_sort_vjp()` return the gradient, shaped like
#'   `x` with its names or dimnames.
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *ICML 2020*. <arXiv:2002.08871>
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
#' soft_sort_fn(x, eps = 0.5, reg = "kl")$jvp(c(1, 0, 0, 0))
soft_rank_fn <- function(x, eps = 1, reg = c("l2", "kl"),
                         direction = c("ascending", "descending"),
                         scale = c("none", "sd"), threads = diffrank_threads()) {
  soft_fn("rank", x, eps, match.arg(reg), match.arg(direction), match.arg(scale), threads)
}

#' @rdname soft_rank_fn
#' @export
soft_sort_fn <- function(x, eps = 1, reg = c("l2", "kl"),
                         direction = c("ascending", "descending"),
                         scale = c("none", "sd"), threads = diffrank_threads()) {
  soft_fn("sort", x, eps, match.arg(reg), match.arg(direction), match.arg(scale), threads)
}

#' @rdname soft_rank_fn
#' @export
soft_rank_vjp <- function(x, v, eps = 1, reg = c("l2", "kl"),
                          direction = c("ascending", "descending"),
                          scale = c("none", "sd"), threads = diffrank_threads()) {
  soft_vjp("rank", x, v, eps, match.arg(reg), match.arg(direction), match.arg(scale), threads)
}

#' @rdname soft_rank_fn
#' @export
soft_sort_vjp <- function(x, v, eps = 1, reg = c("l2", "kl"),
                          direction = c("ascending", "descending"),
                          scale = c("none", "sd"), threads = diffrank_threads()) {
  soft_vjp("sort", x, v, eps, match.arg(reg), match.arg(direction), match.arg(scale), threads)
}

#' @rdname soft_rank_fn
#' @param ... Ignored.
#' @export
print.soft_operator <- function(x, ...) {
  info <- attr(x, "info")
  cat(sprintf("<soft_operator> soft %s (%s, %s, eps = %s%s) of %s\n", info$kind, info$reg,
              info$direction, format(info$eps), if (info$scale == "sd") ", scale = \"sd\"" else "",
              info$what))
  blocks <- x$n_blocks
  if (length(blocks) == 1L) {
    cat(sprintf("  %d isotonic block(s) for %d values\n", blocks, info$n))
  } else if (length(blocks) > 1L && min(blocks) == max(blocks)) {
    cat(sprintf("  %d isotonic block(s) in each column of %d values\n", blocks[1L], info$n))
  } else if (length(blocks) > 1L) {
    cat(sprintf("  %d to %d isotonic blocks per column of %d values\n", min(blocks),
                max(blocks), info$n))
  }
  cat("  $value, $vjp(v), $jvp(u), $jacobian()\n")
  invisible(x)
}

#' Spearman loss with its gradient
#'
#' A differentiable Spearman loss for fitting models whose predictions should
#' *rank* the observations well: `1 - cor(soft_rank(pred), rank(target))`,
#' with the soft ranks of [soft_rank()] and its exact gradient with respect to
#' `pred`. The value lies in `[0, 2]`; it tends to one minus Spearman's
#' correlation as `eps` goes to 0.
#'
#' For a linear model `pred = X %*% beta` the gradient with respect to `beta`
#' is `crossprod(X, gradient)`, which `optim(method = "L-BFGS-B")` accepts
#' directly (see the example). With `scale = "sd"` the loss does not change
#' when `pred` is multiplied by a positive constant, so the fit does not drift
#' towards ever larger coefficients to make the ranks harder.
#'
#' @param pred Predictions, a numeric vector (or a one-column matrix), at least
#'   two values, not all equal.
#' @param target Observed values of the same length, not all equal; ranked with
#'   average ranks for ties.
#' @inheritParams soft_rank
#' @return A list with `value` (the loss) and `gradient` (its gradient with
#'   respect to `pred`, a vector with the names of `pred`).
#' @references Blondel M, Teboul O, Berthet Q, Djolonga J (2020). Fast
#'   differentiable sorting and ranking. *ICML 2020*. <arXiv:2002.08871>
#' @export
#' @examples
#' set.seed(1)
#' n <- 100
#' X <- cbind(1, matrix(rnorm(n * 3), n, 3))
#' y <- exp(2 * X[, 2] - X[, 3]) + rnorm(n, sd = 0.1)  # monotone, skewed
#' loss <- function(beta) spearman_loss(X %*% beta, y, eps = 0.05, scale = "sd")
#' fit <- optim(c(0, 1, 1, 1), function(b) loss(b)$value,
#'              function(b) drop(crossprod(X, loss(b)$gradient)),
#'              method = "L-BFGS-B")
#' cor(X %*% fit$par, y, method = "spearman")
#' cor(fitted(lm(y ~ X - 1)), y, method = "spearman")   # least squares
spearman_loss <- function(pred, target, eps = 1, reg = c("l2", "kl"),
                          scale = c("none", "sd")) {
  reg <- match.arg(reg)
  scale <- match.arg(scale)
  pred <- check_numeric_vector(pred, "pred")
  target <- check_numeric_vector(target, "target")
  if (length(pred) != length(target)) {
    abort("`pred` and `target` must have the same length, not %d and %d.", length(pred),
          length(target))
  }
  if (length(pred) < 2L) abort("`pred` must have at least 2 values, not %d.", length(pred))
  eps <- check_number(eps, "eps", lower = 0)
  t_rank <- rank(target)
  tc <- t_rank - mean(t_rank)
  t_norm <- sqrt(sum(tc^2))
  if (t_norm == 0) abort("`target` must not be constant: its ranks have no spread.")
  op <- soft_state_cpp(as.double(pred), length(pred), "rank", reg, FALSE, eps, scale == "sd", 1L)
  r <- op$value
  rc <- r - mean(r)
  r_norm <- sqrt(sum(rc^2))
  if (!(r_norm > 0)) {
    abort("The soft ranks of `pred` are all equal (constant `pred`): Spearman's correlation is undefined; start from non-constant predictions.")
  }
  rho <- sum(rc * tc) / (r_norm * t_norm)
  d_rank <- tc / (r_norm * t_norm) - rho * rc / r_norm^2
  grad <- -soft_state_product_cpp(op$state, d_rank, TRUE, 1L)
  names(grad) <- names(pred)
  list(value = 1 - rho, gradient = grad)
}

#' Regularization path of soft ranks or soft sorts
#'
#' Plots the soft ranks (or the soft sort) of `x` against `eps` on a log
#' scale, from the hard operator (small `eps`) to the fully pooled one (large
#' `eps`). Use it to choose `eps` for your data.
#'
#' @inheritParams soft_rank
#' @param x A numeric vector (finite values, at least two).
#' @param eps Values of `eps` (positive); by default 100 values spanning the
#'   hard operator to the fully pooled one: for ranks from half the smallest
#'   gap between distinct values of `x` to twice its range, for sorts from the
#'   inverse of twice the range to twice the inverse of the smallest gap (in
#'   standard deviations with `scale = "sd"`).
#' @param type `"rank"` or `"sort"`.
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
#' path <- plot_soft_path(x, type = "sort", reg = "kl", plot = FALSE)
#' dim(path$values)
plot_soft_path <- function(x, eps = NULL, type = c("rank", "sort"), reg = c("l2", "kl"),
                           direction = c("ascending", "descending"), scale = c("none", "sd"),
                           plot = TRUE, legend = !is.null(names(x)) && length(x) <= 12L,
                           main = NULL, xlab = "eps (log scale)", ylab = NULL,
                           col = NULL, lty = 1, ...) {
  type <- match.arg(type)
  reg <- match.arg(reg)
  direction <- match.arg(direction)
  scale <- match.arg(scale)
  plot <- check_flag(plot, "plot")
  legend <- check_flag(legend, "legend")
  if (!is.numeric(x) || is.object(x) || !is.null(dim(x)) || length(x) < 2L) {
    abort("`x` must be a numeric vector with at least 2 values, not %s.", describe(x))
  }
  if (anyNA(x) || any(is.infinite(x))) abort("`x` must contain only finite values.")
  labels <- names(x)
  x <- as.double(x)
  if (is.null(eps)) {
    # from the hard operator to the fully pooled one (see ?soft_rank)
    unit <- if (scale == "sd" && stats::sd(x) > 0) stats::sd(x) else 1
    gaps <- diff(sort(unique(x))) / unit
    span <- diff(range(x)) / unit
    if (span == 0) span <- 1
    small <- if (length(gaps) > 0L) min(gaps) else span / 100
    range_eps <- if (type == "rank") c(small / 2, 2 * span) else c(1 / (2 * span), 2 / small)
    eps <- 10^seq(log10(range_eps[1L]), log10(range_eps[2L]), length.out = 100L)
  } else if (!is.numeric(eps) || length(eps) == 0L || anyNA(eps) || any(!is.finite(eps)) ||
               any(eps <= 0)) {
    abort("`eps` must be a vector of positive finite numbers, not %s.", describe(eps))
  }
  fun <- if (type == "rank") soft_rank else soft_sort
  values <- t(vapply(eps, function(e) {
    as.vector(fun(x, eps = e, reg = reg, direction = direction, scale = scale, threads = 1L))
  }, numeric(length(x))))
  if (type == "rank") colnames(values) <- labels
  if (plot) {
    if (is.null(main)) main <- sprintf("Soft %s path (%s)", type, reg)
    if (is.null(ylab)) ylab <- if (type == "rank") "soft rank" else "soft sort"
    if (is.null(col)) col <- grDevices::hcl.colors(length(x), "Dark 3")
    graphics::matplot(eps, values, type = "l", log = "x", main = main, xlab = xlab,
                      ylab = ylab, col = col, lty = lty, ...)
    if (isTRUE(legend) && !is.null(labels) && type == "rank") {
      graphics::legend("topright", legend = labels, col = col, lty = lty, bty = "n",
                       cex = 0.8)
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
#'   differentiable sorting and ranking. *ICML 2020*. <arXiv:2002.08871>
#' @export
#' @examples
#' project_permutahedron(c(0.1, 2, 1.9), 1:3)   # close to a permutation of 1:3
#' all.equal(project_permutahedron(c(0.3, 5, -2) / 0.5, 3:1),
#'           soft_rank(c(0.3, 5, -2), eps = 0.5))
project_permutahedron <- function(z, w, reg = c("l2", "kl")) {
  reg <- match.arg(reg)
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

soft_args <- function(x, eps, threads, arg = "x") {
  vector_x <- is.null(dim(x)) && !is.data.frame(x)
  if (vector_x && is.double(x) && !is.object(x)) {
    m <- x   # passed to C++ as it is: no copy into a one-column matrix
    if (length(x) > .Machine$integer.max) {
      abort("`%s` must have fewer than 2^31 values.", arg)
    }
    shape <- c(length(x), 1L)
  } else {
    m <- as_numeric_matrix(x, arg)
    shape <- dim(m)
  }
  bad <- nonfinite_kind_cpp(m)  # one pass for anyNA(m) and infinite values
  if (bad == 1L) {
    abort("`%s` must not contain missing values (NA or NaN): soft ranks of missing values are undefined; remove them first.", arg)
  }
  if (bad == 2L) {
    abort("`%s` must not contain infinite values.", arg)
  }
  list(m = m, nrow = shape[1L], ncol = shape[2L], vector = vector_x,
       names = if (vector_x) names(x) else NULL,
       dimnames = if (vector_x) NULL else dimnames(m),
       eps = check_number(eps, "eps", lower = 0), threads = check_threads(threads))
}

# Output of the C++ glue (a plain vector) in the shape of the user's x: a
# vector for a vector, else a matrix, with x's names or dimnames. Sorted
# outputs have no row names.
soft_shape <- function(out, a, kind) {
  if (a$vector) {
    if (kind == "rank" && !is.null(a$names)) names(out) <- a$names
    return(out)
  }
  dim(out) <- c(a$nrow, a$ncol)
  dn <- a$dimnames
  if (kind == "sort" && !is.null(dn)) dn[1L] <- list(NULL)
  if (!is.null(dn) && !all(vapply(dn, is.null, TRUE))) dimnames(out) <- dn
  out
}

# A direction (v or u) for a product: numbers of the shape of x.
soft_product_input <- function(v, a, arg) {
  if (!(is.numeric(v) || is.logical(v)) || (is.object(v) && !is.matrix(v))) {
    abort("`%s` must be numeric, not %s.", arg, describe(v))
  }
  ok <- if (a$vector) {
    is.null(dim(v)) && length(v) == a$nrow
  } else {
    identical(as.integer(dim(v)), c(a$nrow, a$ncol))
  }
  if (!ok) {
    abort("`%s` must have the shape of `x` (%s), not %s.", arg,
          if (a$vector) sprintf("a vector of length %d", a$nrow)
          else sprintf("%d x %d", a$nrow, a$ncol), describe(v))
  }
  if (!is.double(v)) v <- as.double(v)
  if (nonfinite_kind_cpp(v) != 0L) {
    abort("`%s` must contain only finite values.", arg)
  }
  v
}

soft_fn <- function(kind, x, eps, reg, direction, scale, threads) {
  a <- soft_args(x, eps, threads)
  res <- soft_state_cpp(a$m, a$nrow, kind, reg, direction == "descending", a$eps,
                        scale == "sd", a$threads)
  state <- res$state
  value <- soft_shape(res$value, a, kind)
  nthreads <- a$threads
  a$m <- NULL   # the closures need the shape, not the data
  vjp <- function(v) {
    soft_shape(soft_state_product_cpp(state, soft_product_input(v, a, "v"), TRUE, nthreads),
               a, "rank")
  }
  jvp <- function(u) {
    soft_shape(soft_state_product_cpp(state, soft_product_input(u, a, "u"), FALSE, nthreads),
               a, kind)
  }
  jacobian <- function() {
    n <- a$nrow
    if (as.double(n)^2 * a$ncol > 1e8) {
      abort("The Jacobian would have %.3g entries; use $jvp() or $vjp() instead.",
            as.double(n)^2 * a$ncol)
    }
    jac <- soft_state_jacobian_cpp(state, nthreads)
    in_names <- if (a$vector) a$names else a$dimnames[[1L]]
    out_names <- if (kind == "rank") in_names else NULL
    if (a$vector) {
      jac <- matrix(jac, n, n)
      if (!is.null(in_names)) dimnames(jac) <- list(out_names, in_names)
      return(jac)
    }
    if (!is.null(a$dimnames)) dimnames(jac) <- list(out_names, in_names, a$dimnames[[2L]])
    jac
  }
  structure(
    list(value = value, vjp = vjp, jvp = jvp, jacobian = jacobian,
         n_blocks = soft_state_blocks_cpp(state)),
    class = "soft_operator",
    info = list(kind = kind, reg = reg, direction = direction, eps = a$eps, scale = scale,
                n = a$nrow,
                what = if (a$vector) sprintf("a vector of length %d", a$nrow)
                       else sprintf("a %d x %d matrix, column by column", a$nrow, a$ncol))
  )
}

soft_forward <- function(kind, x, eps, reg, direction, scale, threads) {
  a <- soft_args(x, eps, threads)
  out <- soft_forward_cpp(a$m, a$nrow, kind, reg, direction == "descending", a$eps,
                          scale == "sd", a$threads)
  soft_shape(out, a, kind)
}

soft_vjp <- function(kind, x, v, eps, reg, direction, scale, threads) {
  a <- soft_args(x, eps, threads)
  if (missing(v)) abort("`v` is missing: give the vector to multiply the Jacobian with.")
  v <- soft_product_input(v, a, "v")
  g <- soft_vjp_cpp(a$m, v, a$nrow, kind, reg, direction == "descending", a$eps,
                    scale == "sd", a$threads)
  soft_shape(g, a, "rank")
}
