# Issue 13: DelayedMatrix, HDF5Matrix and sparse inputs are processed in
# column blocks (R/blocks.R), with results identical to the in-memory
# functions, for any BiocParallel back-end.

skip_if_not_installed("DelayedArray")
skip_if_not_installed("HDF5Array")

# Tiny blocks, so that every matrix below is read in several blocks.
with_small_blocks <- function(code, columns = 3) {
  old <- suppressMessages(DelayedArray::setAutoBlockSize(40 * 8 * columns))
  on.exit(suppressMessages(DelayedArray::setAutoBlockSize(old)))
  code
}

set.seed(13)
bl_x <- matrix(round(rnorm(40 * 23), 1), 40, 23,
               dimnames = list(paste0("g", 1:40), paste0("s", 1:23)))
bl_x[sample(length(bl_x), 40)] <- NA      # missing values, no empty column
bl_x[, 5] <- rep(c(1, 2), 20)             # a column of two tied blocks
bl_x[1:6, 9] <- NaN
bl_complete <- matrix(round(rnorm(40 * 23), 1), 40, 23,
                      dimnames = list(paste0("g", 1:40), paste0("s", 1:23)))
bl_complete[, 7] <- bl_complete[, 8]      # two identical samples

bl_h5 <- function(m) {
  HDF5Array::writeHDF5Array(m, filepath = tempfile(fileext = ".h5"), name = "x",
                            with.dimnames = TRUE)
}
bl_inputs <- function(m) {
  list(delayed = DelayedArray::DelayedArray(m), hdf5 = bl_h5(m))
}

strip_attributes <- function(v) {
  attributes(v) <- list(dim = dim(v), dimnames = dimnames(v))
  v
}

test_that("tiny blocks split the test matrices into several blocks", {
  with_small_blocks({
    plan <- diffrank:::block_plan(DelayedArray::DelayedArray(bl_x))
    expect_gt(plan$n, 5)
    expect_identical(unlist(plan$cols), seq_len(ncol(bl_x)))
  })
})

test_that("normalize_quantiles() of a DelayedMatrix or HDF5Matrix is identical in memory", {
  skip_on_cran()  # over 5 s
  with_small_blocks({
    for (ties in c("midrank", "average", "first")) {
      ref <- normalize_quantiles(bl_x, ties = ties)
      for (kind in c("delayed", "hdf5")) {
        input <- bl_inputs(bl_x)[[kind]]
        out <- normalize_quantiles(input, ties = ties)
        expect_s4_class(out, "DelayedMatrix")
        expect_identical(as.matrix(out), ref, label = paste(kind, ties))
      }
    }
    # an on-disk input gives an on-disk result; `filepath` chooses the file
    h5 <- bl_h5(bl_x)
    out <- normalize_quantiles(h5)
    expect_true(diffrank:::block_on_disk(out))
    file <- tempfile(fileext = ".h5")
    out <- normalize_quantiles(DelayedArray::DelayedArray(bl_x), filepath = file)
    expect_true(file.exists(file))
    expect_identical(normalizePath(DelayedArray::path(out)), normalizePath(file))
    expect_identical(as.matrix(out), normalize_quantiles(bl_x))
    # a second result in the same file goes to a new dataset
    again <- normalize_quantiles(DelayedArray::DelayedArray(bl_x), ties = "first", filepath = file)
    expect_identical(as.matrix(again), normalize_quantiles(bl_x, ties = "first"))
    expect_identical(as.matrix(out), normalize_quantiles(bl_x))
    # integer data
    int <- matrix(sample(1:5, 40 * 7, TRUE), 40)
    expect_identical(as.matrix(normalize_quantiles(bl_h5(int))), normalize_quantiles(int))
  })
})

