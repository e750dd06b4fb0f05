test_that("SUQUAN recovers a non-linear quantile function and beats plain QN", {
  train <- simulate_suquan(300, seed = 1)
  test <- simulate_suquan(1000, seed = 2)
  fit <- suquan(train$x, train$y, lambda = 1e-3)
  baseline <- suquan(train$x, train$y, lambda = 1e-3, method = "fixed")
  expect_gt(cor(fit$f, train$f_true), 0.95)
  expect_gt(cor(fit$f, train$f_true), cor(fit$mean_target, train$f_true) + 0.15)
  acc_suquan <- mean(predict(fit, test$x, type = "class") == test$y)
  acc_qn <- mean(predict(baseline, test$x, type = "class") == test$y)
  expect_gt(acc_suquan, acc_qn + 0.05)
  svd <- suquan(train$x, train$y, lambda = 1e-3, method = "svd")
  expect_gt(cor(svd$f, train$f_true), cor(svd$mean_target, train$f_true) + 0.15)
})

test_that("the objective never increases across alternations", {
  for (family in c("binomial", "gaussian")) {
    data <- simulate_suquan(120, p = 40, seed = 3, family = family)
    fit <- suquan(data$x, data$y, family = family, lambda = 1e-2, tol = 1e-6, max_iter = 15)
    objective <- fit$history$objective
    expect_true(all(diff(objective) <= 1e-12 * abs(objective[-1])), info = family)
    expect_gt(nrow(fit$history), 4)
    expect_false(is.unsorted(fit$f))
    expect_lte(sqrt(sum(fit$f^2)), sqrt(sum(fit$f_init^2)) * (1 + 1e-12))
  }
})

test_that("with f fixed the fit is a plain ridge fit on normalize_quantiles output", {
  for (family in c("binomial", "gaussian")) {
    data <- simulate_suquan(80, p = 30, seed = 4, family = family)
    target <- qnorm(ppoints(30))
    fit <- suquan(data$x, data$y, family = family, method = "fixed", f_init = "normal",
                  lambda = 0.05)
    z <- normalize_quantiles(data$x, target = target)
    y01 <- if (family == "binomial") as.numeric(data$y == "high") else data$y
    ref <- reference_ridge(z, y01, 0.05, family)
    expect_equal(unname(fit$w), unname(ref$w), tolerance = 1e-6, info = family)
    expect_equal(fit$b, ref$b, tolerance = 1e-6, info = family)
    expect_equal(unname(fit$fitted), unname(colSums(ref$w * z) + ref$b), tolerance = 1e-6)
  }
})

test_that("predict reproduces the fitted link and treats ties and NA as in training", {
  data <- simulate_suquan(60, p = 30, seed = 5)
  fit <- suquan(data$x, data$y, lambda = 0.01)
  expect_identical(predict(fit, data$x), fit$fitted)
  expect_identical(predict(fit), fit$fitted)
  expect_equal(predict(fit, data$x, type = "response"), plogis(fit$fitted))
  classes <- predict(fit, data$x, type = "class")
  expect_s3_class(classes, "factor")
  expect_identical(levels(classes), c("low", "high"))

  new <- round(simulate_suquan(5, p = 30, seed = 6)$x, 1)  # many ties
  new[3, 2] <- NA
  z <- normalize_quantiles(new, target = fit$f)
  z[is.na(z)] <- (fit$f[15] + fit$f[16]) / 2  # a missing value takes the median
  expect_equal(unname(predict(fit, new)), colSums(fit$w * z) + fit$b, tolerance = 1e-12)

  shuffled <- new[sample(nrow(new)), ]
  expect_equal(predict(fit, shuffled), predict(fit, new))
  expect_error(predict(fit, new[-1, ]), "lacks 1 of the model's features")
  expect_error(predict(fit, unname(new[-1, ])), "must have 30 rows")
})

test_that("fits with 1 and 2 threads are identical", {
  data <- simulate_suquan(50, p = 30, seed = 7)
  one <- suquan(data$x, data$y, threads = 1)
  two <- suquan(data$x, data$y, threads = 2)
  one$call <- two$call <- NULL
  expect_identical(one, two)
})

