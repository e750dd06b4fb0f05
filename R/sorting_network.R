#' Differentiable sorting networks
#'
#' Soft sorts, ranks and permutation matrices from a sorting network whose
#' comparators are relaxed (Petersen, Borgelt, Kuehne and Deussen 2021,
#' 2022). A sorting network is a fixed sequence of comparators, each putting
#' the smaller of two wires first; relaxed, a comparator of the values `u`
#' and `v` mixes them with `alpha = sigma((v - u) / tau)`:
#' `min <- alpha u + (1 - alpha) v`, `max <- (1 - alpha) u + alpha v`. Every
#' layer is then a doubly stochastic matrix, and so is their product, the
#' relaxed permutation matrix `P`:
#' * `network_sort()`: the soft sorted values `t(P) %*% x`, increasing;
#' * `network_rank()`: the soft ranks `P %*% (1:n)`, in `[1, n]`;
#' * `network_plan()`: `P` itself, `n x n`, `P[i, j]` the part of value `i`
#'   that ends at sorted position `j` (rows and columns sum to 1).
#'
#' `network = "bitonic"` (the default) has `log2(N) (log2(N) + 1) / 2`
#' layers of `N / 2` comparators (`N` the next power of two above `n`; the
#' padding never mixes with the data); `"odd_even"` is odd-even transposition
#' sort, `n` layers and `n (n - 1) / 2` comparators, whose errors compound
#' over more layers. `relaxation = "logistic"` uses the logistic function;
#' `"cauchy"` the Cauchy distribution function `atan(t) / pi + 1/2`, whose
#' heavy tails make the relaxed network monotone at a fixed temperature
#' (`scale = "none"`: no soft sorted value decreases when an input increases;
#' Petersen et al. 2022). With the other scales the unit moves with `x`,
#' and its own derivative can break that.
#'
#' The steepness is `tau = eps * unit`, the unit being `sd(x) / n` for
#' `scale = "spacing"` (the default: about the gap between neighbouring
#' values, so that `eps` means the same at every size and in any units),
#' `sd(x)` for `"sd"` and 1 for `"none"`. The unit depends on `x` and is
#' differentiated as well. The derivatives are exact reverse and forward passes
#' over the comparators: a sort's or ranks' product costs as much as their
#' value, `O(comparators)`; the plan and its products cost `n` times more.
#' Memory is a few numbers per comparator and column.
#'
#' @inheritParams soft_rank
#' @param x A numeric vector or matrix (each column one problem); no missing
#'   or infinite values.
#' @param eps Temperature of the comparators, a positive number, in units of
#'   `scale`: at the default `eps = 0.25` two values one typical gap apart
#'   (about `2.5 sd(x) / n` in the middle of a normal sample) are compared
#'   with `alpha` near 0.99995, and closer values are mixed; the mixing
#'   compounds over the layers, more for `"odd_even"`.
#' @param network `"bitonic"` or `"odd_even"`.
#' @param relaxation `"logistic"` or `"cauchy"`.
#' @param decreasing `TRUE` to sort in decreasing order (rank 1 for the
#'   largest value).
#' @param scale `"spacing"`, `"sd"` or `"none"` (see Details).
#' @param v For `_vjp()`: the cotangent, shaped like the value.
#' @return `network_sort()` and `network_rank()`: shaped like `x` (ranks with
#'   its names). `network_plan()`: an `n x n` matrix for a vector, an `n x n x
#'   ncol(x)` array for a matrix. `_fn()`: a [diffrank_operator] (`$vjp()`,
#'   `$jvp()`, `$jacobian()` with respect to `x`). `_vjp()`: the gradient for
#'   the cotangent `v`, shaped like `x`.
#' @references Petersen F, Borgelt C, Kuehne H, Deussen O (2021).
#'   Differentiable sorting networks for scalable sorting and ranking
#'   supervision. *ICML 2021*. \doi{10.48550/arXiv.2105.04019}
#'
#'   Petersen F, Borgelt C, Kuehne H, Deussen O (2022). Monotonic
#'   differentiable sorting networks. *ICLR 2022*.
#'   \doi{10.48550/arXiv.2203.09630}
#' @seealso [soft_rank()] (exact projections, O(n log n)), [sinkhorn_plan()]
#'   and [birkhoff_plan()]; `vignette("differentiable-sorting")` compares them
#'   on a ranking task.
#' @export
#' @examples
#' x <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
#' network_sort(x)
#' network_rank(x)
#' network_rank(x, relaxation = "cauchy")
#' round(network_plan(x), 3)
#' network_rank_vjp(x, v = c(1, 0, 0, 0))
network_sort <- operator_form("network_sort", "value")

#' @rdname network_sort
#' @export
network_rank <- operator_form("network_rank", "value")

#' @rdname network_sort
#' @export
network_plan <- operator_form("network_plan", "value")

#' @rdname network_sort
#' @export
network_sort_fn <- operator_form("network_sort", "fn")

#' @rdname network_sort
#' @export
network_rank_fn <- operator_form("network_rank", "fn")

#' @rdname network_sort
#' @export
network_plan_fn <- operator_form("network_plan", "fn")

#' @rdname network_sort
#' @export
network_sort_vjp <- operator_form("network_sort", "vjp")

#' @rdname network_sort
#' @export
network_rank_vjp <- operator_form("network_rank", "vjp")

#' @rdname network_sort
#' @export
network_plan_vjp <- operator_form("network_plan", "vjp")

# Runs the relaxed network (NetworkOperator of
# inst/include/diffrank/sorting_network.hpp) and builds its diffrank_operator.
network_operator <- function(kind, x, eps, network, relaxation, decreasing, scale, threads) {
  mat <- finite_operator_input(x)
  n <- nrow(mat)
  options <- list(kind = kind, eps = check_number(eps, "eps", lower = 0, allow_lower = FALSE),
                  network = match_choice(network, c("bitonic", "odd_even"), "network"),
                  relaxation = match_choice(relaxation, c("logistic", "cauchy"), "relaxation"),
                  decreasing = check_flag(decreasing, "decreasing"),
                  scale = match_choice(scale, c("spacing", "sd", "none"), "scale"))
  if (options$scale == "none" && max(abs(mat)) > 1e300) {
    abort("`x` has values beyond 1e300, whose differences overflow with scale = \"none\"; use scale = \"spacing\" or rescale `x`.")
  }
  shape <- input_shape(x, mat)
  threads <- check_threads(threads)
  comparators <- network_comparators_cpp(options$network, n)
  # per column: five numbers per comparator and the value
  check_memory(8 * ncol(mat) * (6 * comparators + if (kind == "plan") as.double(n) * n else n),
               "x", sprintf("a %s network on %d values", options$network, n))
  fit <- network_state_cpp(mat, n, options, threads)
  warn_nonfinite(fit$value, "x")
  value <- shape_stored_value(fit$value, kind, shape, n)
  if (kind != "plan" && n > 1L) {
    signed <- if (options$decreasing) -mat else mat
    hard <- if (kind == "rank") apply(signed, 2L, rank) else apply(mat, 2L, sort, options$decreasing)
    warn_near_constant(value, hard, sprintf("network %s", kind), options$eps)
  }
  state <- fit$state
  stored_operator(
    kind, value, shape, n,
    function(direction, transpose) network_state_product_cpp(state, direction, transpose, threads),
    label = sprintf("network_%s", kind),
    settings = options[c("eps", "network", "relaxation", "decreasing", "scale")],
    details = sprintf("%s comparators per column", format(comparators, big.mark = ",")),
    diagnostics = list(comparators = comparators))
}
