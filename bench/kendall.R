# Kendall kernel matrices: diffrank against pcaPP::cor.fk and kernlab, in one
# run. Run by hand with the package installed: Rscript bench/kendall.R
library(diffrank)
stopifnot(requireNamespace("pcaPP", quietly = TRUE), requireNamespace("kernlab", quietly = TRUE))
# The matrices below are noise, whose kernels are nearly constant: that
# warning is not the point here.
globalCallingHandlers(
  diffrank_near_constant_kernel = function(w) invokeRestart("muffleWarning"))

# Best elapsed time of `reps` runs, in seconds.
timed <- function(expr, reps = 3) {
  expr <- substitute(expr)
  env <- parent.frame()
  min(vapply(seq_len(reps), function(i) system.time(eval(expr, env))[["elapsed"]], 0))
}

# The machine's load matters on shared hosts: ratios are only meaningful when
# nothing else competes for the cores.
if (file.exists("/proc/loadavg")) {
  cat("Load average before the run:", readLines("/proc/loadavg"), "\n")
}
cat(sprintf("Cores: %d\n", parallel::detectCores()))

# Median seconds of one call over `iterations` runs (bench::mark when
# installed, which leaves out the runs with a garbage collection; else
# system.time).
median_time <- function(expr, iterations = 20) {
  f <- eval.parent(substitute(function() expr))
  if (requireNamespace("bench", quietly = TRUE)) {
    t <- bench::mark(f(), iterations = iterations, check = FALSE, filter_gc = TRUE)$time[[1]]
    return(stats::median(as.numeric(t)))
  }
  stats::median(vapply(seq_len(iterations), function(i) system.time(f())[["elapsed"]], 0))
}

# Kendall's tau of two long vectors, one thread: diffrank against
# pcaPP::cor.fk (Knight's algorithm in C), values checked identical first.
cat("Kendall's tau of two vectors (kendall_kernel(x, y), 1 thread) against pcaPP::cor.fk(x, y)\n")
cat(sprintf("  %8s %12s %12s %8s   %s\n", "n", "cor.fk ms", "diffrank ms", "ratio",
            "(cor.fk time / diffrank time; goal >= 1)"))
set.seed(2)
for (nv in c(1e4, 1e5, 1e6)) {
  for (ties in c(FALSE, TRUE)) {
    xv <- rnorm(nv)
    yv <- xv + rnorm(nv)
    if (ties) {
      xv <- round(xv, 1)
      yv <- round(yv, 1)
    }
    stopifnot(isTRUE(all.equal(kendall_kernel(xv, yv, threads = 1), pcaPP::cor.fk(xv, yv),
                               tolerance = 1e-12)))
    reps <- if (nv >= 1e6) 10 else 30
    t_fk <- median_time(pcaPP::cor.fk(xv, yv), reps)
    t_dr <- median_time(kendall_kernel(xv, yv, threads = 1), reps)
    cat(sprintf("  %8.0e %12.2f %12.2f %8.2f   %s\n", nv, 1e3 * t_fk, 1e3 * t_dr, t_fk / t_dr,
                if (ties) "rounded to 0.1: many ties" else "no ties"))
  }
}
cat("\n")

set.seed(1)
p <- 20000
n <- 100
x <- matrix(rnorm(p * n), p, n, dimnames = list(NULL, paste0("s", seq_len(n))))
cat(sprintf("Kernel matrix of %d samples x %d genes (%d pairs)\n", n, p, n * (n - 1) / 2))

k1 <- kendall_kernel(x, threads = 1, progress = FALSE)
k2 <- kendall_kernel(x, threads = 2, progress = FALSE)
kf <- pcaPP::cor.fk(x)
stopifnot(identical(k1, k2), isTRUE(all.equal(k1[, ], kf, tolerance = 1e-12,
                                              check.attributes = FALSE)))

t_fk <- timed(pcaPP::cor.fk(x))
t_1 <- timed(kendall_kernel(x, threads = 1, progress = FALSE))
t_2 <- timed(kendall_kernel(x, threads = 2, progress = FALSE))
cat(sprintf("  pcaPP::cor.fk(x)             %7.2f s\n", t_fk))
cat(sprintf("  kendall_kernel, 1 thread     %7.2f s   %5.2fx faster than cor.fk (goal >= 3)\n",
            t_1, t_fk / t_1))
cat(sprintf("  kendall_kernel, 2 threads    %7.2f s   %5.2fx faster than 1 thread (goal >= 1.8)\n",
            t_2, t_1 / t_2))
# CPU time over elapsed time: how many cores the two threads actually got (2
# on an idle machine; less when other processes compete for the cores).
st <- system.time(kendall_kernel(x, threads = 2, progress = FALSE))
cat(sprintf("  (2 threads: CPU time / elapsed = %.2f)\n",
            (st[["user.self"]] + st[["sys.self"]]) / st[["elapsed"]]))

t_m <- timed(mallows_kernel(x, lambda = 1, threads = 1, progress = FALSE), reps = 1)
t_w <- timed(weighted_kendall_kernel(x, weighting = "additive", threads = 1, progress = FALSE),
             reps = 1)
