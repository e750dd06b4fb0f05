# Memory check before a release (make release-checks): 2,000 calls of each
# main function on medium inputs, on 2 threads, with the process's resident
# memory (VmRSS, Linux) sampled after a warm-up of 200 calls and at the end.
# Prints the growth per family and exits with status 1 if any grows by more
# than `bound_mb` (a leak of 1 KB per call would show as 2 MB).
#   Rscript tools/memory_loop.R
calls <- 2000L
warm_up <- 200L
bound_mb <- 2

rss_mb <- function() {
  status <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmRSS:", status, value = TRUE))) / 1024
}
if (!file.exists("/proc/self/status")) stop("this check reads /proc/self/status (Linux)")
suppressPackageStartupMessages(library(diffrank))
set.seed(1)
m <- matrix(rnorm(200 * 20), 200)
v <- matrix(rnorm(200 * 20), 200)
vec <- rnorm(200)
km <- matrix(rnorm(100 * 30), 100)
y <- rep(0:1, 15)
sq_x <- matrix(rnorm(100 * 30), 100)
sq_x[, y == 1] <- sq_x[, y == 1] + 0.3
target <- quantile_target(m)

families <- list(
  soft_rank = function() soft_rank(m, threads = 2),
  soft_rank_vjp = function() soft_rank_vjp(m, v, threads = 2),
  soft_sort_operator = function() soft_sort_fn(m, threads = 2)$vjp(v),
  isotonic_regression = function() isotonic_regression(vec),
  project_permutahedron = function() project_permutahedron(vec, seq_along(vec)),
  sinkhorn_rank = function() sinkhorn_rank(m, threads = 2, progress = FALSE),
  sinkhorn_rank_vjp = function() sinkhorn_rank_vjp(m, v, threads = 2, progress = FALSE),
  sinkhorn_normalize = function() sinkhorn_normalize(m, threads = 2, progress = FALSE),
  normalize_quantiles = function() normalize_quantiles(m, threads = 2),
  quantile_target_predict = function() predict(target, m),
  kendall_kernel = function() kendall_kernel(km, threads = 2, progress = FALSE),
  weighted_kendall_kernel = function() weighted_kendall_kernel(km, threads = 2, progress = FALSE),
  mallows_kernel = function() mallows_kernel(km, threads = 2, progress = FALSE),
  perturbed_rank = function() perturbed_fn(vec[1:20], "rank", n_samples = 100, threads = 2)$vjp(vec[1:20]),
  suquan = function() suquan(sq_x, y, lambda = 0.1, max_iter = 5L, threads = 2),
  qmf = function() qmf(km, rank = 2, max_epochs = 1L, tol = 0, threads = 2, verbose = FALSE)
)

growth <- vapply(names(families), function(name) {
  f <- families[[name]]
  for (i in seq_len(warm_up)) suppressWarnings(f())
  invisible(gc(FALSE))
  before <- rss_mb()
  for (i in seq_len(calls)) suppressWarnings(f())
  invisible(gc(FALSE))
  after <- rss_mb()
  cat(sprintf("%-26s RSS %7.1f MB after %d calls, %7.1f MB after %d more: %+6.2f MB\n", name,
              before, warm_up, after, calls, after - before))
  after - before
}, numeric(1))
cat(sprintf("\nlargest growth over %d calls: %+.2f MB (%s); bound %g MB\n", calls, max(growth),
            names(which.max(growth)), bound_mb))
if (any(growth > bound_mb)) {
  cat("over the bound:", paste(names(growth)[growth > bound_mb], collapse = ", "), "\n")
  quit(status = 1)
}
