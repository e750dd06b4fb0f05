# valgrind check before a release (make release-checks): each family once on
# small inputs, on 2 threads, including calls that fail with an R error (the
# error paths must free what the C++ side allocated). Run by
# tools/valgrind.sh under `R -d valgrind`; on its own it is a smoke test.
suppressPackageStartupMessages(library(diffrank))
set.seed(1)
m <- matrix(rnorm(60 * 6), 60)
v <- matrix(rnorm(60 * 6), 60)
x <- rnorm(30)
y <- rep(0:1, 10)
sq_x <- matrix(rnorm(40 * 20), 40)
sq_x[, y == 1] <- sq_x[, y == 1] + 0.5
fails <- function(expr) stopifnot(inherits(try(expr, silent = TRUE), "try-error"))

# soft sorts and ranks, isotonic regression, the permutahedron
invisible(soft_rank(m, threads = 2))
op <- soft_sort_fn(m, reg = "kl", threads = 2)
invisible(op$vjp(v)); invisible(op$jvp(v)); invisible(soft_rank_fn(x)$jacobian())
invisible(soft_rank_vjp(m, v, threads = 2))
invisible(soft_topk(x, k = 3)); invisible(spearman_loss(x, rev(x)))
invisible(isotonic_regression(x, weights = runif(30)))
invisible(project_permutahedron(x, seq_along(x)))
fails(soft_rank(c(1, NA)))
fails(soft_rank_vjp(m, v[-1, ]))

# Sinkhorn
invisible(sinkhorn_rank(m, threads = 2, progress = FALSE))
invisible(sinkhorn_sort_vjp(m, v, threads = 2, progress = FALSE))
op <- sinkhorn_quantile_fn(x, probs = c(0.25, 0.5), progress = FALSE)
invisible(op$vjp(c(1, -1), wrt = "all"))
invisible(sinkhorn_cdf(x, progress = FALSE))
invisible(sinkhorn_normalize(m, threads = 2, progress = FALSE))
invisible(sinkhorn_normalize_vjp(m, v, threads = 2, progress = FALSE))
fails(sinkhorn_rank(x, eps = 0))

# hard quantile normalization and its variants
m_na <- m
m_na[c(3, 70, 200)] <- NA
target <- quantile_target(m_na)
invisible(normalize_quantiles(m_na, threads = 2)); invisible(predict(target, m))
invisible(normalize_quantiles_robust(m)); invisible(normalize_quantiles_groups(m, rep(1:2, 3)))
fails(normalize_quantiles(m, target = c(1, NA)))

# kernels on permutations
invisible(kendall_kernel(m, threads = 2, progress = FALSE))
invisible(kendall_kernel(m[, 1:3], m[, 4:6], progress = FALSE))
invisible(weighted_kendall_kernel(m, threads = 2, progress = FALSE))
invisible(mallows_kernel(m, threads = 2, progress = FALSE))
invisible(kendall_counts(m[, 1], m[, 2]))
fails(kendall_kernel(m, m[-1, ]))

# perturbed optimizers
op <- perturbed_fn(x, "rank", n_samples = 50, threads = 2)
invisible(op$vjp(x)); invisible(fy_loss(x, rank(-x), "rank", n_samples = 50))
invisible(perturbed_vjp(x, x, "topk", k = 3, n_samples = 50))

# SUQUAN and QMF
fit <- suppressWarnings(suquan(sq_x, y, lambda = 0.1, max_iter = 5L, threads = 2))
invisible(predict(fit, sq_x))
qfit <- suppressWarnings(qmf(sq_x, rank = 2, max_epochs = 2L, threads = 2, verbose = FALSE))
invisible(predict(qfit, sq_x[, 1:3]))
cat("valgrind script: every family ran\n")