test_that("quantile_target() and predict() of a target are identical block by block", {
  with_small_blocks({
    ref <- quantile_target(bl_x)
    for (input in bl_inputs(bl_x)) {
      expect_identical(quantile_target(input), ref)
      expect_identical(quantile_target(input, n_quantiles = 17),
                       quantile_target(bl_x, n_quantiles = 17))
    }
    fitted <- quantile_target(bl_complete)
    for (ties in c("midrank", "average")) {
      for (input in bl_inputs(bl_x)) {
        expect_identical(as.matrix(predict(fitted, input, ties = ties)),
                         predict(fitted, bl_x, ties = ties))
      }
    }
    short <- qnorm(ppoints(11))
    expect_identical(as.matrix(normalize_quantiles(bl_inputs(bl_x)$hdf5, target = short)),
                     normalize_quantiles(bl_x, target = short))
  })
})

test_that("sinkhorn_normalize() of a DelayedMatrix is identical in memory", {
  with_small_blocks({
    ref <- strip_attributes(sinkhorn_normalize(bl_x, eps = 0.05, progress = FALSE))
    for (input in bl_inputs(bl_x)) {
      out <- sinkhorn_normalize(input, eps = 0.05, progress = FALSE)
      expect_identical(as.matrix(out), ref)
    }
    target <- qnorm(ppoints(30))
    ref <- strip_attributes(sinkhorn_normalize(bl_x, target = target, eps = 0.05))
    out <- sinkhorn_normalize(bl_inputs(bl_x)$hdf5, target = target, eps = 0.05)
    expect_identical(as.matrix(out), ref)
    expect_warning(sinkhorn_normalize(bl_inputs(bl_x)$delayed, eps = 0.001, max_iter = 2),
                   "did not converge")
    # the near-constant rule counts the columns of every block, once
    in_memory <- tryCatch(sinkhorn_normalize(bl_x, eps = 1e6), diffrank_near_constant = identity)
    expect_s3_class(in_memory, "diffrank_near_constant")
    expect_warning(out <- sinkhorn_normalize(bl_inputs(bl_x)$delayed, eps = 1e6),
                   sprintf("nearly constant in %d of %d column", in_memory$n_bad, ncol(bl_x)),
                   fixed = TRUE)
    expect_silent(sinkhorn_normalize(bl_inputs(bl_x)$delayed, eps = 0.05, progress = FALSE))
  })
})

test_that("the rank kernels of a DelayedMatrix are identical in memory, in tiles", {
  with_small_blocks({
    inputs <- bl_inputs(bl_complete)
    kernels <- list(
      tau_b = function(x, ...) kendall_kernel(x, ..., progress = FALSE),
      tau_a = function(x, ...) kendall_kernel(x, ..., variant = "tau_a", progress = FALSE),
      mallows = function(x, ...) mallows_kernel(x, ..., lambda = 0.5, progress = FALSE),
      weighted = function(x, ...) weighted_kendall_kernel(x, ..., progress = FALSE),
      top = function(x, ...) weighted_kendall_kernel(x, ..., weighting = "top", k = 5),
      average = function(x, ...) weighted_kendall_kernel(x, ..., weighting = "average"))
    for (name in names(kernels)) {
      ref <- kernels[[name]](bl_complete)
      for (kind in names(inputs)) {
        expect_identical(kernels[[name]](inputs[[kind]]), ref, label = paste(name, kind))
      }
      if (!name %in% c("tau_b", "weighted")) next
      # cross-kernels, with a block input on either side
      y <- bl_complete[, 1:4]
      expect_identical(kernels[[name]](inputs$hdf5, y = y),
                       kernels[[name]](bl_complete, y = y), label = paste(name, "x blocks"))
      expect_identical(kernels[[name]](y, y = inputs$delayed),
                       kernels[[name]](y, y = bl_complete), label = paste(name, "y blocks"))
    }
    # missing values compared pairwise
    ref <- kendall_kernel(bl_x, na = "pairwise", progress = FALSE)
    expect_identical(kendall_kernel(bl_inputs(bl_x)$hdf5, na = "pairwise"), ref)
    ref <- weighted_kendall_kernel(bl_x, na = "pairwise", progress = FALSE)
    expect_identical(weighted_kendall_kernel(bl_inputs(bl_x)$delayed, na = "pairwise"), ref)
    expect_error(kendall_kernel(bl_inputs(bl_x)$delayed), "missing values")
  }, columns = 6)
})

