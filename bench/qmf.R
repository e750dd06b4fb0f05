# Benchmark of quantile matrix factorization at its defaults.
# Run by hand with the package installed:  Rscript bench/qmf.R
# Prints one table of qmf(x, rank = k) with no other argument against the
# truncated SVD of the row-centred data (row means added back) at the same
# rank, on
# * the synthetic model of issue 23: a rank-3 signal (150 genes x 60
#   samples, plus 15 held-out samples) whose rows go through exp(z / 2),
#   sign(z) |z|^3 or 10 pnorm(z), plus noise of sd 0.01; five seeds;
# * the embedded leukaemia data (all_leukemia$expr, 1,000 x 128) at rank 5,
#   with 32 samples held out;
# * the full ALL data (12,625 x 128, Bioconductor package ALL) at rank 10,
#   with 26 samples held out (skipped without the ALL package).
# Columns: the fraction of the variance (of the row-centred data) left
# unexplained on the training samples and on the held-out samples (the SVD
# by least squares on its gene loadings, QMF by predict(type = "fitted")),
# the relative error ||X - Xhat|| / ||X|| on the training samples, the
# epochs and convergence of the fit, and the seconds (elapsed) of the fit and
# of predict(). One thread, so that the figures do not depend on the load of
# the other core. A second table compares the KL loss with a KL-divergence
# NMF, a third QMF and QMFQ with it on the paper's synthetic model (see the
# end of the file).
suppressPackageStartupMessages(library(diffrank))
threads <- 1L
cat("diffrank", format(utils::packageVersion("diffrank")), "- QMF at its defaults vs truncated SVD\n")
cat(sprintf("R %s, %s, %d thread\n\n", getRversion(), R.version$platform, threads))

unexplained <- function(data, approx) {
  sum((data - approx)^2) / sum((data - rowMeans(data))^2)
}
rel_error <- function(data, approx) sqrt(sum((data - approx)^2) / sum(data^2))

compare <- function(label, train, test, k, seed = 1) {
  means <- rowMeans(train)
  s <- svd(train - means, nu = k, nv = k)
  svd_train <- s$u %*% (s$d[seq_len(k)] * t(s$v)) + means
  svd_test <- s$u %*% crossprod(s$u, test - means) + means
  set.seed(seed)
  fit_time <- system.time(fit <- qmf(train, rank = k, threads = threads))[["elapsed"]]
  predict_time <- system.time(
    pred <- predict(fit, test, type = "fitted", threads = threads)
  )[["elapsed"]]
  data.frame(
    data = label, rank = k,
    method = c("SVD", "QMF"),
    train_unexplained = c(unexplained(train, svd_train), fit$unexplained),
    test_unexplained = c(unexplained(test, svd_test), unexplained(test, pred)),
    train_rel_error = c(rel_error(train, svd_train), fit$relative_error),
    epochs = c(NA, fit$iterations), converged = c(NA, fit$converged),
    fit_s = c(NA, fit_time), predict_s = c(NA, predict_time)
  )
}

# the test model of tests/testthat/helper-qmf.R, with 75 samples (60 to fit, 15 held out)
source(file.path("tests", "testthat", "helper-qmf.R"))
three_maps <- function(seed) qmf_three_maps(seed, n = 75)

rows <- list()
for (seed in 1:5) {
  x <- three_maps(seed)
  rows[[length(rows) + 1L]] <- compare(sprintf("three maps, seed %d", seed), x[, 1:60],
                                       x[, 61:75], 3, seed)
}
x <- all_leukemia$expr
set.seed(1)
test <- sort(sample(ncol(x), 32))
rows[[length(rows) + 1L]] <- compare("all_leukemia (1000 x 96 + 32)", x[, -test], x[, test], 5)
if (requireNamespace("ALL", quietly = TRUE)) {
  data("ALL", package = "ALL", envir = environment())
  x <- Biobase::exprs(ALL)
  set.seed(1)
  test <- sort(sample(ncol(x), 26))
  rows[[length(rows) + 1L]] <- compare("ALL (12625 x 102 + 26)", x[, -test], x[, test], 10)
} else {
  cat("(the ALL package is not installed: the full ALL rows are skipped)\n")
}
table <- do.call(rbind, rows)
print(format(table, digits = 4), row.names = FALSE)

synthetic <- table[grepl("three maps", table$data), ]
ratio <- synthetic$train_rel_error[synthetic$method == "SVD"] /
  synthetic$train_rel_error[synthetic$method == "QMF"]
cat(sprintf(paste0("\nthree maps: QMF's relative error %.4f to %.4f, %.1f to %.1f times below ",
                   "the SVD's; all converged: %s\n"),
            min(synthetic$train_rel_error[synthetic$method == "QMF"]),
            max(synthetic$train_rel_error[synthetic$method == "QMF"]), min(ratio), max(ratio),
            all(synthetic$converged[synthetic$method == "QMF"])))

