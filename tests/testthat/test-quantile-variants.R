# Quantile normalization variants: targets of another length, robust targets,
# blocks, subsets of features, feature names of a fitted target, and
# group-aware normalization (qsmooth).

# Quantile functions of the columns at nrow(x) levels, from observed values.
ref_quantiles <- function(x) {
  levels <- (seq_len(nrow(x)) - 1) / (nrow(x) - 1)
  apply(x, 2, function(col) {
    v <- sort(col[!is.na(col)])
    if (length(v) == 1L) return(rep(v, nrow(x)))
    stats::approx((seq_along(v) - 1) / (length(v) - 1), v, levels)$y
  })
}

test_that("a target of another length follows preprocessCore's rule, with ties and NA", {
  skip_if_not_installed("preprocessCore")
  x <- tied_matrix(200, 7, seed = 1)
  x_na <- tied_matrix(200, 7, n_missing = 150, seed = 2)
  for (len in c(17, 200, 333)) {
    set.seed(len)
    target <- rnorm(len)
    expect_equal(unname(normalize_quantiles(x, target = target)),
                 preprocessCore::normalize.quantiles.use.target(unname(x), sort(target)),
                 tolerance = 1e-12, info = len)
    expect_equal(unname(normalize_quantiles(x_na, target = target)),
                 preprocessCore::normalize.quantiles.use.target(unname(x_na), sort(target)),
                 tolerance = 1e-12, info = len)
  }
  # a pair tied at ranks 1 and 2 of 4 takes the target at level 1/6
  x <- cbind(c(1, 1, 2, 3))
  expect_equal(normalize_quantiles(x, target = c(0, 1, 4, 9, 16, 30))[1, 1],
               stats::approx(0:5 / 5, c(0, 1, 4, 9, 16, 30), 1 / 6)$y)
})

test_that("robust targets equal preprocessCore's normalize.quantiles.robust", {
  skip_if_not_installed("preprocessCore")
  x <- tied_matrix(200, 7, seed = 1)
  x[, 3] <- x[, 3] * 2
  x[, 6] <- x[, 6] + 4
  xn <- unname(x)
  for (rule in c("variance", "mean", "both", "none")) {
    for (n_remove in 1:4) {
      expect_equal(unname(normalize_quantiles_robust(x, remove_extreme = rule, n_remove = n_remove)),
                   preprocessCore::normalize.quantiles.robust(xn, remove.extreme = rule,
                                                              n.remove = n_remove),
                   tolerance = 1e-12, info = paste(rule, n_remove))
    }
  }
  expect_equal(unname(normalize_quantiles_robust(x)),
               preprocessCore::normalize.quantiles.robust(xn), tolerance = 1e-12)
  w <- c(1, 2, 0, 1, 3, 0.5, 1)
  expect_equal(unname(normalize_quantiles_robust(x, weights = w)),
               preprocessCore::normalize.quantiles.robust(xn, weights = w), tolerance = 1e-12)
  expect_equal(unname(normalize_quantiles_robust(x, weights = w, geometric = TRUE)),
               preprocessCore::normalize.quantiles.robust(xn, weights = w, use.log2 = TRUE),
               tolerance = 1e-12)
  expect_equal(unname(normalize_quantiles_robust(x, geometric = TRUE)),
               preprocessCore::normalize.quantiles.robust(xn, use.log2 = TRUE), tolerance = 1e-12)
  expect_equal(unname(normalize_quantiles_robust(x, remove_extreme = "none", trim = 0.5)),
               preprocessCore::normalize.quantiles.robust(xn, use.median = TRUE), tolerance = 1e-12)
  # continuous data, an even number of samples for the median
  set.seed(3)
  y <- matrix(rexp(1200), 200) %*% diag(c(1, 1, 5, 1, 1, 0.2))
  expect_equal(normalize_quantiles_robust(y, remove_extreme = "none", trim = 0.5),
               preprocessCore::normalize.quantiles.robust(y, use.median = TRUE), tolerance = 1e-12)
  expect_equal(normalize_quantiles_robust(y, remove_extreme = "both", n_remove = 3),
               preprocessCore::normalize.quantiles.robust(y, remove.extreme = "both", n.remove = 3),
               tolerance = 1e-12)
})

