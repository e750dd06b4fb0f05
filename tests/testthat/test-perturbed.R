# Perturbed optimizers (Berthet et al. 2020), the Fenchel-Young and soft
# top-k losses, and rank_regression(). Monte-Carlo tolerances are stated as
# multiples of the standard error they bound; every seed is fixed.

theta4 <- c(a = 1, b = 0.5, c = -1, d = 0.2)

test_that("Gumbel argmax converges to softmax(x / eps) at the Monte-Carlo rate", {
  eps <- 0.5
  p <- ref_softmax(theta4 / eps)
  jac <- ref_softmax_jacobian(theta4, eps)
  for (m in c(100, 1000, 10000)) {
    set.seed(1)
    op <- perturbed_fn(theta4, "argmax", eps = eps, n_samples = m, noise = "gumbel")
    # one-hot entries have sd <= 1/2: 4 standard errors
    expect_lte(max(abs(op$value - p)), 4 * 0.5 / sqrt(m))
    # y_i (1 - exp(-Z_j)) / eps has sd <= 1 / eps, as 1 - exp(-Z) has variance 1
    expect_lte(max(abs(op$jacobian() - jac)), 5 / (eps * sqrt(m)))
  }
  # the perturbed maximum: eps * logsumexp(x / eps) + eps * Euler's gamma
  set.seed(2)
  op <- perturbed_fn(theta4, "argmax", eps = eps, n_samples = 1e5, noise = "gumbel")
  exact <- eps * log(sum(exp(theta4 / eps))) + eps * 0.5772156649
  expect_lt(abs(op$maximum - exact), 5 * eps * 1.3 / sqrt(1e5))  # sd(Gumbel) = pi / sqrt(6)
  expect_lt(max(abs(op$value - p)), 4 * 0.5 / sqrt(1e5))
})

test_that("the estimation error shrinks like 1 / sqrt(n_samples)", {
  eps <- 0.5
  p <- ref_softmax(theta4 / eps)
  rmse <- vapply(c(100, 10000), function(m) {
    set.seed(3)
    errors <- replicate(20, sum((perturbed_fn(theta4, "argmax", eps = eps, n_samples = m,
                                              noise = "gumbel")$value - p)^2))
    sqrt(mean(errors))
  }, 0)
  # 100 times more draws: 10 times smaller, within a factor 2
  expect_gt(rmse[1] / rmse[2], 5)
  expect_lt(rmse[1] / rmse[2], 20)
})

test_that("normal argmax agrees with numerical integration in 2 and 3 dimensions", {
  eps <- 0.7
  m <- 20000
  theta2 <- c(0.3, -0.2)
  set.seed(4)
  op <- perturbed_fn(theta2, "argmax", eps = eps, n_samples = m)
  p2 <- stats::pnorm((theta2[1] - theta2[2]) / (eps * sqrt(2)))
  expect_equal(ref_normal_argmax(theta2, eps), c(p2, 1 - p2), tolerance = 1e-8)
  expect_lte(max(abs(op$value - c(p2, 1 - p2))), 4 * 0.5 / sqrt(m))

  theta3 <- c(0.4, 0, -0.3)
  reference <- ref_normal_argmax(theta3, eps)
  expect_equal(sum(reference), 1, tolerance = 1e-8)
  for (antithetic in c(TRUE, FALSE)) {
    set.seed(5)
    op <- perturbed_fn(theta3, "argmax", eps = eps, n_samples = m, antithetic = antithetic)
    expect_lte(max(abs(op$value - reference)), 4 * 0.5 / sqrt(m))
    # y_i Z_j / eps has sd <= 1 / eps
    jac <- ref_finite_jacobian(function(t) ref_normal_argmax(t, eps), theta3)
    expect_lte(max(abs(op$jacobian() - jac)), 5 / (eps * sqrt(m)))
  }
})