test_that("suquan() and predict() accept DelayedMatrix inputs with identical results", {
  with_small_blocks({
    labels <- rep(0:1, length.out = ncol(bl_complete))
    ref <- suquan(bl_complete, labels, lambda = 0.1, rounds = 2)
    fit <- suquan(bl_inputs(bl_complete)$hdf5, labels, lambda = 0.1, rounds = 2)
    for (part in c("f", "w", "b", "fitted", "mean_target", "f_init", "history")) {
      expect_identical(fit[[part]], ref[[part]], label = part)
    }
    for (input in bl_inputs(bl_x)) {
      expect_identical(predict(ref, input), predict(ref, bl_x))
      expect_identical(predict(ref, input, type = "class"), predict(ref, bl_x, type = "class"))
    }
    # features matched by name
    shuffled <- bl_x[rev(seq_len(nrow(bl_x))), ]
    expect_identical(predict(ref, bl_inputs(shuffled)$hdf5), predict(ref, bl_x))
  }, columns = 16)
})

test_that("predict() of a qmf fit accepts a DelayedMatrix, within the memory limit", {
  set.seed(2)
  train <- matrix(rnorm(20 * 12), 20)
  fit <- suppressWarnings(qmf(train, rank = 2, n_quantiles = 4, max_epochs = 3, verbose = FALSE,
                             threads = 1))
  new <- matrix(rnorm(20 * 5), 20)
  ref <- predict(fit, new, threads = 1)
  expect_identical(predict(fit, DelayedArray::DelayedArray(new), threads = 1), ref)
  withr::local_options(diffrank.memory_limit = 100)
  expect_error(predict(fit, DelayedArray::DelayedArray(new)), "diffrank.memory_limit")
})

test_that("sparse matrices: zeros are exact ties, densified one block at a time", {
  skip_if_not_installed("Matrix")
  set.seed(3)
  dense <- matrix(rpois(40 * 12, 0.7), 40, dimnames = list(NULL, paste0("c", 1:12)))
  storage.mode(dense) <- "double"
  sparse <- Matrix::Matrix(dense, sparse = TRUE)
  expect_s4_class(sparse, "dgCMatrix")
  with_small_blocks({
    out <- normalize_quantiles(sparse)
    expect_s4_class(out, "DelayedMatrix")
    expect_identical(as.matrix(out), normalize_quantiles(dense))
    expect_identical(quantile_target(sparse), quantile_target(dense))
    expect_identical(suppressWarnings(kendall_kernel(sparse)),
                     suppressWarnings(kendall_kernel(dense)))
    # a result larger than the limit is an error naming its size, not a dense copy
    withr::local_options(diffrank.dense_limit = 1000)
    expect_error(normalize_quantiles(sparse), "3.84 KB as a dense matrix")
    expect_identical(as.matrix(normalize_quantiles(sparse, filepath = tempfile(fileext = ".h5"))),
                     normalize_quantiles(dense))
  })
})

test_that("a SummarizedExperiment with an HDF5 assay round-trips on disk", {
  skip_if_not_installed("SummarizedExperiment")
  with_small_blocks({
    se <- SummarizedExperiment::SummarizedExperiment(list(counts = bl_inputs(bl_x)$hdf5))
    file <- tempfile(fileext = ".h5")
    out <- normalize_quantiles(se, filepath = file, name = "qnorm")
    assay <- SummarizedExperiment::assay(out, "qnorm", withDimnames = FALSE)
    expect_s4_class(assay, "DelayedMatrix")
    expect_true(diffrank:::block_on_disk(assay))
    expect_identical(dimnames(out), dimnames(bl_x))
    expect_identical(as.matrix(SummarizedExperiment::assay(out, "qnorm")),
                     normalize_quantiles(bl_x))
    dir <- tempfile()
    HDF5Array::saveHDF5SummarizedExperiment(out, dir)
    back <- HDF5Array::loadHDF5SummarizedExperiment(dir)
    expect_identical(as.matrix(SummarizedExperiment::assay(back, "qnorm")),
                     normalize_quantiles(bl_x))
    expect_identical(quantile_target(se), quantile_target(bl_x))
    expect_identical(kendall_kernel(se, na = "pairwise"), kendall_kernel(bl_x, na = "pairwise"))
    soft <- sinkhorn_normalize(se, eps = 0.05)
    expect_identical(as.matrix(SummarizedExperiment::assay(soft, "sinkhorn")),
                     strip_attributes(sinkhorn_normalize(bl_x, eps = 0.05)))
  })
})

