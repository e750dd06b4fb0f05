# Extreme but finite inputs (values near 1e308 or 1e-300, denormal eps,
# n_samples = .Machine$integer.max) give finite results or a clear error,
# never a silent NaN; and the errors of the perturbed optimizers, QMF and the
# quantile variants say what was expected.

ext_x <- c(0.3, 1.2, 1.25, -0.7, 0.1)

test_that("a perturbed eps too small for the derivatives is an error naming `eps`, at every entry point", {
  calls <- list(
    perturbed = function(eps) perturbed(ext_x, "rank", eps = eps, n_samples = 4),
    perturbed_fn = function(eps) perturbed_fn(ext_x, "rank", eps = eps, n_samples = 4),
    perturbed_vjp = function(eps) perturbed_vjp(ext_x, rep(1, 5), "rank", eps = eps, n_samples = 4),
    perturbed_solver = function(eps) perturbed_solver("rank", eps = eps, n_samples = 4)(ext_x),
    fy_loss = function(eps) fy_loss(ext_x, rank(ext_x), "rank", eps = eps, n_samples = 4)
  )
  for (name in names(calls)) {
    for (eps in c(5e-324, 1e-300, 1e-160)) {
      expect_error(calls[[name]](eps), "`eps` must be at least 1.49e-154", label = name)
    }
  }
  # the smallest eps allowed gives finite derivatives (large: they scale as 1 / eps)
  set.seed(1)
  g <- perturbed_vjp(ext_x, c(1, -1, 2, 0, 1), "rank", eps = sqrt(.Machine$double.xmin),
                     n_samples = 10)
  expect_true(all(is.finite(g)))
  set.seed(1)
  expect_true(all(is.finite(perturbed_fn(ext_x, "argmax", eps = 2e-154, n_samples = 10)$jacobian())))
})

test_that("perturbed_vjp() and $jvp() with directions near 1e308 are finite, or warn", {
  v <- c(1, -2, 3, 4, -5)
  for (solver in c("rank", "argmax", "sort")) {
    set.seed(2)
    op <- perturbed_fn(ext_x, solver, eps = 0.5, n_samples = 20)
    # <v, y_m> overflows at this scale; the product does not
    expect_identical(op$vjp(v * 2^1020), op$vjp(v) * 2^1020, label = solver)
    expect_identical(op$jvp(v * 2^1020), op$jvp(v) * 2^1020, label = solver)
    set.seed(2)
    expect_identical(perturbed_vjp(ext_x, v * 2^1020, solver, eps = 0.5, n_samples = 20),
                     op$vjp(v) * 2^1020, label = solver)
  }
  set.seed(3)
  g <- perturbed_vjp(ext_x, rep(1e308, 5), "rank")
  expect_true(all(is.finite(g)))
  # a gradient beyond the double range: a warning naming `v`, not a silent NaN
  set.seed(2)
  op <- perturbed_fn(ext_x, "rank", noise = "gumbel")
  expect_warning(g <- op$vjp(rep(1e308, 5)), "Rescale `v`", class = "diffrank_overflow")
  expect_false(anyNA(g))
  expect_equal(g[is.finite(g)], op$vjp(rep(1, 5))[is.finite(g)] * 1e308)
})

test_that("the perturbed maximum and the Fenchel-Young loss of scores near 1e308 are finite", {
  p <- c(1, -1, 0.5)
  set.seed(3)
  small <- fy_loss(p, c(1, 2, 3), "rank", n_samples = 100)
  set.seed(3)
  # both the loss and the perturbed maximum are homogeneous in (pred, eps)
  large <- fy_loss(p * 2^1020, c(1, 2, 3), "rank", eps = 2^1020, n_samples = 100)
  expect_identical(large$value, small$value * 2^1020)
  expect_identical(large$gradient, small$gradient)
  set.seed(4)
  a <- perturbed_fn(p, "rank", n_samples = 100)
  set.seed(4)
  b <- perturbed_fn(p * 2^1020, "rank", eps = 2^1020, n_samples = 100)
  expect_identical(b$maximum, a$maximum * 2^1020)
  expect_equal(b$vjp(1:3) * 2^1020, a$vjp(1:3), tolerance = 1e-14)
  # beyond the double range: a warning, and the gradient is still exact
  set.seed(1)
  expect_warning(loss <- fy_loss(c(1e308, -1e308, 5e307), c(1, 2, 3), "rank", n_samples = 10),
                 "Rescale `pred` or `eps`", class = "diffrank_overflow")
  expect_identical(loss$value, Inf)
  expect_identical(loss$gradient, c(2, -1, -1))
})

