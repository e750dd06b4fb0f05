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

#' Soft quantization to a few levels
#'
#' Each value of `x` replaced by a soft assignment to `n_targets` levels
#' learned from the data (Cuturi, Teboul and Vert 2019; ott-jax's
#' `quantize`): the transport `P` of the column to `n_targets` sorted targets
#' gives the levels `q = t(P) x / colSums(P)` (the soft sort of `x` at
#' `n_targets` quantile levels, [sinkhorn_sort()]), and each value becomes
#' the mean level its mass is sent to, `(P q) / a`. As `eps` decreases it
#' tends to the hard quantization (each value replaced by the mean of its
#' quantile group); as `eps` grows, to the mean of `x`. Columns of a matrix
#' are quantized apart. Differentiable in `x` (through the levels and the
#' plan) and in `target_weights` (the masses of the levels).
#'
#' The plan is formed (`n x n_targets` per column).
#'
#' @inheritParams sinkhorn_rank
#' @param n_targets The number of levels (4 by default), at least 1.
#' @param v For `_vjp()`: the cotangent, shaped like `x`.
#' @return `sinkhorn_quantize()`: values shaped like `x`, with its names,
#'   carrying the convergence attributes (class `sinkhorn_result`).
#'   `sinkhorn_quantize_fn()`: a [diffrank_operator] (`wrt = "x"`,
#'   `"target_weights"` or `"all"`). `sinkhorn_quantize_vjp()`: the gradient
#'   with respect to `x`.
#' @references Cuturi M, Teboul O, Vert JP (2019). Differentiable ranking and
#'   sorting using optimal transport. *NeurIPS 2019*. \doi{10.48550/arXiv.1905.11885}
#' @seealso [sinkhorn_sort()] for the levels themselves.
#' @export
#' @examples
#' x <- c(0.1, 0.15, 0.2, 1.1, 1.2, 2.9, 3.0, 3.2)
#' sinkhorn_quantize(x, n_targets = 3, eps = 1e-3)
#' sinkhorn_quantize(x, n_targets = 3, eps = 0.05)
#' sinkhorn_quantize_vjp(x, v = c(1, rep(0, 7)), n_targets = 3, eps = 0.05)
sinkhorn_quantize <- operator_form("sinkhorn_quantize", "value")

#' @rdname sinkhorn_quantize
#' @export
sinkhorn_quantize_fn <- operator_form("sinkhorn_quantize", "fn")

#' @rdname sinkhorn_quantize
#' @export
sinkhorn_quantize_vjp <- operator_form("sinkhorn_quantize", "vjp")

# The operators built on the dense plan of a key (sinkhorn_operator("plan",
# ...)): `operator` "sort_by" (the rows of x averaged by the plan of `by`,
# t(P) x / b) or "quantize" (each column of x by its own plan: q = t(P) x / b,
# then P q / a). Their derivatives are the chain rule from a cotangent of
# the value to x (linear terms) and to the plan, whose VJP gives the key and
# the target weights.
sinkhorn_plan_operator <- function(operator, x, by = NULL, eps, n_targets = NULL, weights = NULL,
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
  key <- if (operator == "sort_by") checked_key(by, n) else mat
  # both operators are of degree 1 in x given the plan, and the squashed plan
  # does not depend on the scale of x: x of extreme magnitude is divided by a
  # power of two, exactly, and the value and gradients scaled back
  scale <- match_choice(scale, c("squash", "none"), "scale")
  ex <- if (operator == "sort_by" || scale == "squash") pow2_exponent(mat) else 0
  if (ex != 0) {
    mat <- times_pow2(mat, -ex)
    if (operator == "quantize") key <- mat
  }
  plan <- withCallingHandlers(
    sinkhorn_operator("plan", x = key, eps = eps, n_targets = n_targets, weights = weights,
                      target_weights = target_weights, decreasing = decreasing, scale = scale,
                      power = power, tol = tol, max_iter = max_iter, threads = threads,
                      progress = progress),
    # the plan is these operators' working storage: check_memory() guards it
    diffrank_plan_size = function(w) invokeRestart("muffleWarning"))
  parts <- if (operator == "sort_by") sort_by_parts(plan, mat) else quantize_parts(plan, mat)
  value <- shape_like_input(times_pow2(parts$value, ex), shape, row_names = operator == "quantize")
  for (name in c("iterations", "error", "converged")) attr(value, name) <- plan$diagnostics[[name]]
  oldClass(value) <- "sinkhorn_result"
  key_name <- if (operator == "sort_by") "by" else "x"
  # the gradients are linear in v: a v of extreme magnitude is scaled too
  vjp_impl <- function(v, wrt) {
    v <- matrix(v, ncol = ncol(mat))
    ev <- pow2_exponent(v)
    v <- times_pow2(v, -ev)
    grads <- list(x = parts$vjp_linear(v))
    if (wrt != "x" || operator == "quantize") {
      through_plan <- plan$vjp(parts$plan_cotangent(v), wrt = "all")
      # the plan's gradients are those of the value at x / 2^ex
      grads[[key_name]] <- if (key_name == "x") {
        grads$x + through_plan$x
      } else {
        times_pow2(through_plan$x, ex)
      }
      grads$target_weights <- times_pow2(through_plan$target_weights, ex)
    }
    grads <- lapply(grads, times_pow2, ev)
    grads$x <- shape_like_input(grads$x, shape)
    asked <- if (wrt == "all") grads else grads[wrt]
    if (any(vapply(asked, nonfinite_kind_cpp, 0L) != 0L)) {
      warn_nonfinite(unlist(asked, use.names = FALSE), c("x", "v"))
    }
    grads
  }
  jvp_impl <- function(u) {
    u <- matrix(u, ncol = ncol(mat))
    eu <- pow2_exponent(u)
    u <- times_pow2(u, -eu)
    d <- times_pow2(parts$jvp(u, if (operator == "quantize") plain_values(plan$jvp(u))), eu)
    if (nonfinite_kind_cpp(d) != 0L) warn_nonfinite(d, c("x", "u"))
    shape_like_input(d, shape, row_names = operator == "quantize")
  }
  new_operator(value = value, input = shape, vjp_impl = vjp_impl,
               wrt = c("x", if (operator == "sort_by") "by", "target_weights"),
               jvp_impl = jvp_impl, label = paste0("sinkhorn_", operator),
               settings = attr(plan, "info")$settings, details = attr(plan, "info")$details,
               diagnostics = plan$diagnostics)
}

