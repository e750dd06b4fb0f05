#' Differentiable operators: one object for every family
#'
#' Every differentiable function of diffrank has three forms:
#' * `<op>(x, ...)`: the value, with the family's diagnostics as attributes;
#' * `<op>_fn(x, ...)`: an operator object of class `diffrank_operator`
#'   (described here) that runs the forward pass once and keeps what the
#'   derivatives need;
#' * `<op>_vjp(x, v, ...)`: the vector-Jacobian product in one call, the
#'   gradient of `sum(v * <op>(x, ...))` with respect to `x`.
#'
#' The families are the soft ranks and sorts of [soft_rank()] (projection onto
#' the permutahedron), the optimal-transport operators of [sinkhorn_rank()] and
#' [sinkhorn_normalize()], and the perturbed optimizers of [perturbed()].
#'
#' @section Fields:
#' An operator `op` is a list with
#' * `op$value`: what `<op>(x, ...)` returns;
#' * `op$vjp(v, wrt = "x")`: `t(J) %*% v`, the gradient of `sum(v * op$value)`
#'   with respect to the input named by `wrt`; `v` has the shape of
#'   `op$value`. `op$wrt` lists the inputs an operator is differentiable in
#'   (always `"x"`; for example also `"target"` and `"target_weights"` for
#'   [sinkhorn_normalize_fn()]); `wrt = "all"` returns a named list with every
#'   gradient;
#' * `op$jvp(u)`: `J %*% u` for a direction `u` shaped like `x`, at about the
#'   cost of one VJP, for every family (soft, Sinkhorn and perturbed;
#'   `op$has_jvp` says whether an operator offers it);
#' * `op$jacobian(wrt = "x")`: the Jacobian `J[i, j] = d value[i] / d x[j]`
#'   for small inputs: a matrix for a vector `x`, an array
#'   `rows of value x rows of x x columns` when `x` is a matrix whose columns
#'   are independent problems;
#' * `op$wrt`, `op$has_jvp`: what the operator offers;
#' * `op$diagnostics`: a list of the family's own figures, for example
#'   `n_blocks` (the isotonic blocks of each column) for the soft sorts,
#'   `iterations`, `error` and `converged` for the Sinkhorn operators, and
#'   `maximum` (the perturbed maximum of each column) for the perturbed
#'   optimizers.
#'
#' @section Values:
#' One rule for every family: `<op>()` and `$value` are plain numeric vectors
#' or matrices (shaped like `x` for ranks, CDF values, normalized values and
#' masks, with its names; one value per target or level for sorts and
#' quantiles). The Sinkhorn operators attach the convergence of the call
#' that made them (attributes `iterations`, `error` and `converged`, class
#' `sinkhorn_result`, printed as one line); a value derived from them
#' (arithmetic, comparisons, `log()`, `round()`, subsetting, `as.vector()`)
#' is plain, since those figures do not describe it. The family's own
#' figures are in `$diagnostics` of every operator object.
#'
#' Printing an operator shows what it computes, its settings and its
#' diagnostics. The derivative state lives in C++ memory: an operator saved
#' with [saveRDS()] keeps `$value`, but its products fail after reloading.
#'
#' @param x A `diffrank_operator`.
#' @param ... Must be empty.
#' @name diffrank_operator
#' @seealso [soft_rank_fn()], [sinkhorn_rank_fn()], [perturbed()].
#' @examples
#' op <- soft_rank_fn(c(0.3, 1.2, 1.25, -0.7), eps = 0.1)
#' op
#' op$vjp(c(1, 0, 0, 0))
#' op$jacobian()
#' op <- sinkhorn_normalize_fn(c(0.3, 1.2, 1.25, -0.7), target = 0:3, eps = 0.05)
#' op$wrt
#' op$vjp(rep(1, 4), wrt = "target")
NULL

#' @rdname diffrank_operator
#' @export
print.diffrank_operator <- function(x, ...) {
  check_dots_empty(...)
  info <- attr(x, "info")
  cat(sprintf("<diffrank_operator> %s of %s\n", info$label, info$input$what))
  if (length(info$settings) > 0L) {
    cat("  ", paste(names(info$settings), vapply(info$settings, format_setting, ""),
                    sep = " = ", collapse = ", "), "\n", sep = "")
  }
  for (line in info$details) cat("  ", line, "\n", sep = "")
  cat(sprintf("  $value, $vjp(v, wrt = %s)%s, $jacobian()\n",
              paste0("\"", x$wrt, "\"", collapse = " | "),
              if (x$has_jvp) ", $jvp(u)" else ""))
  invisible(x)
}

