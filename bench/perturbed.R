# Benchmark of the perturbed rank (Berthet et al. 2020): value and
# vector-Jacobian product of a vector of length 100 with 1,000 draws, by the
# built-in C++ solver on 1 and 2 threads and through an R solver (base R's
# rank(), called once per draw), in the same run.
# Run by hand with the package installed:  Rscript bench/perturbed.R
# Times are medians (and minima) over samples of repeated calls of
#   op <- perturbed_fn(x, solver, n_samples = 1000); op$vjp(v)
# which includes drawing the noise from R's generator (5e4 normal numbers,
# antithetic pairs) and building the operator object. "cpu" is the user +
# system time of this process (for 2 threads, of both), less sensitive than
# elapsed time to other work on the machine.
suppressPackageStartupMessages(library(diffrank))

# Seconds per call: `times` samples of `batch` calls each (system.time()
# counts whole milliseconds).
timing <- function(expr, times, batch) {
  f <- eval.parent(substitute(function() expr))
  f()  # warm-up
  t <- vapply(seq_len(times), function(i) {
    s <- system.time(for (b in seq_len(batch)) f(), gcFirst = FALSE)
    c(elapsed = s[["elapsed"]], cpu = s[["user.self"]] + s[["sys.self"]]) / batch
  }, numeric(2))
  c(median = stats::median(t["elapsed", ]), min = min(t["elapsed", ]),
    cpu = stats::median(t["cpu", ]))
}

set.seed(42)
cat(sprintf("diffrank %s, R %s, %d cores, load average %s\n\n",
            utils::packageVersion("diffrank"), getRversion(), parallel::detectCores(),
            tryCatch(strsplit(readLines("/proc/loadavg"), " ")[[1]][1], error = function(e) "?")))

n <- 100
m <- 1000
x <- rnorm(n)
v <- rnorm(n)
value_vjp <- function(solver, threads) {
  op <- perturbed_fn(x, solver, n_samples = m, threads = threads)
  op$vjp(v)
}
# the same draws give the same results on 1 and 2 threads and through rank()
set.seed(1)
a <- value_vjp("rank", 1)
set.seed(1)
b <- value_vjp("rank", 2)
set.seed(1)
r <- value_vjp(rank, 1)
stopifnot(identical(a, b), identical(a, r))

times <- list(
  draws = timing(stats::rnorm(n * m / 2), 25, 20),
  builtin_1 = timing(value_vjp("rank", 1), 25, 20),
  builtin_2 = timing(value_vjp("rank", 2), 25, 20),
  r_solver = timing(value_vjp(rank, 1), 15, 2)
)
cat(sprintf("theta of length %d, n_samples = %d, rank solver: value + VJP\n", n, m))
cat(sprintf("%-44s %10s %10s %10s\n", "", "median ms", "min ms", "cpu ms"))
labels <- c(draws = "noise alone: rnorm(5e4)",
            builtin_1 = "built-in \"rank\", 1 thread",
            builtin_2 = "built-in \"rank\", 2 threads",
            r_solver = "R solver rank(), one R call per draw")
for (k in names(times)) {
  cat(sprintf("%-44s %10.2f %10.2f %10.2f\n", labels[[k]], 1e3 * times[[k]][["median"]],
              1e3 * times[[k]][["min"]], 1e3 * times[[k]][["cpu"]]))
}
ratio <- function(a, b, what) times[[a]][[what]] / times[[b]][[what]]
cat(sprintf("\n1 thread / 2 threads (built-in): %.2f (median), %.2f (min)\n",
            ratio("builtin_1", "builtin_2", "median"), ratio("builtin_1", "builtin_2", "min")))
cat(sprintf("R solver / built-in on 2 threads: %.1f (median), %.1f (min)\n",
            ratio("r_solver", "builtin_2", "median"), ratio("r_solver", "builtin_2", "min")))
cat(sprintf("R solver / built-in on 1 thread:  %.1f (median), %.1f (min)\n",
            ratio("r_solver", "builtin_1", "median"), ratio("r_solver", "builtin_1", "min")))
cat(sprintf("target: built-in on 2 threads under 5 ms: %s (median %.2f ms)\n",
            if (times$builtin_2[["median"]] < 5e-3) "yes" else "NO",
            1e3 * times$builtin_2[["median"]]))
