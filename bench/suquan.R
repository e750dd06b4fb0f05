# SUQUAN fit times on the full ALL data (128 samples x 12,625 probe sets,
# Bioconductor's ALL package; Debian r-bioc-all), B- against T-cell lineage:
# cv_suquan() with its defaults (method "bnd", 5 folds, 20 lambda values x
# rounds 0:3, and more below them when the best is at the end of the path),
# the goal being under 60 s on 2 threads; single fits of methods "bnd"
# (1 round and to convergence) and "svd"; and, in the same run, the fit
# they compete with: glmnet's cv.glmnet() ridge logistic regression on
# quantile-normalized data.
# Run after installing diffrank: Rscript bench/suquan.R
suppressPackageStartupMessages(library(diffrank))
if (requireNamespace("ALL", quietly = TRUE) && requireNamespace("Biobase", quietly = TRUE)) {
  data("ALL", package = "ALL", envir = environment())
  x <- Biobase::exprs(ALL)
  y <- factor(substr(as.character(ALL$BT), 1, 1))
  source <- "ALL (Bioconductor)"
} else {
  set.seed(1)
  x <- matrix(rnorm(12625 * 128, 6, 2), 12625, dimnames = list(paste0("f", 1:12625), NULL))
  y <- factor(sample(c("B", "T"), 128, TRUE))
  source <- "simulated (ALL not installed)"
}
threads <- 2L
cat(sprintf("SUQUAN, %s: %d features x %d samples, %d threads\n", source, nrow(x), ncol(x),
            threads))
seconds <- function(expr) {
  time <- system.time(expr)
  c(elapsed = time[["elapsed"]], cpu = time[["user.self"]] + time[["sys.self"]])
}

set.seed(1)
t_cv <- seconds(cv <- cv_suquan(x, y, threads = threads, progress = FALSE))
cat(sprintf(paste0("  cv_suquan (defaults)   %6.1f s elapsed (%6.1f s CPU); best lambda %.3g ",
                   "(%.2g x lambda_max), rounds %s; path of %d values, %d of them added below ",
                   "the first %d\n"),
            t_cv[["elapsed"]], t_cv[["cpu"]], cv$lambda_min, cv$lambda_min / cv$lambda_max,
            format(cv$rounds_min), length(cv$lambda), cv$extended,
            length(cv$lambda) - cv$extended))
cat(sprintf("  goal: under 60 s elapsed on %d threads: %s\n", threads,
            if (t_cv[["elapsed"]] < 60) "met" else "NOT met"))
for (setting in list(list(method = "bnd", rounds = 1), list(method = "bnd", rounds = Inf),
                     list(method = "svd", rounds = 1))) {
  t_fit <- seconds(fit <- suquan(x, y, method = setting$method, rounds = setting$rounds,
                                 lambda = cv$lambda_min, threads = threads))
  cat(sprintf("  suquan %-3s rounds %-3s %6.2f s elapsed (%d round(s), objective %.5g%s)\n",
              setting$method, format(setting$rounds), t_fit[["elapsed"]], fit$iterations,
              utils::tail(fit$history$objective, 1),
              if (!is.null(fit$svd)) sprintf(", singular-value gap %.3g", fit$svd$gap) else ""))
}
if (requireNamespace("glmnet", quietly = TRUE)) {
  set.seed(1)
  t_glmnet <- seconds({
    z <- t(normalize_quantiles(x, threads = threads))
    glmnet::cv.glmnet(z, y, family = "binomial", alpha = 0, nfolds = 5)
  })
  cat(sprintf("  QN + cv.glmnet ridge   %6.1f s elapsed (cv_suquan / glmnet = %.1fx)\n",
              t_glmnet[["elapsed"]], t_cv[["elapsed"]] / t_glmnet[["elapsed"]]))
}
