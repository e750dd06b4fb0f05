# Thread determinism: every parallel function gives identical() results for
# 1, 2, 3 and 8 threads, on inputs that split into several ranges (and, where
# the glue works in batches, several batches); and the thread pool of
# src/parallel.h itself.

# The thread count a call runs is capped at the machine's cores; outside CRAN
# (make test, CI) the cap is lifted for this file, so that 3 and 8 threads
# really run (and cut the work differently) on a 2-core machine. CRAN never
# sees more than 2 threads.
if (identical(Sys.getenv("NOT_CRAN"), "true")) {
  thread_counts <- c(1L, 2L, 3L, 8L)
  withr::local_envvar(DIFFRANK_UNCAP_THREADS = "true")  # until the end of this file
} else {
  thread_counts <- c(1L, 2L)
}

# f(threads) for every thread count, compared with identical() to threads = 1.
expect_thread_invariant <- function(f, label) {
  reference <- f(1L)
  for (threads in thread_counts[-1L]) {
    expect_identical(f(threads), reference, label = sprintf("%s, threads = %d", label, threads))
  }
}

test_that("quantile normalization does not depend on the number of threads", {
  set.seed(11)
  # 600 rows: three blocks of row means; 30 columns: several column ranges
  x <- matrix(rnorm(600 * 30), 600)
  x[sample(length(x), 200)] <- NA
  x[1:40, 3] <- 0  # ties
  for (ties in c("midrank", "average", "first")) {
    expect_thread_invariant(function(th) normalize_quantiles(x, ties = ties, threads = th),
                            paste("normalize_quantiles", ties))
  }
  expect_thread_invariant(function(th) quantile_target(x, threads = th), "quantile_target")
  target <- quantile_target(x[, 1:10], threads = 1)
  # one feature fewer: the target is interpolated, with the warning that says so
  expect_thread_invariant(function(th) suppressWarnings(predict(target, x[-1, ], threads = th)),
                          "predict.quantile_target")
})

test_that("rank kernels do not depend on the number of threads", {
  set.seed(12)
  x <- matrix(rnorm(40 * 60), 40)
  y <- matrix(rnorm(40 * 25), 40)
  xna <- x
  xna[sample(length(xna), 100)] <- NA
  expect_thread_invariant(function(th) kendall_kernel(x, threads = th), "kendall_kernel")
  expect_thread_invariant(function(th) kendall_kernel(x, y, variant = "tau_a", threads = th),
                          "kendall_kernel tau_a, x and y")
  expect_thread_invariant(function(th) kendall_kernel(xna, na = "pairwise", threads = th),
                          "kendall_kernel pairwise")
  expect_thread_invariant(function(th) mallows_kernel(x, lambda = 3, threads = th),
                          "mallows_kernel")
  expect_thread_invariant(function(th) mallows_kernel(x, y, threads = th), "mallows_kernel, x and y")
  expect_thread_invariant(function(th) kendall_kernel(xna, na = "interleave", threads = th),
                          "kendall_kernel interleave")
  expect_thread_invariant(
    function(th) kendall_kernel(x, y, variant = "tau_a", type = "topk", k = 8, threads = th),
    "kendall_kernel topk, x and y")
  expect_thread_invariant(function(th) mallows_kernel(x, type = "topk", k = 8, threads = th),
                          "mallows_kernel topk")
  for (weighting in c("additive", "multiplicative", "average")) {
    # noise: the "average" kernel is nearly constant, and says so
    expect_thread_invariant(
      function(th) {
        withCallingHandlers(weighted_kendall_kernel(x, weighting = weighting, threads = th),
                            diffrank_near_constant_kernel = function(w) invokeRestart("muffleWarning"))
      },
      paste("weighted_kendall_kernel", weighting))
  }
  expect_thread_invariant(
    function(th) weighted_kendall_kernel(x, y, weighting = "top", k = 10, threads = th),
    "weighted_kendall_kernel top, x and y")
})

test_that("Mallows draws and fits do not depend on the number of threads", {
  expect_thread_invariant(function(th) {
    set.seed(15)
    rmallows(3000, sample(30), theta = 0.2, threads = th)
  }, "rmallows")
  set.seed(16)
  r <- rmallows(3000, sample(30), theta = 0.2)
  expect_thread_invariant(function(th) mallows_model(r, threads = th), "mallows_model")
  expect_thread_invariant(function(th) {
    set.seed(17)
    rmallows(3000, sample(30), theta = seq(1, 0, length.out = 29), threads = th)
  }, "rmallows generalized")
  top <- ifelse(r <= 10, r, NA)
  expect_thread_invariant(function(th) mallows_model(top, model = "generalized", threads = th),
                          "mallows_model generalized top lists")
})

