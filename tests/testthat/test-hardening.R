# Regression tests for the findings of the hardening review: memory kept after
# an error, undefined behaviour, overflow at the extremes of the doubles,
# arguments that became NA, unvalidated objects and unclear errors.

# Resident memory of this R process in MB (Linux), after a full collection.
resident_mb <- function() {
  invisible(gc())
  status <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmRSS:", status, value = TRUE))) / 1024
}

skip_unless_rss <- function() {
  # resident memory depends on the machine's allocator and load: not on CRAN
  skip_on_cran()
  skip_if_not(file.exists("/proc/self/status"), "no /proc/self/status")
  # AddressSanitizer keeps freed memory in quarantine: RSS says nothing there
  skip_if(nzchar(Sys.getenv("ASAN_OPTIONS")), "running under AddressSanitizer")
}

test_that("a kernel matrix too large to allocate fails cleanly and keeps no memory", {
  # 2 features x 1e6 samples: the 1e6 x 1e6 result (8 TB) cannot be
  # allocated. The rank tables (32 MB) used to be built first and kept, R's
  # error jumping over their destructors.
  x <- matrix(rep(c(1, 2), 1e6), 2)
  calls <- list(
    function() kendall_kernel(x, threads = 1),
    function() mallows_kernel(x, threads = 1),
    function() weighted_kendall_kernel(x, weighting = "additive", threads = 1)
  )
  for (f in calls) expect_error(f(), "cannot allocate")
  skip_unless_rss()
  before <- resident_mb()
  for (f in calls) for (k in 1:2) try(f(), silent = TRUE)
  expect_lt(resident_mb() - before, 16)
})

test_that("soft ranks of a subnormal spread are defined (bucket sort)", {
  # used to convert an infinite bucket position to an integer (undefined
  # behaviour seen by -fsanitize=float-cast-overflow, see `make sanitize`)
  expect_identical(soft_rank(c(0, 1e-323), eps = 0), c(1, 2))
  expect_identical(soft_rank(c(1e-323, 0, 5e-324), eps = 0), c(3, 1, 2))
  expect_identical(soft_sort(c(1e-323, 0), eps = 0), c(0, 1e-323))
  expect_identical(soft_rank(c(0, 1e-323), eps = 0, decreasing = TRUE), c(2, 1))
})

test_that("isotonic regression pools means of opposite signs near the largest double", {
  expect_identical(isotonic_regression(c(1.5e308, -1.5e308)), c(0, 0))
  expect_identical(isotonic_regression(c(-1.5e308, 1.5e308), decreasing = TRUE), c(0, 0))
  expect_equal(isotonic_regression(c(1.7e308, -1.7e308, 0)), c(0, 0, 0))
  # weights whose sum overflows
  expect_identical(isotonic_regression(c(2, 1), weights = c(1e308, 1e308)), c(1.5, 1.5))
  expect_equal(isotonic_regression(c(3, 1), weights = c(1.5e308, 0.5e308)), c(2.5, 2.5))
  # ordinary data: stats::isoreg
  set.seed(3)
  y <- rnorm(50)
  expect_equal(isotonic_regression(y), stats::isoreg(y)$yf, tolerance = 1e-14)
})

test_that("quantile normalization interpolates targets near the largest double", {
  expect_identical(normalize_quantiles(matrix(1:3), target = c(-1.5e308, 1.5e308)),
                   matrix(c(-1.5e308, 0, 1.5e308)))
  big <- c(1.5e308, 1.6e308, 1.7e308)
  expect_equal(normalize_quantiles(matrix(c(1, 1, 1)), target = big, ties = "average"),
               matrix(rep(1.6e308, 3)), tolerance = 1e-15)
  out <- normalize_quantiles(matrix(c(2, 1, 2, 3)), target = c(-1.7e308, 1.7e308))
  expect_true(all(is.finite(out)))
  expect_identical(order(out[, 1], c(2, 1, 3, 4)), order(c(2, 1, 2, 3), c(2, 1, 3, 4)))
})

