# The fits that need their data whole in memory, qmf(), cv_suquan() and
# rank_regression(), realize a DelayedMatrix, HDF5 or sparse `x` as an
# ordinary matrix within option diffrank.memory_limit, with results identical
# to those on the matrix; `BPPARAM` and `filepath` are errors that say why.

skip_if_not_installed("DelayedArray")

set.seed(5)
wh_x <- matrix(round(rnorm(20 * 12), 2), 20, 12,
               dimnames = list(paste0("g", 1:20), paste0("s", 1:12)))
wh_new <- matrix(round(rnorm(20 * 4), 2), 20, 4,
                 dimnames = list(paste0("g", 1:20), paste0("n", 1:4)))
wh_y <- factor(rep(c("a", "b"), 6))
wh_rankings <- apply(-(matrix(rnorm(3 * 20), 3) %*% wh_x + rnorm(36, sd = 0.5)), 2, rank)
rownames(wh_rankings) <- c("red", "green", "blue")

# Every fit below is called on its data under one name (`input`), so that the
# calls stored in the fits are the same; qmf() also stores its timings.
wh_qmf <- function(input, ...) {
  set.seed(1)
  fit <- suppressWarnings(qmf(input, rank = 2, n_quantiles = 4, max_epochs = 5, verbose = FALSE,
                              threads = 1, ...))
  fit$seconds <- NULL
  fit$history$seconds <- NULL
  fit
}
wh_cv <- function(input) {
  set.seed(2)
  suppressMessages(cv_suquan(input, wh_y, nlambda = 3, rounds = 0:1, nfolds = 3, max_iter = 5,
                             progress = FALSE, threads = 1))
}
wh_rank <- function(input) {
  set.seed(3)
  rank_regression(input, wh_rankings, n_samples = 10, max_iter = 20, threads = 1)
}

test_that("qmf() of a DelayedMatrix is identical to qmf() of the matrix", {
  ref <- wh_qmf(wh_x)
  fit <- wh_qmf(DelayedArray::DelayedArray(wh_x))
  expect_true(is.matrix(fit$x))
  expect_identical(fit, ref)
  # new samples as a DelayedMatrix too (predict() realizes them)
  expect_identical(predict(fit, DelayedArray::DelayedArray(wh_new), threads = 1),
                   predict(ref, wh_new, threads = 1))
})

test_that("cv_suquan() of a DelayedMatrix is identical, and so are its predictions", {
  ref <- wh_cv(wh_x)
  cv <- wh_cv(DelayedArray::DelayedArray(wh_x))
  expect_identical(cv, ref)
  delayed_new <- DelayedArray::DelayedArray(wh_new)
  for (s in c("lambda_min", "lambda_1se")) {
    expect_identical(predict(cv, delayed_new, type = "response", s = s, threads = 1),
                     predict(ref, wh_new, type = "response", s = s, threads = 1))
  }
  # predict() hands `BPPARAM` on to predict.suquan(), which checks it
  expect_error(predict(cv, delayed_new, BPPARAM = 1),
               "`BPPARAM` must be NULL or a BiocParallel back-end", fixed = TRUE)
  skip_if_not_installed("BiocParallel")
  expect_identical(predict(cv, delayed_new, BPPARAM = BiocParallel::SerialParam(), threads = 1),
                   predict(ref, wh_new, threads = 1))
})

test_that("rank_regression() of a DelayedMatrix or sparse matrix is identical, and its predict()", {
  ref <- wh_rank(wh_x)
  fit <- wh_rank(DelayedArray::DelayedArray(wh_x))
  expect_identical(fit, ref)
  expect_identical(predict(fit, DelayedArray::DelayedArray(wh_new)), predict(ref, wh_new))
  expect_identical(predict(fit, DelayedArray::DelayedArray(wh_new), type = "score"),
                   predict(ref, wh_new, type = "score"))
  skip_if_not_installed("Matrix")
  counts <- wh_x
  counts[counts < 0.5] <- 0
  sparse <- Matrix::Matrix(counts, sparse = TRUE)
  expect_s4_class(sparse, "sparseMatrix")
  expect_identical(wh_rank(sparse), wh_rank(as.matrix(sparse)))
  expect_identical(predict(fit, Matrix::Matrix(wh_new * (wh_new > 0), sparse = TRUE)),
                   predict(ref, wh_new * (wh_new > 0)))
})

