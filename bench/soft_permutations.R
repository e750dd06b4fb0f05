# Soft permutation matrices: the L2 Birkhoff projection (birkhoff_plan(),
# birkhoff_rank()) and the relaxed sorting networks (network_plan(),
# network_rank()), timed against plain-R references by other algorithms
# (block coordinate ascent on the dual of the quadratically regularized
# transport; the network's comparators looped in R, which is how R users
# would write Petersen et al.'s relaxation without a compiled core) and
# against the package's entropic plan and PAV soft ranks. Run by hand with
# the package installed: Rscript bench/soft_permutations.R
library(diffrank)
if (file.exists("/proc/loadavg")) cat("Load average before the run:", readLines("/proc/loadavg"), "\n")

timed <- function(expr) system.time(expr)[["elapsed"]]
# Seconds per evaluation of expr (with its assignments, in the caller): the
# best of k timings of as many repetitions as take at least 0.1 s.
best_of <- function(k, expr) {
  e <- substitute(expr)
  env <- parent.frame()
  reps <- 1
  repeat {
    t <- system.time(for (i in seq_len(reps)) eval(e, env))[["elapsed"]]
    if (t >= 0.1 || reps >= 1e4) break
    reps <- reps * 4
  }
  min(t, vapply(seq_len(k - 1), function(i) {
    system.time(for (i in seq_len(reps)) eval(e, env))[["elapsed"]]
  }, numeric(1))) / reps
}

# Block coordinate ascent on the dual, in R, until the marginals hold to tol.
birkhoff_r <- function(z, eps, tol = 1e-9) {
  n <- length(z)
  y <- seq(0, 1, length.out = n)
  C <- outer(z, y, "-")^2
  f <- numeric(n)
  g <- numeric(n)
  best <- function(h) {
    h <- sort(h)
    k <- seq_along(h)
    t <- (n * eps + cumsum(h)) / k
    t[which(c(t[-n] <= h[-1], TRUE))[1]]
  }
  repeat {
    for (i in seq_len(n)) f[i] <- best(C[i, ] - g)
    for (j in seq_len(n)) g[j] <- best(C[, j] - f)
    P <- pmax(outer(f, g, "+") - C, 0) / (n * n * eps)
    if (max(abs(colSums(P) * n - 1), abs(rowSums(P) * n - 1)) < tol) return(P)
  }
}

network_r <- function(x, tau) {
  n <- length(x)
  v <- x
  for (layer in 0:(n - 1)) {
    first <- 1 + layer %% 2
    if (first < n) for (k in seq(first, n - 1, by = 2)) {
      a <- stats::plogis((v[k + 1] - v[k]) / tau)
      v[c(k, k + 1)] <- c(a * v[k] + (1 - a) * v[k + 1], (1 - a) * v[k] + a * v[k + 1])
    }
  }
  v
}

set.seed(1)
cat("\nBirkhoff plan of n values to n targets (eps = 1e-4, squashed values)\n")
cat(sprintf("  %6s %12s %12s %12s %14s %12s\n", "n", "diffrank s", "R ascent s", "ratio",
            "sinkhorn_plan", "VJP / value"))
for (n in c(20, 100, 500, 2000)) {
  x <- rnorm(n)
  t_d <- best_of(3, P <- birkhoff_plan(x, n_targets = n))
  t_r <- if (n <= 100) timed(P_r <- birkhoff_r(stats::plogis((x - mean(x)) / sd(x)), 1e-4)) else NA
  if (n <= 100) stopifnot(max(abs(P - P_r)) < 1e-9)
  t_s <- best_of(3, sinkhorn_plan(x, n_targets = n))
  op <- birkhoff_rank_fn(x, n_targets = n)
  t_v <- best_of(3, op$vjp(rnorm(n)))
  t_f <- best_of(3, birkhoff_rank(x, n_targets = n))
  cat(sprintf("  %6d %12.5f %12s %12s %14.5f %12.3f\n", n, t_d,
              if (is.na(t_r)) "-" else sprintf("%.3f", t_r),
              if (is.na(t_r)) "-" else sprintf("%.0fx", t_r / t_d), t_s, t_v / t_f))
}

cat("\nSorting networks, soft ranks of n values (eps = 0.25)\n")
cat(sprintf("  %7s %10s %10s %12s %10s %12s %12s\n", "n", "bitonic s", "odd-even s",
            "R odd-even s", "ratio", "soft_rank s", "VJP / value"))
for (n in c(100, 1000, 10000, 1e5)) {
  x <- rnorm(n)
  t_b <- best_of(3, network_rank(x))
  t_o <- if (n <= 1000) best_of(3, network_sort(x, network = "odd_even")) else NA
  t_r <- if (n <= 1000) timed(s_r <- network_r(x, 0.25 * sd(x) / n)) else NA
  if (n <= 1000) stopifnot(max(abs(network_sort(x, network = "odd_even") - s_r)) < 1e-10)
  t_p <- best_of(3, soft_rank(x))
  op <- network_rank_fn(x)
  t_v <- best_of(3, op$vjp(rnorm(n)))
  cat(sprintf("  %7d %10.5f %10s %12s %10s %12.5f %12.2f\n", n, t_b,
              if (is.na(t_o)) "-" else sprintf("%.5f", t_o),
              if (is.na(t_r)) "-" else sprintf("%.3f", t_r),
              if (is.na(t_r)) "-" else sprintf("%.0fx", t_r / t_o), t_p, t_v / t_b))
}

cat("\nNetwork plans (n x n) and their VJP\n")
for (n in c(64, 256, 1024)) {
  x <- rnorm(n)
  t_p <- best_of(3, op <- network_plan_fn(x))
  t_v <- best_of(3, op$vjp(matrix(rnorm(n * n), n)))
  cat(sprintf("  n = %5d  plan %.5f s   VJP %.5f s\n", n, t_p, t_v))
}

cat("\nA 1,000 x 200 matrix, soft ranks per column: threads 1 and 2\n")
m <- matrix(rnorm(2e5), 1000)
for (what in c("birkhoff_rank", "network_rank")) {
  f <- get(what)
  t1 <- best_of(2, v1 <- f(m, threads = 1))
  t2 <- best_of(2, v2 <- f(m, threads = 2))
  stopifnot(identical(v1, v2))
  cat(sprintf("  %-14s 1 thread %.3f s, 2 threads %.3f s (%.2fx), identical\n", what, t1, t2,
              t1 / t2))
}