test_that("Mallows mixtures do not depend on the number of threads", {
  set.seed(19)
  r <- cbind(rmallows(300, sample(20), 0.3), rmallows(200, sample(20), 0.3))
  expect_thread_invariant(function(th) {
    set.seed(20)
    mallows_mixture(r, 1:3, n_starts = 2, threads = th)
  }, "mallows_mixture")
})

test_that("rank aggregation does not depend on the number of threads", {
  set.seed(18)
  r <- matrix(sample(40, 40 * 300, replace = TRUE), 40)
  r[sample(length(r), 2000)] <- NA
  w <- runif(300)
  for (method in c("kemeny", "copeland")) {
    expect_thread_invariant(
      function(th) aggregate_rankings(r, method, weights = w, threads = th), method)
  }
})

test_that("rank_regression with the soft-rank loss does not depend on the number of threads", {
  set.seed(14)
  x <- matrix(rnorm(3 * 300), 3)
  rankings <- apply(matrix(rnorm(5 * 300), 5) + rbind(x, x[1:2, ]), 2, rank)
  expect_thread_invariant(
    function(th) coef(rank_regression(x, rankings, loss = "soft_rank", threads = th)),
    "rank_regression soft_rank")
})

test_that("soft ranks and sorts and their VJPs do not depend on the number of threads", {
  set.seed(13)
  # 200 rows: ranges of 10 columns, so 60 columns make six of them
  x <- matrix(rnorm(200 * 60), 200)
  v <- matrix(rnorm(200 * 60), 200)
  for (reg in c("l2", "kl")) {
    expect_thread_invariant(function(th) soft_rank(x, eps = 0.5, reg = reg, threads = th),
                            paste("soft_rank", reg))
    expect_thread_invariant(function(th) soft_sort(x, eps = 0.05, reg = reg, threads = th),
                            paste("soft_sort", reg))
    expect_thread_invariant(function(th) soft_rank_vjp(x, v, eps = 0.5, reg = reg, threads = th),
                            paste("soft_rank_vjp", reg))
    expect_thread_invariant(function(th) soft_sort_vjp(x, v, eps = 0.05, reg = reg,
                                                       threads = th),
                            paste("soft_sort_vjp", reg))
  }
})

test_that("Sinkhorn operators do not depend on the number of threads", {
  set.seed(14)
  # 150 columns: three batches of 64 columns, each split over the threads
  x <- matrix(rnorm(20 * 150), 20)
  v <- matrix(rnorm(20 * 150), 20)
  expect_thread_invariant(function(th) sinkhorn_rank(x, eps = 0.05, threads = th),
                          "sinkhorn_rank")
  expect_thread_invariant(function(th) sinkhorn_rank_vjp(x, v, eps = 0.05, threads = th),
                          "sinkhorn_rank_vjp")
  expect_thread_invariant(function(th) sinkhorn_normalize(x, eps = 0.05, threads = th),
                          "sinkhorn_normalize")
  # one long column (with ties): the threads share the rows of each update
  x1 <- round(rnorm(700), 1)
  v1 <- rnorm(700)
  expect_thread_invariant(function(th) sinkhorn_rank(x1, n_targets = 600, threads = th),
                          "sinkhorn_rank, one column")
  expect_thread_invariant(
    function(th) sinkhorn_rank_fn(x1, eps = 1e-3, n_targets = 600, threads = th)$vjp(v1),
    "sinkhorn_rank_vjp, one column, eps = 1e-3")
  v_sorted <- seq(-1, 1, length.out = 600)
  expect_thread_invariant(
    function(th) sinkhorn_sort_vjp(x1, v_sorted, n_targets = 600, threads = th),
    "sinkhorn_sort_vjp, one column")
})

test_that("SUQUAN does not depend on the number of threads", {
  data <- simulate_suquan(40, p = 60, seed = 15)
  expect_thread_invariant(function(th) suquan(data$x, data$y, max_iter = 5, threads = th),
                          "suquan")
  fit <- suquan(data$x, data$y, max_iter = 5, threads = 1)
  expect_thread_invariant(function(th) predict(fit, data$x, threads = th), "predict.suquan")
})