test_that("normalized weighted Kendall kernels do not depend on the scale of u", {
  set.seed(4)
  km <- matrix(rnorm(40), 10)
  u <- exp(-(1:10) / 3)
  reference <- weighted_kendall_kernel(km, weighting = "multiplicative", u = u)
  expect_no_warning(tiny <- weighted_kendall_kernel(km, weighting = "multiplicative", u = u * 1e-200))
  expect_equal(tiny, reference, tolerance = 1e-12)
  expect_equal(weighted_kendall_kernel(km, weighting = "multiplicative", u = u * 1e200), reference,
               tolerance = 1e-12)
  expect_equal(weighted_kendall_kernel(km, weighting = "additive", u = u * 1e-300),
               weighted_kendall_kernel(km, weighting = "additive", u = u), tolerance = 1e-12)
  # constant weights of any size: the unweighted count of concordant pairs
  ones <- weighted_kendall_kernel(km, weighting = "multiplicative", u = rep(1, 10))
  expect_no_warning(small <- weighted_kendall_kernel(km, weighting = "multiplicative", u = rep(1e-200, 10)))
  expect_equal(small, ones, tolerance = 1e-14)
  expect_false(anyNA(small))
  # the raw sums keep the scale of u
  raw <- weighted_kendall_kernel(km, weighting = "additive", u = u, normalized = FALSE)
  expect_equal(weighted_kendall_kernel(km, weighting = "additive", u = 2 * u, normalized = FALSE),
               4 * raw)
  # the kernlab function too
  f <- weighted_kendall_kernlab(weighting = "multiplicative", u = rep(1e-200, 10))
  expect_equal(f(km[, 1], km[, 2]), ones[1, 2])
})

test_that("whole-number arguments at or above 2^31 are rejected or capped, never NA", {
  x <- c(0.3, -1.2, 2.5, 0.9)
  expect_error(sinkhorn_rank(x, max_iter = 2^31),
               "`max_iter` must be a whole number from 1 to 2147483647, not 2147483648")
  expect_error(sinkhorn_rank(x, n_targets = 2^31), "`n_targets` must be a whole number from 1")
  expect_error(sinkhorn_rank(x, n_targets = 1e300), "`n_targets`")
  data <- simulate_suquan(20, p = 20, seed = 5)
  expect_error(suquan(data$x, data$y, max_iter = 2^31), "`max_iter` must be a whole number")
  expect_error(cv_suquan(data$x, data$y, nfolds = 2^31), "`nfolds`")
  expect_identical(sinkhorn_rank(x, max_iter = 2^31 - 1), sinkhorn_rank(x))
  # threads: capped at 1024, results unchanged
  m <- matrix(rnorm(60), 10)
  for (threads in c(1000, 1024, 2^31, 1e10)) {
    expect_no_warning(out <- normalize_quantiles(m, threads = threads))
    expect_identical(out, normalize_quantiles(m, threads = 1))
  }
  expect_identical(kendall_kernel(m, threads = 2^31), kendall_kernel(m, threads = 1))
  withr::local_options(diffrank.threads = 5e9)
  expect_identical(diffrank_threads(), 1024L)
  expect_error(normalize_quantiles(m, threads = Inf), "`threads` must be a whole number")
})

test_that("a damaged quantile_target is rejected with a clear message", {
  set.seed(6)
  train <- matrix(rexp(40), 10)
  new <- matrix(rexp(20), 10)
  ref <- quantile_target(train)
  damage <- list(
    unsorted = function(r) { r$target <- rev(r$target); r },
    missing = function(r) { r$target[3] <- NA; r },
    infinite = function(r) { r$target[10] <- Inf; r },
    null = function(r) { r$target <- NULL; r },
    character = function(r) { r$target <- as.character(r$target); r },
    empty = function(r) { r$target <- numeric(0); r },
    matrix = function(r) { r$target <- matrix(r$target); r }
  )
  for (name in names(damage)) {
    bad <- damage[[name]](ref)
    expect_error(predict(bad, new), "not a valid quantile_target", label = name)
    expect_error(normalize_quantiles(new, target = bad), "not a valid quantile_target",
                 label = name)
  }
  expect_error(predict(damage$unsorted(ref), new), "not sorted")
  expect_error(predict(damage$character(ref), new), "character")
  # an integer target is fine
  int_ref <- ref
  int_ref$target <- seq_len(10)
  expect_identical(predict(int_ref, new), normalize_quantiles(new, target = as.double(1:10)))
})

