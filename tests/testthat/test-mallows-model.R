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
  skip_on_cran()  # over 5 s
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
  expect_output(print(fit), sprintf("\\(%.3f of the 105 pairs of items\\)",
                                    mean(fit$distance) / 105))
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

test_that("beyond 2,000 items the consensus is the Borda ranking", {
  set.seed(7)
  r <- rmallows(5, sample(2001), theta = 0.01)
  fit <- mallows_model(r)
  expect_false(fit$exact)
  expect_equal(unname(fit$consensus), rank(rowMeans(r), ties.method = "first"))
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
  expect_error(mallows_model(cbind(1:3, c(1, NA, 3))), "top-k list .*column 2 is not")
  expect_error(mallows_model(cbind(c(NA, NA, NA))), "column 1 is not")
  expect_error(rmallows(3, 1:3, c(1, 2, 3)), "one per stage \\(2")
  expect_error(rmallows(3, 1:3, c(1, NA)), "`theta`")
  expect_error(mallows_model(cbind(1:3), model = "gmm"), "`model` must be one of")
  expect_error(mallows_model(cbind(1:3, 3:1), consensus = 1:4), "`consensus` must rank the 3 items")
  expect_error(mallows_model(cbind(1:3), foo = 1), "Unknown argument `foo`")
})

test_that("a top-k list has the probability of the rankings that extend it", {
  r <- all_rankings(5)
  consensus <- c(3, 1, 5, 2, 4)
  for (theta in list(0.6, c(1.5, 0.2, 0.8, 0), 0)) {
    full <- dmallows(r, consensus, theta)
    expect_equal(sum(full), 1, tolerance = 1e-12)
    for (k in 1:4) {
      top <- ifelse(r <= k, r, NA)
      key <- apply(top, 2, paste, collapse = " ")
      expected <- as.vector(tapply(full, key, sum)[key])
      expect_equal(dmallows(top, consensus, theta), unname(expected), tolerance = 1e-12)
    }
  }
  # a top-(p-1) list is the full ranking
  expect_equal(dmallows(c(2, NA, 1), 1:3, 0.7), dmallows(c(2, 3, 1), 1:3, 0.7))
})

test_that("generalized draws have stage codes of the right means", {
  set.seed(5)
  p <- 12
  theta <- seq(2, 0, length.out = p - 1)
  consensus <- sample(p)
  r <- rmallows(1e5, consensus, theta)
  codes <- diffrank:::mallows_stage_codes_cpp(r, as.double(consensus), 1L)
  m <- p - seq_len(p - 1)
  expected <- ifelse(theta == 0, m / 2, 1 / expm1(theta) - (m + 1) / expm1(theta * (m + 1)))
  se <- apply(codes, 1, sd) / sqrt(ncol(codes))
  expect_true(all(abs(rowMeans(codes) - expected) < 3 * pmax(se, 1e-12) + 1e-12))
  # the summed codes are the Kendall distances
  expect_equal(colSums(codes), diffrank:::kendall_distances_cpp(r, as.double(consensus), 1L))
  # and the fit recovers each stage's dispersion (the top ones within 10%)
  fit <- mallows_model(r, model = "generalized")
  expect_equal(unname(fit$consensus), consensus)
  expect_lt(max(abs(fit$theta[1:8] / theta[1:8] - 1)), 0.1)
  expect_lt(abs(fit$theta[11]), 0.05)
  loglik <- function(t) sum(dmallows(r, consensus, t, log = TRUE))
  expect_equal(fit$log_likelihood, loglik(fit$theta), tolerance = 1e-9)
  for (j in c(1, 5)) {
    expect_gt(fit$log_likelihood, loglik(replace(fit$theta, j, fit$theta[j] * 1.05)))
  }
  expect_output(print(fit), "generalized Mallows model")
  expect_output(print(fit), "theta by stage")
})