# Issue 24: the robust and group-aware (qsmooth) variants, and their
# weights, take block inputs like normalize_quantiles().
bl_groups <- rep(c("A", "B", "C"), length.out = 23)

test_that("robust and qsmooth variants are identical block by block", {
  skip_on_cran()  # over 5 s
  positive <- abs(bl_x) + 1
  with_small_blocks({
    for (kind in c("delayed", "hdf5", "sparse")) {
      input <- function(m) {
        if (kind == "sparse") return(methods::as(m, "CsparseMatrix"))
        bl_inputs(m)[[kind]]
      }
      same <- function(out, ref, what) {
        if (is.matrix(ref)) {
          expect_s4_class(out, "DelayedMatrix")
          out <- as.matrix(out)
        }
        expect_identical(out, ref, label = paste(kind, what))
      }
      m <- if (kind == "sparse") bl_complete else bl_x
      d <- input(m)
      for (rule in c("variance", "mean", "both")) {
        same(robust_weights(d, rule, n_remove = 3), robust_weights(m, rule, n_remove = 3), rule)
      }
      same(normalize_quantiles_robust(d), normalize_quantiles_robust(m), "robust")
      same(normalize_quantiles_robust(d, remove_extreme = "none", trim = 0.5, ties = "average"),
           normalize_quantiles_robust(m, remove_extreme = "none", trim = 0.5, ties = "average"),
           "median")
      w <- seq(0.5, 2, length.out = 23)
      same(normalize_quantiles_robust(d, weights = w), normalize_quantiles_robust(m, weights = w),
           "weights")
      same(normalize_quantiles_robust(input(positive), geometric = TRUE, ties = "first"),
           normalize_quantiles_robust(positive, geometric = TRUE, ties = "first"), "geometric")
      same(qsmooth_weights(d, bl_groups), qsmooth_weights(m, bl_groups), "qsmooth weights")
      same(qsmooth_weights(d, bl_groups, window = 0, endrule = "median"),
           qsmooth_weights(m, bl_groups, window = 0, endrule = "median"), "rough weights")
      same(normalize_quantiles_groups(d, bl_groups), normalize_quantiles_groups(m, bl_groups),
           "qsmooth")
      same(normalize_quantiles_groups(d, bl_groups, weight = 0.25, ties = "average"),
           normalize_quantiles_groups(m, bl_groups, weight = 0.25, ties = "average"), "weight")
    }
    # values near the double range take a power-of-two unit: a second pass
    huge <- bl_x * 1e300
    d <- bl_inputs(huge)$delayed
    expect_identical(robust_weights(d), robust_weights(huge))
    expect_identical(as.matrix(normalize_quantiles_groups(d, bl_groups)),
                     normalize_quantiles_groups(huge, bl_groups))
  })
})

test_that("robust and qsmooth variants of an HDF5 assay stay on disk", {
  skip_if_not_installed("SummarizedExperiment")
  with_small_blocks({
    se <- SummarizedExperiment::SummarizedExperiment(
      list(counts = bl_inputs(bl_x)$hdf5),
      colData = S4Vectors::DataFrame(type = bl_groups, row.names = colnames(bl_x)))
    out <- normalize_quantiles_groups(se, "type")
    out <- normalize_quantiles_robust(out, assay.type = "counts")
    for (name in c("qsmooth", "qnorm_robust")) {
      assay <- SummarizedExperiment::assay(out, name, withDimnames = FALSE)
      expect_s4_class(assay, "DelayedMatrix")
      expect_true(diffrank:::block_on_disk(assay))
    }
    expect_identical(as.matrix(SummarizedExperiment::assay(out, "qsmooth")),
                     normalize_quantiles_groups(bl_x, bl_groups))
    expect_identical(as.matrix(SummarizedExperiment::assay(out, "qnorm_robust")),
                     normalize_quantiles_robust(bl_x))
    expect_identical(qsmooth_weights(se, "type"), qsmooth_weights(bl_x, bl_groups))
    expect_identical(robust_weights(se), robust_weights(bl_x))
  })
})

