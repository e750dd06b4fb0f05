test_that("midrank ties reproduce preprocessCore and limma, with and without NA", {
  skip_if_not_installed("preprocessCore")
  skip_if_not_installed("limma")
  for (seed in 1:3) {
    x <- tied_matrix(200, 7, seed = seed)
    ours <- normalize_quantiles(x)
    expect_equal(ours, limma::normalizeQuantiles(x), tolerance = 1e-12)
    expect_equal(unname(ours), preprocessCore::normalize.quantiles(unname(x)), tolerance = 1e-12)

    x_na <- tied_matrix(200, 7, n_missing = 150, seed = seed)
    ours_na <- normalize_quantiles(x_na)
    expect_equal(ours_na, limma::normalizeQuantiles(x_na), tolerance = 1e-12)
    expect_equal(unname(ours_na), preprocessCore::normalize.quantiles(unname(x_na)),
                 tolerance = 1e-12)
  }
  # continuous data, unequal column scales
  set.seed(4)
  x <- matrix(rexp(3000), 500) %*% diag(1:6)
  expect_equal(normalize_quantiles(x), preprocessCore::normalize.quantiles(x), tolerance = 1e-12)
})

test_that("each tie rule equals the brute-force reference, with and without NA", {
  for (ties in c("midrank", "average", "first")) {
    for (n_missing in c(0, 60)) {
      x <- tied_matrix(80, 6, levels = 8, n_missing = n_missing, seed = 10)
      expect_equal(normalize_quantiles(x, ties = ties), reference_normalize(x, ties = ties),
                   tolerance = 1e-12, info = paste(ties, n_missing))
    }
  }
})

test_that("tie rules agree without ties and differ as documented with them", {
  set.seed(2)
  x <- matrix(rnorm(300), 100)
  expect_equal(normalize_quantiles(x, ties = "average"), normalize_quantiles(x))
  expect_equal(normalize_quantiles(x, ties = "first"), normalize_quantiles(x))
  # a block of three ties against a convex target: midrank != average
  x <- cbind(c(1, 1, 1, 2), c(1, 2, 3, 10))
  target <- c(0, 1, 4, 9)
  mid <- normalize_quantiles(x, target = target)
  avg <- normalize_quantiles(x, target = target, ties = "average")
  first <- normalize_quantiles(x, target = target, ties = "first")
  expect_equal(mid[, 1], c(1, 1, 1, 9))
  expect_equal(avg[, 1], c(5 / 3, 5 / 3, 5 / 3, 9))
  expect_equal(first[, 1], c(0, 1, 4, 9))
  expect_equal(mid[, 2], target)
})

test_that("NaN is missing like NA and does not reach complete columns", {
  x <- tied_matrix(60, 5, seed = 3)
  with_nan <- x
  with_nan[c(2, 9), 1] <- NaN
  with_na <- x
  with_na[c(2, 9), 1] <- NA
  out_nan <- normalize_quantiles(with_nan)
  out_na <- normalize_quantiles(with_na)
  expect_true(all(is.finite(out_nan[, -1])))
  expect_equal(out_nan[, -1], out_na[, -1], tolerance = 0)
  expect_true(is.nan(out_nan[2, 1]) && is.nan(out_nan[9, 1]))
  expect_true(is.na(out_na[2, 1]) && !is.nan(out_na[2, 1]))
  expect_equal(sum(is.na(out_nan)), 2)
  skip_if_not_installed("limma")
  expect_equal(out_nan[, -1], limma::normalizeQuantiles(with_nan)[, -1], tolerance = 1e-12)
})

test_that("a column's missing values change other columns only through the target", {
  x <- tied_matrix(50, 4, seed = 5)
  x_na <- x
  x_na[1:10, 4] <- NA
  fitted <- quantile_target(x_na)
  alone <- normalize_quantiles(x[, 1:3], target = fitted)
  expect_equal(normalize_quantiles(x_na)[, 1:3], alone, tolerance = 0)
})

test_that("dimnames, integer input, data frames and vectors keep their shape", {
  x <- tied_matrix(30, 4, seed = 6)
  xi <- x
  storage.mode(xi) <- "integer"
  xi_copy <- xi
  out <- normalize_quantiles(xi)
  expect_identical(dimnames(out), dimnames(x))
  expect_type(out, "double")
  expect_identical(xi, xi_copy)
  expect_equal(out, normalize_quantiles(as.double(xi) |> matrix(30, dimnames = dimnames(x))))

  df <- as.data.frame(x)
  out_df <- normalize_quantiles(df)
  expect_true(is.matrix(out_df))
  expect_identical(dimnames(out_df), dimnames(x))
  expect_equal(out_df, normalize_quantiles(x))

  v <- c(a = 3, b = 1, c = 2)
  expect_equal(normalize_quantiles(v, target = c(10, 20, 30)), c(a = 30, b = 10, c = 20))
  expect_equal(normalize_quantiles(v), v)
})

