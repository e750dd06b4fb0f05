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

# One forward pass through the glue, for the kernel-entry counts and the
# banded/dense comparison that the R functions do not expose.
forward_cpp <- function(x, eps, max_iter, banded = TRUE) {
  n <- length(x)
  b <- rep(1 / n, n)
  diffrank:::sinkhorn_forward_cpp(
    matrix(x), rep(1 / n, n), "rank",
    list(list(y = seq(0, 1, length.out = n), b = b, w = NULL, cumsum = TRUE, rows = NULL)),
    list(eps = eps, power = 2, tol = 1e-6, max_iter = as.integer(max_iter), scale = "squash",
         progress = FALSE,
         banded = banded), 1L)
}

# ---------------------------------------------------------------------------
# 1. Soft rank, n = m = 2000, default eps, one thread
set.seed(1)
n <- 2000L
x <- rnorm(n)
r <- sinkhorn_rank(x, n_targets = n, threads = 1)
t_rank <- timeit(sinkhorn_rank(x, n_targets = n, threads = 1), reps = 5L)
it <- attr(r, "iterations")
a <- rep(1 / n, n)
y <- seq(0, 1, length.out = n)
b <- rep(1 / n, n)
fw <- forward_cpp(x, 0.01, 1000L)
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
    forward_cpp(x, eps, 200L, banded)
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
    bm <- bench::mark(sinkhorn_rank(xx, n_targets = nn, threads = 1), iterations = 1,
                      check = FALSE, memory = TRUE)
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

# ---------------------------------------------------------------------------
# 6. Defaults on long columns: at most 128 targets keep an iteration linear in n
cat("\n6. sinkhorn_normalize() of a 50,000 x 20 matrix with the defaults (goal: under 5 s)\n")
set.seed(6)
big <- matrix(rnorm(50000 * 20), 50000, 20)
for (th in c(1L, 2L)) {
  t_big <- timeit(out <- sinkhorn_normalize(big, threads = th), reps = 1L)
  cat(sprintf("   %d thread(s): %.2f s elapsed (%.2f s CPU), iterations %s, all converged: %s\n",
              th, t_big, attr(t_big, "cpu"), paste(range(attr(out, "iterations")), collapse = "-"),
              all(attr(out, "converged"))))
}
hard <- normalize_quantiles(big)
cat(sprintf("   mean |soft - hard| / sd(hard): %.3g (eps = 0.01 smooths; 128 target levels)\n",
            mean(abs(out - hard)) / sd(hard)))
t_rank50 <- timeit(sinkhorn_rank(big[, 1], threads = 1), reps = 1L)
cat(sprintf("   sinkhorn_rank() of one column of 50,000 values: %.2f s\n", t_rank50))

# ---------------------------------------------------------------------------
# 7. One long column on 1 and 2 threads: the rows of each potential update
#    (and of the products of the VJP) are shared by the threads; results are
#    identical for any number of threads
cat("\n7. One column, n = m = 5000, eps = 0.01: sinkhorn_rank_vjp() (forward + VJP), 1 and 2 threads\n")
set.seed(7)
x5 <- rnorm(5000)
v5 <- rnorm(5000)
g1 <- sinkhorn_rank_vjp(x5, v5, n_targets = 5000, threads = 1)
g2 <- sinkhorn_rank_vjp(x5, v5, n_targets = 5000, threads = 2)
stopifnot(identical(g1, g2))
t1 <- timeit(sinkhorn_rank_vjp(x5, v5, n_targets = 5000, threads = 1), reps = 3L)
t2 <- timeit(sinkhorn_rank_vjp(x5, v5, n_targets = 5000, threads = 2), reps = 3L)
cat(sprintf("   1 thread %.2f s, 2 threads %.2f s (CPU %.2f s): %.2fx faster on 2 threads (goal >= 1.7); identical results\n",
            t1, t2, attr(t2, "cpu"), t1 / t2))