test_that("robust_weights leaves out the extreme samples preprocessCore leaves out", {
  x <- cbind(a = 1:10, b = 2:11, c = (1:10) * 5, d = 3:12 + 100)
  expect_identical(robust_weights(x), c(a = 1, b = 1, c = 0, d = 1))
  expect_identical(robust_weights(x, "mean"), c(a = 1, b = 1, c = 1, d = 0))
  expect_identical(robust_weights(x, "both", n_remove = 2), c(a = 1, b = 1, c = 0, d = 0))
  expect_identical(robust_weights(x, "none"), c(a = 1, b = 1, c = 1, d = 1))
  skip_if_not_installed("preprocessCore")
  set.seed(4)
  y <- matrix(rexp(900), 100) %*% diag(c(1, 3, 1, 1, 0.3, 1, 1, 2, 1)) + rep(c(0, 0, 1, 0, 0, 0, -2, 0, 0), each = 100)
  for (rule in c("variance", "mean", "both")) {
    for (n_remove in 1:5) {
      kept <- robust_weights(y, rule, n_remove) == 1
      # preprocessCore does not return its weights; its target with them is
      # the mean of the kept samples' sorted values
      pc <- preprocessCore::normalize.quantiles.robust(y, remove.extreme = rule, n.remove = n_remove)
      expect_equal(sort(pc[, 1]), rowMeans(apply(y[, kept, drop = FALSE], 2, sort)),
                   tolerance = 1e-12, info = paste(rule, n_remove))
      expect_equal(sum(!kept), n_remove)
    }
  }
})

test_that("robust targets handle NA and every tie rule like normalize_quantiles", {
  x <- tied_matrix(80, 6, levels = 8, n_missing = 40, seed = 5)
  w <- c(1, 0, 2, 1, 1, 0.5)
  target <- drop(ref_quantiles(x) %*% w) / sum(w)
  for (ties in c("midrank", "average", "first")) {
    expect_equal(normalize_quantiles_robust(x, weights = w, ties = ties),
                 reference_normalize(x, target = target, ties = ties), tolerance = 1e-12,
                 info = ties)
  }
  expect_identical(is.na(normalize_quantiles_robust(x)), is.na(x))
  fit <- quantile_target(x, weights = w)
  expect_equal(fit$target, target, tolerance = 1e-12)
  expect_identical(fit$weights, stats::setNames(w, colnames(x)))
  expect_equal(quantile_target(x, weights = rep(2, 6))$target, quantile_target(x)$target,
               tolerance = 1e-15)
})

test_that("trimmed means, medians and geometric means of the samples' quantiles", {
  set.seed(6)
  x <- matrix(rexp(700), 100)
  q <- ref_quantiles(x)
  expect_equal(quantile_target(x, trim = 0.2)$target, apply(q, 1, mean, trim = 0.2),
               tolerance = 1e-12)
  expect_equal(quantile_target(x, trim = 0.5)$target, apply(q, 1, stats::median),
               tolerance = 1e-12)
  expect_equal(quantile_target(x, geometric = TRUE)$target, 2^rowMeans(log2(q)), tolerance = 1e-12)
  expect_equal(quantile_target(x, trim = 0.5, weights = c(0, 1, 1, 1, 1, 1, 0))$target,
               apply(q[, 2:6], 1, stats::median), tolerance = 1e-12)
  expect_equal(normalize_quantiles_robust(x, remove_extreme = "none", trim = 0.2),
               normalize_quantiles(x, target = quantile_target(x, trim = 0.2)))
  expect_output(print(quantile_target(x, trim = 0.5)), "median of the samples' quantiles")
  expect_error(quantile_target(x, trim = 0.2, weights = c(1, 2, 1, 1, 1, 1, 1)), "`weights` must be 0")
  expect_error(quantile_target(x, trim = 0.7), "`trim` must be")
  expect_error(quantile_target(x - 1, geometric = TRUE), "must be positive")
})