test_that("the caller's matrix is never modified", {
  x <- tied_matrix(40, 3, n_missing = 5, seed = 7)
  before <- x + 0
  normalize_quantiles(x)
  normalize_quantiles(x, target = 1:10, ties = "average")
  predict(quantile_target(x), x)
  expect_identical(x, before)
})

test_that("results are identical for 1 and 2 threads", {
  x <- tied_matrix(3000, 9, levels = 50, n_missing = 40, seed = 8)
  for (ties in c("midrank", "average", "first")) {
    expect_identical(normalize_quantiles(x, ties = ties, threads = 1),
                     normalize_quantiles(x, ties = ties, threads = 2))
  }
  expect_identical(quantile_target(x, threads = 1), quantile_target(x, threads = 2))
  target <- seq(-3, 3, length.out = 77)^3
  expect_identical(normalize_quantiles(x, target = target, threads = 1),
                   normalize_quantiles(x, target = target, threads = 2))
})

test_that("the mean target is the exact mean rounded once, whatever the column order", {
  cancel <- cancelling_matrix(200, 60, seed = 3)
  x <- cancel$x
  target <- quantile_target(x)$target
  expect_identical(target, cancel$exact_target)
  # the sums in floating point of R's rowMeans() lose bits here
  expect_false(identical(rowMeans(apply(x, 2, sort)), cancel$exact_target))
  set.seed(4)
  for (order in list(rev(seq_len(60)), sample(60))) {
    expect_identical(quantile_target(x[, order])$target, target)
    expect_identical(normalize_quantiles(x[, order]), normalize_quantiles(x)[, order])
  }
  expect_identical(quantile_target(x, threads = 2)$target, target)
})

test_that("a target of another length is interpolated onto the features", {
  x <- tied_matrix(50, 3, n_missing = 6, seed = 9)
  set.seed(9)
  for (len in c(2, 17, 50, 333)) {
    target <- rnorm(len)
    for (ties in c("midrank", "average", "first")) {
      expect_equal(normalize_quantiles(x, target = target, ties = ties),
                   reference_normalize(x, target = target, ties = ties), tolerance = 1e-12,
                   info = paste(len, ties))
    }
  }
  target <- rnorm(50)
  expect_equal(normalize_quantiles(x, target = target),
               normalize_quantiles(x, target = rev(target)))
  skip_if_not_installed("preprocessCore")
  y <- tied_matrix(50, 3, seed = 10)
  expect_equal(unname(normalize_quantiles(y, target = target)),
               preprocessCore::normalize.quantiles.use.target(unname(y), target), tolerance = 1e-12)
})

test_that("quantile_target fits, predicts, prints, plots and round-trips", {
  x <- tied_matrix(100, 5, n_missing = 10, seed = 11)
  fit <- quantile_target(x)
  expect_s3_class(fit, "quantile_target")
  expect_length(fit$target, 100)
  expect_false(is.unsorted(fit$target))
  expect_false(is.unsorted(quantile_target(tied_matrix(500, 7, n_missing = 99, seed = 3))$target))
  expect_equal(fit$n_samples, 5)
  expect_equal(fit$n_missing, 10)
  expect_equal(predict(fit, x), normalize_quantiles(x))
  new <- tied_matrix(40, 2, seed = 12)
  expect_warning(avg <- predict(fit, new, ties = "average"), "60 of its 100 features are absent")
  expect_equal(avg, reference_normalize(new, target = fit$target, ties = "average"), tolerance = 1e-12)
  expect_output(print(fit), "fitted on 5 samples x 100 features")
  path <- tempfile(fileext = ".rds")
  saveRDS(fit, path)
  expect_identical(readRDS(path), fit)
  expect_equal(predict(readRDS(path), x), predict(fit, x))
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(fit), fit)
})

test_that("edge cases: one feature, one observed value, constant columns", {
  expect_equal(normalize_quantiles(matrix(c(1, 5, 9), 1)), matrix(5, 1, 3))
  x <- cbind(c(4, 4, 4, 4), c(1, 2, 3, 4))
  out <- normalize_quantiles(x)
  target <- (c(4, 4, 4, 4) + 1:4) / 2
  expect_equal(out[, 1], rep(mean(target[2:3]), 4))
  expect_equal(out[, 2], target)
  x <- cbind(c(NA, 7, NA), c(1, 2, 3))
  out <- normalize_quantiles(x)
  expect_equal(out[2, 1], quantile_target(x)$target[2])
  expect_true(all(is.na(out[c(1, 3), 1])))
})