# many short columns keep one column per thread
xs <- matrix(rnorm(200 * 400), 200, 400)
vs <- matrix(rnorm(200 * 400), 200, 400)
stopifnot(identical(sinkhorn_rank_vjp(xs, vs, threads = 1), sinkhorn_rank_vjp(xs, vs, threads = 2)))
t1 <- timeit(sinkhorn_rank_vjp(xs, vs, threads = 1), reps = 3L)
t2 <- timeit(sinkhorn_rank_vjp(xs, vs, threads = 2), reps = 3L)
cat(sprintf("   400 columns of 200 values (128 targets): 1 thread %.2f s, 2 threads %.2f s: %.2fx faster on 2 threads\n",
            t1, t2, t1 / t2))

# ---------------------------------------------------------------------------
# 8. Cost of the implicit VJP against the forward pass, n = m = 2000, 1 thread
cat("\n8. VJP and JVP against their forward pass, n = m = 2000, 1 thread (goal: VJP, JVP <= 1.5x forward)\n")
set.seed(8)
x2 <- rnorm(2000)
v2 <- rnorm(2000)
has_jvp <- isTRUE(sinkhorn_rank_fn(x2[1:10])$has_jvp)
for (eps in c(1e-2, 1e-3)) {
  op <- sinkhorn_rank_fn(x2, eps = eps, n_targets = 2000, threads = 1)
  t_f <- timeit(sinkhorn_rank_fn(x2, eps = eps, n_targets = 2000, threads = 1), reps = 5L)
  t_v <- timeit(op$vjp(v2), reps = 5L)
  cat(sprintf("   eps = %-6g forward %.3f s (%d iterations), VJP %.3f s: VJP / forward = %.2f\n",
              eps, t_f, op$diagnostics$iterations, t_v, t_v / t_f))
  if (has_jvp) {
    t_j <- timeit(op$jvp(v2), reps = 5L)
    cat(sprintf("   %-12s JVP %.3f s: JVP / forward = %.2f, JVP / VJP = %.2f\n", "", t_j,
                t_j / t_f, t_j / t_v))
  }
}

# ---------------------------------------------------------------------------
# 9. Several quantile levels: one transport for all levels against one call
#    per level (what sinkhorn_quantile() cost before diffrank 0.1), 1 thread
cat("\n9. sinkhorn_quantile() at 19 levels: one transport vs one call per level, 1 thread\n")
set.seed(9)
probs <- seq(0.05, 0.95, by = 0.05)
for (n in c(1000L, 100000L)) {
  xq <- rnorm(n)
  hard <- stats::quantile(xq, probs, names = FALSE)
  one <- sinkhorn_quantile_fn(xq, probs = probs, threads = 1)
  per_level <- lapply(probs, function(p) sinkhorn_quantile_fn(xq, probs = p, threads = 1))
  t_one <- timeit(sinkhorn_quantile_fn(xq, probs = probs, threads = 1), reps = 5L)
  t_per <- timeit(lapply(probs, function(p) sinkhorn_quantile_fn(xq, probs = p, threads = 1)),
                  reps = 5L)
  v <- rnorm(length(probs))
  t_vjp_one <- timeit(one$vjp(v), reps = 5L)
  t_vjp_per <- timeit(for (l in seq_along(probs)) per_level[[l]]$vjp(v[l]), reps = 5L)
  cat(sprintf(paste0("   n = %-6d forward %.4f s vs %.4f s (%.1fx), VJP %.4f s vs %.4f s (%.1fx);",
                     " max |soft - hard| / sd: %.4f vs %.4f\n"),
              n, t_one, t_per, t_per / t_one, t_vjp_one, t_vjp_per, t_vjp_per / t_vjp_one,
              max(abs(one$value - hard)) / stats::sd(xq),
              max(abs(vapply(per_level, function(o) as.vector(o$value), 0) - hard)) /
                stats::sd(xq)))
}

