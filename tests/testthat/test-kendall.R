# Brute-force O(n^2) references, written from the definitions.

# Kernels of noise are nearly constant when there are many features or when
# the weights single out a few: the warning is tested in test-kernel-features.R.
quiet_flat <- function(expr) {
  withCallingHandlers(expr, diffrank_near_constant_kernel = function(w) invokeRestart("muffleWarning"))
}

bf_counts <- function(x, y) {
  sx <- sign(outer(x, x, "-"))
  sy <- sign(outer(y, y, "-"))
  up <- upper.tri(sx)
  sx <- sx[up]
  sy <- sy[up]
  c(n0 = length(sx), concordant = sum(sx * sy > 0), discordant = sum(sx * sy < 0),
    tied_x = sum(sx == 0), tied_y = sum(sy == 0), tied_xy = sum(sx == 0 & sy == 0))
}

bf_tau_a <- function(x, y) {
  k <- bf_counts(x, y)
  (k[["concordant"]] - k[["discordant"]]) / k[["n0"]]
}

# Discordant pairs plus one half per pair tied in one profile only.
bf_mallows <- function(x, y, lambda, normalized = TRUE) {
  k <- bf_counts(x, y)
  d <- k[["discordant"]] + (k[["tied_x"]] + k[["tied_y"]] - 2 * k[["tied_xy"]]) / 2
  exp(-lambda * d / if (normalized) k[["n0"]] else 1)
}

# Each item's weight: the mean of u over the positions (from the top) of its
# block of ties.
bf_item_weights <- function(x, u) {
  first <- rank(-x, ties.method = "min")
  last <- rank(-x, ties.method = "max")
  vapply(seq_along(x), function(i) mean(u[first[i]:last[i]]), 0)
}

bf_weighted_raw <- function(x, y, kind, u) {
  ux <- bf_item_weights(x, u)
  uy <- bf_item_weights(y, u)
  concordant <- outer(x, x, "<") & outer(y, y, "<")
  w <- if (kind == "mult") {
    outer(ux, ux) * outer(uy, uy)
  } else {
    outer(ux, ux, "+") * outer(uy, uy, "+")
  }
  sum(w[concordant])
}

bf_top <- function(x, y, k) {
  bf_weighted_raw(x, y, "mult", rep(c(1, 0), c(k, length(x) - k)))
}

bf_average_raw <- function(x, y) mean(vapply(seq_along(x), function(k) bf_top(x, y, k), 0))

bf_weighted <- function(x, y, weighting, k = NULL, u = NULL, normalized = TRUE) {
  n <- length(x)
  if (is.null(u)) u <- 1 / (seq_len(n) + 1)
  raw <- switch(weighting,
    top = function(a, b) bf_top(a, b, k),
    average = bf_average_raw,
    additive = function(a, b) bf_weighted_raw(a, b, "add", u),
    multiplicative = function(a, b) bf_weighted_raw(a, b, "mult", u)
  )
  if (!normalized) return(raw(x, y))
  raw(x, y) / sqrt(raw(x, x) * raw(y, y))
}

bf_matrix <- function(x, f) {
  out <- matrix(0, ncol(x), ncol(x))
  for (i in seq_len(ncol(x))) for (j in seq_len(ncol(x))) out[i, j] <- f(x[, i], x[, j])
  out
}

# The values of a kernel matrix, without class or dimnames.
plain <- function(k) unname(k[, , drop = FALSE])

min_eigen <- function(k) {
  ev <- eigen(plain(k), symmetric = TRUE, only.values = TRUE)$values
  min(ev) / max(abs(ev))
}

sim <- function(p, n, ties = FALSE, seed = 1) {
  set.seed(seed)
  x <- matrix(rnorm(p * n), p, n, dimnames = list(paste0("g", seq_len(p)), paste0("s", seq_len(n))))
  if (ties) x <- round(x * 4)
  x
}