test_that("time series are taken as numbers; dates are rejected by class", {
  values <- c(5, 2, 3, 4, 1, 4, 2, 8)
  series <- stats::ts(matrix(values, 4), start = 2000)
  plain <- matrix(values, 4, dimnames = list(NULL, colnames(series)))
  expect_identical(normalize_quantiles(series), normalize_quantiles(plain))
  expect_identical(kendall_kernel(series), kendall_kernel(plain))
  one <- stats::ts(values, frequency = 4)
  expect_identical(normalize_quantiles(one, target = 1:8),
                   normalize_quantiles(values, target = 1:8))
  dates <- as.Date("2024-01-01") + c(3, 1, 2, 0)
  expect_error(normalize_quantiles(dates), "`x` must be a numeric .* not an object of class \"Date\"")
  expect_error(kendall_kernel(dates, dates), "class \"Date\"")
  expect_error(kendall_kernel(matrix(1:4, 2), as.POSIXct(dates)), "`y` .*POSIXct")
  expect_error(normalize_quantiles(matrix(1:4, 2), target = dates), "`target` .*Date")
  expect_error(normalize_quantiles(factor(1:3)), "a factor")
})

# ---------------------------------------------------------------------------
# Sinkhorn derivatives across the double range, and their forward mode

# The value of `expr`, and the diffrank_overflow warnings it gave.
with_overflow <- function(expr) {
  warnings <- list()
  value <- withCallingHandlers(expr, diffrank_overflow = function(w) {
    warnings[[length(warnings) + 1L]] <<- w
    invokeRestart("muffleWarning")
  })
  list(value = value, warnings = warnings)
}

# A result is finite, or it is not finite (never NaN) with one warning of
# class diffrank_overflow that names `input`.
expect_finite_or_named <- function(res, input) {
  value <- as.vector(unclass(res$value))
  expect_false(anyNA(value))
  if (all(is.finite(value))) {
    expect_length(res$warnings, 0L)
  } else {
    expect_length(res$warnings, 1L)
    expect_match(conditionMessage(res$warnings[[1L]]), sprintf("Rescale `%s`", input), fixed = TRUE)
  }
}

test_that("Sinkhorn derivatives of subnormal values are exact, Inf where the truth is", {
  x <- c(5e-324, 1e-323, 0, 2e-323, -5e-324)
  v <- c(1, -2, 0.5, 3, -1)
  # the same problem on x 2^1074 (ordinary values), chain rule by hand
  up <- function(g) g * 2^537 * 2^537
  scaled <- x * 2^537 * 2^537
  res <- with_overflow(sinkhorn_rank_vjp(x, v))
  expect_finite_or_named(res, "x")
  expect_identical(res$value, up(sinkhorn_rank_vjp(scaled, v)))
  res <- with_overflow(sinkhorn_rank_fn(x)$jacobian())
  expect_finite_or_named(res, "x")
  expect_identical(res$value, up(sinkhorn_rank_fn(scaled)$jacobian()))
  res <- with_overflow(sinkhorn_cdf_fn(x)$vjp(v))
  expect_finite_or_named(res, "x")
  expect_identical(res$value, up(sinkhorn_cdf_fn(scaled)$vjp(v)))
  res <- with_overflow(soft_topk_fn(x, k = 2)$jacobian())
  expect_finite_or_named(res, "x")
  expect_identical(res$value, up(soft_topk_fn(scaled, k = 2)$jacobian()))
  res <- with_overflow(sinkhorn_rank_fn(x)$jvp(v))
  expect_finite_or_named(res, "x")
  expect_identical(res$value, up(sinkhorn_rank_fn(scaled)$jvp(v)))
  # a loss names its own argument
  res <- with_overflow(soft_topk_loss(cbind(x[1:4], c(1, 3, 2, 0)), c(1, 2))$gradient)
  expect_finite_or_named(res, "pred")
  expect_length(res$warnings, 1L)
  # the sort scales with x: finite derivatives
  expect_no_warning(g <- sinkhorn_sort_vjp(x, v))
  expect_equal(g, sinkhorn_sort_vjp(scaled, v), tolerance = 1e-12)
})

