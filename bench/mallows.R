# The Mallows model (rmallows(), mallows_model()): draws and fits, timed
# against the repeated insertion sampler written in R (the method of R code
# without a compiled sampler) and against the exact distribution. PerMallows,
# the anchor for fits, is no longer on CRAN; when it is installed its fit is
# timed too. Run by hand with the package installed: Rscript bench/mallows.R
library(diffrank)
if (file.exists("/proc/loadavg")) cat("Load average before the run:", readLines("/proc/loadavg"), "\n")

timed <- function(expr) system.time(expr)[["elapsed"]]

# Repeated insertion in R: item j of the consensus goes V_j places above the
# bottom of the items placed after it.
r_insertion <- function(n, consensus, theta) {
  p <- length(consensus)
  items <- order(consensus)
  out <- matrix(0, p, n)
  for (d in seq_len(n)) {
    placed <- integer(0)
    for (j in p:1) {
      m <- p - j
      w <- exp(-theta * (0:m))
      v <- sample.int(m + 1L, 1L, prob = w) - 1L
      placed <- append(placed, items[j], after = v)
    }
    out[placed, d] <- seq_len(p)
  }
  out
}

p <- 20
theta <- 0.3
set.seed(1)
consensus <- sample(p)
n_r <- 2000
t_r <- timed(r_insertion(n_r, consensus, theta))
t_1 <- timed(rmallows(1e5, consensus, theta, threads = 1))
t_2 <- timed(rmallows(1e5, consensus, theta, threads = 2))
cat(sprintf("Draws of %d items, theta = %.1f\n", p, theta))
cat(sprintf("  R repeated insertion   %8.1f us per draw (%d draws)\n", 1e6 * t_r / n_r, n_r))
cat(sprintf("  rmallows, 1 thread     %8.2f us per draw   %6.0fx faster\n", 1e6 * t_1 / 1e5,
            (t_r / n_r) / (t_1 / 1e5)))
cat(sprintf("  rmallows, 2 threads    %8.2f us per draw   %6.0fx faster\n", 1e6 * t_2 / 1e5,
            (t_r / n_r) / (t_2 / 1e5)))

r <- rmallows(1e4, consensus, theta)
t_fit <- timed(fit <- mallows_model(r))
stopifnot(all(fit$consensus == consensus))
cat(sprintf("Fit to 1e4 rankings of %d items (consensus by Borda and local search, theta by ML): %.3f s, theta = %.4f\n",
            p, t_fit, fit$theta))
if (requireNamespace("PerMallows", quietly = TRUE)) {
  perms <- t(apply(r, 2, order))
  t_pm <- timed(PerMallows::lmm(perms, dist.name = "kendall", estimation = "approx"))
  cat(sprintf("  PerMallows::lmm: %.3f s, %.1fx our time\n", t_pm, t_pm / t_fit))
} else {
  cat("  (PerMallows is not installed: no anchor for the fit)\n")
}