test_that("blocks equal preprocessCore's normalize.quantiles.in.blocks", {
  x <- tied_matrix(200, 7, seed = 7)
  blocks <- rep(c("pm", "mm", "ctl", "pm"), length.out = 200)
  out <- normalize_quantiles(x, blocks = blocks)
  for (b in unique(blocks)) {
    expect_identical(out[blocks == b, ], normalize_quantiles(x[blocks == b, ]))
  }
  x_na <- tied_matrix(200, 7, n_missing = 100, seed = 8)
  for (ties in c("midrank", "average", "first")) {
    out <- normalize_quantiles(x_na, blocks = blocks, ties = ties)
    for (b in unique(blocks)) {
      expect_equal(out[blocks == b, ], reference_normalize(x_na[blocks == b, ], ties = ties),
                   tolerance = 1e-12, info = paste(b, ties))
    }
  }
  expect_identical(normalize_quantiles(x, blocks = rep(1, 200)), normalize_quantiles(x))
  skip_if_not_installed("preprocessCore")
  expect_equal(unname(normalize_quantiles(x, blocks = blocks)),
               preprocessCore::normalize.quantiles.in.blocks(unname(x), factor(blocks)),
               tolerance = 1e-12)
  numeric_blocks <- rep(1:5, each = 40)
  expect_equal(unname(normalize_quantiles(x, blocks = numeric_blocks)),
               preprocessCore::normalize.quantiles.in.blocks(unname(x), numeric_blocks),
               tolerance = 1e-12)
})

test_that("a target from a subset of features equals preprocessCore's determine.target", {
  skip_if_not_installed("preprocessCore")
  x <- tied_matrix(200, 7, seed = 9)
  x_na <- tied_matrix(200, 7, n_missing = 150, seed = 10)
  subset <- rep(c(TRUE, FALSE, FALSE), length.out = 200)
  for (len in c(50, 200, 333)) {
    for (m in list(x, x_na)) {
      expect_equal(quantile_target(m, subset = subset, n_quantiles = len)$target,
                   preprocessCore::normalize.quantiles.determine.target(unname(m), len,
                                                                         subset = subset),
                   tolerance = 1e-12, info = len)
      expect_equal(quantile_target(m, n_quantiles = len)$target,
                   preprocessCore::normalize.quantiles.determine.target(unname(m), len),
                   tolerance = 1e-12, info = len)
    }
  }
  fit <- quantile_target(x, subset = subset)
  expect_identical(fit$subset, stats::setNames(subset, rownames(x)))
  expect_identical(quantile_target(x, subset = which(subset))$target, fit$target)
  expect_identical(quantile_target(x, subset = rownames(x)[subset])$target, fit$target)
  expect_output(print(fit), "subset of 67 of the 200 features")
})

test_that("normalization through a subset equals preprocessCore's use.target(subset = )", {
  skip_if_not_installed("preprocessCore")
  x <- tied_matrix(200, 7, seed = 11)
  x_na <- tied_matrix(200, 7, n_missing = 150, seed = 12)
  subset <- rep(c(TRUE, FALSE, FALSE), length.out = 200)
  set.seed(11)
  for (target in list(sort(rexp(77)), sort(rnorm(200)), sort(rnorm(501)))) {
    for (m in list(x, x_na)) {
      expect_equal(unname(normalize_quantiles(m, target = target, subset = subset)),
                   preprocessCore::normalize.quantiles.use.target(unname(m), target,
                                                                  subset = subset),
                   tolerance = 1e-12, info = length(target))
    }
  }
  pc_target <- preprocessCore::normalize.quantiles.determine.target(unname(x_na), subset = subset)
  expected <- preprocessCore::normalize.quantiles.use.target(unname(x_na), pc_target,
                                                             subset = subset)
  expect_equal(unname(normalize_quantiles(x_na, subset = subset)), expected, tolerance = 1e-12)
  # a fitted target remembers its subset, also for new data with its features reordered
  fit <- quantile_target(x_na, subset = subset)
  expect_equal(unname(predict(fit, x_na)), expected, tolerance = 1e-12)
  shuffled <- x_na[rev(seq_len(200)), ]
  expect_equal(predict(fit, shuffled), normalize_quantiles(x_na, subset = subset)[rev(seq_len(200)), ])
})

