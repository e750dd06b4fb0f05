# The L2 Birkhoff projection (R/permutation_birkhoff.R) and the relaxed
# sorting networks (R/sorting_network.R) against references written here in
# plain R by other algorithms. The contract (VJP against finite
# differences, JVP, Jacobian), bad input and threads are checked for every
# row of the operator table in test-operators.R, test-bad-input.R and
# test-threads.R.

# The quadratically regularized plan by exact block coordinate ascent on the
# dual (each potential set to its one-dimensional maximizer in turn), a
# different algorithm from the package's Newton method; z are the points
# after squashing.
birkhoff_reference <- function(z, y, a, b, eps, power = 2, sweeps = 20000) {
  C <- abs(outer(z, y, "-"))^power
  f <- numeric(length(z))
  g <- numeric(length(y))
  best <- function(h, w) {
    o <- order(h)
    h <- h[o]
    w <- w[o]
    for (k in seq_along(h)) {
      t <- (eps + sum(w[1:k] * h[1:k])) / sum(w[1:k])
      if (k == length(h) || t <= h[k + 1L]) return(t)
    }
  }
  for (s in seq_len(sweeps)) {
    for (i in seq_along(f)) f[i] <- best(C[i, ] - g, b)
    for (j in seq_along(g)) g[j] <- best(C[, j] - f, a)
  }
  outer(a, b) * pmax(outer(f, g, "+") - C, 0) / eps
}

squash <- function(x) stats::plogis((x - mean(x)) / stats::sd(x))

test_that("birkhoff_plan() is the quadratically regularized plan (block ascent reference)", {
  set.seed(1)
  x <- rnorm(6)
  for (eps in c(1e-3, 0.05, 1)) {
    ref <- birkhoff_reference(squash(x), seq(0, 1, length.out = 6), rep(1 / 6, 6),
                              rep(1 / 6, 6), eps, sweeps = 3000)
    expect_equal(birkhoff_plan(x, eps = eps), ref, tolerance = 1e-9)
  }
  # weights, fewer targets, power and no squashing
  a <- c(1, 2, 1, 3, 1, 2) / 10
  b <- c(2, 1, 1) / 4
  ref <- birkhoff_reference(x, c(0, 0.5, 1), a, b, 0.2, power = 1.5, sweeps = 3000)
  P <- birkhoff_plan(x, eps = 0.2, n_targets = 3, weights = a, target_weights = b,
                     scale = "none", power = 1.5)
  expect_equal(P, ref, tolerance = 1e-9)
  expect_equal(rowSums(P), a, tolerance = 1e-13)
  expect_equal(colSums(P), b, tolerance = 1e-13)
})

test_that("the Birkhoff plan is sparse, hard at small eps, and its ranks and sorts read it", {
  set.seed(2)
  x <- rnorm(40)
  P <- birkhoff_plan(x, n_targets = 40)
  expect_true(mean(P == 0) > 0.8)           # exact zeros at the default
  expect_equal(rowSums(P), rep(1 / 40, 40), tolerance = 1e-13)
  hard <- birkhoff_plan(x, eps = 1e-9, n_targets = 40)
  expect_equal(40 * hard, diag(40)[rank(x), ], ignore_attr = TRUE)
  expect_equal(birkhoff_rank(x, eps = 1e-9, n_targets = 40), rank(x))
  expect_equal(birkhoff_sort(x, eps = 1e-9, n_targets = 40), sort(x))
  expect_equal(birkhoff_sort(x, eps = 1e-9, n_targets = 40, decreasing = TRUE),
               sort(x, decreasing = TRUE))
  # ranks n (P cumsum(b)) / a and sorts t(P) x / b, at the default eps
  expect_equal(birkhoff_rank(x, n_targets = 40), 40 * drop(P %*% cumsum(rep(1 / 40, 40))) * 40)
  expect_equal(birkhoff_sort(x, n_targets = 40), drop(crossprod(P, x)) * 40)
  # a soft rank at the default has a gradient everywhere but at hard values
  g <- birkhoff_rank_vjp(x, v = rank(x) - 20.5, n_targets = 40)
  expect_true(mean(g != 0) > 0.9)
  # ties: identical rows
  expect_equal(birkhoff_rank(c(1, 2, 2, 3))[2], birkhoff_rank(c(1, 2, 2, 3))[3])
  # large eps: every value reaches every target, and the ranks are nearly constant
  expect_warning(r <- birkhoff_rank(x, eps = 1e6), "nearly constant")
  expect_true(all(birkhoff_plan(x, eps = 10, n_targets = 40) > 0))
})

test_that("the Birkhoff operators give one value per column of a matrix, in any thread count", {
  set.seed(3)
  m <- matrix(rnorm(60), 20, 3, dimnames = list(NULL, c("a", "b", "c")))
  P <- birkhoff_plan(m, eps = 1e-3)
  expect_equal(dim(P), c(20, 20, 3))
  expect_equal(P[, , 2], birkhoff_plan(m[, 2], eps = 1e-3))
  expect_identical(birkhoff_rank(m, threads = 1), birkhoff_rank(m, threads = 2))
  expect_equal(colnames(birkhoff_rank(m)), colnames(m))
  op <- birkhoff_rank_fn(m)
  expect_equal(op$diagnostics$converged, rep(TRUE, 3))
  expect_true(all(op$diagnostics$support < 400))
})

