# Rank-kernel SVMs on whole arrays: the ALL data (Bioconductor package ALL,
# 12,625 probe sets x 128 samples), B- against T-cell lineage. Prints the
# accuracy of kernlab::ksvm on the Kendall kernel of all probe sets for a
# range of costs (cross-validated, the same folds), then the honest accuracy
# of rank_svm() at its defaults: an outer 5-fold cross-validation in which
# rank_svm() chooses its number of features and its cost inside each outer
# training set; and the times. Run by hand with the package installed:
#   Rscript bench/kernel_svm.R
library(diffrank)
for (pkg in c("ALL", "Biobase", "kernlab")) {
  if (!requireNamespace(pkg, quietly = TRUE)) stop("bench/kernel_svm.R needs the ", pkg, " package")
}
data("ALL", package = "ALL", envir = environment())
x <- Biobase::exprs(ALL)
lineage <- factor(substr(ALL$BT, 1, 1))
cat(sprintf("ALL: %d probe sets x %d samples; %s\n", nrow(x), ncol(x),
            paste(names(table(lineage)), table(lineage), sep = " = ", collapse = ", ")))
cat(sprintf("Majority class: %.3f\n", max(table(lineage)) / length(lineage)))
if (file.exists("/proc/loadavg")) cat("Load average:", readLines("/proc/loadavg"), "\n")

set.seed(1)
outer <- sample(rep(1:5, length.out = ncol(x)))

# Cross-validated accuracy of ksvm on a precomputed kernel matrix K, on the
# folds `outer`.
cv_ksvm <- function(K, C) {
  correct <- 0
  for (f in 1:5) {
    train <- outer != f
    fit <- kernlab::ksvm(kernlab::as.kernelMatrix(K[train, train]), lineage[train],
                         type = "C-svc", C = C)
    sv <- kernlab::SVindex(fit)
    pred <- kernlab::predict(fit, kernlab::as.kernelMatrix(K[!train, train, drop = FALSE][, sv,
                                                                                   drop = FALSE]))
    correct <- correct + sum(pred == lineage[!train])
  }
  correct / ncol(x)
}

t_kernel <- system.time(K <- suppressWarnings(kendall_kernel(x, progress = FALSE)))[["elapsed"]]
off <- K[, ][upper.tri(K)]
cat(sprintf("\nkendall_kernel on all %d probe sets: %.2f s (%d threads); off-diagonal values %.2f to %.2f, sd %.3f\n",
            nrow(x), t_kernel, diffrank_threads(), min(off), max(off), stats::sd(off)))
warned <- tryCatch({ kendall_kernel(x, progress = FALSE); FALSE },
                   diffrank_near_constant_kernel = function(w) TRUE)
cat(sprintf("  near-constant warning on all probe sets: %s\n", warned))
W <- suppressWarnings(weighted_kendall_kernel(x, progress = FALSE))
K1000 <- kendall_kernel(x, features = 1000, progress = FALSE)
off1000 <- K1000[, ][upper.tri(K1000)]
cat(sprintf("kendall_kernel(features = 1000): off-diagonal %.2f to %.2f, sd %.3f\n",
            min(off1000), max(off1000), stats::sd(off1000)))
set.seed(2)
noise <- matrix(rnorm(length(x)), nrow(x))
off_noise <- suppressWarnings(kendall_kernel(noise, progress = FALSE))[, ]
cat(sprintf("Noise of the same size: off-diagonal sd %.4f\n",
            stats::sd(off_noise[upper.tri(off_noise)])))

cat("\nksvm on a precomputed kernel, 5-fold CV accuracy (same folds), by cost C:\n")
costs <- c(0.1, 1, 10, 100, 1000)
# Centring in feature space (H K H, H = I - 11'/n; still positive
# semidefinite) is a translation of the samples, which an SVM with an
# intercept ignores: shown here on all probe sets.
H <- diag(ncol(x)) - 1 / ncol(x)
rows <- list(
  "kendall_kernel, all probe sets" = K,
  "  the same, centred" = H %*% K[, ] %*% H,
  "weighted_kendall_kernel (defaults), all" = W,
  "kendall_kernel(features = 1000)" = K1000
)
cat(sprintf("  %-42s %s\n", "", paste(sprintf("C=%-6s", as.character(costs)), collapse = " ")))
for (name in names(rows)) {
  acc <- vapply(costs, function(C) cv_ksvm(rows[[name]], C), 0)
  cat(sprintf("  %-42s %s\n", name, paste(sprintf("%-8.3f", acc), collapse = " ")))
}
cat("  (features = 1000 chosen on all 128 samples: unsupervised, no label used)\n")

for (kernel in c("kendall", "weighted_kendall")) {
  cat(sprintf("\nrank_svm(kernel = \"%s\") at its defaults, honest outer 5-fold CV (features and C chosen inside each outer training set):\n", kernel))
  correct <- 0
  t_helper <- numeric(0)
  for (f in 1:5) {
    train <- outer != f
    set.seed(10 + f)
    t_helper[f] <- system.time(fit <- rank_svm(x[, train], lineage[train], kernel = kernel))[["elapsed"]]
    pred <- predict(fit, x[, !train])
    correct <- correct + sum(pred == lineage[!train])
    cat(sprintf("  outer fold %d: %2d/%2d right; chose %d features, C = %s; %.1f s\n", f,
                sum(pred == lineage[!train]), sum(!train), fit$n_features, format(fit$cost),
                t_helper[f]))
  }
  cat(sprintf("rank_svm(\"%s\") outer-CV accuracy: %.3f (goal >= 0.95); median time of one call: %.1f s\n",
              kernel, correct / ncol(x), stats::median(t_helper)))
}

# The same run twice gives the same fit (deterministic for a seed).
set.seed(3)
a <- rank_svm(x[, outer != 1], lineage[outer != 1])
set.seed(3)
b <- rank_svm(x[, outer != 1], lineage[outer != 1])
cat(sprintf("Same seed, same fit: %s\n", identical(a$cv, b$cv) &&
              identical(predict(a, x[, outer == 1]), predict(b, x[, outer == 1]))))