test_that("subset rules: its values get the target, the others interpolate, ties and NA", {
  x <- cbind(c(1, 5, 3, 3, 10, 0, 4, NA, 20))
  subset <- c(TRUE, TRUE, TRUE, TRUE, TRUE, FALSE, FALSE, FALSE, FALSE)
  target <- c(0, 10, 20, 30, 40)
  out <- normalize_quantiles(x, target = target, subset = subset)
  # subset values 1, 3, 3, 5, 10 at levels 0, 3/8, 3/8, 3/4, 1
  expect_equal(out[1:5, 1], c(0, 30, 15, 15, 40))
  # 0 is below the subset: its lowest level; 4 is halfway between 3 and 5
  expect_equal(out[6, 1], 0)
  expect_equal(out[7, 1], 40 * (3 / 8 + 3 / 4) / 2)
  expect_true(is.na(out[8, 1]))
  expect_equal(out[9, 1], 40)
  first <- normalize_quantiles(x, target = target, subset = subset, ties = "first")
  expect_equal(first[c(3, 4), 1], c(10, 20))
  expect_equal(first[7, 1], out[7, 1])
  expect_error(normalize_quantiles(x, subset = rep(FALSE, 9)), "selects no feature")
  expect_error(normalize_quantiles(x, subset = c(TRUE, NA)), "one TRUE or FALSE per feature")
  expect_error(normalize_quantiles(x, subset = 0:2), "between 1 and 9")
  expect_error(normalize_quantiles(x, subset = "g1"), "no row names")
  expect_error(normalize_quantiles(cbind(x, c(NA, NA, NA, NA, NA, 1, 2, 3, 4)), subset = subset),
               "Column 2 of `x` has no observed value among the features of `subset`")
  expect_error(normalize_quantiles(x, blocks = rep(1:3, 3), subset = subset),
               "cannot be combined")
  expect_error(normalize_quantiles(x, blocks = 1:3), "one value per feature")
})

test_that("a fitted target keeps its feature names and warns when new data differ", {
  x <- tied_matrix(100, 5, seed = 13)
  fit <- quantile_target(x)
  expect_identical(fit$features, rownames(x))
  expect_no_warning(predict(fit, x))
  expect_no_warning(predict(fit, x[sample(100), ]))
  fewer <- tied_matrix(40, 2, seed = 14)
  expect_warning(out <- predict(fit, fewer),
                 "60 of its 100 features are absent from the new data, and 0 of the new data's 40")
  # the target is used at its own length, as preprocessCore does
  expect_equal(out, reference_normalize(fewer, target = fit$target), tolerance = 1e-12)
  renamed <- x
  rownames(renamed)[1:7] <- paste0("new", 1:7)
  expect_warning(predict(fit, renamed), "7 of its 100 features are absent .* 7 of the new")
  expect_warning(normalize_quantiles(unname(fewer), target = fit),
                 "fitted on 100 features and the new data have 40 \\(60 fewer\\)")
  expect_no_warning(normalize_quantiles(unname(x), target = fit))
  # objects saved before feature names were kept still work
  old <- fit
  old$features <- NULL
  expect_no_warning(predict(old, x))
  skip_if_not_installed("preprocessCore")
  expect_warning(ours <- predict(fit, unname(fewer)), "60 fewer")
  expect_equal(unname(ours), preprocessCore::normalize.quantiles.use.target(unname(fewer), fit$target),
               tolerance = 1e-12)
})