test_that("topk and rank estimates are unbiased, with few draws and odd numbers of draws", {
  theta <- c(0.2, -0.1, 0.5, 0.4, 0)
  eps <- 0.3
  for (solver in c("rank", "topk")) {
    for (antithetic in c(TRUE, FALSE)) {
      args <- list(eps = eps, antithetic = antithetic)
      if (solver == "topk") args$k <- 2
      set.seed(6)
      small <- do.call(ref_replicate_perturbed,
                       c(list(theta, solver, n_rep = 400, n_samples = 3), args))
      set.seed(7)
      large <- do.call(perturbed_fn, c(list(theta, solver, n_samples = 40000), args))
      se_small <- apply(small$values, 1, stats::sd) / sqrt(400)
      se_large <- apply(small$values, 1, stats::sd) * sqrt(3 / 40000)
      expect_true(all(abs(rowMeans(small$values) - large$value) <=
                        5 * sqrt(se_small^2 + se_large^2)),
                  label = paste(solver, "antithetic =", antithetic))
      # the Jacobian too: entries of y Z / eps, y <= 5, have sd <= 5 / eps
      bound <- 5 * (5 / eps) * sqrt(1 / (3 * 400) + 1 / 40000)
      expect_lte(max(abs(small$jacobian - large$jacobian())), bound)
    }
  }
})

test_that("the VJP and JVP are the products with the returned Jacobian, same draws", {
  set.seed(8)
  x <- c(g1 = 0.3, g2 = 1.2, g3 = 1.25, g4 = -0.7, g5 = 0)
  v <- rnorm(5)
  u <- rnorm(5)
  for (solver in c("argmax", "rank", "sort")) {
    for (noise in c("normal", "gumbel")) {
      op <- perturbed_fn(x, solver, eps = 0.4, n_samples = 37, noise = noise)
      jac <- op$jacobian()
      expect_equal(op$vjp(v), drop(crossprod(jac, v)), tolerance = 1e-12)
      expect_equal(op$jvp(u), drop(jac %*% u), tolerance = 1e-12)
      set.seed(99)
      in_two <- perturbed_fn(x, solver, eps = 0.4, n_samples = 37, noise = noise)$vjp(v)
      set.seed(99)
      expect_identical(perturbed_vjp(x, v, solver, eps = 0.4, n_samples = 37, noise = noise),
                       in_two)
    }
  }
  # columns of a matrix are independent problems
  xm <- matrix(rnorm(12), 4, 3, dimnames = list(paste0("r", 1:4), paste0("c", 1:3)))
  vm <- matrix(rnorm(12), 4, 3)
  op <- perturbed_fn(xm, "rank", eps = 0.5, n_samples = 20)
  jac <- op$jacobian()
  expect_identical(dim(jac), c(4L, 4L, 3L))
  expect_identical(dimnames(jac), list(rownames(xm), rownames(xm), colnames(xm)))
  g <- op$vjp(vm)
  expect_identical(dimnames(g), dimnames(xm))
  for (j in 1:3) expect_equal(g[, j], drop(crossprod(jac[, , j], vm[, j])), tolerance = 1e-12)
})

test_that("the Fenchel-Young loss is non-negative, zero far along the target, with gradient y_eps - y", {
  set.seed(9)
  for (trial in 1:20) {
    theta <- rnorm(6, sd = 2)
    y <- sample(6)
    loss <- fy_loss(theta, y, "rank", eps = 0.5, n_samples = 10)
    expect_gte(loss$value, 0)
    onehot <- as.numeric(seq_len(6) == sample(6, 1))
    expect_gte(fy_loss(theta, onehot, "argmax", noise = "gumbel", n_samples = 5)$value, 0)
    # a point of the convex hull: average ranks of a tie
    expect_gte(fy_loss(theta, c(1.5, 1.5, 3:6), "rank", n_samples = 5)$value, 0)
  }
  y <- c(2, 4, 1, 3)
  expect_identical(fy_loss(100 * y, y, "rank", eps = 1)$value, 0)
  expect_identical(fy_loss(100 * y, y, "rank", eps = 1)$gradient, c(0, 0, 0, 0))
  expect_identical(fy_loss(c(20, 0, 0), c(1, 0, 0), "argmax", noise = "gumbel")$value, 0)
  # the gradient is exactly the perturbed maximizer minus the target
  theta <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
  for (solver in c("rank", "argmax")) {
    target <- if (solver == "rank") y else c(0, 1, 0, 0)
    set.seed(10)
    loss <- fy_loss(theta, target, solver, eps = 0.3, n_samples = 50)
    set.seed(10)
    op <- perturbed_fn(theta, solver, eps = 0.3, n_samples = 50)
    expect_identical(loss$gradient, op$value - target)
    expect_identical(names(loss$gradient), names(theta))
    # normal noise: mean over draws of max - <y, theta + eps Z>
    set.seed(10)
    z <- matrix(rnorm(4 * 25), 4)
    z <- z[, rep(1:25, each = 2)] * rep(c(1, -1), each = 4)
    points <- theta + 0.3 * z
    direct <- mean(colSums(points * apply(points, 2, function(p) {
      if (solver == "rank") rank(p) else as.numeric(seq_along(p) == which.max(p))
    })) - colSums(points * target))
    expect_equal(loss$value, direct, tolerance = 1e-12)
  }
  # Gumbel argmax: the multinomial logistic loss, eps * logsumexp(theta / eps) - theta_y
  set.seed(11)
  loss <- fy_loss(unname(theta), c(0, 0, 1, 0), "argmax", eps = 0.5, noise = "gumbel",
                  n_samples = 1e5)
  logistic <- 0.5 * log(sum(exp(theta / 0.5))) - theta[3]
  expect_lt(abs(loss$value - logistic), 5 * 0.5 * 1.3 / sqrt(1e5))
})

