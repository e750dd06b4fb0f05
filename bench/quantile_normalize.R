# Hard quantile normalization of a 20,000 x 200 matrix: diffrank with 1 and 2
# threads against preprocessCore::normalize.quantiles and
# limma::normalizeQuantiles, timed in the same run. Run after installing
# diffrank: Rscript bench/quantile_normalize.R
suppressPackageStartupMessages(library(diffrank))
set.seed(42)
p <- 20000
n <- 200
x <- matrix(rnorm(p * n, mean = 7, sd = 2), p, n) + rep(rnorm(n, sd = 0.5), each = p)
x <- round(x, 2)  # ties, as in real data
reps <- 5

best_of <- function(f, reps) {
  f()  # warm-up
  min(vapply(seq_len(reps), function(i) system.time(f())[["elapsed"]], numeric(1)))
}

cat(sprintf("quantile normalization, %d x %d, best of %d runs (seconds)\n", p, n, reps))
t1 <- best_of(function() normalize_quantiles(x, threads = 1), reps)
t2 <- best_of(function() normalize_quantiles(x, threads = 2), reps)
results <- c(`diffrank, 1 thread` = t1, `diffrank, 2 threads` = t2)
if (requireNamespace("preprocessCore", quietly = TRUE)) {
  results["preprocessCore"] <- best_of(function() preprocessCore::normalize.quantiles(x), reps)
  stopifnot(isTRUE(all.equal(unname(normalize_quantiles(x)),
                             preprocessCore::normalize.quantiles(x), tolerance = 1e-12)))
}
if (requireNamespace("limma", quietly = TRUE)) {
  results["limma"] <- best_of(function() limma::normalizeQuantiles(x), 2)
}
for (name in names(results)) cat(sprintf("  %-22s %8.3f s\n", name, results[[name]]))
if (!is.na(results["preprocessCore"])) {
  cat(sprintf("preprocessCore / diffrank 1 thread:   %.2fx (goal >= 1.5)\n",
              results[["preprocessCore"]] / t1))
}
cat(sprintf("diffrank 1 thread / 2 threads:        %.2fx (goal >= 1.7)\n", t1 / t2))
if (!is.na(results["limma"])) {
  cat(sprintf("limma / diffrank 1 thread:            %.2fx\n", results[["limma"]] / t1))
}