test_that("group-aware normalization: weight 1 is global QN, weight 0 per-group QN", {
  x <- tied_matrix(300, 8, n_missing = 30, seed = 15)
  groups <- c("a", "b", "a", "c", "a", "b", "c", "c")
  expect_identical(normalize_quantiles_groups(x, groups, weight = 1), normalize_quantiles(x))
  per_group <- x
  for (g in unique(groups)) per_group[, groups == g] <- normalize_quantiles(x[, groups == g])
  expect_identical(normalize_quantiles_groups(x, groups, weight = 0), per_group)
  expect_identical(normalize_quantiles_groups(x, factor(groups), weight = rep(0, 300)), per_group)
  # one group: qsmooth is global quantile normalization
  expect_equal(qsmooth_weights(x, rep("a", 8)), rep(1, 300))
  expect_identical(normalize_quantiles_groups(x, rep("a", 8)), normalize_quantiles(x))
  # a fixed mixture: each sample normalized to its own reference
  q <- ref_quantiles(x)
  for (ties in c("midrank", "average", "first")) {
    mixed <- normalize_quantiles_groups(x, groups, weight = 0.3, ties = ties)
    for (j in c(1, 4)) {
      ref <- 0.3 * rowMeans(q) + 0.7 * rowMeans(q[, groups == groups[j]])
      expect_equal(mixed[, j], reference_normalize(x[, j, drop = FALSE], target = ref, ties = ties)[, 1],
                   tolerance = 1e-12, info = ties)
    }
  }
})

test_that("qsmooth weights are 1 - SSB / SST per quantile, smoothed by a running median", {
  set.seed(16)
  groups <- rep(c("A", "B", "C"), c(3, 4, 3))
  x <- matrix(rnorm(2000), 200) + rep(c(0, 0, 0, 1, 1, 1, 1, 0.5, 0.5, 0.5), each = 200)
  q <- apply(x, 2, sort)
  rough <- apply(q, 1, function(v) 1 - summary(stats::lm(v ~ groups))$r.squared)
  expect_equal(qsmooth_weights(x, groups, window = 0), rough, tolerance = 1e-10)
  expect_equal(qsmooth_weights(x, groups), as.vector(stats::runmed(rough, 11, endrule = "constant")),
               tolerance = 1e-10)
  expect_equal(qsmooth_weights(x, groups, window = 0.1, endrule = "median"),
               as.vector(stats::runmed(rough, 21, endrule = "median")), tolerance = 1e-10)
  expect_error(qsmooth_weights(x, groups, endrule = "keep"), "`endrule` must be one of")
  w <- qsmooth_weights(x, groups)
  expected <- w * rowMeans(q) + (1 - w) * rowMeans(q[, groups == "B"])
  expect_equal(sort(normalize_quantiles_groups(x, groups)[, 5]), expected, tolerance = 1e-12)
})

test_that("qsmooth keeps group-specific distributions when groups differ strongly", {
  set.seed(17)
  groups <- rep(c("A", "B"), each = 4)
  x <- cbind(matrix(rnorm(4000), 1000), matrix(rnorm(4000, mean = 5, sd = 2), 1000))
  x <- sweep(x, 2, c(0.2, -0.1, 0, 0.1, 0.3, 0, -0.2, 0.1), `+`)   # technical shifts
  w <- qsmooth_weights(x, groups)
  expect_lt(max(w), 0.2)
  smooth <- normalize_quantiles_groups(x, groups)
  medians <- apply(smooth, 2, stats::median)
  expect_gt(min(medians[5:8]) - max(medians[1:4]), 4)
  # within a group the technical shifts are removed
  expect_lt(diff(range(medians[1:4])), 1e-12)
  expect_equal(sort(smooth[, 1]), sort(smooth[, 2]))
  # global QN would give every sample one distribution
  expect_lt(diff(range(apply(normalize_quantiles(x), 2, stats::median))), 1e-12)
  # same groups, no difference: weights near 1
  y <- matrix(rnorm(8000), 1000)
  expect_gt(stats::median(qsmooth_weights(y, groups)), 0.6)
})

