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
