# Benchmark of soft sort and soft rank (forward pass + vector-Jacobian
# product) against base R's order() and rank() on the same data, one thread.
# Run by hand with the package installed:  Rscript bench/soft_sort.R
suppressPackageStartupMessages(library(diffrank))

time_median <- function(expr, times) {
  f <- eval.parent(substitute(function() expr))
  f()  # warm-up
  t <- vapply(seq_len(times), function(i) system.time(f(), gcFirst = FALSE)[["elapsed"]], 0)
  stats::median(t)
}

set.seed(42)
cat(sprintf("diffrank %s, R %s, one thread\n\n", utils::packageVersion("diffrank"),
            getRversion()))

n <- 1e6
x <- rnorm(n)
v <- rnorm(n)
t_order <- time_median(order(x), 7)
t_rank <- time_median(rank(x), 7)
cat(sprintf("n = %.0e, one vector: order(x) %.1f ms, rank(x) %.1f ms\n", n, 1e3 * t_order,
            1e3 * t_rank))
cat(sprintf("%-34s %10s %12s %12s\n", "forward + VJP", "ms", "/ order(x)", "/ rank(x)"))
for (kind in c("rank", "sort")) {
  for (reg in c("l2", "kl")) {
    for (eps in c(0.01, 1)) {
      f <- if (kind == "rank") soft_rank_vjp else soft_sort_vjp
      t <- time_median(f(x, v, eps = eps, reg = reg, threads = 1), 7)
      cat(sprintf("soft_%s_vjp(reg = \"%s\", eps = %-4s) %10.1f %12.2f %12.2f\n", kind, reg,
                  format(eps), 1e3 * t, t / t_order, t / t_rank))
    }
  }
}
t_fwd <- time_median(soft_rank(x, eps = 1, threads = 1), 7)
cat(sprintf("soft_rank() forward only, eps = 1   %10.1f %12.2f %12.2f\n", 1e3 * t_fwd,
            t_fwd / t_order, t_fwd / t_rank))

cat("\n256 vectors of length 100 (a 100 x 256 matrix), forward + VJP\n")
m <- matrix(rnorm(100 * 256), 100, 256)
g <- matrix(rnorm(100 * 256), 100, 256)
reps <- 200
for (kind in c("rank", "sort")) {
  for (reg in c("l2", "kl")) {
    f <- if (kind == "rank") soft_rank_vjp else soft_sort_vjp
    t1 <- time_median(for (i in seq_len(reps)) f(m, g, eps = 0.1, reg = reg, threads = 1), 5) / reps
    t2 <- time_median(for (i in seq_len(reps)) f(m, g, eps = 0.1, reg = reg, threads = 2), 5) / reps
    cat(sprintf("soft_%s_vjp(reg = \"%s\"): %.2f us per vector (1 thread), %.2f us (2 threads)\n",
                kind, reg, 1e6 * t1 / 256, 1e6 * t2 / 256))
  }
}
t_base <- time_median(for (i in seq_len(reps)) apply(m, 2, rank), 5) / reps
cat(sprintf("base apply(m, 2, rank): %.2f us per vector\n", 1e6 * t_base / 256))