test_that("Sinkhorn derivatives of values near the largest double are finite", {
  x <- c(1e308, -1e308, 1e307, 0, 1)
  v <- c(1, -2, 0.5, 3, -1)
  down <- x * 2^-1020   # ordinary values, the same standardized ones
  expect_no_warning(g <- sinkhorn_quantile_vjp(x, v = 0.5))
  expect_true(all(is.finite(g)))
  expect_equal(g, sinkhorn_quantile_vjp(down, v = 0.5), tolerance = 1e-12)
  expect_no_warning(g <- sinkhorn_sort_vjp(x, v))
  expect_equal(g, sinkhorn_sort_vjp(down, v), tolerance = 1e-12)
  expect_no_warning(j <- sinkhorn_sort_fn(x)$jvp(v))
  expect_equal(j, sinkhorn_sort_fn(down)$jvp(v), tolerance = 1e-12)
  M <- matrix(c(0.3, -1.2, 2.5, 0.9, -0.4, 1.1, 0.2, -0.7, 1.9, 0.05), 5)
  expect_no_warning(g <- sinkhorn_normalize_fn(M * 1e307)$vjp(M))
  expect_true(all(is.finite(g)))
  # the default target scales with x: the derivative does not
  expect_equal(g, sinkhorn_normalize_fn(M)$vjp(M), tolerance = 1e-6)
  expect_no_warning(loss <- soft_quantile_loss(x, 1:5))
  expect_true(all(is.finite(loss$gradient)))
  expect_true(is.finite(loss$value))
})

test_that("Sinkhorn derivatives of huge cotangents are finite or warn naming `v`", {
  x <- c(0.3, -1.2, 2.5, 0.9, -0.4)
  v <- c(1, -2, 0.5, 3, -1)
  big <- rep(1e308, 5)
  res <- with_overflow(sinkhorn_sort_vjp(x, big))
  expect_finite_or_named(res, "v")
  expect_equal(res$value, sinkhorn_sort_vjp(x, rep(1, 5)) * 1e308, tolerance = 1e-12)
  expect_no_warning(g <- soft_topk_vjp(x, v * 1e307, k = 2))
  expect_equal(g, soft_topk_vjp(x, v, k = 2) * 1e307, tolerance = 1e-9)
  M <- matrix(c(0.3, -1.2, 2.5, 0.9, -0.4, 1.1, 0.2, -0.7, 1.9, 0.05), 5)
  expect_no_warning(g <- sinkhorn_normalize_vjp(M, M * 1e307))
  expect_equal(g, sinkhorn_normalize_vjp(M, M) * 1e307, tolerance = 1e-12)
  # the ranks of a spread of 2^-200 move by about 2^200 per unit of x: with
  # a huge cotangent (or tangent) the gradient is beyond the doubles, and
  # the warning names it (x itself is not extreme)
  narrow <- x * 2^-200
  alternating <- c(1, -1, 1, -1, 1) * 1e308
  res <- with_overflow(sinkhorn_rank_vjp(narrow, alternating, eps = 0.05))
  expect_finite_or_named(res, "v")
  expect_identical(res$value, c(Inf, -Inf, Inf, -Inf, Inf))
  res <- with_overflow(sinkhorn_rank_fn(narrow, eps = 0.05)$jvp(alternating))
  expect_finite_or_named(res, "u")
  expect_identical(res$value, c(Inf, -Inf, Inf, -Inf, Inf))
})

