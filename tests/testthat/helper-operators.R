# One set of checks of the differentiable-operator contract (R/operator.R),
# applied to every family in test-operators.R: an operator made by
# `make(x)` must
# * hold the value of the forward function, `forward(x)`;
# * have a VJP equal to central finite differences of sum(v * value), for x
#   and for every other input it is differentiable in;
# * have a Jacobian whose transpose products are its VJPs, and a JVP (where
#   offered) equal to the Jacobian's products;
# * equal its one-call form `vjp_fun(x, v)`.

# Gradient of sum(v * f(z)) at z by central differences.
fd_gradient <- function(f, z, v, h = 1e-6) {
  vapply(seq_along(z), function(i) {
    zp <- z
    zm <- z
    zp[i] <- zp[i] + h
    zm[i] <- zm[i] - h
    (sum(v * f(zp)) - sum(v * f(zm))) / (2 * h)
  }, numeric(1))
}

# Jacobian of f at z (length(f(z)) x length(z)) by central differences.
fd_jacobian <- function(f, z, h = 1e-6) {
  vapply(seq_along(z), function(j) {
    e <- replace(numeric(length(z)), j, h)
    (f(z + e) - f(z - e)) / (2 * h)
  }, numeric(length(f(z))))
}

relative_error <- function(a, b) {
  max(abs(as.vector(a) - as.vector(b))) / max(1e-12, max(abs(as.vector(b))))
}

# `inputs`: other differentiable inputs, a named list of list(value, make),
# where make(value) gives the operator at x with that input changed.
# Monte-Carlo operators (perturbed optimizers) are piecewise constant for
# fixed draws: `finite_differences = FALSE` checks their VJP against their
# Jacobian estimate only.
expect_operator_contract <- function(make, x, forward, vjp_fun = NULL, inputs = list(),
                                     tol = 1e-5, h = 1e-6, label = "",
                                     finite_differences = TRUE) {
  op <- make(x)
  expect_s3_class(op, "diffrank_operator")
  expect_identical(op$value, forward(x), label = paste(label, "value"))
  expect_true(all(c("x", names(inputs)) %in% op$wrt), label = paste(label, "wrt"))
  v <- stats::rnorm(length(op$value))
  if (!is.null(dim(op$value))) dim(v) <- dim(op$value)
  gx <- op$vjp(v)
  if (finite_differences) {
    expect_lt(relative_error(gx, fd_gradient(function(z) make(z)$value, x, v, h)), tol,
              label = paste(label, "vjp vs finite differences"))
  }
  if (!is.null(vjp_fun)) {
    expect_equal(vjp_fun(x, v), gx, tolerance = 1e-12, label = paste(label, "one-call vjp"))
  }
  for (name in names(inputs)) {
    input <- inputs[[name]]
    g <- op$vjp(v, wrt = name)
    fd <- fd_gradient(function(t) input$make(t)$value, input$value, v, h)
    expect_lt(relative_error(g, fd), tol, label = paste(label, "vjp wrt", name))
  }
  all <- op$vjp(v, wrt = "all")
  expect_equal(all$x, gx, label = paste(label, "wrt = all"))
  if (is.null(dim(x))) {
    jac <- op$jacobian()
    expect_equal(unname(drop(crossprod(jac, as.vector(v)))), unname(as.vector(gx)),
                 tolerance = 1e-10, label = paste(label, "jacobian vs vjp"))
    if (op$has_jvp) {
      u <- stats::rnorm(length(x))
      expect_equal(unname(as.vector(op$jvp(u))), unname(drop(jac %*% u)), tolerance = 1e-10,
                   label = paste(label, "jvp vs jacobian"))
    } else {
      expect_error(op$jvp(x), "no Jacobian-vector product")
    }
  }
  expect_error(op$vjp(c(v, 1)), "`v` must have the shape")
  expect_error(op$vjp(v, wrt = "nothing"), "`wrt` must be one of")
  expect_output(print(op), "diffrank_operator")
  invisible(op)
}