test_that("block inputs give clear errors for what they do not support", {
  d <- DelayedArray::DelayedArray(bl_x)
  expect_error(normalize_quantiles(d, subset = 1:10), "`subset`")
  expect_error(quantile_target(d, trim = 0.1), "`trim`")
  expect_error(normalize_quantiles(d, filepath = 3), "`filepath`")
  expect_error(normalize_quantiles(bl_x, filepath = c("a", "b")), "`filepath`")
  expect_error(normalize_quantiles(d, BPPARAM = "serial"), "`BPPARAM`")
  expect_error(kendall_kernel(bl_complete, BPPARAM = 2), "`BPPARAM`")
  bad <- bl_x
  bad[, 4] <- NA
  expect_error(normalize_quantiles(DelayedArray::DelayedArray(bad)), "no observed value.*s4")
  bad[1, 3] <- Inf
  expect_error(normalize_quantiles(DelayedArray::DelayedArray(bad)), "infinite")
  expect_error(normalize_quantiles(DelayedArray::DelayedArray(array(1, c(2, 2, 2)))),
               "two dimensions")
  # the variants check their block arguments on any input
  expect_error(normalize_quantiles_robust(bl_x, BPPARAM = "serial"), "`BPPARAM`")
  expect_error(normalize_quantiles_groups(d, bl_groups, filepath = NA), "`filepath`")
  expect_error(qsmooth_weights(bl_x, bl_groups, BPPARAM = 1), "`BPPARAM`")
  expect_error(robust_weights(d, BPPARAM = list()), "`BPPARAM`")
  expect_error(normalize_quantiles_groups(d, bl_groups[-1]), "`groups`.*23")
  expect_error(robust_weights(d, n_remove = 23), "`n_remove`")
  const <- bl_x
  const[, 6] <- 2
  expect_error(robust_weights(DelayedArray::DelayedArray(const)), "Column s6 of `x` is constant")
  # a trimmed mean holds every sample's quantiles: within the memory limit
  old <- options(diffrank.memory_limit = 1000)
  on.exit(options(old), add = TRUE)
  expect_error(normalize_quantiles_robust(d, remove_extreme = "none", trim = 0.5,
                                          filepath = tempfile(fileext = ".h5")),
               "`x` \\(40 x 23\\).*diffrank.memory_limit.*`trim` > 0")
})