test_that("fy_loss() averages the columns of a matrix, with the draws of column-by-column calls", {
  theta <- matrix(c(0.1, 0.5, -0.2, 1, 0, 0.3), 3, 2)
  target <- cbind(c(1, 3, 2), c(3, 1, 2))
  set.seed(12)
  both <- fy_loss(theta, target, "rank", n_samples = 7)
  set.seed(12)
  one <- fy_loss(theta[, 1], target[, 1], "rank", n_samples = 7)
  two <- fy_loss(theta[, 2], target[, 2], "rank", n_samples = 7)
  expect_equal(both$value, (one$value + two$value) / 2, tolerance = 1e-15)
  expect_equal(both$gradient, cbind(one$gradient, two$gradient) / 2, tolerance = 1e-15)
})

test_that("a user R solver and the built-in solver give identical results for the same seed", {
  x <- matrix(rnorm(15), 5, 3)
  v <- matrix(rnorm(15), 5, 3)
  user <- list(
    rank = rank,
    argmax = function(t) as.numeric(seq_along(t) == which.max(t)),
    topk = function(t) as.numeric(rank(-t) <= 2),
    sort = sort
  )
  for (solver in names(user)) {
    k <- if (solver == "topk") list(k = 2) else list()
    set.seed(13)
    builtin <- do.call(perturbed_fn, c(list(x, solver, eps = 0.5, n_samples = 25), k))
    set.seed(13)
    r_solver <- perturbed_fn(x, user[[solver]], eps = 0.5, n_samples = 25)
    expect_identical(builtin$value, r_solver$value, label = solver)
    expect_identical(builtin$vjp(v), r_solver$vjp(v), label = solver)
    expect_identical(builtin$jacobian(), r_solver$jacobian(), label = solver)
    if (solver != "sort") expect_identical(builtin$maximum, r_solver$maximum, label = solver)
  }
  # long vectors (several merge passes of the sort) with exact ties, which a
  # tiny eps keeps: ties go in order of appearance
  x_long <- round(rnorm(997), 1)
  first <- function(t) rank(t, ties.method = "first")
  pairs <- list(list("rank", first), list("sort", sort),
                list("topk", function(t) as.numeric(first(-t) <= 10)))
  for (pair in pairs) {
    k <- if (pair[[1]] == "topk") list(k = 10) else list()
    set.seed(20)
    builtin <- do.call(perturbed_fn, c(list(x_long, pair[[1]], eps = 1e-150, n_samples = 3), k))
    set.seed(20)
    r_solver <- perturbed_fn(x_long, pair[[2]], eps = 1e-150, n_samples = 3)
    expect_identical(builtin$value, r_solver$value, label = pair[[1]])
  }
  # and the Fenchel-Young loss
  set.seed(14)
  a <- fy_loss(x[, 1], 1:5, "rank", noise = "gumbel")
  set.seed(14)
  b <- fy_loss(x[, 1], 1:5, rank, noise = "gumbel")
  expect_identical(a, b)
  # extra arguments reach the R solver
  top <- function(t, k) as.numeric(rank(-t) <= k)
  set.seed(15)
  a <- perturbed_fn(x[, 1], top, k = 3, n_samples = 9)$value
  set.seed(15)
  expect_identical(a, perturbed_fn(x[, 1], "topk", k = 3, n_samples = 9)$value)
})