test_that("group-aware normalization keeps NA, shapes and checks its arguments", {
  x <- tied_matrix(60, 6, n_missing = 12, seed = 18)
  groups <- rep(1:2, 3)
  out <- normalize_quantiles_groups(x, groups)
  expect_identical(is.na(out), is.na(x))
  expect_identical(dimnames(out), dimnames(x))
  expect_length(qsmooth_weights(x, groups), 60)
  expect_error(normalize_quantiles_groups(x, groups[-1]), "one value per sample \\(6\\)")
  expect_error(normalize_quantiles_groups(x, c(1, 1, 2, 2, NA, 1)), "missing values")
  expect_error(normalize_quantiles_groups(x, groups, weight = 2), "`weight` must be")
  expect_error(normalize_quantiles_groups(x, groups, weight = c(0.5, 0.5)), "`weight` must be")
  expect_error(normalize_quantiles_groups(x, groups, window = -1), "`window` must be")
  expect_error(normalize_quantiles_groups(x, groups, ties = "max"), "`ties` must be one of")
  expect_error(normalize_quantiles_groups(x, groups, wieght = 0), "Unknown argument `wieght`")
  expect_error(qsmooth_weights(x, groups, weight = 0), "Unknown argument `weight`")
})

test_that("robust and subset arguments are checked", {
  x <- tied_matrix(30, 4, seed = 19)
  expect_error(normalize_quantiles_robust(x, n_remove = 4), "smaller than the number of samples")
  expect_error(normalize_quantiles_robust(x, remove_extreme = "max"), "`remove_extreme` must be one of")
  expect_error(normalize_quantiles_robust(x, weights = rep(1, 4), n_remove = 2),
               "either `weights` or `remove_extreme`")
  expect_error(normalize_quantiles_robust(x, weights = rep(0, 4)), "at least one sample")
  expect_error(normalize_quantiles_robust(x, weights = c(1, -1, 1, 1)), "non-negative")
  expect_error(normalize_quantiles_robust(x, weights = 1:3), "one weight per sample \\(4\\)")
  x_const <- x
  x_const[, 2] <- 1
  expect_error(robust_weights(x_const), "Column s2 of `x` is constant")
  expect_silent(robust_weights(x_const, "mean"))
  expect_error(quantile_target(x, n_quantiles = 0), "`n_quantiles` must be a whole number")
  expect_error(quantile_target(x, subset = "nope"), "does not have")
})

test_that("every variant gives identical results for 1 and 2 threads", {
  x <- tied_matrix(2000, 9, levels = 40, n_missing = 30, seed = 20)
  subset <- seq_len(2000) %% 4 == 0
  blocks <- rep(1:3, length.out = 2000)
  groups <- rep(c("a", "b", "c"), 3)
  run <- function(threads) {
    list(normalize_quantiles_robust(x, trim = 0.2, threads = threads),
         normalize_quantiles_robust(x, weights = 1:9, ties = "average", threads = threads),
         normalize_quantiles(x, subset = subset, threads = threads),
         normalize_quantiles(x, target = rnorm(77, sd = 1:77 / 77) |> sort(), subset = subset,
                             ties = "first", threads = threads),
         normalize_quantiles(x, blocks = blocks, threads = threads),
         quantile_target(x, subset = subset, geometric = TRUE, threads = threads),
         normalize_quantiles_groups(x, groups, threads = threads),
         qsmooth_weights(x, groups, threads = threads))
  }
  set.seed(1)
  one <- run(1)
  set.seed(1)
  expect_identical(run(2), one)
})

test_that("the SummarizedExperiment methods add an assay and read colData groups", {
  skip_if_not_installed("SummarizedExperiment")
  x <- tied_matrix(50, 6, seed = 21)
  groups <- rep(c("B", "T"), each = 3)
  se <- SummarizedExperiment::SummarizedExperiment(
    assays = list(exprs = x), colData = data.frame(type = groups, row.names = colnames(x)))
  out <- normalize_quantiles_robust(se, trim = 0.5)
  expect_equal(SummarizedExperiment::assay(out, "qnorm_robust"),
               normalize_quantiles_robust(x, trim = 0.5))
  out <- normalize_quantiles_groups(se, "type", name = "smooth")
  expect_equal(SummarizedExperiment::assay(out, "smooth"), normalize_quantiles_groups(x, groups))
  expect_equal(qsmooth_weights(se, "type"), qsmooth_weights(x, groups))
  expect_equal(robust_weights(se, "mean"), robust_weights(x, "mean"))
  expect_error(normalize_quantiles_groups(se, "lineage"), "names no column of colData")
  subset <- rep(c(TRUE, FALSE), 25)
  expect_equal(SummarizedExperiment::assay(normalize_quantiles(se, subset = subset), "qnorm"),
               normalize_quantiles(x, subset = subset))
})

