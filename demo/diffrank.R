# The main job of diffrank's quick start: quantile-normalize the embedded ALL
# leukaemia expression data, reuse the fitted target on new samples, compare
# supervised quantile normalization (SUQUAN) with plain normalization, compare
# samples with a rank kernel, show soft ranks and a rank loss's gradient,
# write a figure, and factorize the data at low rank through a learned map per
# gene (QMF). Run with `make demo`, or `demo("diffrank", package = "diffrank")`.
suppressPackageStartupMessages(library(diffrank))

figure <- file.path(getwd(), "diffrank-demo.png")
expr <- all_leukemia$expr
type <- all_leukemia$pheno$type
cat(sprintf("ALL leukaemia data: %d probe sets x %d samples (%d B-cell, %d T-cell)\n",
            nrow(expr), ncol(expr), sum(type == "B"), sum(type == "T")))

spread <- function(m) {
  medians <- apply(m, 2, stats::median)
  sprintf("sample medians from %.3f to %.3f", min(medians), max(medians))
}

# 1. Quantile normalization of all samples (Bioconductor's rule for ties).
normalized <- normalize_quantiles(expr)
cat("\n1. normalize_quantiles(expr)\n")
cat("   before:", spread(expr), "\n")
cat("   after: ", spread(normalized), "\n")
sorted <- apply(normalized, 2, sort)
cat(sprintf("   largest difference between two samples' sorted values: %.3g (ties share a value)\n",
            max(apply(sorted, 1, function(v) diff(range(v))))))

# 2. A reference fitted on the B-cell samples, applied later to the T-cell ones.
reference <- quantile_target(expr[, type == "B"])
cat("\n2. quantile_target() on the", sum(type == "B"), "B-cell samples:\n")
print(reference)
t_cells <- predict(reference, expr[, type == "T"])
cat("   T-cell samples normalized against it:", spread(t_cells), "\n")

# 3. Missing values stay missing and do not spread to other samples.
set.seed(1)
with_missing <- expr
with_missing[sample(length(expr), 500)] <- NA
normalized_missing <- normalize_quantiles(with_missing)
cat(sprintf("\n3. with 500 values set to NA: %d NA in the output, at the same places: %s\n",
            sum(is.na(normalized_missing)),
            identical(is.na(normalized_missing), is.na(with_missing))))

# 4. The result does not depend on the number of threads.
cat(sprintf("\n4. identical with 1 and 2 threads: %s\n",
            identical(normalize_quantiles(expr, threads = 1), normalize_quantiles(expr, threads = 2))))

# 5. Supervised quantile normalization (SUQUAN) on a harder task: BCR/ABL
#    against NEG leukaemias, 5-fold cross-validated accuracy of a ridge
#    logistic model on (i) the raw data (lambda = 0.01), (ii) quantile-
#    normalized data and (iii) data normalized to a target learned with the
#    model (SUQUAN); for (ii) and (iii), cv_suquan() chooses the penalty (and
#    SUQUAN's number of rounds) within the training samples.
ridge_logistic <- function(z, y01, lambda) {
  n <- ncol(z)
  objective <- function(theta) {
    eta <- colSums(theta[-1] * z) + theta[1]
    mean(pmax(eta, 0) + log1p(exp(-abs(eta))) - y01 * eta) + lambda * sum(theta[-1]^2)
  }
  gradient <- function(theta) {
    d <- (stats::plogis(colSums(theta[-1] * z) + theta[1]) - y01) / n
    c(sum(d), z %*% d + 2 * lambda * theta[-1])
  }
  stats::optim(numeric(nrow(z) + 1), objective, gradient, method = "BFGS",
               control = list(maxit = 500))$par
}
keep <- all_leukemia$pheno$mol_biol %in% c("BCR/ABL", "NEG")
x_mb <- expr[, keep]
y_mb <- droplevels(all_leukemia$pheno$mol_biol[keep])
lambda <- 0.01
set.seed(2)
folds <- sample(rep(1:5, length.out = ncol(x_mb)))
accuracy <- matrix(NA_real_, 5, 3, dimnames = list(NULL, c("raw", "quantile-normalized", "SUQUAN")))
for (k in 1:5) {
  train <- folds != k
  truth <- y_mb[!train]
  theta <- ridge_logistic(x_mb[, train], as.numeric(y_mb[train] == "NEG"), lambda)
  raw_pred <- ifelse(colSums(theta[-1] * x_mb[, !train]) + theta[1] > 0, "NEG", "BCR/ABL")
  accuracy[k, 1] <- mean(raw_pred == truth)
  qn_fit <- cv_suquan(x_mb[, train], y_mb[train], method = "fixed", progress = FALSE)
  accuracy[k, 2] <- mean(predict(qn_fit, x_mb[, !train], type = "class") == truth)
  sq_fit <- cv_suquan(x_mb[, train], y_mb[train], progress = FALSE)
  accuracy[k, 3] <- mean(predict(sq_fit, x_mb[, !train], type = "class") == truth)
}
cat(sprintf("\n5. BCR/ABL (%d) against NEG (%d): 5-fold cross-validated accuracy, ridge logistic\n",
            sum(y_mb == "BCR/ABL"), sum(y_mb == "NEG")))