test_that("results are identical for 1 and 2 threads, and set.seed reproduces them", {
  x <- matrix(rnorm(200), 50, 4)
  v <- matrix(rnorm(200), 50, 4)
  for (solver in c("rank", "argmax", "sort")) {
    set.seed(16)
    one <- perturbed_fn(x, solver, n_samples = 301, threads = 1)
    set.seed(16)
    two <- perturbed_fn(x, solver, n_samples = 301, threads = 2)
    expect_identical(one$value, two$value)
    expect_identical(one$maximum, two$maximum)
    expect_identical(one$vjp(v), two$vjp(v))
    expect_identical(one$jacobian(), two$jacobian())
  }
  set.seed(17)
  a <- fy_loss(x, apply(x, 2, rank), "rank", threads = 1)
  set.seed(17)
  expect_identical(a, fy_loss(x, apply(x, 2, rank), "rank", threads = 2))
  # a single long vector: the draws run on both threads
  set.seed(18)
  a <- perturbed_fn(rnorm(100), "rank", n_samples = 1000, threads = 1)$value
  set.seed(18)
  expect_identical(a, perturbed_fn(rnorm(100), "rank", n_samples = 1000, threads = 2)$value)
  # the function made by perturbed_solver() draws afresh at every call
  f <- perturbed_solver("rank", eps = 0.5, n_samples = 10)
  set.seed(19)
  first <- f(x[, 1])$value
  second <- f(x[, 1])$value
  expect_false(identical(first, second))
  set.seed(19)
  expect_identical(f(x[, 1])$value, first)
})

test_that("perturbed operators keep names and follow the operator contract", {
  x <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
  op <- perturbed_fn(x, "rank", eps = 0.1, n_samples = 10)
  expect_s3_class(op, "diffrank_operator")
  expect_named(op$value, names(x))
  expect_named(op$vjp(1:4), names(x))
  expect_identical(dimnames(op$jacobian()), list(names(x), names(x)))
  expect_null(names(perturbed_fn(x, "sort", n_samples = 5)$value))
  expect_true(is.na(perturbed_fn(x, "sort", n_samples = 5)$maximum))
  # ranks sum to n (n + 1) / 2, top-k masks to k, argmax to 1
  expect_equal(sum(op$value), 10)
  expect_equal(sum(perturbed_fn(x, "topk", k = 3)$value), 3)
  expect_equal(sum(perturbed_fn(x, "argmax", noise = "gumbel")$value), 1)
  # a solver returning another length: the value has that length
  pairs_above <- function(t) c(sum(t > 0), sum(t > 1))
  op2 <- perturbed_fn(x, pairs_above, n_samples = 10)
  expect_length(op2$value, 2)
  expect_identical(dim(op2$jacobian()), c(2L, 4L))
  expect_true(is.na(op2$maximum))
  expect_output(print(op), "perturbed rank of a vector of length 4")
  expect_output(print(op), "n_samples = 10")
  f <- perturbed_solver("topk", k = 2, eps = 0.2)
  expect_s3_class(f, "diffrank_perturbed")
  expect_output(print(f), "perturbed topk")
  expect_error(print(f, digits = 3), "Unknown argument `digits`")
  expect_error(op$vjp(1:3), "`v` must have the shape")
  m <- matrix(1:6, 3, dimnames = list(NULL, c("s1", "s2")))
  expect_identical(colnames(perturbed_fn(m, "argmax")$value), c("s1", "s2"))
  expect_named(perturbed_fn(m, "argmax")$maximum, c("s1", "s2"))
})

