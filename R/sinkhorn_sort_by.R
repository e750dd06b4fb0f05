#' Sort the rows of a matrix by a soft order of a key
#'
#' The rows of `x` averaged by the Sinkhorn transport of the key `by` to `m`
#' sorted targets (Cuturi, Teboul and Vert 2019): row `j` of the result is the
#' mean of the rows of `x` weighted by the mass each value of `by` sends to
#' target `j`, `(t(P) %*% x) / colSums(P)` with `P = sinkhorn_plan(by)`. With
#' `n_targets = length(by)` it tends to `x[order(by), ]` as `eps` decreases;
#' [sinkhorn_sort()] is `sinkhorn_sort_by(x, by = x)` on a vector. It is
#' differentiable in `x` (linearly) and in `by` (through the plan), as
#' ott-jax's `sort_with` is.
#'
#' The plan is formed (`n x m`), so the cost is `O(n m)` in memory and
#' `O(n m ncol(x))` in time; the derivative with respect to `by` costs one
#' adjoint solve of the transport, as for the other Sinkhorn operators.
#'
#' @inheritParams sinkhorn_rank
#' @param x A numeric vector or matrix whose rows are sorted (for example
#'   samples x features, or the items of a list with several attributes).
#'   No missing or infinite values.
#' @param by The key: a numeric vector with one value per row of `x`, no
#'   missing or infinite values.
#' @param v For `_vjp()`: the cotangent, shaped like the value.
#' @return `sinkhorn_sort_by()`: an `m x ncol(x)` matrix (a vector of length
#'   `m` for a vector `x`) with the column names of `x`, carrying the
#'   convergence attributes of the transport (class `sinkhorn_result`).
#'   `sinkhorn_sort_by_fn()`: a [diffrank_operator] whose `$vjp(v, wrt =)`
#'   takes `wrt = "x"`, `"by"`, `"target_weights"` or `"all"`, and whose
#'   `$jvp(u)` is the derivative along `u` for `x` (at `by` fixed).
#'   `sinkhorn_sort_by_vjp()`: the gradient with respect to `x`.
#' @references Cuturi M, Teboul O, Vert JP (2019). Differentiable ranking and
#'   sorting using optimal transport. *NeurIPS 2019*. \doi{10.48550/arXiv.1905.11885}
#' @seealso [sinkhorn_plan()] for the plan itself.
#' @export
#' @examples
#' x <- cbind(id = 1:5, score = c(0.2, 0.9, 0.4, 0.1, 0.7))
#' # the rows of x in the soft order of the score
#' sinkhorn_sort_by(x, by = x[, "score"], eps = 1e-3)
#' op <- sinkhorn_sort_by_fn(x, by = x[, "score"], eps = 0.05)
#' # how the first sorted id moves with each score
#' op$vjp(rbind(c(1, 0), 0, 0, 0, 0), wrt = "by")
sinkhorn_sort_by <- operator_form("sinkhorn_sort_by", "value")

#' @rdname sinkhorn_sort_by
#' @export
sinkhorn_sort_by_fn <- operator_form("sinkhorn_sort_by", "fn")

#' @rdname sinkhorn_sort_by
#' @export
sinkhorn_sort_by_vjp <- operator_form("sinkhorn_sort_by", "vjp")

# The operator sinkhorn_sort_by(), built on the plan of `by`
# (sinkhorn_operator("plan", ...)): value t(P) x / b, and the chain rule
# from a cotangent V of the value to x (P V / b), to the plan (whose VJP
# gives `by` and the target weights) and back. (`operator` is the table
# row's kind, "sort".)
sinkhorn_by_operator <- function(operator, x, by, eps, n_targets = NULL, weights = NULL,
                                 target_weights = NULL, decreasing = FALSE, scale = "squash",
                                 power = 2, tol = 1e-6, max_iter = 1000L,
                                 threads = diffrank_threads(), progress = FALSE) {
  mat <- as_numeric_matrix(x, "x")
  shape <- input_shape(x, mat)
  n <- nrow(mat)
  if (n == 0L || ncol(mat) == 0L) {
    abort("`x` must have at least one value (and one column), not %d x %d.", n, ncol(mat))
  }
  if (anyNA(mat) || any(is.infinite(mat))) abort("`x` must contain only finite values.")
  if (is.null(by)) abort("`by` is missing: give the key to sort the rows of `x` by.")
  if (!is.numeric(by) || is.object(by) || !is.null(dim(by)) || length(by) != n) {
    abort("`by` must be a numeric vector with one value per row of `x` (%d), not %s.", n,
          describe(by))
  }
  if (anyNA(by) || any(is.infinite(by))) abort("`by` must contain only finite values.")
  plan <- withCallingHandlers(
    sinkhorn_operator("plan", x = as.double(by), eps = eps, n_targets = n_targets,
                      weights = weights, target_weights = target_weights,
                      decreasing = decreasing, scale = scale, power = power, tol = tol,
                      max_iter = max_iter, threads = threads, progress = progress),
    # the plan is this operator's working storage: check_memory() guards it
    diffrank_plan_size = function(w) invokeRestart("muffleWarning"))
  P <- plain_values(plan$value)
  mass <- colSums(P)
  sorted <- crossprod(P, mat) / mass
  value <- shape_like_input(sorted, shape, row_names = FALSE)
  for (name in c("iterations", "error", "converged")) attr(value, name) <- plan$diagnostics[[name]]
  oldClass(value) <- "sinkhorn_result"
  vjp_impl <- function(v, wrt) {
    V <- matrix(v, ncol = ncol(mat)) / mass
    grads <- list(x = shape_like_input(P %*% V, shape))
    if (wrt %in% c("by", "target_weights", "all")) {
      # d value[j, c] / d P[i, j] = (x[i, c] - value[j, c]) / mass[j]
      G <- tcrossprod(mat, V) - rep(rowSums(V * sorted), each = n)
      through_plan <- plan$vjp(G, wrt = "all")
      grads$by <- through_plan$x
      grads$target_weights <- through_plan$target_weights
    }
    grads
  }
  jvp_impl <- function(u) {
    d <- crossprod(P, matrix(u, ncol = ncol(mat))) / mass
    shape_like_input(d, shape, row_names = FALSE)
  }
  new_operator(value = value, input = shape, vjp_impl = vjp_impl,
               wrt = c("x", "by", "target_weights"), jvp_impl = jvp_impl,
               label = "sinkhorn_sort_by",
               settings = attr(plan, "info")$settings, details = attr(plan, "info")$details,
               diagnostics = plan$diagnostics)
}
