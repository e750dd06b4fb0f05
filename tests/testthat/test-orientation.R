# diffrank takes features in rows and samples in columns. A transposed
# expression matrix gets a message saying how it is read; new data that share
# no feature with a fit are an error, with a hint when they look transposed.

test_that("a likely transposed input gets a message from every entry point, a usual one none", {
  skip_on_cran()  # over 5 s
  x <- all_leukemia$expr            # 1,000 genes x 128 samples
  tx <- t(x)
  groups <- rep(c("a", "b"), length.out = nrow(tx))
  y <- rep(0:1, length.out = nrow(tx))
  wide <- list(
    normalize_quantiles = function(m) normalize_quantiles(m),
    quantile_target = function(m) quantile_target(m),
    normalize_quantiles_robust = function(m) normalize_quantiles_robust(m),
    robust_weights = function(m) robust_weights(m),
    normalize_quantiles_groups = function(m) normalize_quantiles_groups(m, groups[seq_len(ncol(m)) %% 2 + 1]),
    qsmooth_weights = function(m) qsmooth_weights(m, groups[seq_len(ncol(m)) %% 2 + 1]),
    kendall_kernel = function(m) kendall_kernel(m[1:20, 1:300]),
    qmf = function(m) qmf(m[1:40, ], rank = 1, n_quantiles = 4, max_epochs = 1, verbose = FALSE)
  )
  for (name in names(wide)) {
    expect_message(suppressWarnings(wide[[name]](tx)), "`x` has .* rows and .* columns: it is read as",
                   class = "diffrank_orientation", label = name)
  }
  expect_message(suppressWarnings(suquan(tx, rep(0:1, 500), max_iter = 1)),
                 class = "diffrank_orientation")
  for (name in c("normalize_quantiles", "quantile_target", "normalize_quantiles_robust")) {
    expect_no_message(suppressWarnings(wide[[name]](x)), class = "diffrank_orientation")
  }
  expect_no_message(kendall_kernel(x[, 1:30]), class = "diffrank_orientation")
})

test_that("predicting new data with no feature in common is an error, with a hint when transposed", {
  x <- all_leukemia$expr
  target <- quantile_target(x)
  expect_error(predict(target, t(x[, 1:5])),
               "`newdata` has no feature \\(row name\\) in common .* looks transposed .* t\\(newdata\\)")
  other <- x[1:50, 1:5]
  rownames(other) <- paste0("other", 1:50)
  expect_error(predict(target, other), "`newdata` has no feature \\(row name\\) in common with the 1,000")
  expect_error(normalize_quantiles(other, target = target), "`x` has no feature")
  # some features in common: a warning (interpolated), as before
  expect_warning(predict(target, x[1:500, 1:5]), "do not have the features")
  expect_identical(predict(target, x[, 1:5]), normalize_quantiles(x[, 1:5], target = target))
})

test_that("fits that match features by name say when new data look transposed", {
  set.seed(6)
  x <- all_leukemia$expr[1:60, ]
  fit <- suppressWarnings(suquan(x, rep(0:1, 64), max_iter = 2))
  expect_error(predict(fit, t(x[, 1:3])), "lacks 60 of the model's features.*looks transposed")
  qfit <- suppressWarnings(qmf(x[1:30, 1:40], rank = 1, n_quantiles = 4, max_epochs = 2,
                               verbose = FALSE, threads = 1))
  expect_error(predict(qfit, t(x[1:30, 41:43])), "lacks 30 of the fit's features.*looks transposed")
})