test_that("bad arguments and bad solvers give clear errors", {
  x <- c(0.3, 1.2, 1.25, -0.7)
  expect_error(perturbed_fn(x, "rank", eps = 0), "`eps` must be a single finite number > 0")
  expect_error(perturbed_fn(x, "rank", eps = -1), "`eps` must be")
  expect_error(perturbed_fn(x, "rank", eps = NA), "`eps` must be")
  expect_error(perturbed_solver("rank", eps = 0), "`eps` must be")
  expect_error(perturbed(x, "rank", eps = 0), "`eps` must be")
  expect_error(perturbed(x), "`solver` is missing")
  expect_error(perturbed(), "`x` is missing")
  expect_error(perturbed("a", "rank"), "`x` must be a numeric vector")
  expect_error(perturbed_fn(x, "rank", n_samples = 0), "`n_samples` must be a whole number from 1 to")
  expect_error(perturbed_fn(x, "rank", n_samples = 2.5), "`n_samples` must be a whole number")
  expect_error(perturbed_fn(c(1, NA, 3), "rank"), "`x` must not contain missing values")
  expect_error(perturbed_fn(c(1, Inf, 3), "rank"), "`x` must not contain infinite values")
  expect_error(perturbed_fn(numeric(), "rank"), "`x` must have at least one value")
  expect_error(perturbed_fn(x, "median"), "`solver` must be one of \"argmax\", \"topk\", \"rank\", \"sort\" or an R function")
  expect_error(perturbed_fn(x, "rank", noise = "cauchy"), "`noise` must be one of")
  expect_error(perturbed_fn(x, "topk"), "`k` is missing")
  expect_error(perturbed_fn(x, "topk", k = 5), "`k` must be at most the number of values \\(4\\)")
  expect_error(perturbed_fn(x, "topk", k = 0), "`k` must be a whole number")
  expect_error(perturbed_fn(x, "rank", k = 2), "Unknown argument `k` for the \"rank\" solver")
  expect_error(perturbed_fn(x, "rank", 1, 100, "normal", TRUE, 3),
               "Unknown argument an unnamed value for the \"rank\" solver")
  expect_error(perturbed_fn(x, "rank", threads = 0), "`threads` must be a whole number")
  expect_error(perturbed_fn(x, "rank", eps = 1e308), "too large")
  # solvers that return the wrong shape or non-finite values
  varying <- function(t) if (t[1] > 0.3) 1:3 else 1:2
  expect_error({ set.seed(1); perturbed_fn(x, varying, n_samples = 50) },
               "`solver` must return a numeric vector of the same length for every draw")
  expect_error(perturbed_fn(x, function(t) "a"), "`solver` must return a numeric vector, not \"a\"")
  expect_error(perturbed_fn(x, function(t) NULL), "`solver` must return a numeric vector, not NULL")
  expect_error(perturbed_fn(x, function(t) c(t[-1], NA)), "`solver` must return finite values; it returned NA, NaN or Inf for draw 1")
  expect_error(perturbed_fn(cbind(x, x), function(t) if (t[1] > 5) Inf else t, eps = 0.01),
               NA)
  expect_error(perturbed_fn(cbind(x, x + c(10, 0, 0, 0)), function(t) if (t[1] > 5) Inf else t,
                            eps = 0.01, n_samples = 4),
               "for draw 1 of column 2")
  # losses
  expect_error(fy_loss(x, 1:4, "sort"), "`solver` has no Fenchel-Young loss")
  expect_error(fy_loss(x, 1:3, "rank"), "`response` must have the shape of `pred`")
  expect_error(fy_loss(x, c(1, 2, NA, 4), "rank"), "`response` must contain only finite values")
  expect_error(fy_loss(c(1, NA), 1:2, "rank"), "`pred` must not contain missing values")
  expect_error(fy_loss(x, 1:4, function(t) c(1, 2)), "`solver` has no Fenchel-Young loss")
})

