# Kernels on partial rankings (top-k lists, missing items interleaved): the
# convolution kernels of Jiao and Vert (2018) against brute-force
# enumeration of the total orders consistent with each partial ranking.

# All permutations of 1..n, one per row.
all_orders <- function(n) {
  if (n == 1L) return(matrix(1L))
  p <- all_orders(n - 1L)
  do.call(rbind, lapply(seq_len(n), function(i) cbind(i, ifelse(p >= i, p + 1L, p))))
}

# x cut to a top-k list: values below the k-th largest observed one tied at
# the bottom (values tied with the k-th largest stay ranked).
as_top_list <- function(x, k) {
  if (is.null(k)) return(x)
  cut <- sort(x[!is.na(x)], decreasing = TRUE)[k]
  x[!is.na(x) & x < cut] <- -Inf
  x
}

# The orders (rows of `orders`) consistent with x: observed items with
# x_i > x_j ranked above, tied and missing items anywhere.
consistent_orders <- function(x, orders) {
  seen <- which(!is.na(x))
  keep <- apply(orders, 1L, function(s) {
    all(outer(seen, seen, function(i, j) !(x[i] > x[j]) | s[i] > s[j]))
  })
  orders[keep, , drop = FALSE]
}

pair_signs <- function(orders) {
  n <- ncol(orders)
  pairs <- which(upper.tri(diag(n)), arr.ind = TRUE)
  sign(orders[, pairs[, 1L], drop = FALSE] - orders[, pairs[, 2L], drop = FALSE])
}

# Mean Kendall kernel over all pairs of consistent orders.
bf_partial_kendall <- function(x, y, variant, k = NULL) {
  orders <- all_orders(length(x))
  a <- colMeans(pair_signs(consistent_orders(as_top_list(x, k), orders)))
  b <- colMeans(pair_signs(consistent_orders(as_top_list(y, k), orders)))
  if (variant == "tau_a") sum(a * b) / choose(length(x), 2) else
    sum(a * b) / sqrt(sum(a^2) * sum(b^2))
}

# Mean Mallows kernel over all pairs of consistent orders, over the
# geometric mean of the two lists' mean kernels with themselves.
bf_partial_mallows <- function(x, y, lambda, k, normalized = TRUE) {
  orders <- all_orders(length(x))
  sa <- pair_signs(consistent_orders(as_top_list(x, k), orders))
  sb <- pair_signs(consistent_orders(as_top_list(y, k), orders))
  # normalized: over the pairs a top-k list orders
  if (normalized) lambda <- lambda / (choose(length(x), 2) - choose(length(x) - k, 2))
  mean_kernel <- function(s1, s2) {
    d <- outer(seq_len(nrow(s1)), seq_len(nrow(s2)),
               Vectorize(function(i, j) sum(s1[i, ] != s2[j, ])))
    mean(exp(-lambda * d))
  }
  mean_kernel(sa, sb) / sqrt(mean_kernel(sa, sa) * mean_kernel(sb, sb))
}

partial_pair <- function(seed, ties) {
  set.seed(seed)
  n <- sample(3:6, 1L)
  if (ties) {
    list(x = sample(1:3, n, TRUE) + 0, y = sample(1:4, n, TRUE) + 0)
  } else {
    list(x = rnorm(n), y = rnorm(n))
  }
}

with_missing <- function(v, seed) {
  set.seed(seed)
  v[sample(length(v), sample(0:2, 1L))] <- NA
  v
}

test_that("top-k Kendall kernels equal the mean over the orders of the bottom items", {
  for (seed in 1:24) {
    d <- partial_pair(seed, ties = seed %% 2 == 0)
    k <- sample(length(d$x), 1L)
    for (variant in c("tau_a", "tau_b")) {
      expected <- bf_partial_kendall(d$x, d$y, variant, k)
      got <- suppressWarnings(
        kendall_kernel(cbind(d$x), cbind(d$y), variant = variant, type = "topk", k = k))[1, 1]
      if (is.nan(expected)) {
        expect_true(is.na(got))
      } else {
        expect_equal(got, expected, tolerance = 1e-13, info = paste(seed, variant))
      }
    }
  }
})

test_that("interleaved missing items equal the mean over the places they can take", {
  for (seed in 1:24) {
    d <- partial_pair(seed, ties = seed %% 2 == 0)
    x <- with_missing(d$x, seed)
    y <- with_missing(d$y, seed + 100)
    for (variant in c("tau_a", "tau_b")) {
      expected <- bf_partial_kendall(x, y, variant)
      got <- suppressWarnings(
        kendall_kernel(cbind(x), cbind(y), variant = variant, na = "interleave"))[1, 1]
      if (is.nan(expected)) {
        expect_true(is.na(got))
      } else {
        expect_equal(got, expected, tolerance = 1e-13, info = paste(seed, variant))
      }
    }
    # top-k lists of the observed items, with the missing ones interleaved
    k <- sample(max(1L, min(sum(!is.na(x)), sum(!is.na(y)))), 1L)
    expected <- bf_partial_kendall(x, y, "tau_a", k)
    got <- kendall_kernel(cbind(x), cbind(y), variant = "tau_a", na = "interleave",
                          type = "topk", k = k)[1, 1]
    expect_equal(got, expected, tolerance = 1e-13, info = paste(seed, "topk"))
  }
})

