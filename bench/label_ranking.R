# Label ranking on the benchmark of Cheng, Huhn and Hullermeier (2009),
# built by their recipe from the UCI data sets that R's data packages hold:
#   classification sets (iris from datasets; Glass, Vehicle and Vowel from
#     mlbench): a naive Bayes classifier (Gaussian, fitted on all samples)
#     ranks each sample's classes by posterior probability, and these
#     rankings are the labels to predict from the features;
#   a regression set (BostonHousing from mlbench): some numeric attributes,
#     standardized, become the labels, ranked by value in each sample, and
#     the other attributes are the features (here medv, lstat, rm, crim, nox
#     and age: the price and the five attributes most correlated with it).
# rank_regression() at its defaults with each loss: "squared" (one least-
# squares regression per label, the plain baseline), "soft_rank" (squared
# loss of the soft ranks, Blondel et al. 2020) and "fy" (Fenchel-Young loss
# of the perturbed ranks, Berthet et al. 2020). 10-fold cross-validation
# (the same folds for every loss), mean Spearman correlation between the
# predicted and the naive Bayes (or attribute) rankings of the held-out
# samples, and the total time of the 10 fits.
# Run by hand with the package and mlbench installed (about 2 minutes):
#   Rscript bench/label_ranking.R
library(diffrank)
stopifnot(requireNamespace("mlbench", quietly = TRUE))
if (file.exists("/proc/loadavg")) cat("Load average before the run:", readLines("/proc/loadavg"), "\n")

# Rankings (classes x samples, 1 = most probable) of a Gaussian naive Bayes
# classifier fitted on all the samples.
naive_bayes_rankings <- function(features, class) {
  class <- droplevels(class)
  log_posterior <- sapply(levels(class), function(k) {
    rows <- class == k
    mu <- colMeans(features[rows, , drop = FALSE])
    s <- apply(features[rows, , drop = FALSE], 2, stats::sd)
    s[!(s > 0)] <- 1e-6  # a constant feature within a class
    log(mean(rows)) + colSums(stats::dnorm(t(features), mu, s, log = TRUE))
  })
  apply(-log_posterior, 1, rank, ties.method = "average")
}

label_ranking_sets <- function() {
  sets <- list()
  sets$iris <- list(x = t(as.matrix(iris[, 1:4])),
                    y = naive_bayes_rankings(as.matrix(iris[, 1:4]), iris$Species))
  data("Glass", package = "mlbench", envir = environment())
  glass <- as.matrix(Glass[, 1:9])
  sets$glass <- list(x = t(glass), y = naive_bayes_rankings(glass, Glass$Type))
  data("Vehicle", package = "mlbench", envir = environment())
  vehicle <- as.matrix(Vehicle[, 1:18])
  sets$vehicle <- list(x = t(vehicle), y = naive_bayes_rankings(vehicle, Vehicle$Class))
  data("Vowel", package = "mlbench", envir = environment())
  vowel <- as.matrix(Vowel[, 2:10])  # V1 is the speaker
  sets$vowel <- list(x = t(vowel), y = naive_bayes_rankings(vowel, Vowel$Class))
  data("BostonHousing", package = "mlbench", envir = environment())
  housing <- BostonHousing
  housing$chas <- as.numeric(as.character(housing$chas))
  labels <- c("medv", "lstat", "rm", "crim", "nox", "age")
  values <- scale(as.matrix(housing[, labels]))
  sets$housing <- list(x = t(as.matrix(housing[, setdiff(names(housing), labels)])),
                       y = apply(-values, 1, rank, ties.method = "average"))
  sets
}

losses <- c("squared", "soft_rank", "fy")
sets <- label_ranking_sets()
cat(sprintf("\n%-8s %7s %7s %8s | %s\n", "data", "samples", "labels", "features",
            paste(sprintf("%19s", paste(losses, "Spearman (s)")), collapse = " ")))
for (name in names(sets)) {
  set <- sets[[name]]
  n <- ncol(set$x)
  set.seed(1)
  folds <- sample(rep(1:10, length.out = n))
  spearman <- setNames(numeric(length(losses)), losses)
  seconds <- spearman
  for (loss in losses) {
    predicted <- matrix(0, nrow(set$y), n)
    seconds[[loss]] <- system.time(for (f in 1:10) {
      train <- folds != f
      set.seed(f)
      fit <- rank_regression(set$x[, train], set$y[, train], loss = loss)
      predicted[, !train] <- predict(fit, set$x[, !train, drop = FALSE])
    })[["elapsed"]]
    agreement <- vapply(seq_len(n), function(i) {
      stats::cor(predicted[, i], set$y[, i], method = "spearman")
    }, 0)
    spearman[[loss]] <- mean(agreement, na.rm = TRUE)
  }
  cat(sprintf("%-8s %7d %7d %8d | %s\n", name, n, nrow(set$y), nrow(set$x),
              paste(sprintf("%11.3f (%5.1f)", spearman, seconds), collapse = " ")))
}
