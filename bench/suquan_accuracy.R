# Test accuracy of SUQUAN at its defaults against quantile normalization
# followed by ridge logistic regression tuned by glmnet::cv.glmnet() (alpha =
# 0, its defaults), on six public expression data sets and three
# simulations, and the table that vignettes/suquan.Rmd shows
# (inst/extdata/suquan_accuracy.csv, written by this script).
#
# Protocol: stratified 5-fold cross-validation repeated 3 times with fixed
# seeds. In every outer fold all methods see the same training samples; the
# genes are the SUQUAN_BENCH_GENES (default 2,000) most variable ones on the
# training samples of that fold (all genes when there are fewer); everything
# is tuned on the same inner folds (5, stratified) of the training samples;
# the quantile-normalization target is fitted on the training samples only
# and test samples are normalized against it. A missing value (khan) takes
# the target's median in every method. Columns:
#   qn_glmnet_min, qn_glmnet_1se: QN + cv.glmnet, predicting at lambda.min
#     and at lambda.1se (the default of glmnet's predict());
#   qn_ridge: cv_suquan(method = "fixed"), QN + ridge with diffrank's own
#     path and cross-validation (no per-gene standardization, unlike
#     glmnet's default);
#   suquan: suquan() at its defaults (no tuning);
#   cv_suquan, cv_suquan_1se: cv_suquan() at its defaults, predicting with
#     s = "lambda_min" (the default) and s = "lambda_1se";
#   se: standard error of the fold-wise difference cv_suquan - qn_glmnet_min;
#   at_end: share of the outer folds where cv_suquan's best lambda stayed at
#     the end of its (extended) path;
#   seconds_*: mean time of one fit with its tuning, on the training samples.
#
# Data: golub (multtest: ALL vs AML), khan (impute::khanmiss: EWS vs RMS),
# Westbc (TH.data: nodal status), the embedded all_leukemia (1,000 probe sets,
# BCR/ABL vs NEG), the full ALL (Bioconductor ALL, 12,625 probe sets, BCR/ABL
# vs NEG) and bladderbatch (cancer vs the rest); and simulations where the
# labels depend on the data through a target that is far from the mean
# quantiles (a step on the top 20 % of ranks; lognormal quantiles) or equal
# to them (normal quantiles: the baseline's target is right).
#
# Run after installing diffrank (some minutes; run it at low priority):
#   nice -n 19 Rscript bench/suquan_accuracy.R
# Environment: SUQUAN_BENCH_DATA (comma-separated names, default all),
# SUQUAN_BENCH_REPEATS (default 3), SUQUAN_BENCH_THREADS (default 2),
# SUQUAN_BENCH_GENES (default 2000), SUQUAN_BENCH_OUT (the table written,
# default inst/extdata/suquan_accuracy.csv; "" for none).
#
# SUQUAN_BENCH_GRID=1 runs instead the search behind suquan()'s default
# lambda (documented in ?suquan): on the real data sets, with the same folds
# and genes, the test accuracy of suquan() at 100 fixed settings (lambda from
# lambda_max / 10 down to lambda_max * 1e-7, 4 values a decade, and rounds 0
# to 3), ranked by their mean over the data sets.
suppressPackageStartupMessages(library(diffrank))
stopifnot(requireNamespace("glmnet", quietly = TRUE))
threads <- as.integer(Sys.getenv("SUQUAN_BENCH_THREADS", "2"))
repeats <- as.integer(Sys.getenv("SUQUAN_BENCH_REPEATS", "3"))
wanted <- strsplit(Sys.getenv("SUQUAN_BENCH_DATA", ""), ",")[[1]]
genes <- as.integer(Sys.getenv("SUQUAN_BENCH_GENES", "2000"))
out_file <- Sys.getenv("SUQUAN_BENCH_OUT", "inst/extdata/suquan_accuracy.csv")
tasks <- c(golub = "ALL vs AML", khan = "EWS vs RMS", Westbc = "nodal status",
           all_leukemia = "BCR/ABL vs NEG", ALL = "BCR/ABL vs NEG",
           bladderbatch = "cancer vs rest", sim_step = "step target",
           sim_lognormal = "lognormal target", sim_mean = "target = mean quantiles")