test_that("tau_b equals stats::cor and pcaPP::cor.fk with and without ties", {
  for (ties in c(FALSE, TRUE)) {
    x <- sim(60, 7, ties = ties)
    k <- plain(kendall_kernel(x, threads = 1))
    expect_equal(k, unname(cor(x, method = "kendall")), tolerance = 1e-12)
    if (requireNamespace("pcaPP", quietly = TRUE)) {
      expect_equal(k, unname(pcaPP::cor.fk(x)), tolerance = 1e-12)
    }
    expect_equal(kendall_kernel(x[, 1], x[, 2]), cor(x[, 1], x[, 2], method = "kendall"),
                 tolerance = 1e-12)
  }
  # heavy ties: three values only
  set.seed(3)
  x <- matrix(sample(1:3, 400, replace = TRUE), 100)
  expect_equal(plain(kendall_kernel(x)), unname(cor(x, method = "kendall")), tolerance = 1e-12,
               ignore_attr = TRUE)
  # cross-kernel
  y <- sim(60, 3, ties = TRUE, seed = 2)
  x <- sim(60, 4, ties = TRUE)
  expect_equal(plain(kendall_kernel(x, y)), unname(cor(x, y, method = "kendall")), tolerance = 1e-12)
})

test_that("pair counts and tau_a equal brute force", {
  set.seed(4)
  for (ties in c(FALSE, TRUE)) {
    x <- rnorm(80)
    y <- x + rnorm(80)
    if (ties) {
      x <- round(x)
      y <- round(y * 2)
    }
    counts <- kendall_counts(x, y)
    expect_equal(counts[names(bf_counts(x, y))], bf_counts(x, y))
    expect_equal(counts[["n"]], 80)
    expect_equal(kendall_kernel(x, y, variant = "tau_a"), bf_tau_a(x, y), tolerance = 1e-14)
  }
  x <- sim(30, 5, ties = TRUE)
  expect_equal(plain(kendall_kernel(x, variant = "tau_a")), bf_matrix(x, bf_tau_a),
               tolerance = 1e-14, ignore_attr = TRUE)
})

test_that("Mallows kernel equals brute force, with ties", {
  for (ties in c(FALSE, TRUE)) {
    x <- sim(25, 5, ties = ties)
    expect_equal(plain(mallows_kernel(x, lambda = 3)),
                 bf_matrix(x, function(a, b) bf_mallows(a, b, 3)),
                 tolerance = 1e-13, ignore_attr = TRUE)
    expect_equal(plain(mallows_kernel(x, lambda = 0.01, normalized = FALSE)),
                 bf_matrix(x, function(a, b) bf_mallows(a, b, 0.01, FALSE)),
                 tolerance = 1e-13, ignore_attr = TRUE)
  }
  # without ties the distance is the number of discordant pairs
  x <- sim(25, 2)
  k <- kendall_counts(x[, 1], x[, 2])
  expect_equal(mallows_kernel(x[, 1], x[, 2], lambda = 2),
               exp(-2 * k[["discordant"]] / k[["n0"]]), tolerance = 1e-15)
  expect_equal(mallows_kernel(x[, 1], x[, 2], lambda = 0), 1)
})

