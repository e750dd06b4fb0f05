# SUQUAN on the full ALL data (128 samples x 12,625 probe sets, Bioconductor's
# ALL package; Debian r-bioc-all), B- against T-cell lineage, one lambda, one
# thread: seconds for methods "bnd" and "svd", and for the fit it competes
# with, glmnet's ridge logistic regression on quantile-normalized data.
# Run after installing diffrank: Rscript bench/suquan.R
suppressPackageStartupMessages(library(diffrank))
if (requireNamespace("ALL", quietly = TRUE) && requireNamespace("Biobase", quietly = TRUE)) {
  data("ALL", package = "ALL", envir = environment())
  x <- Biobase::exprs(ALL)
  y <- factor(substr(as.character(ALL$BT), 1, 1))
  source <- "ALL (Bioconductor)"
} else {
  set.seed(1)
  x <- matrix(rnorm(12625 * 128, 6, 2), 12625)
  y <- factor(sample(c("B", "T"), 128, TRUE))
  source <- "simulated (ALL not installed)"
}
cat(sprintf("SUQUAN fit, %s: %d features x %d samples, lambda = 0.01, 1 thread\n",
            source, nrow(x), ncol(x)))
time_fit <- function(method) {
  elapsed <- system.time(fit <- suquan(x, y, method = method, lambda = 0.01, threads = 1))
  cat(sprintf("  method %-4s %7.2f s  (%d iterations, converged: %s, objective %.5g)\n",
              method, elapsed[["elapsed"]], fit$iterations, fit$converged,
              utils::tail(fit$history$objective, 1)))
  elapsed[["elapsed"]]
}
t_bnd <- time_fit("bnd")
t_svd <- time_fit("svd")
cat(sprintf("goal: under 10 s each; bnd %s, svd %s\n",
            if (t_bnd < 10) "met" else "NOT met", if (t_svd < 10) "met" else "NOT met"))
if (requireNamespace("glmnet", quietly = TRUE)) {
  elapsed <- system.time({
    z <- t(normalize_quantiles(x, threads = 1))
    glmnet::glmnet(z, y, family = "binomial", alpha = 0, lambda = 0.02)
  })[["elapsed"]]
  cat(sprintf("glmnet ridge on normalize_quantiles(x) output: %.2f s (bnd / glmnet = %.1fx)\n",
              elapsed, t_bnd / elapsed))
}