format_setting <- function(value) {
  if (is.character(value)) return(paste0("\"", value, "\""))
  if (is.null(value)) return("NULL")
  if (length(value) > 4L) return(sprintf("<%d values>", length(value)))
  paste(format(value, digits = 4), collapse = ", ")
}

# A cotangent or tangent `v` that must have the shape of `like` (the
# operator's value, or its input for a tangent): returned as a double vector
# or matrix of that shape.
check_direction <- function(v, like_dim, arg = "v", what = "the operator's value") {
  if (missing(v)) abort("`%s` is missing: give the vector to multiply the Jacobian with.", arg)
  v <- plain_values(v)   # a Sinkhorn value used as a direction
  if (!(is.numeric(v) || is.logical(v)) || (is.object(v) && !is.matrix(v))) {
    abort("`%s` must be numeric, not %s.", arg, describe(v))
  }
  ok <- if (length(like_dim) == 1L) {
    is.null(dim(v)) && length(v) == like_dim ||
      (is.matrix(v) && ncol(v) == 1L && nrow(v) == like_dim)
  } else {
    identical(as.integer(dim(v)), as.integer(like_dim)) ||
      (like_dim[2L] == 1L && is.null(dim(v)) && length(v) == like_dim[1L])
  }
  if (!ok) {
    abort("`%s` must have the shape of %s (%s), not %s.", arg, what,
          if (length(like_dim) == 1L) sprintf("a vector of length %d", like_dim)
          else sprintf("%d x %d", like_dim[1L], like_dim[2L]), describe(v))
  }
  # A double vector or matrix is passed on as it is: as.double() and
  # is.infinite() would each copy it, which costs as much as a soft rank.
  attrs <- attributes(v)
  if (!is.double(v) || !(is.null(attrs) || identical(names(attrs), "dim"))) v <- as.double(v)
  if (length(like_dim) == 2L) {
    if (!identical(dim(v), as.integer(like_dim))) dim(v) <- like_dim
  } else if (!is.null(dim(v))) {
    dim(v) <- NULL
  }
  if (nonfinite_kind_cpp(v) != 0L) abort("`%s` must contain only finite values.", arg)
  v
}

value_dim <- function(value) {
  if (is.null(dim(value))) length(value) else dim(value)
}

# Builds a diffrank_operator.
# * vjp_impl(v, wrt): v is the checked cotangent (shape of value); returns a
#   named list of gradients, one per element of `wrt` that it can compute
#   (NULL entries are left out), the "x" one already shaped like x.
# * jvp_impl(u): optional; u is checked against the input's shape.
# * jacobian_impl(): optional; else the Jacobian with respect to x is built
#   from vjp_impl with unit cotangents, one output row at a time, for every
#   column at once when the columns are independent problems.
# * label, settings, details: for print(); diagnostics: the family's own
#   figures (isotonic blocks, Sinkhorn iterations, ...), as a list.
new_operator <- function(value, input, vjp_impl, wrt = "x", jvp_impl = NULL,
                         jacobian_impl = NULL, label, settings = list(), details = character(),
                         diagnostics = list(), columnwise = TRUE) {
  vdim <- value_dim(value)
  xdim <- if (input$vector) input$nrow else c(input$nrow, input$ncol)
  available <- wrt
  vjp <- function(v, wrt = "x") {
    which <- match_wrt(wrt, available, label)
    grads <- vjp_impl(check_direction(v, vdim), which)
    if (which == "all") return(grads)
    grads[[which]]
  }
  jvp <- function(u) {
    if (is.null(jvp_impl)) {
      abort("The %s operator has no Jacobian-vector product; use $vjp() or $jacobian().", label)
    }
    jvp_impl(check_direction(u, xdim, "u", "`x`"))
  }
  jacobian <- function(wrt = "x") {
    if (!identical(wrt, "x")) {
      abort("`wrt` of $jacobian() must be \"x\" (the Jacobian is available with respect to `x` only), not %s; use $vjp(v, wrt = ...) for the other inputs.",
            describe(wrt))
    }
    rows_out <- if (length(vdim) == 1L) vdim else vdim[1L]
    size <- as.double(rows_out) * input$nrow * input$ncol
    if (size > 1e8) {
      abort("The Jacobian would have %.3g entries; use $jvp() or $vjp() instead.", size)
    }
    if (!is.null(jacobian_impl)) return(jacobian_impl())
    jacobian_from_vjp(function(v) vjp_impl(v, "x")$x, vdim, input, columnwise)
  }
  structure(
    list(value = value, vjp = vjp, jvp = jvp, jacobian = jacobian, wrt = wrt,
         has_jvp = !is.null(jvp_impl), diagnostics = diagnostics),
    class = "diffrank_operator",
    info = list(label = label, input = input, settings = settings, details = details)
  )
}

