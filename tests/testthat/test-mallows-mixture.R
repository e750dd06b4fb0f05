# Mixtures of Mallows models (R/mallows_mixture.R): recovery of planted
# components, the choice of their number on held-out rankings, EM's
# monotone likelihood, one component against mallows_model(), predict().

test_that("EM recovers planted components and held-out likelihood picks their number", {
  skip_on_cran()  # over 5 s
  set.seed(1)
  p <- 12
  centres <- list(sample(p), sample(p), sample(p))
  theta <- c(0.6, 0.4, 0.8)
  sizes <- c(1500, 1000, 500)
  r <- do.call(cbind, lapply(1:3, function(j) rmallows(sizes[j], centres[[j]], theta[j])))
  fit <- mallows_mixture(r, n_components = 1:4)
  expect_identical(fit$selection$n_components, 1:4)
  expect_identical(which.max(fit$selection$heldout_log_likelihood), 3L)
  expect_identical(ncol(fit$consensus), 3L)
  for (j in 1:3) {
    expect_equal(unname(fit$consensus[, j]), as.double(centres[[j]]))
    expect_lt(abs(fit$theta[j] / theta[j] - 1), 0.1)
    expect_lt(abs(fit$proportions[j] - sizes[j] / sum(sizes)), 0.03)
  }
  truth <- rep(1:3, sizes)
  expect_gt(mean(fit$cluster == truth), 0.9)
  expect_equal(rowSums(fit$responsibilities), rep(1, ncol(r)))
  expect_true(fit$converged)
  expect_equal(fit$bic, -2 * fit$log_likelihood + 5 * log(ncol(r)))
  expect_output(print(fit), "3 Mallows components of 3000 rankings of 12 items")
  expect_output(print(fit), "Held-out log-likelihood")
  # predict() gives the responsibilities
  expect_equal(unname(predict(fit, r[, 1:10])), unname(fit$responsibilities[1:10, ]))
})

test_that("the log-likelihood never decreases along EM", {
  set.seed(2)
  r <- cbind(rmallows(200, sample(25), 0.2), rmallows(200, sample(25), 0.2))
  ll <- vapply(1:6, function(iterations) {
    set.seed(3)
    suppressWarnings(mallows_mixture(r, 2, n_starts = 1, max_iter = iterations)$log_likelihood)
  }, numeric(1))
  expect_true(all(diff(ll) >= -1e-8 * abs(ll[-1])))
  expect_gt(ll[6], ll[1])
})

test_that("one component is the Mallows model; top-k lists are taken", {
  set.seed(4)
  consensus <- setNames(sample(8), letters[1:8])
  r <- rmallows(400, consensus, 0.5)
  one <- mallows_mixture(r, 1)
  single <- mallows_model(r)
  expect_equal(one$consensus[, 1], single$consensus)
  expect_equal(one$theta, single$theta, tolerance = 1e-12)
  expect_equal(one$log_likelihood, single$log_likelihood, tolerance = 1e-12)
  top <- ifelse(r <= 3, r, NA)
  reversed <- setNames(rev(unname(consensus)), names(consensus))
  other <- rmallows(400, reversed, 0.5)
  two <- cbind(top, ifelse(other <= 3, other, NA))
  fit <- mallows_mixture(two, 2)
  # the top-3 items of each planted consensus come out on top of a component
  tops <- apply(fit$consensus, 2, function(c) sort(names(sort(c))[1:3]))
  expect_setequal(apply(tops, 2, paste, collapse = ""),
                  c(paste(sort(names(sort(consensus))[1:3]), collapse = ""),
                    paste(sort(names(sort(reversed))[1:3]), collapse = "")))
  expect_equal(mallows_mixture(top, 1)$theta, mallows_model(top)$theta, tolerance = 1e-12)
})

test_that("a component of identical rankings keeps a finite likelihood", {
  r <- cbind(matrix(1:5, 5, 30), matrix(5:1, 5, 20))
  set.seed(5)
  fit <- mallows_mixture(r, 2)
  expect_true(is.finite(fit$log_likelihood))
  expect_identical(fit$theta, c(30, 30))
  expect_identical(sort(unname(fit$proportions)), c(0.4, 0.6))
})

test_that("clear errors for bad settings", {
  r <- rmallows(20, 1:4, 0.5)
  expect_error(mallows_mixture(r, 0), "`n_components` must be distinct whole numbers")
  expect_error(mallows_mixture(r, c(2, 2)), "`n_components`")
  expect_error(mallows_mixture(r, 21), "`n_components`")
  expect_error(mallows_mixture(r, 2, holdout = 0.3), "`holdout` is used only")
  expect_error(mallows_mixture(r, 1:3, holdout = 1), "`holdout`")
  expect_error(mallows_mixture(r, 1:3, holdout = 0.01), "`holdout` = 0.01 leaves 0 rankings")
  expect_error(mallows_mixture(r, 2, n_starts = 0), "`n_starts`")
  expect_error(mallows_mixture(r, 2, max_iter = 0), "`max_iter`")
  expect_error(mallows_mixture(r, 2, tol = 0), "`tol`")
  expect_error(mallows_mixture(r, 2, foo = 1), "Unknown argument `foo`")
  fit <- mallows_mixture(r, 2)
  expect_error(predict(fit, rmallows(3, 1:5, 1)), "`newdata` must have one row per item")
  expect_error(predict(fit, r, foo = 1), "Unknown argument `foo`")
})
