# Soft top-k classification loss (soft_topk_loss(), Cuturi, Teboul and Vert
# 2019) in a multinomial linear model, against the plain multinomial
# (softmax cross-entropy) loss: the same linear scores W x + b, the same
# optimizer (BFGS, 200 iterations, the same small random start), top-1, top-3
# and top-5 accuracy on held-out samples, and the time of each fit.
#   Vowel (mlbench): 11 vowels, 9 features; speakers 0-7 train (528), 8-14
#     test (462), the split of the data's source.
#   Letter (mlbench LetterRecognition): 26 letters, 16 features; the first
#     16,000 train, the last 4,000 test. Takes about 10 minutes.
# Run by hand with the package and mlbench installed:
#   Rscript bench/topk_classification.R [vowel|letter|both]
library(diffrank)
stopifnot(requireNamespace("mlbench", quietly = TRUE))
which_sets <- commandArgs(trailingOnly = TRUE)
if (length(which_sets) == 0L || which_sets[1L] == "both") which_sets <- c("vowel", "letter")
if (file.exists("/proc/loadavg")) cat("Load average before the run:", readLines("/proc/loadavg"), "\n")

# Features (standardized on the training samples, with an intercept row) x
# samples, the classes, and the training and test samples.
load_set <- function(name) {
  if (name == "vowel") {
    data("Vowel", package = "mlbench", envir = environment())
    speaker <- as.integer(as.character(Vowel$V1))
    x <- as.matrix(Vowel[, 2:10])
    y <- Vowel$Class
    train <- which(speaker <= 7)
  } else {
    data("LetterRecognition", package = "mlbench", envir = environment())
    x <- as.matrix(LetterRecognition[, -1])
    y <- LetterRecognition$lettr
    train <- 1:16000
  }
  centre <- colMeans(x[train, ])
  spread <- apply(x[train, ], 2, stats::sd)
  z <- rbind(1, t(sweep(sweep(x, 2, centre), 2, spread, "/")))
  list(z = z, y = as.integer(y), classes = nlevels(y), train = train,
       test = setdiff(seq_len(ncol(z)), train))
}

# Softmax cross-entropy of the scores, and its gradient.
multinomial_loss <- function(scores, y) {
  scores <- sweep(scores, 2, apply(scores, 2, max))
  p <- exp(scores)
  p <- sweep(p, 2, colSums(p), "/")
  cells <- cbind(y, seq_along(y))
  gradient <- p
  gradient[cells] <- gradient[cells] - 1
  list(value = -mean(log(p[cells])), gradient = gradient / length(y))
}

# A linear model fitted by BFGS with `loss(scores, y)` on the training samples.
fit_linear <- function(set, loss, maxit = 200) {
  z <- set$z[, set$train]
  y <- set$y[set$train]
  last <- new.env()
  objective <- function(w) {
    r <- loss(matrix(w, set$classes) %*% z, y)
    last$w <- w
    last$gradient <- as.vector(r$gradient %*% t(z))
    r$value
  }
  gradient <- function(w) {
    if (!identical(last$w, w)) objective(w)
    last$gradient
  }
  set.seed(1)
  start <- stats::rnorm(set$classes * nrow(z), sd = 0.01)
  time <- system.time(o <- stats::optim(start, objective, gradient, method = "BFGS",
                                        control = list(maxit = maxit)))[["elapsed"]]
  list(w = matrix(o$par, set$classes), time = time)
}

# Share of the test samples whose class is among the k highest scores.
top_accuracy <- function(set, w, k) {
  scores <- w %*% set$z[, set$test]
  rank_of_class <- apply(-scores, 2, rank, ties.method = "first")
  mean(rank_of_class[cbind(set$y[set$test], seq_along(set$test))] <= k)
}

topk_loss <- function(k) {
  function(scores, y) soft_topk_loss(scores, y, k = k, progress = FALSE)
}

for (name in which_sets) {
  set <- load_set(name)
  cat(sprintf("\n%s: %d classes, %d features, %d training and %d test samples\n", name,
              set$classes, nrow(set$z) - 1L, length(set$train), length(set$test)))
  cat(sprintf("  %-28s %6s %6s %6s %9s\n", "loss", "top-1", "top-3", "top-5", "seconds"))
  fits <- list(`multinomial (cross-entropy)` = fit_linear(set, multinomial_loss),
               `soft_topk_loss, k = 1` = fit_linear(set, topk_loss(1)),
               `soft_topk_loss, k = 5` = fit_linear(set, topk_loss(5)))
  for (label in names(fits)) {
    f <- fits[[label]]
    cat(sprintf("  %-28s %6.3f %6.3f %6.3f %9.1f\n", label, top_accuracy(set, f$w, 1),
                top_accuracy(set, f$w, 3), top_accuracy(set, f$w, 5), f$time))
  }
}
