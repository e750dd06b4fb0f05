# Quantile normalization variants: targets of another length, robust targets,
# blocks, subsets of features, feature names of a fitted target, and
# group-aware normalization (qsmooth).

# Quantile functions of the columns at nrow(x) levels, from observed values.
ref_quantiles <- function(x) {
  levels <- (seq_len(nrow(x)) - 1) / (nrow(x) - 1)
  apply(x, 2, function(col) {
    v <- sort(col[!is.na(col)])
    if (length(v) == 1L) return(rep(v, nrow(x)))
    stats::approx((seq_along(v) - 1) / (length(v) - 1), v, levels)$y
  })
}

test_that("a target of another length follows preprocessCore's rule, with ties and NA", {
  skip_if_not_installed("preprocessCore")
  x <- tied_matrix(200, 7, seed = 1)
  x_na <- tied_matrix(200, 7, n_missing = 150, seed = 2)
  for (len in c(17, 200, 333)) {
    set.seed(len)
    target <- rnorm(len)
    expect_equal(unname(normalize_quantiles(x, target = target)),
                 preprocessCore::normalize.quantiles.use.target(unname(x), sort(target)),
                 tolerance = 1e-12, info = len)
    expect_equal(unname(normalize_quantiles(x_na, target = target)),
                 preprocessCore::normalize.quantiles.use.target(unname(x_na), sort(target)),
                 tolerance = 1e-12, info = len)
  }
  # a pair tied at ranks 1 and 2 of 4 takes the target at level 1/6
  x <- cbind(c(1, 1, 2, 3))
  expect_equal(normalize_quantiles(x, target = c(0, 1, 4, 9, 16, 30))[1, 1],
               stats::approx(0:5 / 5, c(0, 1, 4, 9, 16, 30), 1 / 6)$y)
})