# ---------------------------------------------------------------------------
# 10. The plan itself (sinkhorn_plan(), n x m dense) against the closest path,
#     sinkhorn_rank() on the same transport, 1 thread
cat("\n10. sinkhorn_plan() vs sinkhorn_rank() on the same transport, 1 thread\n")
set.seed(10)
for (n in c(500L, 2000L)) {
  xp <- rnorm(n)
  op_plan <- sinkhorn_plan_fn(xp, n_targets = n, threads = 1)
  op_rank <- sinkhorn_rank_fn(xp, n_targets = n, threads = 1)
  t_plan <- timeit(sinkhorn_plan_fn(xp, n_targets = n, threads = 1), reps = 5L)
  t_rank <- timeit(sinkhorn_rank_fn(xp, n_targets = n, threads = 1), reps = 5L)
  V <- matrix(rnorm(n * n), n)
  vr <- rnorm(n)
  t_vjp_plan <- timeit(op_plan$vjp(V), reps = 5L)
  t_vjp_rank <- timeit(op_rank$vjp(vr), reps = 5L)
  t_jvp_plan <- timeit(op_plan$jvp(vr), reps = 5L)
  cat(sprintf(paste0("   n = m = %-5d forward %.3f s (rank %.3f s, %.2fx); VJP %.3f s (rank %.3f s,",
                     " %.2fx); JVP %.3f s\n"),
              n, t_plan, t_rank, t_plan / t_rank, t_vjp_plan, t_vjp_rank, t_vjp_plan / t_vjp_rank,
              t_jvp_plan))
}

# ---------------------------------------------------------------------------
# 11. Rows of a matrix sorted by a key (sinkhorn_sort_by(), through the dense
#     plan) against sinkhorn_sort() of the key alone, 1 thread
cat("\n11. sinkhorn_sort_by(): 20 columns sorted by a key vs sinkhorn_sort() of the key, 1 thread\n")
set.seed(11)
for (n in c(2000L, 20000L)) {
  key <- rnorm(n)
  xs <- matrix(rnorm(n * 20), n)
  op_by <- sinkhorn_sort_by_fn(xs, key, threads = 1)
  op_sort <- sinkhorn_sort_fn(key, threads = 1)
  t_by <- timeit(sinkhorn_sort_by_fn(xs, key, threads = 1), reps = 5L)
  t_sort <- timeit(sinkhorn_sort_fn(key, threads = 1), reps = 5L)
  V <- matrix(rnorm(length(op_by$value)), nrow(op_by$value))
  vs <- rnorm(length(op_sort$value))
  t_vjp_x <- timeit(op_by$vjp(V), reps = 5L)
  t_vjp_by <- timeit(op_by$vjp(V, wrt = "by"), reps = 5L)
  t_vjp_sort <- timeit(op_sort$vjp(vs), reps = 5L)
  cat(sprintf(paste0("   n = %-6d m = %d: forward %.3f s (sort %.3f s, %.1fx); VJP for x %.3f s,",
                     " for the key %.3f s (sort %.3f s, %.1fx)\n"),
              n, nrow(op_by$value), t_by, t_sort, t_by / t_sort, t_vjp_x, t_vjp_by, t_vjp_sort,
              t_vjp_by / t_vjp_sort))
}

# ---------------------------------------------------------------------------
# 12. Soft quantization (sinkhorn_quantize(), through the dense plan) against
#     sinkhorn_sort() at the same levels, 1 thread
cat("\n12. sinkhorn_quantize() vs sinkhorn_sort() at the same 8 levels, 1 thread\n")
set.seed(12)
for (n in c(2000L, 100000L)) {
  xq <- rnorm(n)
  op_q <- sinkhorn_quantize_fn(xq, n_targets = 8, threads = 1)
  op_s <- sinkhorn_sort_fn(xq, n_targets = 8, threads = 1)
  t_q <- timeit(sinkhorn_quantize_fn(xq, n_targets = 8, threads = 1), reps = 5L)
  t_s <- timeit(sinkhorn_sort_fn(xq, n_targets = 8, threads = 1), reps = 5L)
  vq <- rnorm(n)
  t_vjp_q <- timeit(op_q$vjp(vq), reps = 5L)
  t_vjp_s <- timeit(op_s$vjp(rnorm(8)), reps = 5L)
  cat(sprintf("   n = %-6d forward %.3f s (sort %.3f s, %.1fx); VJP %.3f s (sort %.3f s, %.1fx)\n",
              n, t_q, t_s, t_q / t_s, t_vjp_q, t_vjp_s, t_vjp_q / t_vjp_s))
}
