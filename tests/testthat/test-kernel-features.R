# `features` of the rank kernels, the near-constant warning, the kernlab
# kernel functions' print method, and rank_svm().

# Expression-like data: a shared ordering of the genes (a large gene effect,
# as housekeeping genes above unexpressed ones), `n_signal` genes of which the
# first half is higher and the second half lower in class "b" (so that the
# signal genes change their order among themselves), and small noise; genes
# named g1, g2, ...
kf_data <- function(p = 2000, n = 40, n_signal = 40, shift = 3, seed = 1) {
  set.seed(seed)
  y <- factor(rep(c("a", "b"), length.out = n))
  x <- matrix(rnorm(p, sd = 3), p, n) + matrix(rnorm(p * n, sd = 0.5), p, n)
  up <- seq_len(n_signal %/% 2)
  down <- setdiff(seq_len(n_signal), up)
  x[up, y == "b"] <- x[up, y == "b"] + shift
  x[down, y == "b"] <- x[down, y == "b"] - shift
  dimnames(x) <- list(paste0("g", seq_len(p)), paste0("s", seq_len(n)))
  list(x = x, y = y)
}

# The whole-array-like data above give nearly constant kernels on purpose.
kf_quiet <- function(expr) {
  withCallingHandlers(expr, diffrank_near_constant_kernel = function(w) invokeRestart("muffleWarning"))
}

test_that("features = n keeps the n rows of largest variance, and the attribute says which", {
  kf_quiet({
  d <- kf_data(p = 300, n = 12)
  v <- apply(d$x, 1, var)
  top <- sort(order(v, decreasing = TRUE)[1:30])
  k <- kendall_kernel(d$x, features = 30)
  expect_identical(attr(k, "features"), rownames(d$x)[top])
  expect_identical(unclass(k[, ]), unclass(kendall_kernel(d$x[top, ])[, ]))
  # names, row numbers and a logical vector give the same matrix
  expect_equal(kendall_kernel(d$x, features = rownames(d$x)[top])[, ], k[, ])
  expect_equal(kendall_kernel(d$x, features = top)[, ], k[, ])
  expect_equal(kendall_kernel(d$x, features = seq_len(300) %in% top)[, ], k[, ])
  # without row names the attribute holds row numbers
  expect_identical(attr(kendall_kernel(unname(d$x), features = 30), "features"), top)
  # all three kernels
  expect_equal(mallows_kernel(d$x, lambda = 3, features = 30)[, ],
               mallows_kernel(d$x[top, ], lambda = 3)[, ])
  expect_equal(weighted_kendall_kernel(d$x, weighting = "top", k = 10, features = 30)[, ],
               weighted_kendall_kernel(d$x[top, ], weighting = "top", k = 10)[, ])
  # with missing values (na = "pairwise") the variance leaves them out
  xna <- d$x
  xna[1, 1:6] <- NA
  expect_identical(attr(kendall_kernel(xna, features = 30, na = "pairwise"), "features"),
                   attr(kendall_kernel(d$x, features = 30), "features"))
  expect_null(attr(kendall_kernel(d$x), "features"))
  })
})

test_that("features = n chooses the same rows for block inputs", {
  skip_if_not_installed("DelayedArray")
  set.seed(13)
  x <- matrix(rnorm(300 * 12), 300, dimnames = list(paste0("g", 1:300), paste0("s", 1:12)))
  dense <- kendall_kernel(x, features = 30)
  expect_identical(kendall_kernel(DelayedArray::DelayedArray(x), features = 30), dense)
  skip_if_not_installed("Matrix")
  expect_identical(kendall_kernel(Matrix::Matrix(x, sparse = TRUE), features = 30)[, ], dense[, ])
})

test_that("the features of a training kernel are reused by name for new samples", {
  d <- kf_data(p = 300, n = 12)
  kf_quiet({
  train <- d$x[, 1:8]
  test <- d$x[, 9:12]
  k_train <- kendall_kernel(train, features = 25)
  feats <- attr(k_train, "features")
  expected <- kendall_kernel(test[feats, ], train[feats, ])
  # new samples with their genes in another order, and extra genes
  shuffled <- rbind(test[rev(seq_len(nrow(test))), ], extra = 1:4)
  cross <- kendall_kernel(shuffled, train, features = feats)
  expect_equal(cross[, ], expected[, ])
  expect_identical(attr(cross, "features"), feats)
  expect_error(kendall_kernel(test[-match(feats[1], rownames(test)), ], train, features = feats),
               "`x` lacks 1 of the 25 features")
  # a number with y would choose on other samples: an error
  expect_error(kendall_kernel(test, train, features = 25), "by name or index")
  # support_kernel() chooses a number of features on `train`
  skip_if_not_installed("kernlab")
  fit <- kernlab::ksvm(k_train, d$y[1:8], type = "C-svc", C = 10)
  sv <- kernlab::SVindex(fit)
  expect_equal(support_kernel(fit, shuffled, train, features = 25)[, ],
               kendall_kernel(test[feats, ], train[feats, sv])[, ])
  })
})

