# The Mallows model (R/mallows.R, mallows.hpp): exact draws against the
# closed-form expected distance and the exact distribution, probabilities
# against brute force, and the fit's recovery of a planted consensus and
# dispersion.

all_rankings <- function(p) {
  if (p == 1L) return(matrix(1L))
  q <- all_rankings(p - 1L)
  t(do.call(rbind, lapply(seq_len(p), function(i) cbind(i, ifelse(t(q) >= i, t(q) + 1L, t(q))))))
}

bf_distance <- function(a, b) {
  pairs <- which(upper.tri(diag(length(a))), arr.ind = TRUE)
  sum(sign(a[pairs[, 1]] - a[pairs[, 2]]) != sign(b[pairs[, 1]] - b[pairs[, 2]]))
}

test_that("probabilities are exp(-theta d) normalized over all rankings", {
  r <- all_rankings(5)
  consensus <- c(3, 1, 5, 2, 4)
  d <- apply(r, 2, bf_distance, b = consensus)
  for (theta in c(0, 0.4, 3, 50)) {
    expected <- exp(-theta * d) / sum(exp(-theta * d))
    expect_equal(dmallows(r, consensus, theta), expected, tolerance = 1e-12)
    expect_equal(dmallows(r, consensus, theta, log = TRUE), log(expected), tolerance = 1e-9)
  }
  expect_equal(dmallows(consensus, consensus, 0), 1 / 120)
  one <- dmallows(c(a = 1, b = 2), c(2, 1), theta = 1)
  expect_equal(unname(one), exp(-1) / (1 + exp(-1)))
})

test_that("the mean distance of 1e5 draws equals the closed-form expectation", {
  set.seed(1)
  for (case in list(c(p = 20, theta = 0.3), c(p = 8, theta = 0), c(p = 50, theta = 2),
                    c(p = 200, theta = 0.01))) {
    p <- case[["p"]]
    theta <- case[["theta"]]
    consensus <- sample(p)
    r <- rmallows(1e5, consensus, theta)
    d <- diffrank:::kendall_distances_cpp(r, as.double(consensus), 1L)
    j <- seq_len(p - 1)
    m <- p - j
    # E[d] = sum_j E[V_j], V_j truncated geometric on 0..p-j (or uniform)
    expected <- if (theta == 0) sum(m / 2) else
      sum(1 / expm1(theta) - (m + 1) / expm1(theta * (m + 1)))
    expect_lt(abs(mean(d) - expected), 3 * sd(d) / sqrt(length(d)))
    expect_true(all(apply(r, 2, function(s) all(sort(s) == seq_len(p)))))
  }
})

test_that("draws follow the exact distribution (4 items)", {
  set.seed(2)
  r <- all_rankings(4)
  consensus <- c(2, 4, 1, 3)
  draws <- rmallows(2e5, consensus, theta = 0.8)
  key <- function(m) apply(m, 2, paste, collapse = " ")
  observed <- table(factor(key(draws), levels = key(r)))
  expected <- dmallows(r, consensus, 0.8) * ncol(draws)
  chi2 <- sum((observed - expected)^2 / expected)
  expect_lt(chi2, stats::qchisq(0.999, df = 23))
})

test_that("the fit recovers a planted consensus and dispersion", {
  set.seed(3)
  for (theta in c(0.1, 0.5, 2)) {
    consensus <- setNames(sample(15), paste0("item", 1:15))
    r <- rmallows(2000, consensus, theta)
    fit <- mallows_model(r)
    expect_equal(fit$consensus, consensus)
    expect_lt(abs(fit$theta / theta - 1), 0.1)
    # the MLE matches the expected distance to the mean distance
    expect_equal(fit$expected_distance, mean(fit$distance), tolerance = 1e-9)
    # and has the largest likelihood: nearby dispersions do worse
    loglik <- function(t) sum(dmallows(r, fit$consensus, t, log = TRUE))
    expect_equal(fit$log_likelihood, loglik(fit$theta), tolerance = 1e-9)
    expect_gt(fit$log_likelihood, loglik(fit$theta * 1.05))
    expect_gt(fit$log_likelihood, loglik(fit$theta / 1.05))
  }
  # a given consensus is kept
  fit <- mallows_model(r, consensus = rev(unname(consensus)))
  expect_equal(unname(fit$consensus), rev(unname(consensus)))
  expect_named(fit$consensus, rownames(r))
  expect_output(print(fit), "<mallows_model> Mallows model \\(Kendall distance\\) of 2000 rankings of 15 items")
})

test_that("extreme dispersions: identical rankings, random rankings, one item", {
  same <- matrix(c(2, 1, 3), 3, 10)
  expect_warning(fit <- mallows_model(same), "theta is infinite",
                 class = "diffrank_infinite_dispersion")
  expect_identical(fit$theta, Inf)
  expect_identical(fit$log_likelihood, 0)
  expect_equal(unname(fit$consensus), c(2, 1, 3))
  # all 6 rankings of 3 items once each: the mean distance is that of chance
  expect_identical(mallows_model(all_rankings(3))$theta, 0)
  expect_equal(unname(rmallows(4, c(a = 1), theta = 1)), matrix(1, 1, 4))
  expect_identical(dim(rmallows(0, 1:3, theta = 1)), c(3L, 0L))
  expect_true(all(rmallows(50, c(3, 1, 2), theta = 1e300) == c(3, 1, 2)))
})

test_that("named items are matched by name", {
  set.seed(4)
  consensus <- c(a = 1, b = 2, c = 3, d = 4)
  r <- rmallows(30, consensus, theta = 0.5)
  shuffled <- consensus[c(3, 1, 4, 2)]
  expect_identical(dmallows(r, shuffled, 0.5), dmallows(r, consensus, 0.5))
  expect_identical(mallows_model(r, consensus = shuffled)$consensus, consensus)
  expect_error(dmallows(r, c(a = 1, b = 2, c = 3, z = 4), 0.5), "name different items")
})

test_that("clear errors for bad rankings and settings", {
  expect_error(rmallows(3, c(1, 1, 2), 1), "`consensus` must be a ranking")
  expect_error(rmallows(-1, 1:3, 1), "`n`")
  expect_error(rmallows(3, 1:3, -1), "`theta`")
  expect_error(rmallows(3, 1:3, Inf), "`theta`")
  expect_error(dmallows(c(1, 2, 2), 1:3, 1), "column 1 is not")
  expect_error(dmallows(1:4, 1:3, 1), "one row per item of `consensus` \\(3\\)")
  expect_error(mallows_model(cbind(1:3, c(1, NA, 3))), "missing values")
  expect_error(mallows_model(cbind(1:3, 3:1), consensus = 1:4), "`consensus` must rank the 3 items")
  expect_error(mallows_model(cbind(1:3), foo = 1), "Unknown argument `foo`")
})