test_that("the thread pool visits every index once, in timed batches, with progress", {
  for (threads in thread_counts) {
    out <- parallel_check_cpp(1000L, threads, 7L, 300L, -1L, "")
    expect_identical(out$visits, rep(1L, 1000L))
    # the first batch has threads * grain indices (at most `batch`), the next
    # ones are sized by time, at most 4 times the one before
    sizes <- diff(c(0, out$progress))
    expect_identical(sizes[1], min(300, threads * 7))
    expect_true(all(sizes > 0))
    expect_identical(sum(sizes), 1000)
    if (length(sizes) > 2L) expect_true(all(head(sizes[-1], -1) <= 4 * head(sizes, -2)))
  }
  # no batches: one call of the progress callback at the end
  expect_identical(parallel_check_cpp(10L, 2L, 1L, 0L, -1L, "")$progress, 10)
  expect_identical(parallel_check_cpp(0L, 2L, 1L, 0L, -1L, "")$progress, numeric(0))
})

test_that("a call runs the threads it asks for, up to the cap", {
  # 400 indices of 1 ms in ranges of 2: every thread of the arena has time to
  # join. Without the cap lifted, no call runs more threads than the machine
  # has cores.
  cores <- max(1L, parallel::detectCores(), na.rm = TRUE)
  uncapped <- identical(Sys.getenv("DIFFRANK_UNCAP_THREADS"), "true")
  for (threads in thread_counts) {
    used <- parallel_check_cpp(400L, threads, 2L, 0L, -1L, "", 1000L)$threads_used
    expect_lte(used, threads)
    if (uncapped) {
      expect_gte(used, min(threads, 3L))
    } else {
      expect_lte(used, cores)
    }
  }
  withr::with_envvar(c(DIFFRANK_UNCAP_THREADS = NA), {
    used <- parallel_check_cpp(400L, max(thread_counts), 2L, 0L, -1L, "", 1000L)$threads_used
    expect_lte(used, cores)
  })
})

test_that("exceptions thrown on worker threads become R errors", {
  for (threads in thread_counts) {
    expect_error(parallel_check_cpp(1000L, threads, 1L, 0L, 517L, "runtime_error"),
                 "worker failed at index 517", fixed = TRUE)
    expect_error(parallel_check_cpp(1000L, threads, 1L, 100L, 517L, "bad_alloc"),
                 "bad_alloc", fixed = TRUE)
  }
  # R is still usable, and so is the pool
  out <- parallel_check_cpp(100L, 2L, 1L, 0L, -1L, "")
  expect_identical(out$visits, rep(1L, 100L))
})

test_that("threaded calls keep the resident memory flat", {
  # RcppParallel::parallelFor makes a task arena per call, and oneTBB 2021.8
  # keeps about 7 KB of each (2,000 calls of this loop: +17 MB); one arena
  # per thread count, reused, keeps the memory flat.
  skip_on_cran()  # resident memory depends on the machine's allocator and load
  skip_if_not(file.exists("/proc/self/status"), "no /proc/self/status")
  skip_if(nzchar(Sys.getenv("ASAN_OPTIONS")), "running under AddressSanitizer")
  rss <- function() {
    invisible(gc())
    status <- readLines("/proc/self/status")
    as.numeric(gsub("[^0-9]", "", grep("^VmRSS:", status, value = TRUE))) / 1024
  }
  for (i in 1:200) parallel_check_cpp(1000L, 2L, 1L, 0L, -1L, "")
  before <- rss()
  for (i in 1:2000) parallel_check_cpp(1000L, 2L, 1L, 0L, -1L, "")
  expect_lt(rss() - before, 4)
})

# Every operator of the package's table (R/operator_table.R), at its first
# contract example's settings (helper-operators.R), on a matrix of 16
# columns (several column ranges): value, VJP and JVP.
test_that("every operator of the table gives the same value and products for any threads", {
  for (name in names(operator_table)) {
    example <- operator_examples()[[name]][[1L]]
    # as many rows as the example (its weights are per row), 16 columns
    set.seed(19)
    x <- matrix(rnorm(NROW(example$x) * 16), NROW(example$x))
    make <- function(th) {
      args <- utils::modifyList(example$args, list(threads = th))
      run <- function() do.call(get(paste0(name, "_fn"), asNamespace("diffrank")), c(list(x), args))
      if (is.null(example$seed)) run() else withr::with_seed(example$seed, run())
    }
    reference <- make(1L)
    set.seed(20)
    v <- array(rnorm(length(reference$value)), dim(reference$value))
    u <- array(rnorm(length(x)), dim(x))
    expect_thread_invariant(function(th) {
      op <- make(th)
      list(op$value, op$vjp(v), op$jvp(u))
    }, name)
  }
})