test_that("bad `features` give clear errors", {
  d <- kf_data(p = 50, n = 6)
  expect_error(kendall_kernel(d$x, features = 1), "`features` must be a whole number from 2 to 50")
  expect_error(kendall_kernel(d$x, features = 51), "from 2 to 50")
  expect_error(kendall_kernel(d$x, features = c(1, 1)), "twice")
  expect_error(kendall_kernel(d$x, features = c(0, 3)), "from 1 to 50")
  expect_error(kendall_kernel(d$x, features = "nope"), "lacks 1 of the 1 features")
  expect_error(kendall_kernel(unname(d$x), features = c("g1", "g2")), "no row names")
  expect_error(kendall_kernel(d$x, features = c(TRUE, FALSE)), "one TRUE or FALSE per feature")
  expect_error(kendall_kernel(d$x, features = list(1)), "`features` must be NULL")
  expect_error(kendall_kernel(d$x[, 1], features = 5), "at least 2 samples")
  expect_error(weighted_kendall_kernel(d$x, weighting = "top", k = 20, features = 10),
               "`k` must be a whole number from 2 to the number of features \\(10\\)")
  expect_error(kendall_kernlab(features = 10), "not a number")
})

test_that("the near-constant warning fires on noise and whole-array-like data, not on signal", {
  set.seed(2)
  noise <- matrix(rnorm(1000 * 10), 1000)
  expect_warning(kendall_kernel(noise), class = "diffrank_near_constant_kernel")
  expect_warning(mallows_kernel(noise, lambda = 0.1), class = "diffrank_near_constant_kernel")
  expect_warning(mallows_kernel(noise, lambda = 10), class = "diffrank_near_constant_kernel")
  # a few strongly varying genes among many with a shared order
  d <- kf_data(p = 2000, n = 20, n_signal = 20, shift = 3)
  expect_warning(kendall_kernel(d$x), "features = 1000")
  expect_no_warning(k <- kendall_kernel(d$x, features = 40))
  expect_gt(sd(k[, ][upper.tri(k)]), 0.05)
  # Mallows: judged on its Kendall distances, whatever lambda
  expect_no_warning(mallows_kernel(d$x, lambda = 0.1, features = 40))
  expect_no_warning(mallows_kernel(d$x, lambda = 20, features = 40))
  # cross-kernels and 2 samples are not judged
  expect_no_warning(kendall_kernel(noise[, 1:5], noise[, 6:10]))
  expect_no_warning(kendall_kernel(noise[, 1:2]))
})

test_that("kernlab kernel functions print what they are and use `features`", {
  k <- weighted_kendall_kernlab(weighting = "top", k = 10, features = 1:20)
  out <- capture.output(print(k))
  expect_match(out[1], "Weighted Kendall kernel \\(top\\) function for kernlab")
  expect_match(paste(out, collapse = "\n"), "k = 10")
  expect_match(paste(out, collapse = "\n"), "Features: 20 of the columns")
  expect_false(any(grepl("function \\(x, y", out)))
  expect_match(capture.output(print(kendall_kernlab()))[1], "Kendall kernel \\(tau_b\\)")
  expect_match(capture.output(mallows_kernlab(lambda = 2))[1], "Mallows kernel")
  set.seed(3)
  a <- setNames(rnorm(30), paste0("g", 1:30))
  b <- setNames(rnorm(30), paste0("g", 1:30))
  expect_equal(kendall_kernlab(features = c("g3", "g1", "g7", "g9"))(a, b),
               kendall_kernel(a[c(1, 3, 7, 9)], b[c(1, 3, 7, 9)]))
  expect_equal(kendall_kernlab(features = 5:9)(a, b), kendall_kernel(a[5:9], b[5:9]))
})

