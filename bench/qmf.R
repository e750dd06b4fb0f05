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
# the other core.
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