test_that("ordinary inputs give the same Sinkhorn derivatives bit for bit when scaled by 2^k", {
  set.seed(12)
  x <- matrix(rnorm(40), 10)
  v <- matrix(rnorm(40), 10)
  # 2^200 is inside the range that is never rescaled, 2^600 outside it
  for (k in c(200, 600, -600)) {
    expect_identical(sinkhorn_rank_vjp(x * 2^k, v), sinkhorn_rank_vjp(x, v) / 2^k)
    expect_identical(sinkhorn_sort_vjp(x * 2^k, v), sinkhorn_sort_vjp(x, v))
    expect_identical(sinkhorn_sort_vjp(x, v * 2^k), sinkhorn_sort_vjp(x, v) * 2^k)
    expect_identical(soft_topk_fn(x * 2^k, k = 3)$jvp(v), soft_topk_fn(x, k = 3)$jvp(v) / 2^k)
  }
})

test_that("every Sinkhorn operator has a JVP, the transpose of its VJP", {
  set.seed(13)
  x <- matrix(rnorm(24), 8)
  w <- runif(8) + 0.5
  xna <- x
  xna[c(2, 13)] <- NA
  ops <- list(
    rank = function(x) sinkhorn_rank_fn(x, eps = 0.05, tol = 1e-12, weights = w),
    rank_decreasing = function(x) {
      sinkhorn_rank_fn(x, eps = 0.05, tol = 1e-12, decreasing = TRUE, n_targets = 5)
    },
    cdf = function(x) sinkhorn_cdf_fn(x, eps = 0.05, tol = 1e-12, target_weights = 1:8),
    sort = function(x) sinkhorn_sort_fn(x, eps = 0.05, tol = 1e-12, weights = w, n_targets = 11),
    sort_decreasing = function(x) sinkhorn_sort_fn(x, eps = 0.05, tol = 1e-12, decreasing = TRUE),
    sort_none = function(x) sinkhorn_sort_fn(x, eps = 0.05, tol = 1e-12, scale = "none"),
    quantile = function(x) {
      sinkhorn_quantile_fn(x, probs = c(0.2, 0.5, 0.9), width = 0.2, eps = 0.05, tol = 1e-12,
                           weights = w)
    },
    topk = function(x) soft_topk_fn(x, k = 3, eps = 0.05, tol = 1e-12, weights = w),
    normalize = function(x) {
      sinkhorn_normalize_fn(x, target = qnorm(ppoints(6)), eps = 0.05, tol = 1e-12, weights = w)
    },
    normalize_missing = function(x) sinkhorn_normalize_fn(x, target = 1:5, eps = 0.05, tol = 1e-12)
  )
  for (name in names(ops)) {
    xx <- if (name == "normalize_missing") xna else x
    op <- ops[[name]](xx)
    expect_true(op$has_jvp, label = name)
    u <- matrix(rnorm(length(xx)), nrow(xx))
    u[is.na(xx)] <- 0
    v <- array(rnorm(length(op$value)), dim(as.matrix(op$value)))
    j <- op$jvp(u)
    expect_identical(dim(j), dim(op$value), label = name)
    lhs <- sum(j * v)
    rhs <- sum(u * op$vjp(v))
    expect_lt(abs(lhs - rhs), 1e-10 * (abs(lhs) + abs(rhs)), label = name)
    h <- 1e-6
    fd <- (unclass(ops[[name]](xx + h * u)$value) - unclass(ops[[name]](xx - h * u)$value)) / (2 * h)
    fd[is.na(fd)] <- 0
    expect_lt(max(abs(j - fd)), 1e-6 * max(abs(fd)), label = name)
  }
  # names of the value; one long column on 1 and 2 threads (rows shared)
  op <- sinkhorn_rank_fn(c(a = 1, b = 3, c = 2), eps = 0.05)
  expect_named(op$jvp(c(1, 0, 0)), c("a", "b", "c"))
  long <- rnorm(1500)
  u <- rnorm(1500)
  expect_identical(sinkhorn_rank_fn(long, n_targets = 500, threads = 1)$jvp(u),
                   sinkhorn_rank_fn(long, n_targets = 500, threads = 2)$jvp(u))
  expect_error(op$jvp(1:2), "`u` must have the shape of `x`")
})