test_that("rank_svm() chooses features and C by CV, deterministically for a seed", {
  skip_if_not_installed("kernlab")
  d <- kf_data(p = 1000, n = 40, n_signal = 20, shift = 3)
  set.seed(4)
  fit <- rank_svm(d$x, d$y, n_features = c(20, 1000), cost = c(1, 100))
  set.seed(4)
  again <- rank_svm(d$x, d$y, n_features = c(20, 1000), cost = c(1, 100))
  expect_identical(again$cv, fit$cv)
  expect_identical(again$folds, fit$folds)
  expect_s3_class(fit, "rank_svm")
  expect_identical(nrow(fit$cv), 4L)
  # the 20 signal genes are the most variable; ranking only them separates the classes
  expect_identical(fit$n_features, 20L)
  expect_setequal(fit$features, paste0("g", 1:20))
  expect_equal(fit$cv_accuracy, 1)
  # other folds change the CV table
  set.seed(5)
  other <- rank_svm(d$x, d$y, n_features = c(20, 1000), cost = c(1, 100))
  expect_false(identical(other$folds, fit$folds))
  expect_output(print(fit), "20 of 1000 features")
  expect_output(print(summary(fit)), "Cross-validated accuracy")
  co <- coef(fit)
  expect_true(all(names(co) %in% colnames(d$x)))
  expect_length(co, length(kernlab::SVindex(fit$fit)))
  expect_identical(names(co), colnames(d$x)[kernlab::alphaindex(fit$fit)[[1]]])
})

test_that("rank_svm() predicts new samples by feature name", {
  skip_if_not_installed("kernlab")
  d <- kf_data(p = 500, n = 48, n_signal = 20, shift = 3, seed = 6)
  train <- 1:36
  set.seed(7)
  fit <- rank_svm(d$x[, train], d$y[train], n_features = c(20, 100), cost = c(1, 10))
  new <- d$x[, -train]
  pred <- predict(fit, new)
  expect_s3_class(pred, "factor")
  expect_identical(levels(pred), c("a", "b"))
  expect_identical(names(pred), colnames(new))
  expect_gte(mean(pred == d$y[-train]), 0.9)
  # the same predictions with the genes in another order and extra genes
  expect_identical(predict(fit, rbind(new[nrow(new):1, ], extra = 0)), pred)
  dec <- predict(fit, new, type = "decision")
  expect_identical(dim(dec), c(ncol(new), 1L))
  # each predicted class has decision values of one sign
  expect_identical(lengths(lapply(split(sign(dec), pred), unique)), c(a = 1L, b = 1L))
  # errors: no shared names, missing features, no names
  renamed <- new
  rownames(renamed) <- paste0("x", seq_len(nrow(new)))
  expect_error(predict(fit, renamed), "none of the fit's [0-9]+ features by name")
  expect_error(predict(fit, new[setdiff(rownames(new), fit$features[1]), ]), "lacks 1 of the fit's")
  expect_error(predict(fit, unname(new)), "no row names")
  expect_error(predict(fit, new, type = "prob"), "`type` must be one of")
  expect_error(predict(fit, new, foo = 1), "Unknown argument `foo`")
})

test_that("rank_svm() handles three classes and SummarizedExperiment input", {
  skip_on_cran()  # over 5 s
  skip_if_not_installed("kernlab")
  set.seed(8)
  p <- 300
  y <- factor(rep(c("a", "b", "c"), each = 12))
  x <- matrix(rnorm(p, sd = 3), p, 36) + matrix(rnorm(p * 36, sd = 0.5), p, 36)
  x[1:10, y == "b"] <- x[1:10, y == "b"] + 3
  x[11:20, y == "c"] <- x[11:20, y == "c"] + 3
  dimnames(x) <- list(paste0("g", 1:p), paste0("s", 1:36))
  set.seed(9)
  fit <- rank_svm(x, y, n_features = c(20, 300), cost = 10, nfolds = 3)
  expect_identical(fit$levels, c("a", "b", "c"))
  expect_gte(fit$cv_accuracy, 0.9)
  expect_type(coef(fit), "list")
  skip_if_not_installed("SummarizedExperiment")
  se <- SummarizedExperiment::SummarizedExperiment(list(expr = x),
                                                   colData = data.frame(type = y))
  set.seed(9)
  fit_se <- rank_svm(se, "type", n_features = c(20, 300), cost = 10, nfolds = 3)
  expect_identical(fit_se$cv, fit$cv)
  expect_identical(predict(fit_se, se[, 1:5]), predict(fit, x[, 1:5]))
  expect_error(rank_svm(se, "nope"), "column of colData")
})