test_that("the SummarizedExperiment method adds a normalized assay", {
  skip_if_not_installed("SummarizedExperiment")
  x <- tied_matrix(30, 4, seed = 13)
  se <- SummarizedExperiment::SummarizedExperiment(assays = list(counts = x, other = x * 2))
  out <- normalize_quantiles(se)
  expect_s4_class(out, "SummarizedExperiment")
  expect_equal(SummarizedExperiment::assayNames(out), c("counts", "other", "qnorm"))
  expect_equal(SummarizedExperiment::assay(out, "qnorm"), normalize_quantiles(x))
  out2 <- normalize_quantiles(se, assay.type = "other", name = "normalized", ties = "first")
  expect_equal(SummarizedExperiment::assay(out2, "normalized"),
               normalize_quantiles(x * 2, ties = "first"))
  fit <- quantile_target(se, assay.type = 2)
  expect_equal(fit$target, quantile_target(x * 2)$target)
  expect_equal(SummarizedExperiment::assay(predict(fit, se, name = "ref"), "ref"),
               normalize_quantiles(x, target = fit))
  expect_error(normalize_quantiles(se, assay.type = "missing"), "`assay.type` must name one of")
  expect_error(normalize_quantiles(se, assay.type = 3), "`assay.type` must name one of")
  expect_error(normalize_quantiles(se, name = NA_character_), "`name` must be")
})

test_that("the one-pass input scan agrees with R's is.infinite(), is.na() and colSums()", {
  reference <- function(m) {
    observed <- colSums(!is.na(m))
    empty <- which(observed == 0L)
    c(as.numeric(any(is.infinite(m))), length(empty), if (length(empty)) empty[1L] else 0,
      sum(is.na(m)))
  }
  set.seed(7)
  for (trial in 1:30) {
    p <- sample(1:40, 1)
    n <- sample(1:6, 1)
    m <- matrix(rnorm(p * n), p, n)
    for (special in list(NA, NaN, Inf, -Inf)) {
      if (runif(1) < 0.5) m[sample(length(m), sample(length(m), 1))] <- special
    }
    if (runif(1) < 0.3) m[, sample(ncol(m), 1)] <- NA
    expect_identical(diffrank:::expression_matrix_scan(m), reference(m))
  }
  x <- tied_matrix(10, 3)
  x[c(2, 15)] <- c(NA, NaN)
  expect_identical(diffrank:::check_expression_values(x), 2L)
  expect_identical(quantile_target(x)$n_missing, 2L)
})

test_that("bad input gets a clear error naming the argument", {
  x <- tied_matrix(10, 3)
  expect_error(normalize_quantiles(matrix(letters[1:6], 3)), "`x` must be a numeric")
  expect_error(normalize_quantiles(factor(1:3)), "`x` must be a numeric")
  expect_error(normalize_quantiles(list(1, 2)), "`x` must be a numeric")
  expect_error(normalize_quantiles(data.frame(a = 1:3, b = letters[1:3])), "only numeric columns")
  expect_error(normalize_quantiles(matrix(numeric(0), 0, 3)), "at least one row and one column")
  expect_error(normalize_quantiles(matrix(numeric(0), 3, 0)), "at least one row and one column")
  expect_error(normalize_quantiles(numeric(0)), "at least one row")
  x_bad <- x
  x_bad[, 2] <- NA
  expect_error(normalize_quantiles(x_bad), "no observed value \\(the first is s2\\)")
  x_inf <- x
  x_inf[1, 1] <- Inf
  expect_error(normalize_quantiles(x_inf), "infinite")
  expect_error(normalize_quantiles(x, target = "a"), "`target` must be NULL, a numeric vector")
  expect_error(normalize_quantiles(x, target = list(1)), "`target` must be NULL")
  expect_error(normalize_quantiles(x, target = numeric(0)), "`target` must be NULL")
  expect_error(normalize_quantiles(x, target = c(1, NA)), "`target` must contain only finite")
  expect_error(normalize_quantiles(x, target = lm(1 ~ 1)), "`target` must be NULL")
  expect_error(normalize_quantiles(x, ties = "max"), "`ties` must be one of")
  expect_error(normalize_quantiles(x, threads = 0), "`threads` must be a whole number")
  expect_error(normalize_quantiles(x, threads = 1.5), "`threads` must be a whole number")
  expect_error(normalize_quantiles(x, threads = NA), "`threads` must be a whole number")
  expect_error(normalize_quantiles(x, trheads = 2), "Unknown argument `trheads`")
  expect_error(quantile_target(array(1, c(2, 2, 2))), "two dimensions")
  expect_error(predict(quantile_target(x)), "`newdata` is missing")
  withr::local_options(diffrank.threads = -1)
  expect_error(normalize_quantiles(x), "diffrank.threads")
})

test_that("an ExpressionSet gets an error that says how to pass it", {
  skip_if_not_installed("Biobase")
  eset <- Biobase::ExpressionSet(all_leukemia$expr[1:50, 1:10])
  expect_error(normalize_quantiles(eset), "Biobase::exprs\\(x\\)")
  expect_error(kendall_kernel(eset), "makeSummarizedExperimentFromExpressionSet")
  expect_error(suquan(eset, rep(0:1, 5)), "is an ExpressionSet")
})