match_wrt <- function(wrt, available, label) {
  if (!is.character(wrt) || length(wrt) != 1L || is.na(wrt) ||
      !(wrt %in% c(available, "all"))) {
    abort("`wrt` must be one of %s for the %s operator, not %s.",
          paste0("\"", c(available, "all"), "\"", collapse = ", "), label, describe(wrt))
  }
  wrt
}

# The Jacobian of an operator whose value is a plan (n x m per column of x,
# an array): one row per entry of a column's plan, in column-major order.
plan_jacobian <- function(vjp_x, value, shape) {
  vdim <- value_dim(value)
  vdim <- c(prod(vdim[1:2]), if (!shape$vector) shape$ncol)
  size <- as.double(vdim[1L]) * shape$nrow * shape$ncol
  if (size > 1e8) {
    abort("The Jacobian would have %.3g entries; use $jvp() or $vjp() instead.", size)
  }
  jacobian_from_vjp(vjp_x, vdim, shape, TRUE)
}

# J[i, j] = d value[i] / d x[j] from vector-Jacobian products with unit
# cotangents: row i of every column's Jacobian at once when the columns are
# independent problems, else one product per entry of the value.
jacobian_from_vjp <- function(vjp_x, vdim, input, columnwise) {
  rows_out <- if (length(vdim) == 1L) vdim else vdim[1L]
  n <- input$nrow
  ncol <- input$ncol
  in_names <- if (input$vector) input$names else input$dimnames[[1L]]
  if (input$vector || ncol == 1L || columnwise) {
    jac <- array(0, c(rows_out, n, ncol))
    for (i in seq_len(rows_out)) {
      v <- matrix(0, rows_out, ncol)
      v[i, ] <- 1
      if (length(vdim) == 1L) v <- as.vector(v)
      jac[i, , ] <- vjp_x(v)
    }
    if (input$vector || length(vdim) == 1L && ncol == 1L) {
      jac <- matrix(jac, rows_out, n)
      colnames(jac) <- in_names
      return(jac)
    }
    dimnames(jac) <- list(NULL, in_names, input$dimnames[[2L]])
    return(jac)
  }
  total <- prod(vdim)
  jac <- matrix(0, total, n * ncol)
  for (i in seq_len(total)) {
    v <- array(0, vdim)
    v[i] <- 1
    jac[i, ] <- as.vector(vjp_x(v))
  }
  jac
}

# x of an operator that takes finite values only, as a double matrix (one
# problem per column), with at least one value and one column.
finite_operator_input <- function(x) {
  mat <- as_numeric_matrix(x, "x")
  if (nrow(mat) == 0L || ncol(mat) == 0L) {
    abort("`x` must have at least one value (and one column), not %d x %d.", nrow(mat),
          ncol(mat))
  }
  if (anyNA(mat)) abort("`x` must not contain missing values (NA or NaN); remove them first.")
  if (any(is.infinite(mat))) abort("`x` must not contain infinite values.")
  mat
}

# A value of an operator with one column object per column of x
# (src/operator_glue.h), shaped for the user: like x for ranks (with its
# names), one row per sorted position for sorts, an n x m plan per column.
shape_stored_value <- function(out, kind, shape, m) {
  switch(kind,
    plan = plan_shape(out, shape, m),
    rank = shape_like_input(out, shape),
    sort = shape_like_input(out, shape, row_names = FALSE))
}

# The diffrank_operator of such a family (the Birkhoff projections, the
# sorting networks), with its products through product(direction,
# transpose), the glue's stored_products(); `...` goes to new_operator().
stored_operator <- function(kind, value, shape, m, product, ...) {
  vjp_impl <- function(v, wrt) {
    list(x = product_in_range(function(d) shape_like_input(product(d, TRUE), shape), v,
                              c("v", "x")))
  }
  new_operator(
    value = value, input = shape, vjp_impl = vjp_impl,
    jvp_impl = function(u) {
      product_in_range(function(d) shape_stored_value(product(d, FALSE), kind, shape, m), u,
                       c("u", "x"))
    },
    jacobian_impl = if (kind == "plan") {
      function() plan_jacobian(function(v) vjp_impl(v, "x")$x, value, shape)
    },
    ...)
}