test_that("soft_topk_loss() is J_k of the Sinkhorn soft rank of the true class, with its gradient", {
  set.seed(20)
  scores <- matrix(rnorm(20), 5, 4, dimnames = list(letters[1:5], paste0("obs", 1:4)))
  labels <- c(2, 5, 1, 3)
  for (k in 1:3) {
    loss <- soft_topk_loss(scores, labels, k = k, eps = 0.05, tol = 1e-10)
    ranks <- sinkhorn_rank(scores, eps = 0.05, tol = 1e-10)
    expected <- mean(pmax(0, 5 - ranks[cbind(labels, 1:4)] - k + 1))
    expect_equal(loss$value, expected, tolerance = 1e-12)
    expect_identical(dimnames(loss$gradient), dimnames(scores))
    numeric_gradient <- ref_finite_jacobian(function(s) {
      soft_topk_loss(matrix(s, 5), labels, k = k, eps = 0.05, tol = 1e-12)$value
    }, as.vector(scores), h = 1e-5)
    expect_equal(as.vector(loss$gradient), as.vector(numeric_gradient), tolerance = 1e-5)
  }
  # scale and power reach the soft rank
  for (scale in c("squash", "none")) {
    for (power in c(2, 1.5)) {
      loss <- soft_topk_loss(scores, labels, k = 2, eps = 0.05, scale = scale, power = power,
                             tol = 1e-10)
      ranks <- sinkhorn_rank(scores, eps = 0.05, scale = scale, power = power, tol = 1e-10)
      expect_equal(loss$value, mean(pmax(0, 5 - ranks[cbind(labels, 1:4)] - 1)),
                   tolerance = 1e-12, label = sprintf("scale %s, power %g", scale, power))
    }
  }
  expect_false(isTRUE(all.equal(
    soft_topk_loss(scores, labels, k = 2, eps = 0.05, power = 1.5)$value,
    soft_topk_loss(scores, labels, k = 2, eps = 0.05)$value)))
  # class names, factors and a single observation
  expect_equal(soft_topk_loss(scores, c("b", "e", "a", "c"), eps = 0.05, tol = 1e-10),
               soft_topk_loss(scores, labels, eps = 0.05, tol = 1e-10))
  expect_equal(soft_topk_loss(unname(scores), factor(letters[labels], letters[1:5]),
                              eps = 0.05, tol = 1e-10)$value,
               soft_topk_loss(scores, labels, eps = 0.05, tol = 1e-10)$value)
  one <- soft_topk_loss(scores[, 1], 2, eps = 0.05, tol = 1e-10)
  expect_named(one$gradient, letters[1:5])
  # zero when the true class is clearly among the top k
  expect_identical(soft_topk_loss(c(5, 0, 1, -1), 1, k = 2, eps = 1e-3)$value, 0)
  expect_gt(soft_topk_loss(c(5, 0, 1, -1), 4, k = 2, eps = 1e-3)$value, 1.9)
  expect_error(soft_topk_loss(scores, c(1, 2, 3)), "`response` must have one class per observation")
  expect_error(soft_topk_loss(scores, c(1, 2, 3, 6)), "`response` must be whole numbers from 1 to 5")
  expect_error(soft_topk_loss(scores, c("a", "b", "z", "a")), "for example \"z\"")
  expect_error(soft_topk_loss(unname(scores), c("a", "b", "c", "a")), "must have row names")
  expect_error(soft_topk_loss(scores, labels, k = 5), "`k` must be below the number of classes")
  expect_error(soft_topk_loss(scores[1, , drop = FALSE], 1), "at least 2 classes")
})

test_that("rank_regression() recovers a planted affine ranking model better than least squares", {
  set.seed(21)
  d <- 5
  p <- 10
  w <- matrix(rnorm(d * p), d, p)
  b <- rnorm(d)
  train <- ref_label_ranking(500, w, b, sd = 1, seed = 22)
  test <- ref_label_ranking(1000, w, b, sd = 1, seed = 23)
  set.seed(24)
  fy <- rank_regression(train$x, train$rankings, loss = "fy", eps = 1, n_samples = 100)
  squared <- rank_regression(train$x, train$rankings, loss = "squared")
  soft <- rank_regression(train$x, train$rankings, loss = "soft_rank")
  expect_identical(fy$optim$convergence, 0L)
  expect_identical(soft$optim$convergence, 0L)
  on_test <- function(fit, rankings) mean(summary(fit, test$x, rankings)$spearman)
  expect_gt(on_test(fy, test$rankings), on_test(squared, test$rankings))
  expect_gt(on_test(fy, test$truth), on_test(squared, test$truth) + 0.005)
  expect_gt(on_test(fy, test$truth), 0.95)
  # the coefficients themselves, up to a positive scale and a shift common to
  # all labels (which changes no ranking)
  centred <- function(m) sweep(m, 2, colMeans(m))
  expect_gt(cor(as.vector(centred(coef(fy)[, -1])), as.vector(centred(w))), 0.99)
  # the soft-rank loss, from the least-squares start, improves on it too
  expect_gt(on_test(soft, test$truth), on_test(squared, test$truth) + 0.003)
  # Kendall agreement through kendall_counts(), against a direct count
  s <- summary(fy, test$x[, 1:50], test$rankings[, 1:50])
  predicted <- predict(fy, test$x[, 1:50])
  direct <- vapply(1:50, function(i) stats::cor(predicted[, i], test$rankings[, i],
                                                method = "kendall"), 0)
  expect_equal(s$kendall, direct, tolerance = 1e-12)
})

test_that("the soft-rank loss of rank_regression() has the gradient of its value", {
  set.seed(31)
  xs <- matrix(rnorm(3 * 40), 3)
  target <- apply(matrix(rnorm(4 * 40), 4), 2, rank)
  objective <- diffrank:::soft_rank_objective(xs, target, eps = 0.7, lambda = 0.01, threads = 1)
  par <- rnorm(4 * 3 + 4)
  h <- 1e-6
  numeric_gradient <- vapply(seq_along(par), function(j) {
    step <- replace(numeric(length(par)), j, h)
    (objective(par + step)$value - objective(par - step)$value) / (2 * h)
  }, 0)
  expect_equal(objective(par)$gradient, numeric_gradient, tolerance = 1e-6)
  expect_error(rank_regression(xs, target, loss = "soft_rank", eps = 0), "`eps`")
})