# KL loss against a KL-divergence NMF, on non-negative data: QMF with
# loss = "kl" at its defaults and the NMF package's "brunet" algorithm
# (multiplicative updates for the KL divergence, Lee and Seung 2001; seed 1,
# its default stopping rule), and RcppML::nmf (alternating least squares for
# the squared loss, seed 1, its defaults; its KL divergence is that of its
# fit), at ranks 2, 5 and 10. The data: Poisson
# counts of a 1,000 x 350 matrix whose rates are 5 exp(z) for a rank-5 signal
# z (the log-linear model of count data, not an NMF's model). Columns: the
# generalized KL divergence of the fit divided by that of the row means (the
# rank-0 model), the seconds, and QMF's epochs and convergence. Skipped
# without the NMF package, or with DIFFRANK_BENCH_KL=0.
if (Sys.getenv("DIFFRANK_BENCH_KL", "1") != "0" && requireNamespace("NMF", quietly = TRUE)) {
  set.seed(42)
  z <- matrix(rnorm(1000 * 5), 1000) %*% matrix(rnorm(5 * 350), 5) / sqrt(5)
  counts <- matrix(rpois(length(z), 5 * exp(z)), nrow(z))
  counts <- counts[rowSums(counts) > 0, ]
  gkl <- function(x, y) sum(ifelse(x > 0, x * log(x / y), 0) - x + y)
  null_kl <- gkl(counts, matrix(rowMeans(counts), nrow(counts), ncol(counts)))
  kl_rows <- list()
  for (k in c(2L, 5L, 10L)) {
    set.seed(1)
    qmf_time <- system.time(fit <- qmf(counts, rank = k, loss = "kl", threads = threads))[["elapsed"]]
    nmf_time <- system.time(
      nmf_fit <- NMF::nmf(counts + 0, k, method = "brunet", seed = 1)
    )[["elapsed"]]
    nmf_kl <- gkl(counts, pmax(NMF::fitted(nmf_fit), 1e-300)) / null_kl
    ml_kl <- ml_time <- NA
    if (requireNamespace("RcppML", quietly = TRUE)) {
      ml_time <- system.time(
        ml <- RcppML::nmf(counts + 0, k, seed = 1, verbose = FALSE)
      )[["elapsed"]]
      ml_kl <- gkl(counts, pmax(ml$w %*% (ml$d * ml$h), 1e-300)) / null_kl
    }
    kl_rows[[length(kl_rows) + 1L]] <- data.frame(
      rank = k, method = c("NMF (brunet)", "RcppML::nmf (squared loss)", "QMF (kl)"),
      kl_unexplained = c(nmf_kl, ml_kl, fit$kl_unexplained),
      seconds = c(nmf_time, ml_time, qmf_time), epochs = c(NA, NA, fit$iterations),
      converged = c(NA, NA, fit$converged)
    )
  }
  cat(sprintf("\nKL loss on Poisson counts (%d x %d, rank-5 log-linear rates), 1 thread for QMF\n",
              nrow(counts), ncol(counts)))
  print(format(do.call(rbind, kl_rows), digits = 4), row.names = FALSE)
}

# The synthetic experiment of Cuturi, Teboul, Niles-Weed and Vert (2020):
# a non-negative rank-3 product (200 x 100) whose rows go through a hard
# quantile map onto m = 8 random positive levels, plus Gaussian noise of 0.1
# times each row's standard deviation, clipped at 0 (qmf_paper_synthetic()
# in tests/testthat/helper-qmf.R); seeds 1 to 3. KL NMF (the NMF package's
# "brunet", seed 1), QMF and QMFQ (loss = "kl", defaults, 1 thread) at rank
# 3. Columns: the KL divergence left unexplained (fraction of the row-means
# model's), the distance to the noiseless signal (||fit - signal|| / ||signal
# - row means||), epochs and convergence, seconds. Skipped with
# DIFFRANK_BENCH_PAPER=0; the NMF rows without the NMF package.
if (Sys.getenv("DIFFRANK_BENCH_PAPER", "1") != "0") {
  gkl <- function(x, y) sum(ifelse(x > 0, x * log(x / y), 0) - x + y)
  paper_rows <- list()
  for (seed in 1:3) {
    sim <- qmf_paper_synthetic(seed)
    null_kl <- gkl(sim$x, matrix(rowMeans(sim$x), nrow(sim$x), ncol(sim$x)))
    from_signal <- function(approx) {
      sqrt(sum((approx - sim$signal)^2) / sum((sim$signal - rowMeans(sim$signal))^2))
    }
    if (requireNamespace("NMF", quietly = TRUE)) {
      nmf_time <- system.time(
        nmf_fit <- NMF::nmf(sim$x + 0, 3, method = "brunet", seed = 1)
      )[["elapsed"]]
      approx <- pmax(NMF::fitted(nmf_fit), 1e-300)
      paper_rows[[length(paper_rows) + 1L]] <- data.frame(
        seed = seed, method = "NMF (brunet)", kl_unexplained = gkl(sim$x, approx) / null_kl,
        distance_to_signal = from_signal(approx), epochs = NA, converged = NA,
        seconds = nmf_time)
    }
    for (model in c("qmf", "qmfq")) {
      set.seed(1)
      seconds <- system.time(
        fit <- qmf(sim$x, rank = 3, loss = "kl", model = model, threads = threads)
      )[["elapsed"]]
      paper_rows[[length(paper_rows) + 1L]] <- data.frame(
        seed = seed, method = toupper(model), kl_unexplained = fit$kl_unexplained,
        distance_to_signal = from_signal(fitted(fit)), epochs = fit$iterations,
        converged = fit$converged, seconds = seconds)
    }
  }
  cat("\nThe paper's synthetic model (200 x 100, rank 3, m = 8 levels, noise 0.1), KL loss\n")
  print(format(do.call(rbind, paper_rows), digits = 4), row.names = FALSE)
}