test_that("weighted kernels equal brute force for every weight type, with ties", {
  cases <- list(
    list(weighting = "top", k = 2), list(weighting = "top", k = 7), list(weighting = "top", k = 18),
    list(weighting = "additive"), list(weighting = "multiplicative"), list(weighting = "average"),
    list(weighting = "multiplicative", u = seq(2, 0.1, length.out = 18)),
    list(weighting = "additive", u = cos(1:18))
  )
  for (ties in c(FALSE, TRUE)) {
    x <- sim(18, 4, ties = ties, seed = 5)
    for (case in cases) {
      for (normalized in c(TRUE, FALSE)) {
        # top-2 on tied data can be 0 / 0 (two tied top values): NA here,
        # NaN in the reference
        got <- plain(suppressWarnings(do.call(
          weighted_kendall_kernel, c(list(x = x, normalized = normalized, threads = 1), case))))
        want <- bf_matrix(x, function(a, b) {
          do.call(bf_weighted, c(list(x = a, y = b, normalized = normalized), case))
        })
        expect_equal(got, want, tolerance = 1e-12, ignore_attr = TRUE,
                     label = sprintf("%s ties=%s normalized=%s", case$weighting, ties, normalized))
      }
    }
  }
  # a tie block straddling the top-k boundary gets a fractional weight
  a <- c(5, 4, 4, 4, 1, 0)
  b <- c(6, 5, 3, 4, 2, 1)
  expect_equal(weighted_kendall_kernel(a, b, weighting = "top", k = 3, normalized = FALSE),
               bf_top(a, b, 3), tolerance = 1e-14)
  # with u = 1, "mult" counts the concordant pairs
  expect_equal(weighted_kendall_kernel(a, b, weighting = "multiplicative", u = rep(1, 6), normalized = FALSE),
               kendall_counts(a, b)[["concordant"]])
})

test_that("matrices are symmetric, unit-diagonal, right-invariant and PSD", {
  for (ties in c(FALSE, TRUE)) {
    x <- sim(40, 12, ties = ties, seed = 6)
    perm <- sample(nrow(x))
    kernels <- list(
      tau_b = function(m) kendall_kernel(m),
      tau_a = function(m) kendall_kernel(m, variant = "tau_a"),
      mallows = function(m) mallows_kernel(m, lambda = 5),
      mallows_raw = function(m) mallows_kernel(m, lambda = 0.05, normalized = FALSE),
      top = function(m) weighted_kendall_kernel(m, weighting = "top", k = 10),
      add = function(m) weighted_kendall_kernel(m, weighting = "additive"),
      mult = function(m) weighted_kendall_kernel(m, weighting = "multiplicative"),
      average = function(m) weighted_kendall_kernel(m, weighting = "average")
    )
    for (name in names(kernels)) {
      k <- plain(quiet_flat(kernels[[name]](x)))
      expect_identical(k, t(k), label = name)
      if (name != "tau_a") expect_identical(unname(diag(k)), rep(1, ncol(x)), label = name)
      expect_equal(plain(quiet_flat(kernels[[name]](x[perm, ]))), k, tolerance = 1e-13,
                   label = name)
      expect_gte(min_eigen(k), -1e-10)
    }
  }
})

test_that("counts are exact beyond 2^31 discordant pairs (n = 100,000)", {
  n <- 1e5
  m <- 40000
  # x increasing, y decreasing: every pair is discordant.
  y <- c(n:(m + 1), m:1)
  counts <- kendall_counts(seq_len(n), y)
  expect_identical(counts[["discordant"]], n * (n - 1) / 2)
  expect_gt(counts[["discordant"]], 2^31)
  # halves in increasing order, swapped: m (n - m) inversions
  y <- c((m + 1):n, 1:m)
  counts <- kendall_counts(seq_len(n), y)
  expect_identical(counts[["discordant"]], m * (n - m))
  expect_identical(counts[["concordant"]], n * (n - 1) / 2 - m * (n - m))
  expect_gt(counts[["discordant"]], 2^31)
  # with ties: x in blocks of 10 equal values; y rounded so that values 2k - 1
  # and 2k are tied. Those sit at adjacent positions (odd, even) of one block
  # of x, so they are tied in both; and no block of x crosses the two halves
  # (60,000 is a multiple of 10), so the m (n - m) discordant pairs remain.
  x <- ceiling(seq_len(n) / 10)
  yt <- ceiling(c((m + 1):n, 1:m) / 2)
  counts <- kendall_counts(x, yt)
  n0 <- n * (n - 1) / 2
  expect_identical(counts[["tied_x"]], 45 * n / 10)
  expect_identical(counts[["tied_y"]], n / 2)
  expect_identical(counts[["tied_xy"]], n / 2)
  expect_identical(counts[["discordant"]], m * (n - m))
  expect_identical(counts[["concordant"]], n0 - m * (n - m) - 45 * n / 10)
  skip_if_not_installed("pcaPP")
  set.seed(7)
  a <- sample(1000, n, replace = TRUE)
  b <- a + sample(3000, n, replace = TRUE)
  expect_equal(kendall_kernel(a, b), pcaPP::cor.fk(a, b), tolerance = 1e-12)
})