test_that("top-k lists: the fit recovers the consensus and theta", {
  set.seed(6)
  consensus <- setNames(sample(10), letters[1:10])
  r <- rmallows(3000, consensus, theta = 0.4)
  k <- sample(2:9, ncol(r), replace = TRUE)
  top <- r
  top[sweep(r, 2, k, ">")] <- NA
  fit <- mallows_model(top)
  expect_equal(fit$consensus, consensus)
  expect_lt(abs(fit$theta / 0.4 - 1), 0.1)
  expect_identical(unname(fit$list_length), as.double(pmin(k, 9)))
  loglik <- function(t) sum(dmallows(top, consensus, t, log = TRUE))
  expect_equal(fit$log_likelihood, loglik(fit$theta), tolerance = 1e-9)
  expect_gt(fit$log_likelihood, loglik(fit$theta * 1.05))
  expect_gt(fit$log_likelihood, loglik(fit$theta / 1.05))
  expect_output(print(fit), "top lists among them")
  # the distance as a fraction of the pairs each list orders
  ordered <- pmin(k, 9) * 10 - pmin(k, 9) * (pmin(k, 9) + 1) / 2
  expect_output(print(fit), sprintf("\\(%.3f of the %s pairs a ranking orders, on average\\)",
                                    mean(fit$distance) / mean(ordered),
                                    format(signif(mean(ordered), 4))))
  # stages that no list reaches have no dispersion
  g <- mallows_model(top[, k <= 4], model = "generalized")
  expect_true(all(is.na(g$theta[5:9])) && !anyNA(g$theta[1:4]))
  expect_identical(g$expected_distance, NA_real_)
})

test_that("APA election: the consensus and theta of an exhaustive search", {
  apa <- utils::read.csv(test_path("data", "apa_rankings.csv"))
  r <- t(as.matrix(apa[rep(seq_len(nrow(apa)), apa$count), LETTERS[1:5]]))
  rownames(r) <- LETTERS[1:5]
  expect_identical(ncol(r), 5738L)
  fit <- mallows_model(r)
  # every one of the 120 centres: the fit's has the least total distance
  centres <- all_rankings(5)
  totals <- apply(centres, 2, function(c) sum(diffrank:::kendall_distances_cpp(r, as.double(c), 1L)))
  best <- centres[, which.min(totals)]
  expect_identical(sum(totals == min(totals)), 1L)
  expect_equal(unname(fit$consensus), as.double(best))
  expect_identical(names(sort(fit$consensus)), c("A", "C", "E", "D", "B"))
  expect_identical(sum(fit$distance), min(totals))
  # theta solves E[d] = mean distance (uniroot in R, to 1e-15)
  j <- 1:4
  m <- 5 - j
  mean_d <- min(totals) / ncol(r)
  theta <- stats::uniroot(function(t) sum(1 / expm1(t) - (m + 1) / expm1(t * (m + 1))) - mean_d,
                          c(1e-3, 1), tol = 1e-15)$root
  expect_equal(fit$theta, theta, tolerance = 1e-10)
  expect_equal(fit$theta, 0.072188740773927, tolerance = 1e-10)
  # the generalized model: its centre maximizes the profile likelihood over
  # the 120 centres, each stage's theta solving its own equation
  g <- mallows_model(r, model = "generalized")
  profile <- apply(centres, 2, function(c) {
    codes <- diffrank:::mallows_stage_codes_cpp(r, as.double(c), 1L)
    theta <- vapply(1:4, function(j) {
      mean_code <- mean(codes[j, ])
      m <- 5 - j
      if (mean_code >= m / 2) return(0)
      stats::uniroot(function(t) 1 / expm1(t) - (m + 1) / expm1(t * (m + 1)) - mean_code,
                     c(1e-8, 50), tol = 1e-14)$root
    }, numeric(1))
    sum(dmallows(r, as.double(c), theta, log = TRUE))
  })
  expect_equal(g$log_likelihood, max(profile), tolerance = 1e-9)
  expect_equal(unname(g$consensus), as.double(centres[, which.max(profile)]))
  expect_true(g$exact)
})