test_that("results are identical for SerialParam, MulticoreParam(2) and SnowParam(2)", {
  skip_on_cran()  # over 5 s
  skip_if_not_installed("BiocParallel")
  params <- list(serial = BiocParallel::SerialParam())
  if (.Platform$OS.type == "unix") {
    multicore <- BiocParallel::MulticoreParam(2)
    BiocParallel::bpstart(multicore)
    on.exit(BiocParallel::bpstop(multicore), add = TRUE)
    params$multicore <- multicore
  }
  # SnowParam workers load diffrank from their library paths: only when the
  # package under test is installed (not loaded from source by pkgload).
  installed <- is.null(asNamespace("diffrank")$.__DEVTOOLS__)
  if (installed) {
    snow <- BiocParallel::SnowParam(2)
    BiocParallel::bpstart(snow)
    on.exit(BiocParallel::bpstop(snow), add = TRUE)
    params$snow <- snow
  }
  with_small_blocks({
    inputs <- c(bl_inputs(bl_x), list(complete = bl_h5(bl_complete)))
    ref_qn <- normalize_quantiles(bl_x)
    ref_target <- quantile_target(bl_x)
    ref_kernel <- kendall_kernel(bl_complete, progress = FALSE)
    ref_weighted <- weighted_kendall_kernel(bl_x, na = "pairwise", progress = FALSE)
    ref_soft <- strip_attributes(sinkhorn_normalize(bl_x, eps = 0.05))
    ref_robust <- normalize_quantiles_robust(bl_x)
    ref_groups <- normalize_quantiles_groups(bl_x, bl_groups)
    for (name in names(params)) {
      bp <- params[[name]]
      for (kind in c("delayed", "hdf5")) {
        expect_identical(as.matrix(normalize_quantiles(inputs[[kind]], BPPARAM = bp)), ref_qn,
                         label = paste(name, kind))
      }
      # to a file: two workers write the blocks, SnowParam's sent with the
      # items for an in-memory input
      expect_identical(as.matrix(normalize_quantiles(inputs$delayed, BPPARAM = bp,
                                                     filepath = tempfile(fileext = ".h5"))),
                       ref_qn, label = name)
      expect_identical(quantile_target(inputs$hdf5, BPPARAM = bp), ref_target, label = name)
      expect_identical(weighted_kendall_kernel(inputs$delayed, na = "pairwise", BPPARAM = bp),
                       ref_weighted, label = name)
      expect_identical(kendall_kernel(inputs$complete, BPPARAM = bp), ref_kernel, label = name)
      expect_identical(as.matrix(sinkhorn_normalize(inputs$hdf5, eps = 0.05, BPPARAM = bp)),
                       ref_soft, label = name)
      expect_identical(as.matrix(normalize_quantiles_robust(inputs$hdf5, BPPARAM = bp)),
                       ref_robust, label = name)
      expect_identical(as.matrix(normalize_quantiles_groups(inputs$delayed, bl_groups,
                                                            BPPARAM = bp)),
                       ref_groups, label = name)
      # errors on a worker come back with their own message
      bad <- bl_x
      bad[, 20] <- NA
      expect_error(normalize_quantiles(DelayedArray::DelayedArray(bad), BPPARAM = bp),
                   "no observed value", label = name)
    }
    if (installed) expect_true(BiocParallel::bpisup(params$snow))
  }, columns = 8)
  # Each worker sums a range of blocks, and the ranges' sums are added here:
  # exact sums make that the target of the whole matrix, also where sums in
  # floating point depend on the order of the columns (see test-quantile.R).
  cancel <- cancelling_matrix(40, 60, seed = 5)
  h5 <- bl_h5(cancel$x)
  ref_qn <- normalize_quantiles(cancel$x)
  with_small_blocks({
    expect_gt(diffrank:::block_plan(h5)$n, 8)  # more blocks than ranges
    for (name in names(params)) {
      expect_identical(quantile_target(h5, BPPARAM = params[[name]])$target, cancel$exact_target,
                       label = name)
      expect_identical(as.matrix(normalize_quantiles(h5, BPPARAM = params[[name]])), ref_qn,
                       label = name)
    }
  }, columns = 3)
})

# Issue 24: with several workers and an HDF5 result, each worker writes its
# blocks to files of its own (the main process writing every block made two
# workers slower than one); the result is one DelayedMatrix over the files.
test_that("fresh SnowParam workers load the packages of an HDF5 input quietly", {
  skip_on_cran()  # a subprocess with two workers: over 5 s
  skip_if_not_installed("BiocParallel")
  skip_if(!is.null(asNamespace("diffrank")$.__DEVTOOLS__), "the workers need the installed package")
  script <- tempfile(fileext = ".R")
  on.exit(unlink(script), add = TRUE)
  writeLines(c(
    sprintf(".libPaths(c(%s))", paste(deparse(.libPaths()), collapse = "")),
    "suppressPackageStartupMessages({library(diffrank); library(HDF5Array)})",
    "h <- writeHDF5Array(matrix(as.double(1:400), 40), tempfile(fileext = '.h5'), 'x')",
    "r <- normalize_quantiles(h, BPPARAM = BiocParallel::SnowParam(2))",
    "cat('normalized', dim(r), '\\n')"), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = TRUE)
  expect_true(any(grepl("normalized 40 10", out)), label = paste(out, collapse = "\n"))
  # before, every worker printed "Loading required package: HDF5Array" and
  # the start-up messages of its dependencies
  expect_false(any(grepl("Loading required package|Attaching package", out)),
               label = paste(out, collapse = "\n"))
})

