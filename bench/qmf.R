# Benchmark of quantile matrix factorization.
# Run by hand with the package installed:  Rscript bench/qmf.R
# On the full ALL data (12,625 probe sets x 128 samples, Bioconductor package
# ALL) at rank 10 with m = 16 target values per row, prints
# * the seconds per epoch and to convergence of qmf() (Adam, the defaults) on
#   1 and 2 threads, and whether the two fits are identical;
# * the floor: one pass of Sinkhorn forward + VJP over all rows (what an
#   epoch cannot avoid), and the ratio of an epoch to it;
# * truncated SVD and NMF (RcppML) at the same rank: time and relative error.
# Elapsed and CPU seconds are both printed: on a machine shared with other
# jobs, CPU seconds are the figures to compare.
suppressPackageStartupMessages({
  library(diffrank)
  library(ALL)
})
data("ALL", package = "ALL")
x <- Biobase::exprs(ALL)
k <- 10L
m <- 16L
cat("diffrank", format(utils::packageVersion("diffrank")), "- quantile matrix factorization\n")
cat(sprintf("R %s, %s; ALL: %d probe sets x %d samples, rank %d, m = %d\n", getRversion(),
            R.version$platform, nrow(x), ncol(x), k, m))
load_average <- function() {
  if (file.exists("/proc/loadavg")) strsplit(readLines("/proc/loadavg"), " ")[[1]][1] else "?"
}
cat(sprintf("%d cores, load average %s at the start\n\n", parallel::detectCores(), load_average()))

timed <- function(expr) {
  gc(FALSE)
  st <- system.time(value <- expr)
  list(value = value, elapsed = st[["elapsed"]], cpu = st[["user.self"]] + st[["sys.self"]])
}
rel_error <- function(approx) sqrt(sum((x - approx)^2) / sum(x^2))

# ---------------------------------------------------------------------------
# 1. QMF with the defaults (Adam, batches of 64 rows, eps = 0.05, tol = 1e-3)
fits <- list()
for (threads in 1:2) {
  set.seed(1)
  run <- timed(qmf(x, rank = k, n_quantiles = m, threads = threads, verbose = FALSE))
  fit <- run$value
  per_epoch <- diff(c(0, fit$history$seconds))
  cat(sprintf("1. qmf(), %d thread(s): %s after %d epochs, %.1f s elapsed (%.1f s CPU) in all\n",
              threads, if (fit$converged) "converged" else "NOT converged", fit$iterations,
              run$elapsed, run$cpu))
  cat(sprintf("   %.2f s per epoch (median elapsed), %.2f s CPU per epoch (mean), %.1f s in the epochs\n",
              stats::median(per_epoch), run$cpu / fit$iterations, fit$seconds))
  cat(sprintf("   relative error ||X - T(UV)|| / ||X|| = %.5f, objective %.5f\n", fit$relative_error,
              fit$objective))
  fits[[threads]] <- fit
}
cat(sprintf("   identical fits with 1 and 2 threads: %s\n\n",
            identical(coef(fits[[1]]), coef(fits[[2]]))))
fit <- fits[[2]]

# ---------------------------------------------------------------------------
# 2. The floor: one Sinkhorn forward + VJP over all rows, with the fit's
#    settings, through the public operator (each row is one column of t(U V))
z <- t(fit$U %*% fit$V)
target <- seq(-1, 1, length.out = m)
floor_time <- function(threads) {
  timed({
    op <- sinkhorn_normalize_fn(z, target = target, eps = fit$settings$eps, scale = "none",
                                tol = fit$settings$control$sinkhorn_tol, threads = threads)
    op$vjp(z, wrt = "all")
  })
}
epoch_time <- function(threads) {
  prob <- fit$problem
  prob$x <- fit$x
  prob$threads <- threads
  timed(for (rows in split(seq_len(nrow(x)), ceiling(seq_len(nrow(x)) / 64))) {
    diffrank:::qmf_evaluate(prob, fit$par, rows)
  })
}
for (threads in 1:2) {
  fl <- floor_time(threads)
  ep <- epoch_time(threads)
  cat(sprintf("2. %d thread(s): Sinkhorn forward + VJP over all rows %.2f s (%.2f s CPU);\n",
              threads, fl$elapsed, fl$cpu))
  cat(sprintf("   the gradients of one epoch (%d batches) %.2f s (%.2f s CPU): ratio %.2f (CPU %.2f)\n",
              ceiling(nrow(x) / 64), ep$elapsed, ep$cpu, ep$elapsed / fl$elapsed, ep$cpu / fl$cpu))
}
cat(sprintf("   an epoch with the Adam updates: %.2f s median (section 1, 2 threads)\n\n",
            stats::median(diff(c(0, fit$history$seconds)))))

# ---------------------------------------------------------------------------
# 3. Truncated SVD and NMF at the same rank
sv <- timed(svd(x, nu = k, nv = k))
err_svd <- rel_error(sv$value$u %*% diag(sv$value$d[seq_len(k)]) %*% t(sv$value$v))
cat(sprintf("3. truncated SVD (base::svd): %.2f s (%.2f s CPU), relative error %.5f\n", sv$elapsed,
            sv$cpu, err_svd))
if (requireNamespace("RcppML", quietly = TRUE)) {
  nm <- timed(RcppML::nmf(x, k, seed = 1, verbose = FALSE, tol = 1e-5, maxit = 1000))
  w <- nm$value
  err_nmf <- rel_error(w$w %*% diag(w$d) %*% w$h)
  cat(sprintf("   NMF (RcppML::nmf, tol 1e-5): %.2f s (%.2f s CPU), relative error %.5f\n",
              nm$elapsed, nm$cpu, err_nmf))
} else {
  err_nmf <- NA
  cat("   NMF: RcppML is not installed\n")
}
cat(sprintf("   QMF (2 threads): relative error %.5f, %.1f s; error ratios SVD / QMF %.3f, NMF / QMF %.3f\n",
            fit$relative_error, fit$seconds, err_svd / fit$relative_error,
            err_nmf / fit$relative_error))
cat(sprintf("load average %s at the end\n", load_average()))