test_that("rank_svm() rejects bad arguments", {
  skip_if_not_installed("kernlab")
  d <- kf_data(p = 100, n = 20)
  expect_error(rank_svm(d$x, d$y[-1]), "one class per sample")
  expect_error(rank_svm(d$x[, 1:3], d$y[1:3]), "`x` must have at least 4 samples")
  expect_error(rank_svm(d$x, rep("a", 20)), "at least 2 classes")
  expect_error(rank_svm(d$x, 1:20), "factor or character")
  expect_error(rank_svm(d$x, d$y, kernel = "rbf"), "`kernel` must be one of")
  expect_error(rank_svm(d$x, d$y, n_features = 1), "`n_features` must be whole numbers")
  expect_error(rank_svm(d$x, d$y, cost = -1), "`cost` must be positive")
  expect_error(rank_svm(d$x, d$y, nfolds = 11), "smallest class \\(10\\)")
  expect_error(rank_svm(d$x, d$y, folds = rep(1, 20)), "`folds` must give")
  expect_error(rank_svm(d$x, d$y, kernel_args = list(features = 3)), "must not set `features`")
  expect_error(rank_svm(d$x, d$y, kernel_args = list(5)), "named list")
  expect_error(rank_svm(d$x, d$y, lambda = 2), "Unknown argument `lambda`")
  expect_error(rank_svm(d$x, d$y, kernel = "mallows", kernel_args = list(lamda = 2)),
               "Unknown argument `lamda`")
})

test_that("centre = TRUE centres in feature space, and new samples with the training means", {
  set.seed(10)
  x <- matrix(rnorm(60 * 8), 60, dimnames = list(paste0("g", 1:60), paste0("s", 1:8)))
  h <- diag(8) - 1 / 8
  for (kernel in list(kendall_kernel, function(...) mallows_kernel(..., lambda = 2),
                      function(...) weighted_kendall_kernel(..., weighting = "additive"))) {
    k <- kernel(x, centre = TRUE)
    expect_equal(unclass(k[, ]), unclass(h %*% kernel(x)[, ] %*% h), ignore_attr = TRUE)
    expect_true(isSymmetric(k[, ]))
    expect_identical(dimnames(k), list(colnames(x), colnames(x)))
    expect_gte(min(eigen(k[, ], symmetric = TRUE, only.values = TRUE)$values), -1e-10)
    # a training sample seen as a new one gets its row of the centred kernel
    cross <- kernel(x[, c(2, 5)], x, centre = k)
    expect_equal(cross[, ], k[c(2, 5), ], ignore_attr = TRUE)
  }
  k <- kendall_kernel(x, centre = TRUE)
  expect_error(kendall_kernel(x[, 1:2], x, centre = TRUE), "must be the centred kernel")
  expect_error(kendall_kernel(x[, 1:2], x[, 1:4], centre = k), "all the training samples")
  expect_error(kendall_kernel(x[, 1:2], x[, 8:1], centre = k), "same order")
  expect_error(kendall_kernel(x, centre = k), "needs `y`")
  expect_error(kendall_kernel(x, centre = "yes"), "`centre` must be TRUE, FALSE")
  skip_if_not_installed("kernlab")
  y <- factor(rep(c("a", "b"), 4))
  fit <- kernlab::ksvm(k, y, type = "C-svc", C = 10)
  sv <- kernlab::SVindex(fit)
  expect_equal(support_kernel(fit, x[, 1:3], x, centre = k)[, ],
               kendall_kernel(x[, 1:3], x, centre = k)[, sv, drop = FALSE])
})

test_that("rank_svm(centre = TRUE) centres on the training samples, and predicts the same here", {
  skip_on_cran()  # over 5 s
  skip_if_not_installed("kernlab")
  d <- kf_data(p = 400, n = 40, n_signal = 20, shift = 3, seed = 11)
  set.seed(12)
  centred <- rank_svm(d$x[, 1:30], d$y[1:30], n_features = c(20, 400), cost = c(1, 10),
                      centre = TRUE)
  set.seed(12)
  raw <- rank_svm(d$x[, 1:30], d$y[1:30], n_features = c(20, 400), cost = c(1, 10))
  expect_false(is.null(centred$centring))
  expect_null(raw$centring)
  expect_identical(ncol(centred$support), 30L)
  expect_identical(ncol(raw$support), length(kernlab::SVindex(raw$fit)))
  expect_identical(predict(centred, d$x[, 31:40]), predict(raw, d$x[, 31:40]))
  expect_gte(mean(predict(centred, d$x[, 31:40]) == d$y[31:40]), 0.9)
  # the decision values are those of the kernel centred by hand
  feats <- centred$features
  k_train <- kendall_kernel(d$x[feats, 1:30], centre = TRUE)
  k_new <- kendall_kernel(d$x[feats, 31:40], d$x[feats, 1:30], centre = k_train)
  sv <- kernlab::SVindex(centred$fit)
  expected <- kernlab::predict(centred$fit, kernlab::as.kernelMatrix(k_new[, sv, drop = FALSE]),
                               type = "decision")
  expect_equal(unname(predict(centred, d$x[, 31:40], type = "decision")), unname(expected))
  expect_output(print(centred), "centred on the training samples")
  expect_error(rank_svm(d$x, d$y, centre = NA), "`centre` must be TRUE or FALSE")
})
