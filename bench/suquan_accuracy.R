# Test accuracy of SUQUAN as a user runs it (cv_suquan() with its defaults,
# method "bnd") against quantile normalization followed by ridge logistic
# regression tuned by glmnet::cv.glmnet(), on six real data sets and three
# simulations. Protocol: stratified 5-fold cross-validation repeated 3
# times with fixed seeds; in every outer fold both methods see the same
# training samples and tune on the same inner folds (5, stratified); the
# quantile-normalization target is fitted on the training samples only and
# test samples are normalized against it; glmnet predicts at lambda.min (the
# rule cv_suquan uses). A missing value (khan) takes the target's median in
# both methods. A third column, cv_suquan(method = "fixed"), is quantile
# normalization + ridge with diffrank's own path and cross-validation (no
# per-gene standardization, unlike glmnet's default): SUQUAN minus this
# column is the effect of learning the target alone. Printed, not a test.
#
# Data: golub (multtest: ALL vs AML), khan (impute::khanmiss: EWS vs RMS),
# Westbc (TH.data: nodal status), the embedded all_leukemia (1,000 probe sets,
# BCR/ABL vs NEG), the full ALL (Bioconductor ALL, 12,625 probe sets, BCR/ABL
# vs NEG) and bladderbatch (cancer vs the rest); and simulations where the
# labels depend on the data through a target that is far from the mean
# quantiles (a step on the top 20 % of ranks; lognormal quantiles) or equal
# to them (normal quantiles: the baseline's target is right).
#
# Run after installing diffrank (long: run it at low priority):
#   nice -n 19 Rscript bench/suquan_accuracy.R
# Environment: SUQUAN_BENCH_DATA (comma-separated names, default all),
# SUQUAN_BENCH_REPEATS (default 3), SUQUAN_BENCH_THREADS (default 2).
suppressPackageStartupMessages(library(diffrank))
stopifnot(requireNamespace("glmnet", quietly = TRUE))
threads <- as.integer(Sys.getenv("SUQUAN_BENCH_THREADS", "2"))
repeats <- as.integer(Sys.getenv("SUQUAN_BENCH_REPEATS", "3"))
wanted <- strsplit(Sys.getenv("SUQUAN_BENCH_DATA", ""), ",")[[1]]

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

qn_ridge <- function(x_train, y_train, x_test, foldid) {
  reference <- quantile_target(x_train, threads = threads)
  neutral <- stats::median(reference$target)
  normalize <- function(m) {
    z <- t(predict(reference, m, threads = threads))
    z[is.na(z)] <- neutral
    z
  }
  cv <- glmnet::cv.glmnet(normalize(x_train), y_train, family = "binomial", alpha = 0,
                          foldid = foldid)
  factor(predict(cv, normalize(x_test), s = "lambda.min", type = "class"), levels(y_train))
}

rows <- list()
for (name in names(loaders)) {
  data <- loaders[[name]]()
  x <- data$x
  y <- data$y
  accuracy <- matrix(NA_real_, repeats * 5, 3,
                     dimnames = list(NULL, c("QN + glmnet", "QN + ridge", "SUQUAN")))
  chosen_rounds <- chosen_ratio <- numeric(repeats * 5)
  seconds <- 0
  row <- 0
  for (r in seq_len(repeats)) {
    set.seed(1000 + r)
    outer <- stratified_folds(y, 5)
    for (k in 1:5) {
      row <- row + 1
      train <- outer != k
      set.seed(2000 + 10 * r + k)
      inner <- stratified_folds(y[train], 5)
      predicted <- qn_ridge(x[, train], y[train], x[, !train], inner)
      accuracy[row, 1] <- mean(predicted == y[!train])
      elapsed <- system.time(
        cv <- cv_suquan(x[, train], y[train], folds = inner, progress = FALSE, threads = threads)
      )[["elapsed"]]
      seconds <- seconds + elapsed
      accuracy[row, 3] <- mean(predict(cv, x[, !train], type = "class") == y[!train])
      fixed <- cv_suquan(x[, train], y[train], method = "fixed", folds = inner, progress = FALSE,
                         threads = threads)
      accuracy[row, 2] <- mean(predict(fixed, x[, !train], type = "class") == y[!train])
      chosen_rounds[row] <- cv$rounds_min
      chosen_ratio[row] <- cv$lambda_min / cv$lambda_max
    }
  }
  means <- colMeans(accuracy)
  rows[[name]] <- data.frame(
    data = name, features = nrow(x), samples = ncol(x),
    classes = paste(table(y), collapse = "/"),
    qn_glmnet = round(means[1], 3), qn_ridge = round(means[2], 3), suquan = round(means[3], 3),
    vs_glmnet = round(means[3] - means[1], 3),
    se = round(stats::sd(accuracy[, 3] - accuracy[, 1]) / sqrt(nrow(accuracy)), 3),
    vs_ridge = round(means[3] - means[2], 3),
    rounds_chosen = paste(names(table(chosen_rounds)), table(chosen_rounds), sep = ":",
                          collapse = " "),
    lambda_ratio = signif(stats::median(chosen_ratio), 2),
    seconds_per_cv = round(seconds / nrow(accuracy), 1),
    stringsAsFactors = FALSE)
  print(rows[[name]], row.names = FALSE)
  flush.console()
}
table <- do.call(rbind, rows)
cat("\nTest accuracy, stratified 5-fold x", repeats, "repeats (mean over", 5 * repeats,
    "outer folds)\n")
print(table, row.names = FALSE)
real <- table$data %in% c("golub", "khan", "Westbc", "all_leukemia", "ALL", "bladderbatch")
if (any(real)) {
  cat(sprintf(paste0("\nReal data, mean difference: SUQUAN - (QN + glmnet) = %+.3f (goal: > -0.010); ",
                     "SUQUAN - (QN + ridge) = %+.3f\n"),
              mean(table$vs_glmnet[real]), mean(table$vs_ridge[real])))
}
