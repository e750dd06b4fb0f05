# The main job of diffrank's quick start: quantile-normalize the embedded ALL
# leukaemia expression data, reuse the fitted target on new samples, and
# write a figure. Run with `make demo`, or `demo("diffrank", package = "diffrank")`.
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
cat(sprintf("   every sample now has the same sorted values: %s\n",
            all(apply(normalized, 2, function(v) isTRUE(all.equal(sort(v), sort(normalized[, 1])))))))

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
cat(sprintf("\n3. with 500 values set to NA: %d NA in the output, none elsewhere\n",
            sum(is.na(normalized_missing))))

# 4. The result does not depend on the number of threads.
cat(sprintf("\n4. identical with 1 and 2 threads: %s\n",
            identical(normalize_quantiles(expr, threads = 1), normalize_quantiles(expr, threads = 2))))

grDevices::png(figure, width = 1400, height = 600, res = 120)
old <- graphics::par(mfrow = c(1, 2), mar = c(4, 4, 3, 1))
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
graphics::par(old)
invisible(grDevices::dev.off())
cat("\nFigure written to", figure, "\n")