# The power of two e with max|z| / 2^e in [1, 2) when max|z| is outside
# [2^-256, 2^256], else 0 (as range_exponent() of sinkhorn.hpp); and z 2^e,
# in two exact steps so that neither factor leaves the double range.
pow2_exponent <- function(z) {
  big <- suppressWarnings(max(abs(z)))
  if (!is.finite(big) || big == 0 || (big >= 2^-256 && big <= 2^256)) return(0)
  floor(log2(big))
}
times_pow2 <- function(z, e) {
  if (is.null(z) || e == 0) return(z)
  z * 2^(e %/% 2) * 2^(e - e %/% 2)
}

checked_key <- function(by, n) {
  if (is.null(by)) abort("`by` is missing: give the key to sort the rows of `x` by.")
  if (!is.numeric(by) || is.object(by) || !is.null(dim(by)) || length(by) != n) {
    abort("`by` must be a numeric vector with one value per row of `x` (%d), not %s.", n,
          describe(by))
  }
  if (anyNA(by) || any(is.infinite(by))) abort("`by` must contain only finite values.")
  as.double(by)
}

# sinkhorn_sort_by(): value t(P) x / b (m x ncol, b = colSums(P)); linear in
# x; d value[j, c] / d P[i, j] = (x[i, c] - value[j, c]) / b[j].
sort_by_parts <- function(plan, mat) {
  P <- plain_values(plan$value)
  mass <- colSums(P)
  sorted <- crossprod(P, mat) / mass
  n <- nrow(mat)
  list(value = sorted,
       vjp_linear = function(v) P %*% (v / mass),
       plan_cotangent = function(v) {
         v <- v / mass
         tcrossprod(mat, v) - rep(rowSums(v * sorted), each = n)
       },
       jvp = function(u, dplan) crossprod(P, u) / mass)
}

# sinkhorn_quantize(): column c has its own plan P (n x m): levels q = t(P)
# x / b, value P q / a (a = rowSums(P), the weights, which the transport
# keeps exactly; b = colSums(P)). For a cotangent v of the value: q gets
# qbar = t(P) (v / a); x gets P (qbar / b) directly; the plan gets
# v_i q_j / a_i + qbar_j (x_i - q_j) / b_j.
quantize_parts <- function(plan, mat) {
  plans <- plain_values(plan$value)
  n <- nrow(mat)
  cols <- ncol(mat)
  m <- length(plans) %/% (n * cols)
  slice <- function(p, c) {
    out <- p[(c - 1) * n * m + seq_len(n * m)]
    dim(out) <- c(n, m)
    out
  }
  cols_of <- lapply(seq_len(cols), function(c) {
    P <- slice(plans, c)
    a <- rowSums(P)
    b <- colSums(P)
    q <- drop(crossprod(P, mat[, c])) / b
    list(P = P, a = a, b = b, q = q, value = drop(P %*% q) / a)
  })
  qbar <- function(v, c) drop(crossprod(cols_of[[c]]$P, v[, c] / cols_of[[c]]$a))
  list(value = vapply(cols_of, `[[`, numeric(n), "value"),
       vjp_linear = function(v) {
         vapply(seq_len(cols), function(c) {
           drop(cols_of[[c]]$P %*% (qbar(v, c) / cols_of[[c]]$b))
         }, numeric(n))
       },
       plan_cotangent = function(v) {
         G <- vapply(seq_len(cols), function(c) {
           k <- cols_of[[c]]
           qb <- qbar(v, c) / k$b
           as.vector(outer(v[, c] / k$a, k$q) + outer(mat[, c], qb) - rep(qb * k$q, each = n))
         }, numeric(n * m))
         array(G, dim(plans))
       },
       jvp = function(u, dplan) {
         vapply(seq_len(cols), function(c) {
           k <- cols_of[[c]]
           dP <- slice(dplan, c)
           db <- colSums(dP)
           dq <- (drop(crossprod(dP, mat[, c])) + drop(crossprod(k$P, u[, c])) - k$q * db) / k$b
           (drop(dP %*% k$q) + drop(k$P %*% dq)) / k$a
         }, numeric(n))
       })
}
