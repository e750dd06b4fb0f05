#' Sparse soft permutation matrices: L2 projection onto the Birkhoff polytope
#'
#' A transport plan between the values of `x` and `m` sorted targets, as
#' [sinkhorn_plan()] computes, but regularized by a squared norm instead of
#' the entropy (Blondel, Seguy and Rolet 2018; Lorenz, Manns and Meyer 2021):
#' \deqn{P = \arg\min_{P \ge 0,\ P 1 = a,\ P^T 1 = b} \langle C, P\rangle +
#'   \frac{\epsilon}{2} \sum_{ij} \frac{P_{ij}^2}{a_i b_j},}
#' with `C[i, j] = |z[i] - y[j]|^power`, `z` the values of `x` (squashed as
#' for the Sinkhorn operators by default) and `y = (0, 1/(m-1), ..., 1)`. With
#' equal weights and `m = n` this is the Euclidean projection of `-C / (eps
#' n^2)` onto the Birkhoff polytope of doubly stochastic matrices (scaled by
#' `1/n`). Unlike the entropic plan, the solution is **sparse**: each value
#' sends its mass to a few neighbouring targets and exactly zero elsewhere,
#' and as `eps` decreases the plan becomes the permutation matrix of
#' `order(x)` (divided by `n`) at a finite `eps`, not only in the limit.
#'
#' * `birkhoff_plan()`: the plan `P`, `n x m` (`P[i, j]` the mass value `i`
#'   sends to the `j`-th smallest target);
#' * `birkhoff_rank()`: the soft ranks `n (P cumsum(b)) / a`, in `[0, n]`,
#'   as [sinkhorn_rank()] reads them from its plan;
#' * `birkhoff_sort()`: the `m` soft sorted values `(t(P) x) / b`.
#'
#' The dual problem is concave and piecewise quadratic; it is solved by a
#' semismooth Newton method from the hard sort's dual potentials, which stops
#' exactly once it has found the support of the plan (a few iterations; the
#' marginals then hold to about `1e-16 / eps`, rounding's limit). The
#' derivatives are exact: implicit differentiation of the optimality
#' conditions on the support, one sparse factorization of the support graph's
#' Laplacian per column serving every product. Each iteration costs `O(n m)`
#' plus the factorization of a banded matrix (bandwidth the support's entries
#' per value); memory is the support (about `2 eps^(1/3) n m` entries up to
#' `eps = 0.01`, all `n m` from about `eps = 0.5`). 2,000 values to 2,000
#' targets take about 0.8 s at the default `eps`, 1,000 values to 128 targets
#' (the default `n_targets` of longer vectors) about 20 ms. An interrupt is
#' noticed between passes over the plan; one factorization (up to a second
#' or so for thousands of targets) runs to its end. Columns of a matrix are
#' independent problems, run in parallel over `threads` with identical
#' results for any number of threads.
#'
#' @section Choosing eps:
#' `eps` has the same meaning for any `n` and `m` (the weights in the penalty
#' see to that) and, with `scale = "squash"`, for any units of `x`. A value
#' shares its mass with the targets within about `eps^(1/3)` of it on the
#' squashed scale: at the default `eps = 1e-4` each value of a normal sample
#' reaches about 9% of the targets (19% at `eps = 1e-3`, 40% at `eps =
#' 0.01`, 4% at `eps = 1e-5`); values start to become hard (rows of a
#' permutation) near `eps = 1e-6` (12 of 100 values; 55 at `1e-7`). From
#' `eps = 0.5` on every value reaches every target, and a warning says when
#' the ranks or sorts are nearly constant.
#'
#' @inheritParams sinkhorn_rank
#' @param eps Regularization strength, a positive number (see Choosing eps).
#' @param tol Convergence tolerance on the marginals: the largest error of a
#'   row or column sum relative to its weight (or what rounding allows at this
#'   `eps`, about `1e-14 / eps`, if larger).
#' @param max_iter Maximum number of Newton iterations.
#' @return `birkhoff_plan()`: an `n x m` matrix for a vector `x`, an `n x m x
#'   ncol(x)` array for a matrix. `birkhoff_rank()`: shaped like `x`, with its
#'   names. `birkhoff_sort()`: `m` values per column. Plain numbers; the
#'   Newton iterations, marginal errors and sizes of the support of each
#'   column are in `$diagnostics` of the `_fn()` forms, and a warning is given
#'   when a column did not converge.
#'   `birkhoff_*_fn()`: a [diffrank_operator] with `$vjp()`, `$jvp()` and
#'   `$jacobian()` with respect to `x`. `birkhoff_*_vjp()`: the gradient for
#'   the cotangent `v`, shaped like `x`.
#' @references Blondel M, Seguy V, Rolet A (2018). Smooth and sparse optimal
#'   transport. *AISTATS 2018*. \doi{10.48550/arXiv.1710.06276}
#'
#'   Lorenz DA, Manns P, Meyer C (2021). Quadratically regularized optimal
#'   transport. *Applied Mathematics & Optimization* 83, 1919-1949.
#'   \doi{10.1007/s00245-019-09614-w}
#' @seealso [sinkhorn_plan()] for the entropic (dense) plan; [network_plan()]
#'   for relaxed sorting networks; `vignette("differentiable-sorting")`
#'   compares them on a ranking task.
#' @export
#' @examples
#' x <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
#' # sparse: exact zeros away from the sorted position
#' round(4 * birkhoff_plan(x), 3)
#' birkhoff_rank(x)
#' birkhoff_rank(x, eps = 1e-7)   # the hard ranks
#' birkhoff_sort(x)
#' op <- birkhoff_rank_fn(x)
#' op$vjp(c(1, 0, 0, 0))
birkhoff_plan <- operator_form("birkhoff_plan", "value")