# qsmooth (Hicks et al. 2018) as its paper and package describe it, written
# out plainly: sorted columns Q, reference = their row means, group fits by
# least squares on the group indicators, rough weight 1 - SSB / SST (1 where
# SST < 1e-6), a running median of odd width floor(0.05 p) (+ 1) with constant
# ends, and each sample's values replaced by its weighted reference at their
# ranks, tied values sharing the mean of the reference over their ranks.
qsmooth_reference <- function(x, groups, window = 0.05) {
  q <- apply(x, 2, sort)
  ref <- rowMeans(q)
  design <- stats::model.matrix(~ 0 + factor(groups))
  fitted <- q %*% design %*% solve(crossprod(design), t(design))
  sst <- rowSums((q - ref)^2)
  ssb <- rowSums((fitted - ref)^2)
  rough <- 1 - ssb / sst
  rough[sst < 1e-6] <- 1
  k <- floor(window * nrow(q))
  if (k %% 2 == 0) k <- k + 1
  w <- stats::runmed(rough, k, endrule = "constant")
  target <- w * ref + (1 - w) * fitted
  out <- x
  for (j in seq_len(ncol(x))) {
    low <- rank(x[, j], ties.method = "min")
    size <- tabulate(low, nrow(x))
    out[, j] <- vapply(low, function(r) mean(target[r:(r + size[r] - 1L), j]), numeric(1))
  }
  list(weights = as.vector(w), normalized = out)
}

test_that("qsmooth weights and values equal qsmooth's published algorithm", {
  set.seed(41)
  groups <- rep(c("ctrl", "case", "other"), c(5, 4, 3))
  x <- cbind(matrix(rnorm(400 * 5), 400), matrix(rexp(400 * 4) * 2, 400),
             matrix(rnorm(400 * 3, 1, 2), 400))
  x[sample(length(x), 300)] <- round(x[sample(length(x), 300)], 1)   # some ties
  x[1:30, 2] <- 0                                                  # a long tie block
  ref <- qsmooth_reference(x, groups)
  expect_equal(qsmooth_weights(x, groups), ref$weights, tolerance = 1e-12)
  expect_equal(normalize_quantiles_groups(x, groups, ties = "average"), ref$normalized,
               tolerance = 1e-12)
  # the other end rule differs only within half a window of the ends
  median_ends <- qsmooth_weights(x, groups, endrule = "median")
  inner <- 11:390
  expect_equal(median_ends[inner], ref$weights[inner], tolerance = 1e-12)
  expect_false(isTRUE(all.equal(median_ends, ref$weights)))
  # levels where all samples agree (SST < 1e-6) get weight 1
  y <- x
  y[1:40, ] <- -100
  expect_equal(qsmooth_weights(y, groups, window = 0)[1:40], rep(1, 40))
})

test_that("qsmooth parity on the embedded ALL data (B vs T)", {
  x <- all_leukemia$expr
  type <- all_leukemia$pheno$type
  ref <- qsmooth_reference(x, type)
  expect_equal(qsmooth_weights(x, type), ref$weights, tolerance = 1e-12)
  expect_equal(normalize_quantiles_groups(x, type, ties = "average"), ref$normalized,
               tolerance = 1e-12, ignore_attr = TRUE)
})

test_that("plot_qsmooth_weights() draws the weights and checks them", {
  set.seed(42)
  groups <- rep(c("A", "B"), each = 3)
  x <- cbind(matrix(rnorm(600), 200), matrix(rexp(600), 200))
  w <- qsmooth_weights(x, groups)
  grDevices::pdf(NULL)
  on.exit(grDevices::dev.off())
  expect_identical(plot_qsmooth_weights(w, rough = qsmooth_weights(x, groups, window = 0)), w)
  expect_error(plot_qsmooth_weights(w + 2), "`weights` must be a vector of weights in \\[0, 1\\]")
  expect_error(plot_qsmooth_weights(w, rough = w[-1]), "`rough` must have one weight per level")
})