test_that("the merge-sort path for over 2^22 distinct values gives exact counts", {
  # 5 million distinct y ranks exceed the prefix-count trie; x in blocks of 10
  # (ties), y the two halves of 1..n swapped, increasing inside each block.
  n <- 5e6
  m <- 2e6
  counts <- kendall_counts(ceiling(seq_len(n) / 10), c((m + 1):n, 1:m))
  expect_identical(counts[["discordant"]], m * (n - m))
  expect_identical(counts[["tied_x"]], 45 * n / 10)
  expect_identical(counts[["tied_y"]], 0)
  expect_identical(counts[["concordant"]], n * (n - 1) / 2 - m * (n - m) - 45 * n / 10)
})

test_that("results are identical for 1 and 2 threads", {
  x <- sim(50, 15, ties = TRUE, seed = 8)
  y <- sim(50, 6, seed = 9)
  xna <- x
  xna[sample(length(x), 40)] <- NA
  calls <- list(
    function(th) kendall_kernel(x, threads = th),
    function(th) kendall_kernel(x, y, variant = "tau_a", threads = th),
    function(th) kendall_kernel(xna, na = "pairwise", threads = th),
    function(th) mallows_kernel(x, y, lambda = 2, threads = th),
    function(th) weighted_kendall_kernel(x, weighting = "top", k = 5, threads = th),
    function(th) weighted_kendall_kernel(x, y, weighting = "additive", threads = th),
    function(th) weighted_kendall_kernel(xna, weighting = "multiplicative", na = "pairwise", threads = th),
    function(th) weighted_kendall_kernel(x, weighting = "average", threads = th)
  )
  for (f in calls) expect_identical(quiet_flat(f(1)), quiet_flat(f(2)))
})

test_that("na = 'pairwise' compares each pair on the features observed in both", {
  x <- sim(40, 6, ties = TRUE, seed = 10)
  set.seed(11)
  x[sample(length(x), 30)] <- NA
  x[5, 2] <- NaN
  expect_equal(plain(kendall_kernel(x, na = "pairwise")),
               unname(cor(x, method = "kendall", use = "pairwise.complete.obs")), tolerance = 1e-12)
  ok <- function(f) function(a, b) {
    keep <- !is.na(a) & !is.na(b)
    f(a[keep], b[keep])
  }
  expect_equal(plain(mallows_kernel(x, lambda = 2, na = "pairwise")),
               bf_matrix(x, ok(function(a, b) bf_mallows(a, b, 2))), tolerance = 1e-13,
               ignore_attr = TRUE)
  expect_equal(plain(quiet_flat(weighted_kendall_kernel(x, weighting = "additive", na = "pairwise"))),
               bf_matrix(x, ok(function(a, b) bf_weighted(a, b, "additive"))), tolerance = 1e-12,
               ignore_attr = TRUE)
  expect_equal(plain(quiet_flat(weighted_kendall_kernel(x, weighting = "top", k = 8, na = "pairwise"))),
               bf_matrix(x, ok(function(a, b) bf_weighted(a, b, "top", k = 8))),
               tolerance = 1e-12, ignore_attr = TRUE)
  y <- sim(40, 3, seed = 13)
  y[c(1, 7, 30), 2] <- NA
  expect_equal(plain(kendall_kernel(x, y, na = "pairwise")),
               unname(cor(x, y, method = "kendall", use = "pairwise.complete.obs")),
               tolerance = 1e-12)
  # a pair sharing fewer than 2 features is NA, with a warning
  z <- cbind(a = c(1, 2, NA, NA), b = c(NA, NA, 3, 4), c = c(1, 3, 2, 4))
  expect_warning(k <- plain(kendall_kernel(z, na = "pairwise")), "undefined")
  expect_true(is.na(k[1, 2]))
  expect_equal(k[1, 3], 1)
})

