# Memory check before a release (make release-checks): each main function
# on medium inputs, on 2 threads, in three rounds of 2,000 calls, with the
# process's resident memory (VmRSS, Linux) sampled after each round. R's own
# heap grows over the first few thousand calls of a session (by up to 200 MB
# for an operator with its state, the same with one thread) and then stays
# flat, while a leak grows in every round: a function fails when both of its
# last two rounds grow by more than `bound_mb` (a leak of 1 KB per call
# would show as 2 MB per round). Exits with status 1 if any fails.
#   Rscript tools/memory_loop.R
calls <- 2000L
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

growth <- t(vapply(names(families), function(name) {
  f <- families[[name]]
  rss <- vapply(1:3, function(round) {
    for (i in seq_len(calls)) suppressWarnings(f())
    invisible(gc(FALSE))
    rss_mb()
  }, numeric(1))
  cat(sprintf("%-26s RSS after each round of %d calls: %7.1f %7.1f %7.1f MB; last two rounds %+6.2f %+6.2f MB\n",
              name, calls, rss[1], rss[2], rss[3], rss[2] - rss[1], rss[3] - rss[2]))
  diff(rss)
}, numeric(2)))
leaking <- rownames(growth)[apply(growth > bound_mb, 1L, all)]
cat(sprintf("\nlargest growth in a last round of %d calls: %+.2f MB; bound %g MB per round\n",
            calls, max(growth[, 2]), bound_mb))
if (length(leaking) > 0L) {
  cat("growing in both rounds:", paste(leaking, collapse = ", "), "\n")
  quit(status = 1)
}
