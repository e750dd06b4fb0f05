# Helpers of the C++ core shared by the families (inst/include/diffrank/
# common.hpp): the overflow-safe mean and standard deviation behind the
# squashing of the Sinkhorn operators.

expect_ranks_near <- function(x) {
  r <- sinkhorn_rank(x, eps = 1e-3)
  expect_true(all(attr(r, "converged")))
  expect_lt(max(abs(as.vector(r) - rank(x))), 0.05)
}

test_that("squashing gives the ranks of values near the largest doubles", {
  expect_ranks_near(c(-1e200, 0, 1e200, 2e200))
  expect_ranks_near(c(0.3, -1.2, 2.5, 0.9, -0.4) * 1e154)
  expect_ranks_near(c(0.3, -1.2, 2.5, 0.9, -0.4) * 1e300)
})

test_that("squashing gives the ranks of values near the smallest doubles", {
  expect_ranks_near(c(0.3, -1.2, 2.5, 0.9, -0.4) * 1e-200)
  expect_ranks_near(c(0.3, -1.2, 2.5, 0.9, -0.4) * 1e-300)
})

test_that("squashing does not depend on the scale of x", {
  x <- c(0.3, -1.2, 2.5, 0.9, -0.4, 1.7)
  base <- as.vector(sinkhorn_rank(x, eps = 1e-2))
  # scaling by a power of two is exact, so the squashed values are identical
  for (k in c(-900, -500, 500, 900)) {
    expect_identical(as.vector(sinkhorn_rank(x * 2^k, eps = 1e-2)), base)
  }
  expect_equal(as.vector(sinkhorn_rank(x * 1e250, eps = 1e-2)), base, tolerance = 1e-12)
})

test_that("squashing of extreme values has finite derivatives", {
  x <- c(0.3, -1.2, 2.5, 0.9, -0.4) * 1e154
  g <- sinkhorn_rank_fn(x, eps = 1e-2)$vjp(c(1, -1, 0.5, 2, 0))
  expect_true(all(is.finite(g)))
  # d rank / d x scales as 1 / x
  g1 <- sinkhorn_rank_fn(x / 1e154, eps = 1e-2)$vjp(c(1, -1, 0.5, 2, 0))
  expect_equal(g * 1e154, g1, tolerance = 1e-10)
})

test_that("a constant column is squashed to one point", {
  r <- sinkhorn_rank(rep(1e5 + 0.1, 4), eps = 1e-2)
  expect_identical(length(unique(as.vector(r))), 1L)
  expect_equal(as.vector(r), rep(2.5, 4))
})