# The relaxed network in plain R from a list of comparators (pairs lo < hi,
# in order), with +Inf padding that never mixes.
network_reference <- function(x, comparators, relax, tau) {
  v <- c(x, rep(Inf, max(unlist(comparators)) - length(x)))
  for (cp in comparators) {
    u <- v[cp[1]]
    w <- v[cp[2]]
    if (is.infinite(u) || is.infinite(w)) {
      v[cp] <- c(min(u, w), max(u, w))
      next
    }
    a <- relax((w - u) / tau)
    v[cp] <- c(a * u + (1 - a) * w, (1 - a) * u + a * w)
  }
  v[seq_along(x)]
}

odd_even_comparators <- function(n) {
  out <- list()
  for (layer in 0:(n - 1)) {
    first <- 1 + layer %% 2
    if (first < n) for (k in seq(first, n - 1, by = 2)) out[[length(out) + 1L]] <- c(k, k + 1)
  }
  out
}

# Bitonic merges written recursively: sort two halves, then merge the
# sequence (mirror step, then half-cleaners); N a power of two.
bitonic_comparators <- function(N) {
  half_clean <- function(lo, size) {
    if (size < 2) return(list())
    h <- size / 2
    c(lapply(seq_len(h) - 1, function(k) c(lo + k, lo + k + h)),
      half_clean(lo, h), half_clean(lo + h, h))
  }
  layers <- list()
  p <- 1
  while (p < N) {
    mirror <- unlist(lapply(seq(0, N - 1, by = 2 * p), function(block) {
      lapply(seq_len(p) - 1, function(k) c(block + k, block + 2 * p - 1 - k) + 1)
    }), recursive = FALSE)
    cleaners <- list()
    q <- p / 2
    while (q >= 1) {
      cleaners <- c(cleaners, unlist(lapply(seq(0, N - 1, by = 2 * q), function(block) {
        lapply(seq_len(q) - 1, function(k) c(block + k, block + k + q) + 1)
      }), recursive = FALSE))
      q <- q / 2
    }
    layers <- c(layers, mirror, cleaners)
    p <- 2 * p
  }
  layers
}

test_that("network_sort() is the relaxed network computed in R", {
  set.seed(4)
  logistic <- stats::plogis
  cauchy <- function(t) atan(t) / pi + 0.5
  for (n in c(2, 5, 8, 11)) {
    x <- rnorm(n)
    tau <- 0.5 * sd(x) / n
    N <- 2^ceiling(log2(n))
    expect_equal(network_sort(x, eps = 0.5, network = "odd_even"),
                 network_reference(x, odd_even_comparators(n), logistic, tau), tolerance = 1e-13)
    expect_equal(network_sort(x, eps = 0.5, relaxation = "cauchy"),
                 network_reference(x, bitonic_comparators(N), cauchy, tau), tolerance = 1e-13)
    expect_equal(network_sort(x, eps = 0.5, scale = "none", decreasing = TRUE),
                 -network_reference(-x, bitonic_comparators(N), logistic, 0.5), tolerance = 1e-13)
  }
})

test_that("the networks sort every 0-1 input (the 0-1 principle) at small eps", {
  for (n in c(3, 6, 9)) {
    inputs <- as.matrix(expand.grid(rep(list(0:1), n)))
    for (network in c("bitonic", "odd_even")) {
      out <- network_sort(t(inputs) + 0, eps = 1e-6, scale = "none", network = network)
      expect_equal(out, apply(t(inputs), 2, sort) + 0, tolerance = 1e-12,
                   ignore_attr = TRUE)
    }
  }
})

test_that("the network plan is doubly stochastic and gives the sort and the ranks", {
  set.seed(5)
  x <- rexp(13)
  for (network in c("bitonic", "odd_even")) {
    P <- network_plan(x, eps = 3, network = network)
    expect_equal(rowSums(P), rep(1, 13), tolerance = 1e-13)
    expect_equal(colSums(P), rep(1, 13), tolerance = 1e-13)
    expect_equal(drop(crossprod(P, x)), network_sort(x, eps = 3, network = network),
                 tolerance = 1e-13)
    expect_equal(drop(P %*% 1:13), network_rank(x, eps = 3, network = network),
                 tolerance = 1e-13)
  }
  # small eps: the permutation matrix of order(x); ties share their two
  # positions (up to the later comparators' mixing)
  expect_equal(network_plan(x, eps = 1e-8), diag(13)[rank(x), ])
  r <- network_rank(c(2, 1, 2, 3))
  expect_equal(r[c(1, 3)], c(2.5, 2.5), tolerance = 1e-6)
})

test_that("at a fixed temperature the Cauchy relaxation is monotone, the logistic one not", {
  set.seed(6)
  worst <- function(relaxation) {
    min(vapply(1:30, function(s) {
      x <- rnorm(16)
      min(network_sort_fn(x, eps = 1, relaxation = relaxation, network = "odd_even",
                          scale = "none")$jacobian())
    }, 0))
  }
  expect_gte(worst("cauchy"), -1e-12)
  expect_lt(worst("logistic"), -1e-6)
})

test_that("network defaults are soft but close to the hard ranks on real data", {
  data(all_leukemia, package = "diffrank")
  x <- all_leukemia$expr[, 1]
  r <- network_rank(x)
  expect_lt(mean(abs(r - rank(x))) / length(x), 0.005)
  g <- network_rank_vjp(x, v = rank(x) - mean(rank(x)))
  expect_true(mean(g != 0) > 0.9)
  b <- birkhoff_rank(x)
  expect_lt(mean(abs(b - rank(x))) / length(x), 0.01)
})