test_that("undefined values are NA with a warning", {
  x <- cbind(a = c(1, 2, 3, 4), flat = c(2, 2, 2, 2))
  expect_warning(k <- plain(kendall_kernel(x)), "2 kernel value|3 kernel value")
  expect_true(is.na(k[2, 2]) && is.na(k[1, 2]))
  expect_equal(plain(kendall_kernel(x, variant = "tau_a"))[2, 2], 0)
  expect_warning(weighted_kendall_kernel(x, weighting = "multiplicative"), "undefined")
  expect_equal(plain(mallows_kernel(x))[1, 2], exp(-0.5))
})

test_that("infinite values are ordered like any other", {
  x <- sim(30, 4, ties = TRUE, seed = 14)
  x[c(1, 5), 1] <- Inf
  x[2, 2] <- -Inf
  x[3, 3] <- Inf
  expect_equal(plain(kendall_kernel(x)), unname(cor(x, method = "kendall")), tolerance = 1e-12)
  expect_equal(plain(weighted_kendall_kernel(x, weighting = "additive")),
               bf_matrix(x, function(a, b) bf_weighted(a, b, "additive")), tolerance = 1e-12)
})

test_that("inputs: shapes, names, data frames, integers", {
  x <- sim(20, 3)
  k <- kendall_kernel(x)
  expect_equal(dimnames(k), list(colnames(x), colnames(x)))
  if (requireNamespace("kernlab", quietly = TRUE)) expect_s4_class(k, "kernelMatrix")
  expect_equal(plain(kendall_kernel(as.data.frame(x))), plain(k))
  xi <- round(x * 10)
  storage.mode(xi) <- "integer"
  expect_equal(plain(kendall_kernel(xi)), unname(cor(xi, method = "kendall")), tolerance = 1e-12)
  y <- x[, 2:3]
  k2 <- kendall_kernel(x, y)
  expect_equal(dimnames(k2), list(colnames(x), colnames(y)))
  expect_equal(plain(k2), plain(k)[, 2:3])
  expect_length(kendall_kernel(x[, 1], x[, 2]), 1)
  expect_equal(dim(kendall_kernel(x[, 1])), c(1L, 1L))
  copy <- x
  kendall_kernel(x)
  expect_identical(x, copy)
})

test_that("clear errors for bad input", {
  x <- sim(20, 3)
  expect_error(kendall_kernel(x, x[-1, ]), "same number of features")
  expect_error(kendall_kernel(matrix(letters[1:6], 3)), "`x` must be a numeric")
  expect_error(kendall_kernel(x, matrix("a", 20, 2)), "`y` must be a numeric")
  xna <- x
  xna[3, 1] <- NA
  expect_error(kendall_kernel(xna), "missing values")
  expect_error(mallows_kernel(x, lambda = -1), "`lambda` must be")
  expect_error(mallows_kernel(x, lambda = NA), "`lambda` must be")
  expect_error(mallows_kernel(x, lambda = Inf), "`lambda` must be")
  expect_error(weighted_kendall_kernel(x, weighting = "top", k = 1), "`k` must be")
  expect_error(weighted_kendall_kernel(x, weighting = "top", k = 21), "`k` must be")
  expect_error(weighted_kendall_kernel(x, weighting = "top", k = 2.5), "`k` must be")
  expect_error(weighted_kendall_kernel(x, weighting = "top"), "`k` must be given")
  expect_error(weighted_kendall_kernel(x, weighting = "additive", k = 3), "only used")
  expect_error(weighted_kendall_kernel(x, weighting = "multiplicative", u = 1:3), "one weight per feature")
  expect_error(weighted_kendall_kernel(x, weighting = "multiplicative", u = c(NA, 1:19)), "finite")
  expect_error(weighted_kendall_kernlab("top", k = 0), "`k` must be")
  expect_error(kendall_kernel(x, threads = 0), "`threads`")
  expect_error(kendall_kernel(x[1, , drop = FALSE]), "at least 2 features")
  expect_error(kendall_kernel(x, variant = "tau_c"), "`variant` must be one of")
  y <- x
  rownames(y) <- rev(rownames(x))
  expect_error(kendall_kernel(x, y), "same features")
  expect_error(kendall_counts(1:3, 1:4), "same length")
})