# Data sets: x features x samples with unique row names, y a two-level factor.
unique_names <- function(x) {
  rownames(x) <- paste0("f", seq_len(nrow(x)))
  x
}
loaders <- list(
  golub = function() {
    e <- new.env()
    utils::data("golub", package = "multtest", envir = e)
    list(x = unique_names(e$golub), y = factor(ifelse(e$golub.cl == 1, "AML", "ALL")))
  },
  khan = function() {
    e <- new.env()
    utils::data("khanmiss", package = "impute", envir = e)
    k <- e$khanmiss
    classes <- vapply(k[1, -(1:2)], as.character, "")
    values <- sapply(k[-1, -(1:2)], function(v) as.numeric(as.character(v)))
    keep <- classes %in% c("EWS", "RMS")
    list(x = unique_names(values[, keep]), y = factor(classes[keep]))
  },
  Westbc = function() {
    e <- new.env()
    utils::data("Westbc", package = "TH.data", envir = e)
    list(x = unique_names(as.matrix(e$Westbc$assay)), y = factor(e$Westbc$pheno$nodal.y))
  },
  all_leukemia = function() {
    keep <- all_leukemia$pheno$mol_biol %in% c("BCR/ABL", "NEG")
    list(x = all_leukemia$expr[, keep], y = droplevels(all_leukemia$pheno$mol_biol[keep]))
  },
  ALL = function() {
    e <- new.env()
    utils::data("ALL", package = "ALL", envir = e)
    keep <- e$ALL$mol.biol %in% c("BCR/ABL", "NEG")
    list(x = Biobase::exprs(e$ALL)[, keep], y = droplevels(e$ALL$mol.biol[keep]))
  },
  bladderbatch = function() {
    e <- new.env()
    utils::data("bladderdata", package = "bladderbatch", envir = e)
    cancer <- Biobase::pData(e$bladderEset)$cancer
    list(x = Biobase::exprs(e$bladderEset),
         y = factor(ifelse(cancer == "Cancer", "cancer", "other")))
  }
)

# Simulations: p genes, n samples; each sample is standard normal values with
# its own scale and location (so the mean quantiles are close to the normal
# quantiles); the label depends on the ranks of 20 genes through the true
# target f_true.
simulate <- function(target, n = 200, p = 100, seed = 1) {
  set.seed(seed)
  z <- matrix(stats::rnorm(p * n), p, n)
  levels <- (seq_len(p) - 0.5) / p
  f_true <- switch(target,
                   step = as.numeric(levels > 0.8),
                   lognormal = exp(1.5 * stats::qnorm(levels)),
                   mean = stats::qnorm(levels))
  f_true <- (f_true - mean(f_true)) / stats::sd(f_true)
  w <- c(rep(1, 10), rep(-1, 10), rep(0, p - 20))
  ranks <- apply(z, 2, rank)
  g <- colSums(w * matrix(f_true[ranks], p))
  y <- factor(ifelse(g + stats::rnorm(n, sd = stats::sd(g) / 4) > stats::median(g), "b", "a"))
  x <- apply(z, 2, function(v) stats::runif(1, 0.5, 1.5) * v + stats::runif(1, -1, 1))
  list(x = unique_names(x), y = y)
}
loaders$sim_step <- function() simulate("step", seed = 11)
loaders$sim_lognormal <- function() simulate("lognormal", seed = 12)
loaders$sim_mean <- function() simulate("mean", seed = 13)
if (length(wanted) > 0L) loaders <- loaders[intersect(wanted, names(loaders))]

stratified_folds <- function(y, k) {
  folds <- integer(length(y))
  for (members in split(seq_along(y), y)) {
    folds[members] <- sample(rep_len(seq_len(k), length(members)))
  }
  folds
}