cat(sprintf("  mallows_kernel, 1 thread     %7.2f s\n", t_m))
cat(sprintf("  weighted (add), 1 thread     %7.2f s\n", t_w))

# kernlab with an R-level Kendall kernel (pcaPP::cor.fk on two samples):
# kernlab takes samples in rows.
p_small <- 2000
xs <- x[seq_len(p_small), ]
r_kendall <- methods::new(methods::getClass("kernel", where = asNamespace("kernlab")),
                          .Data = function(a, b = NULL) pcaPP::cor.fk(a, b), kpar = list())
kk <- kernlab::kernelMatrix(r_kendall, t(xs))
stopifnot(isTRUE(all.equal(kk[, ], kendall_kernel(xs)[, ], tolerance = 1e-12,
                           check.attributes = FALSE)))
t_kl <- timed(kernlab::kernelMatrix(r_kendall, t(xs)), reps = 1)
t_d1 <- timed(kendall_kernel(xs, threads = 1, progress = FALSE))
t_d2 <- timed(kendall_kernel(xs, threads = 2, progress = FALSE))
cat(sprintf("Kernel matrix of %d samples x %d genes\n", n, p_small))
cat(sprintf("  kernlab::kernelMatrix, R-level kernel  %7.3f s\n", t_kl))
cat(sprintf("  kendall_kernel, 1 thread               %7.3f s   %6.1fx faster\n", t_d1,
            t_kl / t_d1))
cat(sprintf("  kendall_kernel, 2 threads              %7.3f s   %6.1fx faster\n", t_d2,
            t_kl / t_d2))

# Kernels on partial rankings (type = "topk", na = "interleave"): their cost
# next to the kernel on full rankings of the same matrix, and against the
# enumeration of the tie-breakings that R code without a closed form needs
# (kernrank, GitHub only, averages the kernel over every pair of orders of
# the unranked items; here with stats::cor, values checked equal first).
cat("\nPartial rankings: kernel matrix of", n, "samples x", p, "genes, 1 thread\n")
x_na <- x
x_na[sample(length(x_na), length(x_na) / 10)] <- NA
t_top <- timed(kendall_kernel(x, type = "topk", k = 1000, threads = 1, progress = FALSE),
               reps = 1)
t_int <- timed(kendall_kernel(x_na, na = "interleave", threads = 1, progress = FALSE), reps = 1)
t_pw <- timed(kendall_kernel(x_na, na = "pairwise", threads = 1, progress = FALSE), reps = 1)
t_mtop <- timed(mallows_kernel(x, type = "topk", k = 1000, threads = 1, progress = FALSE),
                reps = 1)
cat(sprintf("  full rankings                %7.2f s\n", t_1))
cat(sprintf("  top-1000 lists               %7.2f s   %5.2fx the full kernel's time\n", t_top,
            t_top / t_1))
cat(sprintf("  10%% missing, interleaved     %7.2f s   %5.2fx the pairwise kernel's (%.2f s)\n",
            t_int, t_int / t_pw, t_pw))
cat(sprintf("  Mallows, top-1000 lists      %7.2f s   %5.2fx the full Mallows kernel's\n", t_mtop,
            t_mtop / t_m))

# Enumeration: two top-k lists of p_enum items, every pair of orders of
# their bottom items.
all_orders <- function(m) {
  if (m == 1L) return(matrix(1L))
  o <- all_orders(m - 1L)
  do.call(rbind, lapply(seq_len(m), function(i) cbind(i, ifelse(o >= i, o + 1L, o))))
}
enumerated_topk <- function(a, b, k) {
  bottom_a <- order(a, decreasing = TRUE)[-seq_len(k)]
  bottom_b <- order(b, decreasing = TRUE)[-seq_len(k)]
  orders <- all_orders(length(bottom_a))
  total <- 0
  for (i in seq_len(nrow(orders))) {
    ai <- a
    ai[bottom_a] <- min(a) - orders[i, ]
    for (j in seq_len(nrow(orders))) {
      bj <- b
      bj[bottom_b] <- min(b) - orders[j, ]
      total <- total + stats::cor(ai, bj, method = "kendall")
    }
  }
  total / nrow(orders)^2
}
cat("Two top-k lists, against enumerating the orders of their bottom items (tau-a)\n")
for (p_enum in c(7, 8)) {
  k_enum <- 3
  a <- rnorm(p_enum)
  b <- rnorm(p_enum)
  got <- kendall_kernel(a, b, variant = "tau_a", type = "topk", k = k_enum)
  stopifnot(isTRUE(all.equal(got, enumerated_topk(a, b, k_enum), tolerance = 1e-12)))
  t_enum <- timed(enumerated_topk(a, b, k_enum), reps = 1)
  t_ours <- median_time(kendall_kernel(a, b, variant = "tau_a", type = "topk", k = k_enum))
  cat(sprintf("  p = %d, k = %d: enumeration %8.3f s, diffrank %8.5f s, %8.0fx faster\n",
              p_enum, k_enum, t_enum, t_ours, t_enum / t_ours))
}