test_that("kernel functions follow kernlab's orientation", {
  skip_if_not_installed("kernlab")
  x <- sim(30, 5, ties = TRUE)
  f <- kendall_kernlab()
  expect_s4_class(f, "kernel")
  expect_equal(f(x[, 1], x[, 2]), cor(x[, 1], x[, 2], method = "kendall"), tolerance = 1e-12)
  # samples in rows
  expect_equal(plain(f(t(x), t(x[, 1:2]))), plain(kendall_kernel(x, x[, 1:2])))
  expect_equal(plain(kernlab::kernelMatrix(mallows_kernlab(lambda = 2), t(x))),
               plain(mallows_kernel(x, lambda = 2)), ignore_attr = TRUE, tolerance = 1e-14)
  g <- weighted_kendall_kernlab("top", k = 6)
  expect_equal(g(x[, 1], x[, 3]), weighted_kendall_kernel(x[, 1], x[, 3], "top", k = 6))
  expect_equal(kernlab::kpar(g)$k, 6)
  expect_equal(weighted_kendall_kernlab("multiplicative", u = 30:1)(x[, 1], x[, 2]),
               weighted_kendall_kernel(x[, 1], x[, 2], weighting = "multiplicative", u = 30:1))
  # what the direct path does not take goes through the checked function
  expect_error(f(c(1, NA, 3), 1:3), "missing values")
  expect_error(weighted_kendall_kernlab("top", k = 10)(1:5, 5:1), "`k` must be")
  expect_error(f(1:3, 1:4), "same number of features")
  expect_warning(f(c(1, 1, 1), 1:3), "undefined")
})

test_that("an SVM with the Kendall kernel predicts held-out samples", {
  skip_if_not_installed("kernlab")
  # 60 samples x 200 genes; class B raises genes 1-20 within each sample's
  # ranking, on top of a sample-specific scale and shift the ranks ignore.
  set.seed(12)
  p <- 200
  n <- 60
  labels <- factor(rep(c("A", "B"), each = n / 2))
  x <- matrix(rnorm(p * n), p, n, dimnames = list(NULL, paste0("s", seq_len(n))))
  x[1:20, labels == "B"] <- x[1:20, labels == "B"] + 1
  x <- sweep(sweep(x, 2, runif(n, 0.5, 3), "*"), 2, runif(n, -5, 5), "+")
  folds <- rep(1:5, length.out = n)
  correct <- 0
  for (f in 1:5) {
    train <- folds != f
    fit <- kernlab::ksvm(kendall_kernel(x[, train]), labels[train], type = "C-svc", C = 1)
    sv <- which(train)[kernlab::SVindex(fit)]
    pred <- kernlab::predict(fit, kendall_kernel(x[, !train], x[, sv, drop = FALSE]))
    correct <- correct + sum(pred == labels[!train])
  }
  accuracy <- correct / n
  message(sprintf("5-fold cross-validated accuracy, Kendall kernel SVM: %.2f", accuracy))
  expect_gt(accuracy, 0.8)

  # the precomputed route and the kernel-function route give the same model
  train <- folds != 1
  fit_k <- kernlab::ksvm(kendall_kernel(x[, train]), labels[train], type = "C-svc", C = 1)
  fit_f <- kernlab::ksvm(t(x[, train]), labels[train], type = "C-svc", C = 1,
                         kernel = kendall_kernlab(), scaled = FALSE)
  sv <- which(train)[kernlab::SVindex(fit_k)]
  dec_k <- kernlab::predict(fit_k, kendall_kernel(x[, !train], x[, sv, drop = FALSE]), type = "decision")
  dec_f <- kernlab::predict(fit_f, t(x[, !train]), type = "decision")
  expect_equal(as.vector(dec_k), as.vector(dec_f), tolerance = 1e-8)
})

