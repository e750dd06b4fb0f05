# Benchmarks of the Sinkhorn operators.
# Run by hand with the package installed:  Rscript bench/sinkhorn.R
# Prints seconds, iterations, nanoseconds per kernel entry per iteration, the
# speed-up of the banded kernel, the ratio to a plain dense log-domain
# Sinkhorn written in vectorized R, and memory allocations.
suppressPackageStartupMessages(library(diffrank))
has_bench <- requireNamespace("bench", quietly = TRUE)

# Median elapsed seconds over reps; attribute "cpu": median CPU seconds
# (user + system), which is what to read on a machine shared with other jobs.
timeit <- function(expr, reps = 3L) {
  expr <- substitute(expr)
  env <- parent.frame()
  times <- vapply(seq_len(reps), function(i) {
    gc(FALSE)
    st <- system.time(eval(expr, env))
    c(st[["elapsed"]], st[["user.self"]] + st[["sys.self"]])
  }, numeric(2))
  structure(stats::median(times[1, ]), cpu = stats::median(times[2, ]))
}

cat("diffrank", format(utils::packageVersion("diffrank")), "- Sinkhorn operators\n")
cat(sprintf("R %s, %s\n\n", getRversion(), R.version$platform))

# ---------------------------------------------------------------------------
# 1. Soft rank, n = m = 2000, default eps, one thread
set.seed(1)
n <- 2000L
x <- rnorm(n)
r <- sinkhorn_rank(x, threads = 1)
t_rank <- timeit(sinkhorn_rank(x, threads = 1), reps = 5L)
it <- attr(r, "iterations")
a <- rep(1 / n, n)
y <- seq(0, 1, length.out = n)
b <- rep(1 / n, n)
fw <- diffrank:::sinkhorn_forward_cpp(matrix(x), a, y, b, cumsum(b), 0.01, 2, 1e-6, 1000L, TRUE, 1L)
cat("1. sinkhorn_rank(), n = m = 2000, eps = 0.01 (default), tol = 1e-6, 1 thread\n")
cat(sprintf("   %.3f s elapsed (%.3f s CPU), %d iterations, error %.2g\n", t_rank,
            attr(t_rank, "cpu"), it, attr(r, "error")))
cat(sprintf("   %.2f ns (%.2f ns CPU) per kernel entry per iteration: time / (n * m * iterations);\n",
            1e9 * t_rank / (as.double(n) * n * it), 1e9 * attr(t_rank, "cpu") / (as.double(n) * n * it)))
cat("   an iteration updates both potentials, i.e. evaluates each kernel entry twice\n")
cat(sprintf("   %.2f ns (%.2f ns CPU) per kernel entry evaluated (%.3g evaluations, incl. readout)\n\n",
            1e9 * t_rank / fw$entries, 1e9 * attr(t_rank, "cpu") / fw$entries, fw$entries))

# ---------------------------------------------------------------------------
# 2. Soft quantile normalization of one column of 20,000 values to m = 200
x20 <- rnorm(20000)
target <- qnorm(ppoints(200))
q <- sinkhorn_normalize(x20, target = target, threads = 1)
t_qn <- timeit(sinkhorn_normalize(x20, target = target, threads = 1), reps = 5L)
cat("2. sinkhorn_normalize(), one column of 20,000 values to m = 200 targets, eps = 0.01\n")
cat(sprintf("   %.3f s elapsed (%.3f s CPU), %d iterations, error %.2g\n", t_qn, attr(t_qn, "cpu"),
            attr(q, "iterations"), attr(q, "error")))
t_hard <- timeit(normalize_quantiles(x20, target = target, threads = 1), reps = 5L)
cat(sprintf("   (hard normalize_quantiles(): %.4f s)\n\n", t_hard))

