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

# An example at which to check an operator of the package's table
# (R/operator_table.R): `args` are its arguments after x; `inputs` names
# those of them it is also differentiable in (their VJP is checked by finite
# differences too); `seed` fixes the draws of a Monte-Carlo operator;
# `per_row` names the arguments with one value per row of x (`by` of
# sinkhorn_sort_by()), which tests on other data recycle (example_args()).
operator_example <- function(x, args = list(), inputs = character(), seed = NULL,
                             finite_differences = is.null(seed), label = "",
                             per_row = character()) {
  list(x = x, args = args, inputs = inputs, seed = seed,
       finite_differences = finite_differences, label = label, per_row = per_row)
}

# The arguments `names` of an example for the data x: those with one value
# per row recycled to the rows of x.
example_args <- function(example, x, names = names(example$args)) {
  args <- example$args[names]
  for (arg in intersect(example$per_row, names)) args[[arg]] <- rep_len(args[[arg]], NROW(x))
  args
}

# The contract checks of one example of the operator `name`, through its
# three forms as a user calls them: name(), name_fn() and name_vjp(), found
# in `env`.
expect_operator_row <- function(name, example, env = asNamespace("diffrank")) {
  form <- function(suffix) get(paste0(name, suffix), envir = env)
  with_args <- function(f, args = example$args) {
    function(...) {
      run <- function() do.call(f, c(list(...), args))
      if (is.null(example$seed)) run() else withr::with_seed(example$seed, run())
    }
  }
  inputs <- lapply(stats::setNames(nm = example$inputs), function(input) {
    list(value = as.double(example$args[[input]]), make = function(t) {
      changed <- utils::modifyList(example$args, stats::setNames(list(t), input))
      with_args(form("_fn"), changed)(example$x)
    })
  })
  expect_operator_contract(with_args(form("_fn")), example$x, with_args(form("")),
                           with_args(form("_vjp")), inputs = inputs,
                           finite_differences = example$finite_differences,
                           label = paste(name, example$label))
}

# The examples of every operator of the table; test-operators.R checks that
# each row has at least one.
operator_examples <- function() {
  set.seed(40)
  x <- rnorm(9)
  soft <- list()
  for (reg in c("l2", "kl")) for (decreasing in c(FALSE, TRUE)) for (scale in c("spacing", "none")) {
    soft[[length(soft) + 1L]] <- list(reg = reg, decreasing = decreasing, scale = scale)
  }
  soft_examples <- function(eps_of) lapply(soft, function(s) {
    operator_example(x, c(list(eps = eps_of(s$scale)), s),
                     label = paste(s$reg, s$decreasing, s$scale))
  })
  set.seed(41)
  y <- rnorm(8)
  tol <- 1e-13
  target <- c(2, 9, 4, 1)
  perturbed_examples <- list()
  for (solver in c("rank", "argmax", "sort")) for (noise in c("normal", "gumbel")) {
    perturbed_examples[[length(perturbed_examples) + 1L]] <- operator_example(
      c(0.3, -0.2, 1.1, 0.9, 0.4), list(solver = solver, eps = 0.5, n_samples = 50,
                                         noise = noise), seed = 42,
      label = paste(solver, noise))
  }
  list(
    soft_rank = soft_examples(function(scale) if (scale == "none") 0.3 else 3),
    soft_sort = soft_examples(function(scale) if (scale == "none") 2 else 0.05),
    sinkhorn_rank = list(
      operator_example(y, list(eps = 0.05, n_targets = 5, target_weights = c(1, 2, 3, 2, 1),
                               tol = tol), inputs = "target_weights"),
      operator_example(y, list(eps = 0.05, decreasing = TRUE, tol = tol), label = "decreasing")),
    sinkhorn_cdf = list(operator_example(y, list(eps = 0.05, weights = 1:8, tol = tol))),
    sinkhorn_sort = list(operator_example(y, list(eps = 0.03, decreasing = TRUE, tol = tol))),
    sinkhorn_sort_by = list(
      operator_example(cbind(y, y^2), list(by = rev(y), eps = 0.05, n_targets = 5,
                                           target_weights = c(1, 2, 3, 2, 1), tol = tol),
                       inputs = c("by", "target_weights"), per_row = "by"),
      operator_example(y, list(by = y[c(2:8, 1)], eps = 0.1, decreasing = TRUE, tol = tol),
                       inputs = "by", label = "vector, decreasing", per_row = "by")),
    sinkhorn_quantize = list(
      operator_example(y, list(n_targets = 3, eps = 0.05, target_weights = c(1, 2, 1),
                               tol = tol), inputs = "target_weights"),
      operator_example(cbind(y, rev(y)^3), list(eps = 0.1, tol = tol), label = "matrix")),
    sinkhorn_plan = list(
      operator_example(y, list(eps = 0.05, n_targets = 4, target_weights = c(1, 3, 2, 2),
                               tol = tol), inputs = "target_weights"),
      operator_example(y[1:5], list(eps = 0.1, decreasing = TRUE, tol = tol),
                       label = "decreasing")),
    sinkhorn_quantile = list(operator_example(y, list(probs = c(0, 0.3, 1), width = 0.2,
                                                      eps = 0.05, tol = tol))),
    soft_topk = list(operator_example(y, list(k = 3, eps = 0.03, tol = tol))),
    sinkhorn_normalize = list(operator_example(
      y, list(target = target, target_weights = 1:4 + 0, eps = 0.05, scale = "none",
              tol = tol), inputs = c("target", "target_weights"))),
    birkhoff_plan = list(
      operator_example(y, list(eps = 0.01, n_targets = 5, target_weights = c(1, 2, 3, 2, 1),
                               weights = 1:8)),
      operator_example(cbind(y, rev(y)^3), list(eps = 0.05, decreasing = TRUE, power = 1.5),
                       label = "matrix, decreasing")),
    birkhoff_rank = list(
      operator_example(y, list(eps = 0.01)),
      operator_example(y, list(eps = 2, scale = "none", decreasing = TRUE), label = "none")),
    birkhoff_sort = list(operator_example(cbind(y, y^2), list(eps = 0.01, n_targets = 6))),
    network_sort = network_examples(y),
    network_rank = network_examples(y),
    network_plan = network_examples(y[1:6]),
    perturbed = perturbed_examples)
}

# Every network and relaxation, increasing and decreasing, on a vector and
# a matrix (odd length: the bitonic network pads).
network_examples <- function(y) {
  out <- list()
  for (network in c("bitonic", "odd_even")) for (relaxation in c("logistic", "cauchy")) {
    decreasing <- relaxation == "cauchy"
    out[[length(out) + 1L]] <- operator_example(
      if (network == "bitonic") y[-1] else cbind(y, y^3),
      list(eps = 2, network = network, relaxation = relaxation, decreasing = decreasing,
           scale = if (network == "odd_even") "sd" else "spacing"),
      label = paste(network, relaxation, decreasing))
  }
  out
}