# QN + cv.glmnet: the accuracy at lambda.min and at lambda.1se.
qn_glmnet <- function(x_train, y_train, x_test, y_test, foldid) {
  reference <- quantile_target(x_train, threads = threads)
  neutral <- stats::median(reference$target)
  normalize <- function(m) {
    z <- t(predict(reference, m, threads = threads))
    z[is.na(z)] <- neutral
    z
  }
  cv <- glmnet::cv.glmnet(normalize(x_train), y_train, family = "binomial", alpha = 0,
                          foldid = foldid)
  z <- normalize(x_test)
  vapply(c("lambda.min", "lambda.1se"), function(s) {
    mean(factor(predict(cv, z, s = s, type = "class"), levels(y_train)) == y_test)
  }, 0)
}

timed <- function(expr) {
  seconds <- system.time(value <- expr)[["elapsed"]]
  list(value = value, seconds = seconds)
}

# The outer folds of a data set (the same in both modes): for every one, the
# training and test samples and the genes.
outer_folds <- function(x, y) {
  out <- list()
  for (r in seq_len(repeats)) {
    set.seed(1000 + r)
    outer <- stratified_folds(y, 5)
    for (k in 1:5) {
      train <- outer != k
      spread <- apply(x[, train], 1, stats::var, na.rm = TRUE)
      keep <- if (nrow(x) > genes) order(spread, decreasing = TRUE)[seq_len(genes)] else
        seq_len(nrow(x))
      out[[length(out) + 1L]] <- list(r = r, k = k, train = train, keep = keep)
    }
  }
  out
}

if (Sys.getenv("SUQUAN_BENCH_GRID") == "1") {
  ratios <- 10^seq(-1, -7, by = -0.25)
  settings <- expand.grid(ratio = ratios, rounds = 0:3)
  real_data <- setdiff(names(loaders), c("sim_step", "sim_lognormal", "sim_mean"))
  grid <- sapply(real_data, function(name) {
    data <- loaders[[name]]()
    correct <- sapply(outer_folds(data$x, data$y), function(fold) {
      x_train <- data$x[fold$keep, fold$train]
      x_test <- data$x[fold$keep, !fold$train]
      lambda_max <- suquan(x_train, data$y[fold$train], method = "fixed",
                           threads = threads)$lambda_max
      mapply(function(ratio, rounds) {
        fit <- suquan(x_train, data$y[fold$train], lambda = ratio * lambda_max,
                      rounds = rounds, threads = threads)
        mean(predict(fit, x_test, type = "class") == data$y[!fold$train])
      }, settings$ratio, settings$rounds)
    })
    cat(name, "done\n")
    flush.console()
    rowMeans(correct)
  })
  settings$accuracy <- rowMeans(grid)
  settings$rank <- rank(-settings$accuracy, ties.method = "min")
  ordered <- settings[order(settings$rank), ]
  cat("\nsuquan() at fixed settings, mean test accuracy over", ncol(grid), "data sets:\n")
  print(utils::head(ordered, 10), row.names = FALSE)
  default <- settings[abs(log10(settings$ratio) + 3) < 1e-9 & settings$rounds == 1, ]
  cat(sprintf("the default (lambda_max / 1000, 1 round): accuracy %.4f, rank %d of %d\n",
              default$accuracy, default$rank, nrow(settings)))
  quit(save = "no")
}