test_that("support_kernel() gives the cross-kernel that kernlab's predict() needs", {
  skip_if_not_installed("kernlab")
  set.seed(31)
  x <- matrix(rnorm(40 * 60), 40, dimnames = list(paste0("g", 1:40), paste0("s", 1:60)))
  labels <- factor(rep(c("a", "b"), each = 30))
  x[1:8, labels == "b"] <- x[1:8, labels == "b"] + 2
  train <- c(1:20, 31:50)
  for (kernel in list(kendall_kernel, mallows_kernel)) {
    fit <- kernlab::ksvm(kernel(x[, train]), labels[train], type = "C-svc", C = 1)
    k_new <- support_kernel(fit, x[, -train], x[, train], kernel = kernel)
    expect_identical(dim(k_new), c(20L, length(kernlab::SVindex(fit))))
    # the same decision values as the kernel-function route of kernlab
    sv <- train[kernlab::SVindex(fit)]
    expect_equal(plain(k_new), plain(kernel(x[, -train], x[, sv])))
    expect_gt(mean(kernlab::predict(fit, k_new) == labels[-train]), 0.8)
  }
  fit <- kernlab::ksvm(weighted_kendall_kernel(x[, train], weighting = "top", k = 10),
                       labels[train], type = "C-svc")
  expect_equal(plain(support_kernel(fit, x[, -train], x[, train], weighting = "top", k = 10,
                                    kernel = weighted_kendall_kernel)),
               plain(weighted_kendall_kernel(x[, -train], x[, train[kernlab::SVindex(fit)]],
                                             weighting = "top", k = 10)))
  expect_error(support_kernel(list(), x, x), "`fit` must be a kernlab ksvm fit")
  expect_error(support_kernel(fit, x[, -train], x[, 1:2]), "support vectors go up to")
})

test_that("the kernels take SummarizedExperiments, defaults run, and unknown arguments fail", {
  skip_if_not_installed("SummarizedExperiment")
  x <- sim(25, 6, ties = TRUE, seed = 32)
  colnames(x) <- paste0("s", 1:6)
  se <- SummarizedExperiment::SummarizedExperiment(assays = list(raw = x, neg = -x))
  expect_equal(plain(kendall_kernel(se)), plain(kendall_kernel(x)))
  expect_identical(colnames(kendall_kernel(se)), colnames(x))
  expect_equal(plain(mallows_kernel(se, assay.type = "neg", lambda = 2)),
               plain(mallows_kernel(-x, lambda = 2)))
  expect_equal(plain(weighted_kendall_kernel(se, se[, 1:2])),
               plain(weighted_kendall_kernel(x, x[, 1:2])))
  expect_error(kendall_kernel(se, assay.type = "nope"), "`assay.type`")
  # every kernel runs with its defaults
  expect_equal(diag(plain(weighted_kendall_kernel(x))), rep(1, 6))
  expect_error(kendall_kernel(x, method = "tau_a"), "Unknown argument `method`")
  expect_error(kendall_kernel(x, type = "tau_a"), "`type` must be one of \"full\", \"topk\"")
  expect_error(weighted_kendall_kernel(x, weights = "top"), "Unknown argument `weights`")
})