test_that("rank_regression() methods: coef, predict, print, summary, and their checks", {
  set.seed(25)
  w <- matrix(rnorm(12), 3, 4)
  data <- ref_label_ranking(120, w, c(0, 0.5, -0.5), sd = 0.3, seed = 26)
  x <- data$x
  dimnames(x) <- list(paste0("f", 1:4), paste0("s", 1:120))
  r <- data$rankings
  dimnames(r) <- list(c("red", "green", "blue"), colnames(x))
  set.seed(27)
  fit <- rank_regression(x, r, n_samples = 20, threads = 1)
  set.seed(27)
  expect_identical(fit$coefficients,
                   rank_regression(x, r, n_samples = 20, threads = 2)$coefficients)
  cf <- coef(fit)
  expect_identical(dimnames(cf), list(c("red", "green", "blue"), c("(Intercept)", paste0("f", 1:4))))
  scores <- predict(fit, x[, 1:5], type = "score")
  expect_equal(scores, cf %*% rbind(1, x[, 1:5]), tolerance = 1e-10, ignore_attr = TRUE)
  expect_identical(dimnames(scores), list(rownames(r), colnames(x)[1:5]))
  ranking <- predict(fit, x[, 1:5])
  expect_identical(ranking, apply(-scores, 2, rank))
  expect_equal(predict(fit, type = "score"), predict(fit, x, type = "score"), tolerance = 1e-10)
  # features matched by name
  expect_equal(predict(fit, x[4:1, 1:5]), ranking)
  expect_error(predict(fit, x[1:3, ]), "lacks 1 of the model's features")
  expect_output(print(fit), "<rank_regression> Fenchel-Young loss of perturbed ranks")
  expect_output(print(fit), "3 labels, 4 features, 120 samples")
  s <- summary(fit)
  expect_s3_class(s, "summary.rank_regression")
  expect_gt(mean(s$spearman), 0.8)
  expect_output(print(s), "Spearman")
  expect_output(print(summary(fit, x[, 1:10], r[, 1:10])), "10 new samples")
  expect_output(print(rank_regression(x, r, loss = "squared")), "squared loss on ranks")
  expect_output(print(rank_regression(x, r, loss = "soft_rank")),
                "squared loss of soft ranks \\(eps = 1\\)")
  # every method refuses arguments it does not use
  expect_error(predict(fit, x, kind = "score"), "Unknown argument `kind`")
  expect_error(coef(fit, exact = TRUE), "Unknown argument `exact`")
  expect_error(print(fit, digits = 2), "Unknown argument `digits`")
  expect_error(summary(fit, x, r, 3), "Unknown argument an unnamed value")
  expect_error(print(s, digits = 2), "Unknown argument `digits`")
  expect_error(summary(fit, newdata = x), "Give both `newdata` and `y`")
  expect_error(predict(fit, type = "link"), "`type` must be one of \"ranking\", \"score\"")
  # bad rankings
  expect_error(rank_regression(x, r[, -1]), "`y` must have one column per sample \\(120\\)")
  bad <- r
  bad[1, 1] <- 5
  expect_error(rank_regression(x, bad), "Column 1 of `y` is not a ranking of 1:3")
  expect_error(rank_regression(x, as.vector(r)), "`y` must be a numeric matrix")
  expect_error(rank_regression(x, r, lambda = -1), "`lambda` must be")
  expect_error(rank_regression(x, r, eps = 0), "`eps` must be")
  expect_error(rank_regression(x, r, loss = "hinge"), "`loss` must be one of")
  x_na <- x
  x_na[1, 1] <- NA
  expect_error(rank_regression(x_na, r), "`x` must contain only finite values")
  # tied rankings are accepted
  tied <- r
  tied[, 1] <- c(1.5, 1.5, 3)
  expect_s3_class(rank_regression(x, tied, loss = "squared"), "rank_regression")
})