test_that("solutions near 1e308 (\"sort\", R solvers) give a finite value", {
  p <- c(1, -1, 0.5)
  set.seed(5)
  small <- perturbed(p, "sort", n_samples = 100)
  set.seed(5)
  # the sum of the draws' solutions overflows, their mean does not
  expect_identical(perturbed(p * 2^1020, "sort", eps = 2^1020, n_samples = 100), small * 2^1020)
  identity_solver <- function(t) t
  set.seed(5)
  small <- perturbed(p, identity_solver, n_samples = 100)
  set.seed(5)
  expect_identical(perturbed(p * 2^1020, identity_solver, eps = 2^1020, n_samples = 100),
                   small * 2^1020)
  set.seed(6)
  expect_true(all(is.finite(perturbed(c(1e308, -1e308, 5e307), "sort"))))
  # the near-constant rule judges an R solver's large outputs without overflow
  set.seed(6)
  expect_true(all(is.finite(perturbed(c(1e308, -1e308, 5e307), identity_solver))))
  big_argmax <- function(t) 1e308 * as.numeric(t == max(t))
  set.seed(6)
  expect_warning(value <- perturbed(c(0, 0.001, 0.002), big_argmax, eps = 100),
                 class = "diffrank_near_constant")
  expect_true(all(is.finite(value)))
})

test_that("the rescaled paths do not depend on the number of threads", {
  p <- matrix(c(1, -1, 0.5, 2, 0, -3), 3) * 2^1020
  run <- function(threads) {
    set.seed(9)
    list(fy_loss(p, apply(p, 2, rank), "rank", eps = 2^1020, threads = threads),
         perturbed_fn(p, "sort", eps = 2^1020, threads = threads)$value,
         perturbed_fn(p, "rank", eps = 2^1020, threads = threads)$maximum)
  }
  one <- run(1)
  expect_true(all(is.finite(unlist(one))))
  expect_identical(run(2), one)
})

test_that("n_samples = .Machine$integer.max is a clear error, without integer overflow", {
  withr::local_options(diffrank.memory_limit = Inf)
  for (noise in c("normal", "gumbel")) {
    expect_warning(
      expect_error(fy_loss(ext_x, rank(ext_x), "rank", n_samples = .Machine$integer.max,
                           noise = noise),
                   "`n_samples` = 2,147,483,647 draws of 5 x 1 values are too many"),
      NA)
    expect_warning(
      expect_error(perturbed(ext_x, function(t) rank(t), n_samples = .Machine$integer.max,
                             noise = noise),
                   "`n_samples` = 2,147,483,647 draws"),
      NA)
  }
})

test_that("a solver of the wrong signature is an error naming `solver`", {
  expect_error(perturbed(ext_x, function(a, b) a),
               "`solver` must be a function of one numeric vector.*`b` has no default")
  expect_error(perturbed_fn(ext_x, function() 1),
               "`solver` must be a function of one numeric vector.*function\\(\\) cannot be called as solver\\(theta\\)")
  expect_error(fy_loss(ext_x, 1:5, function(t) rank(t), k = 2),
               "function\\(t\\) cannot be called as solver\\(theta, `k` = ...\\)")
  expect_error(perturbed_solver(function(t, k) t, j = 1),
               "cannot be called as solver\\(theta, `j` = ...\\)")
  # arguments given in `...`, defaults and `...` are accepted; so are primitives
  expect_length(perturbed(ext_x, function(t, k) as.numeric(rank(-t) <= k), k = 2, n_samples = 4), 5)
  expect_length(perturbed(ext_x, function(t, scale = 1) t * scale, n_samples = 4), 5)
  expect_length(perturbed(ext_x, function(...) rank(..1), n_samples = 4), 5)
  expect_length(perturbed(ext_x, abs, n_samples = 4), 5)
})