methods <- c("qn_glmnet_min", "qn_glmnet_1se", "qn_ridge", "suquan", "cv_suquan", "cv_suquan_1se")
rows <- list()
for (name in names(loaders)) {
  data <- loaders[[name]]()
  x <- data$x
  y <- data$y
  folds_total <- repeats * 5
  accuracy <- matrix(NA_real_, folds_total, length(methods), dimnames = list(NULL, methods))
  seconds <- matrix(0, folds_total, 3, dimnames = list(NULL, c("glmnet", "suquan", "cv_suquan")))
  at_end <- logical(folds_total)
  row <- 0
  for (fold in outer_folds(x, y)) {
    r <- fold$r
    k <- fold$k
    train <- fold$train
    keep <- fold$keep
    row <- row + 1
    x_train <- x[keep, train]
    x_test <- x[keep, !train]
    y_train <- y[train]
    y_test <- y[!train]
    set.seed(2000 + 10 * r + k)
    inner <- stratified_folds(y_train, 5)
    g <- timed(qn_glmnet(x_train, y_train, x_test, y_test, inner))
    accuracy[row, c("qn_glmnet_min", "qn_glmnet_1se")] <- g$value
    seconds[row, "glmnet"] <- g$seconds
    fixed <- suppressMessages(cv_suquan(x_train, y_train, method = "fixed", folds = inner,
                                        progress = FALSE, threads = threads))
    accuracy[row, "qn_ridge"] <- mean(predict(fixed, x_test, type = "class") == y_test)
    plain <- timed(suquan(x_train, y_train, threads = threads))
    accuracy[row, "suquan"] <- mean(predict(plain$value, x_test, type = "class") == y_test)
    seconds[row, "suquan"] <- plain$seconds
    ended <- FALSE
    cv <- timed(withCallingHandlers(
      cv_suquan(x_train, y_train, folds = inner, progress = FALSE, threads = threads),
      message = function(m) {
        ended <<- TRUE
        invokeRestart("muffleMessage")
      }))
    seconds[row, "cv_suquan"] <- cv$seconds
    at_end[row] <- ended
    accuracy[row, "cv_suquan"] <- mean(predict(cv$value, x_test, type = "class") == y_test)
    accuracy[row, "cv_suquan_1se"] <-
      mean(predict(cv$value, x_test, type = "class", s = "lambda_1se") == y_test)
  }
  means <- colMeans(accuracy)
  rows[[name]] <- data.frame(
    data = name, task = tasks[[name]], features = nrow(x), genes = min(nrow(x), genes),
    samples = ncol(x), classes = paste(table(y), collapse = "/"), t(round(means, 3)),
    se = round(stats::sd(accuracy[, "cv_suquan"] - accuracy[, "qn_glmnet_min"]) /
                 sqrt(folds_total), 3),
    at_end = round(mean(at_end), 2),
    seconds_glmnet = round(mean(seconds[, "glmnet"]), 2),
    seconds_suquan = round(mean(seconds[, "suquan"]), 2),
    seconds_cv_suquan = round(mean(seconds[, "cv_suquan"]), 2),
    stringsAsFactors = FALSE, check.names = FALSE)
  print(rows[[name]], row.names = FALSE)
  flush.console()
}
table <- do.call(rbind, rows)
cat("\nTest accuracy, stratified 5-fold x", repeats, "repeats (mean over", 5 * repeats,
    "outer folds)\n")
print(table, row.names = FALSE)
real <- !startsWith(table$data, "sim_")
if (any(real)) {
  average <- colMeans(table[real, methods])
  cat(sprintf("\nReal data (%d sets), mean accuracy: %s\n", sum(real),
              paste(sprintf("%s %.3f", methods, average), collapse = ", ")))
  cat(sprintf(paste0("cv_suquan - qn_glmnet_min = %+.3f, suquan - qn_glmnet_min = %+.3f ",
                     "(goal: > -0.010); cv_suquan - qn_ridge = %+.3f\n"),
              average[["cv_suquan"]] - average[["qn_glmnet_min"]],
              average[["suquan"]] - average[["qn_glmnet_min"]],
              average[["cv_suquan"]] - average[["qn_ridge"]]))
}
if (nzchar(out_file) && length(wanted) == 0L) {
  dir.create(dirname(out_file), showWarnings = FALSE, recursive = TRUE)
  con <- file(out_file, "w")
  writeLines(sprintf(paste0("# bench/suquan_accuracy.R, %s, diffrank %s: stratified 5-fold x %d ",
                            "repeats, the %d most variable genes of each training fold"),
                     format(Sys.Date()), utils::packageVersion("diffrank"), repeats, genes), con)
  utils::write.csv(table, con, row.names = FALSE)
  close(con)
  cat("written to", out_file, "\n")
}