test_that("workers write their own blocks of an HDF5 result", {
  skip_on_cran()  # over 5 s
  skip_if_not_installed("BiocParallel")
  skip_on_os("windows")
  multicore <- BiocParallel::MulticoreParam(2)
  with_small_blocks({
    h5 <- bl_h5(bl_x)
    n_blocks <- diffrank:::block_plan(h5)$n
    # more blocks than the workers' ranges (4 per worker): each worker
    # writes every block of a range, one dataset per block
    expect_gt(n_blocks, 8)
    ref <- normalize_quantiles(bl_x)
    out <- tempfile("result-", fileext = ".h5")
    r <- normalize_quantiles(h5, BPPARAM = multicore, filepath = out)
    expect_identical(as.matrix(r), ref)
    expect_identical(DelayedArray::nseed(r), n_blocks)
    # one file per worker, one dataset per block
    files <- list.files(dirname(out), pattern = paste0("^", basename(sub("\\.h5$", "", out)), "-"))
    expect_length(files, 2L)
    datasets <- unlist(lapply(file.path(dirname(out), files), function(f) rhdf5::h5ls(f)$name))
    expect_length(datasets, n_blocks)
    # a second call into the same files writes new datasets beside the first
    again <- normalize_quantiles(h5, target = quantile_target(bl_x), BPPARAM = multicore,
                                 filepath = out)
    expect_identical(as.matrix(again), normalize_quantiles(bl_x, target = quantile_target(bl_x)))
    expect_identical(as.matrix(r), ref)
    # without `filepath`, in HDF5Array's dump directory; Sinkhorn too
    soft <- sinkhorn_normalize(h5, eps = 0.05, BPPARAM = multicore)
    expect_identical(as.matrix(soft), strip_attributes(sinkhorn_normalize(bl_x, eps = 0.05)))
    expect_identical(DelayedArray::nseed(soft), n_blocks)
    # an error in one block of a range comes back with its own message
    bad <- bl_x
    bad[, 20] <- NA
    expect_error(normalize_quantiles(bl_h5(bad), target = quantile_target(bl_x),
                                     BPPARAM = multicore, filepath = tempfile(fileext = ".h5")),
                 "no observed value.*s20")
    # one worker, or serial blocks: one dataset written by this process
    serial <- normalize_quantiles(h5, BPPARAM = BiocParallel::SerialParam())
    expect_identical(DelayedArray::nseed(serial), 1L)
    expect_identical(as.matrix(serial), ref)
  }, columns = 2)
})

# Issue 24: HDF5 results are chunked so that reading a few rows or columns of
# them costs no more than of the input (one chunk of whole columns per block
# made every row read read the whole result).
test_that("HDF5 results follow the input's chunks, or HDF5Array's default volume", {
  m <- matrix(rnorm(300 * 40), 300, 40)
  chunked <- HDF5Array::writeHDF5Array(m, filepath = tempfile(fileext = ".h5"), name = "x",
                                       chunkdim = c(50L, 8L))
  with_small_blocks({
    out <- normalize_quantiles(chunked, filepath = tempfile(fileext = ".h5"))
    expect_identical(DelayedArray::chunkdim(out), c(50L, 8L))
    expect_identical(as.matrix(out), normalize_quantiles(m))
  }, columns = 120)   # blocks of 16 columns: two chunks wide
  # an in-memory input: HDF5Array's default chunk volume, whose columns
  # divide the block width (every block writes whole chunks)
  old <- HDF5Array::getHDF5DumpChunkLength()
  HDF5Array::setHDF5DumpChunkLength(600L)
  on.exit(HDF5Array::setHDF5DumpChunkLength(old))
  with_small_blocks({
    plan <- diffrank:::block_plan(DelayedArray::DelayedArray(m))
    out <- normalize_quantiles(DelayedArray::DelayedArray(m), filepath = tempfile(fileext = ".h5"))
    chunk <- DelayedArray::chunkdim(out)
    expect_lte(prod(chunk), 600)
    expect_lt(chunk[1L], nrow(m))
    expect_identical(plan$width %% chunk[2L], 0L)
    expect_identical(as.matrix(out), normalize_quantiles(m))
  }, columns = 6)
})