test_that("an error inside a solver says which draw failed and keeps the original", {
  calls <- 0L
  failing <- function(t) {
    calls <<- calls + 1L
    if (calls == 3L) stop("boom")
    rank(t)
  }
  err <- tryCatch(perturbed(ext_x, failing, n_samples = 100), error = identity)
  expect_s3_class(err, "diffrank_solver_error")
  expect_identical(conditionMessage(err),
                   "`solver` failed on a perturbed input (draw 3 of 100): boom")
  expect_identical(conditionMessage(err$parent), "boom")
  expect_identical(deparse(err$call[[1L]]), "perturbed")
  calls <- 0L
  expect_error(perturbed_fn(cbind(ext_x, ext_x), failing, n_samples = 2),
               "draw 1 of 2, column 2 of 2\\): boom", class = "diffrank_solver_error")
  # the package's own checks of what a solver returns are not wrapped
  err <- tryCatch(perturbed(ext_x, function(t) "a"), error = identity)
  expect_false(inherits(err, "diffrank_solver_error"))
  expect_match(conditionMessage(err), "`solver` must return a numeric vector")
})

# ---------------------------------------------------------------------------
# quantile variants: qsmooth weights and the robust target's samples

ext_groups <- rep(c("A", "B"), each = 4)

ext_matrix <- function() {
  set.seed(11)
  x <- cbind(matrix(rnorm(80), 20), matrix(rnorm(80, mean = 1, sd = 2), 20))
  x[, 3] <- 4 * x[, 3]  # the sample of the most extreme variance
  x[, 7] <- x[, 7] + 5  # and of the most extreme mean
  x / max(abs(x))
}

test_that("qsmooth weights and normalize_quantiles_groups() hold at any finite scale", {
  x <- ext_matrix()
  w <- qsmooth_weights(x, ext_groups)
  rough <- qsmooth_weights(x, ext_groups, window = 0)
  # scaling by a power of two is exact: the same weights
  expect_identical(qsmooth_weights(x * 2^1000, ext_groups), w)
  expect_identical(qsmooth_weights(x * 2^1000, ext_groups, window = 0), rough)
  expect_identical(normalize_quantiles_groups(x * 2^1000, ext_groups),
                   normalize_quantiles_groups(x, ext_groups) * 2^1000)
  big <- qsmooth_weights(x * 1e307, ext_groups, window = 0)
  expect_true(all(is.finite(big)))
  expect_equal(big, rough, tolerance = 1e-12)
  expect_false(anyNA(normalize_quantiles_groups(x * 1e307, ext_groups)))
  expect_equal(qsmooth_weights(x * .Machine$double.xmax, ext_groups, window = 0), rough,
               tolerance = 1e-12)
  # qsmooth's threshold stays in the data's units: tiny data agree everywhere
  expect_identical(qsmooth_weights(x * 1e-300, ext_groups, window = 0), rep(1, 20))
})

test_that("robust_weights() picks the same samples at any finite scale", {
  x <- ext_matrix()
  for (rule in c("variance", "mean", "both")) {
    w <- robust_weights(x, rule, n_remove = 2)
    expect_identical(robust_weights(x * 1e307, rule, n_remove = 2), w, label = rule)
    expect_identical(robust_weights(x * 1e-300, rule, n_remove = 2), w, label = rule)
    expect_identical(robust_weights(x * 2^-1050, rule, n_remove = 2), w, label = rule)
    # the largest values: their unit is 2^1023, not 2^1024 (which overflows)
    expect_identical(robust_weights(x * .Machine$double.xmax, rule, n_remove = 2), w, label = rule)
  }
  expect_identical(unname(robust_weights(x)), c(1, 1, 0, 1, 1, 1, 1, 1))
  expect_identical(normalize_quantiles_robust(x * 2^1000), normalize_quantiles_robust(x) * 2^1000)
  expect_identical(normalize_quantiles_robust(x * 2^-1000), normalize_quantiles_robust(x) * 2^-1000)
})