print(round(rbind(mean = colMeans(accuracy), sd = apply(accuracy, 2, stats::sd)), 3))
suquan_all <- cv_suquan(x_mb, y_mb, progress = FALSE)$fit
cat("   SUQUAN fitted on all samples (lambda and rounds chosen by cv_suquan()):\n")
print(suquan_all)

# 6. Rank kernels: samples compared by how they order the genes.
kernel <- kendall_kernel(expr)[, ]
within <- function(g) {
  k <- kernel[type == g, type == g]
  mean(k[upper.tri(k)])
}
cat("\n6. kendall_kernel(expr): mean Kendall tau between two samples\n")
print(round(c(`B with B` = within("B"), `T with T` = within("T"),
              `B with T` = mean(kernel[type == "B", type == "T"])), 3))

# 7. Differentiable ranks: soft ranks of five genes in the first sample, and
#    the gradient of a Spearman loss that optim() could follow.
genes <- expr[1:5, 1]
cat("\n7. soft_rank() of five values of the first sample as eps grows\n")
print(round(rbind(value = genes, `eps = 0` = soft_rank(genes, eps = 0),
                  `eps = 0.5 (default)` = soft_rank(genes),
                  `eps = 2` = soft_rank(genes, eps = 2)), 3))
loss <- spearman_loss(pred = genes, response = 5:1)
cat(sprintf("   Spearman loss against the order 5:1: %.3f; gradient %s\n", loss$value,
            paste(sprintf("%.3f", loss$gradient), collapse = " ")))

grDevices::png(figure, width = 2000, height = 600, res = 120)
old <- graphics::par(mfrow = c(1, 3), mar = c(4, 4, 3, 1))
densities <- function(m, main) {
  d <- apply(m, 2, function(v) stats::density(v, n = 256)[c("x", "y")])
  ylim <- c(0, max(vapply(d, function(e) max(e$y), numeric(1))))
  graphics::plot(NULL, xlim = range(m), ylim = ylim, main = main,
                 xlab = "log2 expression", ylab = "density")
  cols <- ifelse(type == "B", "#1b9e7780", "#d95f0280")
  for (j in seq_along(d)) graphics::lines(d[[j]]$x, d[[j]]$y, col = cols[j])
  graphics::legend("topright", c("B-cell", "T-cell"), col = c("#1b9e77", "#d95f02"), lty = 1, bty = "n")
}
densities(expr, "Before: one density per sample")
densities(normalized, "After normalize_quantiles()")
plot(suquan_all, main = "SUQUAN target, BCR/ABL vs NEG")
graphics::par(old)
invisible(grDevices::dev.off())
cat("\nFigure written to", figure, "\n")

# 8. Quantile matrix factorization: a rank-3 approximation X ~ T(U V) in which
#    each gene has its own learned increasing map T, against the SVD of the
#    row-centred data at the same rank (plus the gene means).
set.seed(3)
qmf_fit <- qmf(expr, rank = 3, verbose = FALSE)
centred <- expr - rowMeans(expr)
sv <- svd(centred, nu = 3, nv = 3)
unexplained <- function(approx) sum((expr - approx)^2) / sum(centred^2)
cat(sprintf("\n8. qmf(expr, rank = 3): %s after %d epochs (%.1f s)\n",
            if (qmf_fit$converged) "converged" else "not converged", qmf_fit$iterations,
            qmf_fit$seconds))
cat(sprintf("   fraction of the genes' variance left unexplained: SVD %.3f, QMF %.3f\n",
            unexplained(sv$u %*% diag(sv$d[1:3]) %*% t(sv$v) + rowMeans(expr)),
            unexplained(fitted(qmf_fit))))
coordinates <- sample_coordinates(qmf_fit)
cat("   mean sample coordinates (columns of V) by lineage:\n")
print(round(apply(coordinates, 2, function(v) tapply(v, type, mean)), 2))