test_that("top-k Mallows kernels equal the normalized mean over the orders of tied items", {
  for (seed in 1:16) {
    d <- partial_pair(seed, ties = seed %% 2 == 0)
    k <- sample(length(d$x), 1L)
    lambda <- c(0, 0.5, 3, 40)[seed %% 4 + 1]
    for (normalized in c(TRUE, FALSE)) {
      expected <- bf_partial_mallows(d$x, d$y, lambda, k, normalized)
      got <- mallows_kernel(cbind(d$x), cbind(d$y), lambda = lambda, normalized = normalized,
                            type = "topk", k = k)[1, 1]
      expect_equal(got, expected, tolerance = 1e-13, info = paste(seed, normalized))
    }
  }
})

test_that("full-length lists and complete profiles give the kernels on full rankings", {
  set.seed(5)
  x <- matrix(rnorm(60 * 8), 60)
  x[, 3] <- round(x[, 3])  # ties
  for (variant in c("tau_a", "tau_b")) {
    full <- kendall_kernel(x, variant = variant)
    expect_identical(kendall_kernel(x, variant = variant, type = "topk", k = 60), full)
    expect_identical(kendall_kernel(x, variant = variant, type = "topk", k = 59), full)
    expect_identical(kendall_kernel(x, variant = variant, na = "interleave"), full)
  }
  z <- matrix(rnorm(60 * 8), 60)  # no ties: the Mallows kernels agree too
  expect_identical(mallows_kernel(z, lambda = 2, type = "topk", k = 60),
                   mallows_kernel(z, lambda = 2))
})

test_that("partial-ranking kernel matrices are symmetric and positive semidefinite", {
  set.seed(6)
  x <- matrix(rnorm(40 * 12), 40)
  xm <- x
  xm[sample(length(xm), 80)] <- NA
  matrices <- list(
    kendall_kernel(x, type = "topk", k = 5),
    kendall_kernel(x, variant = "tau_a", type = "topk", k = 10),
    kendall_kernel(xm, na = "interleave"),
    kendall_kernel(xm, variant = "tau_a", na = "interleave", type = "topk", k = 8),
    mallows_kernel(x, lambda = 5, type = "topk", k = 5)
  )
  for (K in matrices) {
    m <- unname(K[, , drop = FALSE])
    expect_equal(m, t(m))
    expect_gte(min(eigen(m, symmetric = TRUE, only.values = TRUE)$values), -1e-10)
  }
  expect_equal(unname(diag(matrices[[1]][, ])), rep(1, 12))
  expect_equal(unname(diag(matrices[[5]][, ])), rep(1, 12))
})

test_that("cross-kernels and block inputs give the same entries", {
  set.seed(7)
  x <- matrix(rnorm(30 * 6), 30, dimnames = list(NULL, paste0("s", 1:6)))
  x[sample(length(x), 20)] <- NA
  whole <- kendall_kernel(x, na = "interleave", type = "topk", k = 10)
  cross <- kendall_kernel(x[, 1:2], x, na = "interleave", type = "topk", k = 10)
  expect_identical(unclass(cross[, ]), unclass(whole[1:2, ]))
  skip_if_not_installed("DelayedArray")
  blocks <- kendall_kernel(DelayedArray::DelayedArray(x), na = "interleave", type = "topk",
                           k = 10)
  expect_identical(unclass(blocks[, ]), unclass(whole[, ]))
  z <- matrix(rnorm(30 * 6), 30)
  expect_identical(unclass(mallows_kernel(DelayedArray::DelayedArray(z), type = "topk", k = 4)[, ]),
                   unclass(mallows_kernel(z, type = "topk", k = 4)[, ]))
})

test_that("clear errors for bad partial-ranking arguments", {
  x <- matrix(rnorm(40), 10)
  expect_error(kendall_kernel(x, type = "topk"), "`k` must be given")
  expect_error(kendall_kernel(x, k = 3), "`k` is only used with type = \"topk\"")
  for (k in list(0, -1, 2.5, NA, Inf, c(2, 3), "3")) {
    expect_error(kendall_kernel(x, type = "topk", k = k), "`k` must be a whole number")
  }
  expect_error(kendall_kernel(x, type = "topk", k = 11), "`k` must be at most the number of features \\(10\\)")
  expect_error(kendall_kernel(x, type = "top"), "`type`")
  expect_error(kendall_kernel(x, type = "topk", k = 3, na = "pairwise"), "na = \"interleave\"")
  expect_error(mallows_kernel(x, na = "interleave"), "kendall_kernel\\(\\) only")
  xna <- x
  xna[1] <- NA
  expect_error(mallows_kernel(xna, type = "topk", k = 3), "missing values")
  expect_error(kendall_kernel(xna, type = "topk", k = 3), "missing values")
})