# ---------------------------------------------------------------------------
# QMF

ext_qmf_data <- function() {
  set.seed(12)
  x <- exp(matrix(rnorm(16 * 2), 16) %*% matrix(rnorm(2 * 14), 2))
  x / max(x)
}

ext_qmf <- function(x, ...) {
  suppressWarnings(qmf(x, rank = 2, n_quantiles = 6, max_epochs = 25, verbose = FALSE, ...))
}

test_that("QMF fits and predicts data of any finite scale, in a power-of-two unit", {
  x <- ext_qmf_data()
  fit <- ext_qmf(x[, 1:11])
  expect_identical(fit$unit, 1)
  for (scale in c(2^1000, 2^-1000)) {
    big <- ext_qmf(x[, 1:11] * scale)
    expect_identical(big$unit, scale)
    expect_identical(big$U, fit$U)
    expect_identical(big$V, fit$V)
    expect_identical(big$fitted, fit$fitted * scale)
    expect_identical(big$q, fit$q * scale)
    expect_identical(big$x, x[, 1:11] * scale)
    expect_identical(big$unexplained, fit$unexplained)
    expect_identical(predict(big, x[, 12:14] * scale), predict(fit, x[, 12:14]))
    expect_identical(predict(big, x[, 12:14] * scale, type = "fitted"),
                     predict(fit, x[, 12:14], type = "fitted") * scale)
    expect_identical(summary(big)$row_error, summary(fit)$row_error * scale)
  }
  # not a power of two: the same fit up to rounding
  big <- ext_qmf(x[, 1:11] * 1e307)
  expect_true(all(is.finite(big$fitted)))
  expect_equal(big$unexplained, fit$unexplained, tolerance = 1e-6)
  expect_true(all(is.finite(predict(big, x[, 12:14] * 1e307))))
})

test_that("QMF is equivariant to a power-of-two scale with a constant row, for both losses", {
  x <- ext_qmf_data()
  x[3, ] <- 0.5
  for (loss in c("squared", "kl")) {
    if (loss == "kl") x[5, ] <- 0
    fit <- ext_qmf(x[, 1:11], loss = loss)
    scaled <- ext_qmf(x[, 1:11] * 4, loss = loss)
    expect_identical(scaled$unit, 1)
    expect_identical(scaled$U, fit$U)
    expect_identical(scaled$V, fit$V)
    expect_identical(scaled$fitted, fit$fitted * 4)
    expect_identical(predict(scaled, x[, 12:14] * 4), predict(fit, x[, 12:14]))
  }
})

test_that("QMF gives clear errors for new data beyond the fit and for a huge lambda", {
  x <- ext_qmf_data()
  fit <- ext_qmf(x[, 1:11])
  expect_error(predict(fit, x[, 12:14] * 1e307),
               "`newdata` has values up to .*far beyond those of the data the fit was made on")
  expect_error(sample_coordinates(fit, x[, 12:14] * 1e307), "`newdata` has values up to")
  for (lambda in c(1e308, .Machine$double.xmax)) {
    expect_error(qmf(x, rank = 2, lambda = lambda, verbose = FALSE),
                 "`lambda` = .* is too large: the penalty .* overflows")
  }
})

test_that("sample_coordinates() of something other than a fit is an error naming `object`", {
  expect_error(sample_coordinates(NULL),
               "`object` must be a fitted factorization \\(a qmf fit made by qmf\\(\\)\\), not NULL")
  expect_error(sample_coordinates(matrix(1:4, 2)), "`object` must be a fitted factorization.*integer matrix")
  # dispatched from outside the namespace too (the method is registered)
  expect_error(eval(quote(diffrank::sample_coordinates(list(1))), globalenv()),
               "`object` must be a fitted factorization.*\"list\"")
})