# ---------------------------------------------------------------------------
# 3. Banded kernel: speed-up at small eps (n = m = 2000), same iterations
cat("3. Banded kernel vs all n * m entries, n = m = 2000, max_iter = 200\n")
for (eps in c(1e-2, 1e-3, 1e-4)) {
  run <- function(banded) {
    diffrank:::sinkhorn_forward_cpp(matrix(x), a, y, b, cumsum(b), eps, 2, 1e-6, 200L, TRUE, 1L,
                                    banded)
  }
  rb <- run(TRUE)
  rd <- run(FALSE)
  tb <- timeit(run(TRUE), reps = 3L)
  td <- timeit(run(FALSE), reps = 3L)
  cat(sprintf("   eps = %-6g banded %.3f s (%d it, %.0f%% of entries)  all entries %.3f s (%d it)  speed-up %.2fx (CPU %.2fx)  max |diff| %.1e\n",
              eps, tb, rb$iterations, 100 * rb$entries / rd$entries, td, rd$iterations, td / tb,
              attr(td, "cpu") / attr(tb, "cpu"), max(abs(rb$value - rd$value))))
}
cat("\n")

# ---------------------------------------------------------------------------
# 4. Plain dense log-domain Sinkhorn in vectorized R (what an R user writes)
dense_r_sinkhorn <- function(x, eps = 0.01, tol = 1e-6, max_iter = 1000L) {
  z <- 1 / (1 + exp(-(x - mean(x)) / sd(x)))
  n <- length(z)
  m <- n
  y <- seq(0, 1, length.out = m)
  a <- rep(1 / n, n)
  b <- rep(1 / m, m)
  C <- outer(z, y, "-")^2
  f <- numeric(n)
  g <- numeric(m)
  row_lse <- function(M) {
    mx <- apply(M, 1, max)
    mx + log(rowSums(exp(M - mx)))
  }
  col_lse <- function(M) {
    mx <- apply(M, 2, max)
    mx + log(colSums(exp(sweep(M, 2, mx))))
  }
  for (k in seq_len(max_iter)) {
    f <- eps * log(a) - eps * row_lse(sweep(-C, 2, g, "+") / eps)
    P <- exp((outer(f, g, "+") - C) / eps)
    err <- sum(abs(colSums(P) - b))
    if (err < tol) break
    g <- eps * log(b) - eps * col_lse((f - C) / eps)
  }
  list(rank = n * drop(P %*% cumsum(b)) / a, iterations = k, error = err)
}
cat("4. Plain dense log-domain Sinkhorn in vectorized R, n = m = 2000, eps = 0.01, tol = 1e-6\n")
st_r <- system.time(dr <- dense_r_sinkhorn(x))
t_r <- st_r[["elapsed"]]
cpu_r <- st_r[["user.self"]] + st_r[["sys.self"]]
cat(sprintf("   R: %.2f s, %d iterations (%.3f s per iteration)\n", t_r, dr$iterations,
            t_r / dr$iterations))
cat(sprintf("   diffrank: %.3f s, %d iterations\n", t_rank, it))
cat(sprintf("   ratio (time to the same tolerance): %.0fx (CPU %.0fx); per iteration: %.1fx\n",
            t_r / t_rank, cpu_r / attr(t_rank, "cpu"), (t_r / dr$iterations) / (t_rank / it)))
cat(sprintf("   max |rank difference| %.2e\n\n", max(abs(dr$rank - r))))

# ---------------------------------------------------------------------------
# 5. Memory
cat("5. Memory (bench::mark mem_alloc: allocations on R's heap)\n")
if (has_bench) {
  for (nn in c(2000L, 20000L)) {
    xx <- rnorm(nn)
    bm <- bench::mark(sinkhorn_rank(xx, threads = 1), iterations = 1, check = FALSE,
                      memory = TRUE)
    cat(sprintf("   sinkhorn_rank(), n = m = %6d: mem_alloc %s (%.1f doubles per value)\n", nn,
                format(bm$mem_alloc), as.double(bm$mem_alloc) / 8 / nn))
  }
  xx <- rnorm(1000L)
  bm <- bench::mark(dense_r_sinkhorn(xx, max_iter = 20L), iterations = 1, check = FALSE,
                    memory = TRUE)
  cat(sprintf("   dense R Sinkhorn, n = m = 1000, 20 iterations: mem_alloc %s\n",
              format(bm$mem_alloc)))
  cat("   (C++ working memory, not seen by mem_alloc, is O(n + m): potentials, sort order,\n")
  cat("   one kernel row, block maxima; a dense Schur complement of at most 400 x 400 in VJPs)\n")
} else {
  cat("   install the 'bench' package for this part\n")
}