#' @rdname birkhoff_plan
#' @export
birkhoff_rank <- operator_form("birkhoff_rank", "value")

#' @rdname birkhoff_plan
#' @export
birkhoff_sort <- operator_form("birkhoff_sort", "value")

#' @rdname birkhoff_plan
#' @export
birkhoff_plan_fn <- operator_form("birkhoff_plan", "fn")

#' @rdname birkhoff_plan
#' @export
birkhoff_rank_fn <- operator_form("birkhoff_rank", "fn")

#' @rdname birkhoff_plan
#' @export
birkhoff_sort_fn <- operator_form("birkhoff_sort", "fn")

#' @rdname birkhoff_plan
#' @param v For `_vjp()`: the cotangent, shaped like the value.
#' @export
birkhoff_plan_vjp <- operator_form("birkhoff_plan", "vjp")

#' @rdname birkhoff_plan
#' @export
birkhoff_rank_vjp <- operator_form("birkhoff_rank", "vjp")

#' @rdname birkhoff_plan
#' @export
birkhoff_sort_vjp <- operator_form("birkhoff_sort", "vjp")

# Runs the forward pass of a Birkhoff operator (BirkhoffOperator of
# inst/include/diffrank/birkhoff.hpp) and builds its diffrank_operator.
birkhoff_operator <- function(kind, x, eps, n_targets, weights, target_weights, decreasing,
                              scale, power, tol, max_iter, threads) {
  mat <- finite_operator_input(x)
  n <- nrow(mat)
  eps <- check_number(eps, "eps", lower = 0, allow_lower = FALSE)
  scale <- match_choice(scale, c("squash", "none"), "scale")
  if (scale == "none" && max(abs(mat)) > 1e100) {
    abort("`x` has values beyond 1e100, whose squared distances overflow with scale = \"none\"; use scale = \"squash\" or rescale `x`.")
  }
  m <- if (is.null(n_targets)) default_targets(n) else check_whole(n_targets, "n_targets")
  shape <- input_shape(x, mat)
  threads <- check_threads(threads)
  # the support and its factor per column, about 48 bytes for each of the
  # 2 eps^(1/3) n m entries a column's support holds (bench/soft_permutations.R)
  check_memory(48 * min(1, 2 * eps^(1 / 3)) * as.double(n) * m * ncol(mat), "n_targets", m)
  if (kind == "plan") warn_plan_size(n, m, ncol(mat), threads)
  options <- list(kind = kind, eps = eps, power = check_number(power, "power", lower = 1),
                  scale = scale, decreasing = check_flag(decreasing, "decreasing"),
                  tol = check_number(tol, "tol", lower = 0, allow_lower = FALSE),
                  max_iter = check_whole(max_iter, "max_iter"),
                  y = if (m == 1L) 0.5 else seq(0, 1, length.out = m),
                  b = sinkhorn_weights(target_weights, m, "target_weights", "`n_targets`"))
  a <- sinkhorn_weights(weights, n, "weights")
  fit <- birkhoff_state_cpp(mat, n, a, options, threads)
  if (!all(fit$converged)) {
    warning(sprintf(paste0("The Birkhoff projection did not converge for %d of %d column(s) ",
                           "within %d Newton iterations (marginal error %.3g > tol = %.3g); ",
                           "increase `max_iter` or loosen `tol`."),
                    sum(!fit$converged), length(fit$converged), options$max_iter,
                    max(fit$error), options$tol), call. = FALSE)
  }
  warn_nonfinite(fit$value, "x")
  value <- shape_stored_value(fit$value, kind, shape, m)
  if (kind != "plan" && n > 1L) {
    hard <- if (kind == "rank") {
      apply(if (options$decreasing) -mat else mat, 2L, rank)
    } else {
      birkhoff_hard_sort(mat, m, options$decreasing)
    }
    warn_near_constant(value, hard, sprintf("Birkhoff %s", kind), eps)
  }
  state <- fit$state
  stored_operator(
    kind, value, shape, m,
    function(direction, transpose) birkhoff_state_product_cpp(state, direction, transpose, threads),
    label = sprintf("birkhoff_%s", kind),
    settings = c(options[c("eps", "scale", "decreasing")], list(targets = m)),
    details = sprintf("Newton iterations %s; max marginal error %.3g; plan support %s of %s entries",
                      paste(unique(range(fit$iterations)), collapse = "-"), max(fit$error),
                      paste(unique(range(fit$support)), collapse = "-"),
                      format(as.double(n) * m, big.mark = ",")),
    diagnostics = fit[c("iterations", "error", "converged", "support")])
}

# The hard sort at m quantile levels (the eps -> 0 limit of birkhoff_sort()
# with equal weights), for the near-constant check.
birkhoff_hard_sort <- function(mat, m, decreasing) {
  apply(mat, 2L, function(v) {
    s <- sort(v, decreasing = decreasing)
    s[pmax(1L, ceiling(seq_len(m) * length(s) / m))]
  })
}