test_that("labels of every kind are accepted and bad input is refused clearly", {
  data <- simulate_suquan(40, p = 20, seed = 8)
  y01 <- as.numeric(data$y == "high")
  a <- suquan(data$x, data$y, method = "fixed")
  expect_equal(suquan(data$x, y01, method = "fixed")$w, a$w)
  expect_equal(suquan(data$x, y01 == 1, method = "fixed")$w, a$w)
  # characters: classes in alphabetical order, so "low" is the positive class
  b <- suquan(as.data.frame(data$x), as.character(data$y), method = "fixed")
  expect_equal(b$w, -a$w, tolerance = 1e-8)
  expect_identical(as.character(predict(b, data$x, type = "class")),
                   as.character(predict(a, data$x, type = "class")))
  expect_error(suquan(data$x, data$y[-1]), "`y` must have one label per sample")
  expect_error(suquan(data$x, rep("a", 40)), "exactly two classes")
  expect_error(suquan(data$x, factor(rep("a", 40), levels = c("a", "b"))), "exactly two classes")
  expect_error(suquan(data$x, c(y01[-1], 2)), "only 0 and 1")
  expect_error(suquan(data$x, replace(y01, 1, NA)), "missing values")
  expect_error(suquan(matrix(letters[1:4], 2), c(0, 1)), "`x` must be a numeric")
  expect_error(suquan(data$x, data$y, family = "gaussian"), "must be numeric")
  expect_error(suquan(data$x, data$y, lambda = 0), "`lambda` must be a single finite number > 0")
  expect_error(suquan(data$x, data$y, lambda = -1), "`lambda`")
  expect_error(suquan(data$x, data$y, f_init = "uniform"), "`f_init` must be")
  expect_error(suquan(data$x, data$y, f_init = rep(0, 20)), "must not be constant")
  expect_error(suquan(data$x[1, , drop = FALSE], data$y, f_init = 0), "must not be all zeros")
  expect_error(suquan(data$x, data$y, max_iter = 0), "`max_iter` must be a whole number")
  expect_error(suquan(data$x, data$y, verbose = NA), "`verbose` must be TRUE or FALSE")
  g <- suquan(data$x, y01 * 2.5, family = "gaussian", method = "fixed")
  expect_error(predict(g, data$x, type = "class"), "for binomial fits")
})

test_that("methods print, summarize, plot and give coefficients; verbose prints", {
  data <- simulate_suquan(40, p = 20, seed = 9)
  fit <- suquan(data$x, data$y)
  expect_output(print(fit), "binomial model, method \"bnd\"")
  expect_output(print(summary(fit)), "largest weights")
  expect_named(coef(fit), c("f", "w", "b"))
  expect_identical(names(coef(fit)$w), rownames(data$x))
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(fit), fit)
  expect_silent(suquan(data$x, data$y))
  expect_output(suquan(data$x, data$y, verbose = TRUE), "objective")
  expect_equal(suquan(data$x, data$y, f_init = qnorm(ppoints(7)), method = "fixed")$f_init,
               approx(seq(0, 1, length.out = 7), qnorm(ppoints(7)), seq(0, 1, length.out = 20))$y)
})

test_that("cv_suquan chooses lambda from folds drawn with R's RNG", {
  data <- simulate_suquan(60, p = 20, seed = 10)
  set.seed(11)
  cv <- cv_suquan(data$x, data$y, lambda = c(1, 0.01), nfolds = 3, progress = FALSE)
  set.seed(11)
  again <- cv_suquan(data$x, data$y, lambda = c(1, 0.01), nfolds = 3, progress = FALSE)
  expect_identical(cv$cvm, again$cvm)
  expect_identical(cv$folds, again$folds)
  expect_true(cv$lambda_min %in% c(1, 0.01))
  expect_equal(cv$lambda_min, cv$lambda[which.min(cv$cvm)])
  expect_s3_class(cv$fit, "suquan")
  expect_equal(cv$fit$lambda, cv$lambda_min)
  # stratified folds: each fold holds both classes in proportion
  counts <- table(cv$folds, data$y)
  expect_true(all(apply(counts, 2, function(k) max(k) - min(k) <= 1)))
  expect_output(print(cv), "lambda_min")
  expect_equal(predict(cv, data$x), predict(cv$fit, data$x))
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(cv), cv)
  expect_error(cv_suquan(data$x, data$y, nfolds = 1), "`nfolds` must be between 2")
  expect_error(cv_suquan(data$x, data$y, lambda = c(1, -1)), "`lambda` must be positive")
  expect_error(cv_suquan(data$x, data$y, measure = "mse"), "needs family = \"gaussian\"")
  gaussian <- cv_suquan(data$x, as.numeric(data$y == "high") + rnorm(60, sd = 0.1),
                        family = "gaussian", lambda = c(0.1, 0.01), nfolds = 3,
                        measure = "mse", progress = FALSE)
  expect_equal(length(gaussian$cvm), 2)
})

test_that("SummarizedExperiment input uses the chosen assay", {
  skip_if_not_installed("SummarizedExperiment")
  data <- simulate_suquan(40, p = 20, seed = 12)
  se <- SummarizedExperiment::SummarizedExperiment(assays = list(raw = data$x, other = -data$x))
  fit <- suquan(se, data$y, assay = "raw", method = "fixed")
  expect_equal(fit$w, suquan(data$x, data$y, method = "fixed")$w)
  expect_equal(predict(fit, se, assay = "raw"), fit$fitted)
})