test_that("the SummarizedExperiment methods realize an HDF5-backed assay", {
  skip_if_not_installed("HDF5Array")
  skip_if_not_installed("SummarizedExperiment")
  h5 <- HDF5Array::writeHDF5Array(wh_x, filepath = tempfile(fileext = ".h5"), name = "x",
                                  with.dimnames = TRUE)
  expect_true(methods::is(h5, "HDF5Matrix"))
  on_disk <- SummarizedExperiment::SummarizedExperiment(list(counts = h5))
  in_memory <- SummarizedExperiment::SummarizedExperiment(list(counts = wh_x))
  fit <- wh_qmf(on_disk)
  expect_identical(fit, wh_qmf(in_memory))
  # the same fit as on the matrix, but for the call
  ref <- wh_qmf(wh_x)
  fit$call <- ref$call <- NULL
  expect_identical(fit, ref)
  expect_identical(wh_rank(on_disk), wh_rank(in_memory))
})

test_that("a `BPPARAM` or `filepath` argument says that the fit needs its data whole", {
  delayed <- DelayedArray::DelayedArray(wh_x)
  why <- paste0("fits its data whole in memory and has no %s: a DelayedMatrix `x` is realized ",
                "as an ordinary matrix (within option diffrank.memory_limit); see ?diffrank_blocks.")
  err <- expect_error(qmf(wh_x, rank = 2, BPPARAM = NULL),
                      paste("qmf()", sprintf(why, "`BPPARAM`")), fixed = TRUE)
  expect_identical(conditionCall(err)[[1L]], quote(qmf))
  expect_error(qmf(delayed, rank = 2, filepath = "fit.h5"),
               paste("qmf()", sprintf(why, "`filepath`")), fixed = TRUE)
  expect_error(cv_suquan(delayed, wh_y, BPPARAM = NULL),
               paste("cv_suquan()", sprintf(why, "`BPPARAM`")), fixed = TRUE)
  expect_error(cv_suquan(wh_x, wh_y, filepath = "cv.h5", BPPARAM = NULL),
               paste("cv_suquan()", sprintf(why, "`BPPARAM` or `filepath`")), fixed = TRUE)
  expect_error(rank_regression(delayed, wh_rankings, BPPARAM = NULL),
               paste("rank_regression()", sprintf(why, "`BPPARAM`")), fixed = TRUE)
  expect_error(rank_regression(wh_x, wh_rankings, filepath = "r.h5"),
               paste("rank_regression()", sprintf(why, "`filepath`")), fixed = TRUE)
  # other unknown arguments keep the generic error
  expect_error(qmf(wh_x, rank = 2, BPPRAM = NULL), "Unknown argument `BPPRAM`", fixed = TRUE)
  expect_error(rank_regression(wh_x, wh_rankings, BPPARAM = NULL, foo = 1),
               "rank_regression() fits its data whole", fixed = TRUE)
  skip_if_not_installed("SummarizedExperiment")
  se <- SummarizedExperiment::SummarizedExperiment(list(counts = wh_x))
  expect_error(qmf(se, rank = 2, BPPARAM = NULL),
               paste("qmf()", sprintf(why, "`BPPARAM`")), fixed = TRUE)
})

test_that("a block `x` larger than diffrank.memory_limit is an error naming its size", {
  delayed <- DelayedArray::DelayedArray(wh_x)
  fit <- wh_rank(wh_x)
  old <- options(diffrank.memory_limit = 1000)
  on.exit(options(old))
  size <- paste0("`%s` (%s) would take %s as a dense matrix, more than the limit of 1 KB ",
                 "(option diffrank.memory_limit): ")
  x_size <- sprintf(size, "x", "20 x 12", "1.92 KB")
  expect_error(qmf(delayed, rank = 2),
               paste0(x_size, "qmf() fits its data whole in memory."), fixed = TRUE)
  expect_error(cv_suquan(delayed, wh_y),
               paste0(x_size, "cv_suquan() fits its data whole in memory."), fixed = TRUE)
  expect_error(rank_regression(delayed, wh_rankings),
               paste0(x_size, "rank_regression() fits its data whole in memory."), fixed = TRUE)
  wide <- DelayedArray::DelayedArray(cbind(wh_new, wh_new, wh_new, wh_new))
  expect_error(predict(fit, wide),
               paste0(sprintf(size, "newdata", "20 x 16", "2.56 KB"),
                      "predict() of a rank_regression fit scores them in memory."), fixed = TRUE)
  # below the limit, the same data are fitted
  options(diffrank.memory_limit = 2000)
  expect_identical(predict(fit, DelayedArray::DelayedArray(wh_new)), predict(fit, wh_new))
  skip_if_not_installed("SummarizedExperiment")
  options(diffrank.memory_limit = 1000)
  se <- SummarizedExperiment::SummarizedExperiment(list(counts = delayed))
  expect_error(qmf(se, rank = 2),
               paste0(x_size, "qmf() fits its data whole in memory."), fixed = TRUE)
})