test_that("perturbed(x, solver) is the value, and perturbed(solver) is deprecated", {
  x <- c(a = 0.3, b = 1.2, c = 1.25, d = -0.7)
  set.seed(3)
  value <- perturbed(x, "argmax", eps = 0.5)
  set.seed(3)
  expect_identical(value, perturbed_fn(x, "argmax", eps = 0.5)$value)
  expect_named(value, names(x))
  m <- cbind(s1 = x, s2 = rev(x))
  set.seed(4)
  expect_identical(perturbed(m, "topk", k = 2, eps = 0.2),
                   {set.seed(4); perturbed_fn(m, "topk", k = 2, eps = 0.2)$value})
  # the former factory call still works, with a warning naming the new function
  expect_warning(f <- perturbed("rank", eps = 0.5, n_samples = 10),
                 "use `perturbed_solver\\(solver, ...\\)`", class = "deprecatedWarning")
  expect_s3_class(f, "diffrank_perturbed")
  set.seed(5)
  a <- f(x)$value
  set.seed(5)
  expect_identical(a, perturbed_solver("rank", eps = 0.5, n_samples = 10)(x)$value)
  # positional arguments keep their former meaning; an R solver too
  expect_warning(g <- perturbed("topk", 0.2, 10, k = 2), "deprecated")
  expect_identical(attr(g, "spec")[c("eps", "n_samples", "k")],
                   list(eps = 0.2, n_samples = 10L, k = 2L))
  top2 <- function(theta) as.numeric(rank(-theta) <= 2)
  expect_warning(h <- perturbed(top2, eps = 0.1), "perturbed_solver")
  expect_identical(attr(h, "spec")$label, "user solver")
  expect_warning(h <- perturbed(solver = "argmax", eps = 0.3), "perturbed_solver")
  expect_identical(attr(h, "spec")[c("solver", "eps")], list(solver = "argmax", eps = 0.3))
})

test_that("a near-constant perturbed value warns, net of its Monte-Carlo noise", {
  set.seed(6)
  x <- rnorm(20)
  m <- matrix(rnorm(60), 20)
  near <- "nearly constant in 1 of 1 column\\(s\\).*eps = 1e\\+06 is large"
  expect_warning(perturbed(x, "rank", eps = 1e6), near)
  expect_warning(perturbed_fn(x, "rank", eps = 1e6), near)
  expect_warning(perturbed_vjp(x, seq_along(x), "rank", eps = 1e6), near)
  # without antithetic pairs the value is all noise: judged net of it
  expect_warning(perturbed(x, "rank", eps = 1e6, antithetic = FALSE), near)
  expect_warning(perturbed(x, "argmax", eps = 1e6), near)
  expect_warning(perturbed(x, "argmax", eps = 1e6, noise = "gumbel"), near)
  expect_warning(perturbed(x, "topk", k = 5, eps = 1e6), near)
  top5 <- function(theta) as.numeric(rank(-theta) <= 5)
  expect_warning(perturbed(x, top5, eps = 1e6), near)
  expect_warning(perturbed(m, "rank", eps = 1e6), "in 3 of 3 column")
  expect_warning(fy_loss(x, rank(x), "rank", eps = 1e6), near)
  # silent at the defaults and at moderate eps, also with few draws
  expect_silent(perturbed(x, "rank"))
  expect_silent(perturbed(x, "argmax"))
  expect_silent(perturbed(x, "topk", k = 5))
  expect_silent(perturbed(x, top5))
  expect_silent(perturbed(m, "rank", eps = 0.5, n_samples = 10))
  expect_silent(perturbed(x, "argmax", eps = 0.5, n_samples = 4, noise = "gumbel"))
  expect_silent(fy_loss(x, rank(x), "rank"))
  # "sort" has no constant limit; tied scores are constant at any eps
  expect_silent(perturbed(x, "sort", eps = 1e6))
  expect_silent(perturbed(rep(1, 5), "rank", eps = 1e6))
})

test_that("rank_regression() takes a SummarizedExperiment and rejects unknown arguments", {
  skip_if_not_installed("SummarizedExperiment")
  set.seed(71)
  x <- matrix(rnorm(4 * 40), 4, 40, dimnames = list(paste0("g", 1:4), NULL))
  rankings <- apply(-(matrix(rnorm(12), 3) %*% x), 2, rank)
  se <- SummarizedExperiment::SummarizedExperiment(list(counts = x))
  expect_equal(coef(rank_regression(se, rankings, loss = "squared")),
               coef(rank_regression(x, rankings, loss = "squared")))
  expect_error(rank_regression(x, rankings, loss = "squared", penalty = 1), "Unknown argument")
})
