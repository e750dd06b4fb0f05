test_that("SUQUAN recovers a non-linear quantile function and beats plain QN", {
  train <- simulate_suquan(300, seed = 1)
  test <- simulate_suquan(1000, seed = 2)
  fit <- suquan(train$x, train$y, lambda = 1e-3, rounds = Inf)
  baseline <- suquan(train$x, train$y, lambda = 1e-3, method = "fixed")
  expect_gt(cor(fit$f, train$f_true), 0.95)
  expect_gt(cor(fit$f, train$f_true), cor(fit$mean_target, train$f_true) + 0.15)
  acc_suquan <- mean(predict(fit, test$x, type = "class") == test$y)
  acc_qn <- mean(predict(baseline, test$x, type = "class") == test$y)
  expect_gt(acc_suquan, acc_qn + 0.05)
  svd <- suquan(train$x, train$y, lambda = 1e-3, method = "svd")
  expect_gt(cor(svd$f, train$f_true), cor(svd$mean_target, train$f_true) + 0.15)
})

test_that("simulation: cv_suquan beats QN + ridge when the mean target is wrong, and nearly ties when it is right", {
  skip_on_cran()  # over 5 s
  # Same folds, same lambda path: the baseline is cv_suquan with f fixed at
  # the mean quantiles (quantile normalization + ridge).
  accuracy <- function(target, seed) {
    train <- simulate_suquan(200, seed = seed, target = target)
    test <- simulate_suquan(1000, seed = seed + 1, target = target)
    set.seed(seed)
    folds <- sample(rep(1:5, length.out = 200))
    sq <- cv_suquan(train$x, train$y, folds = folds, progress = FALSE)
    qn <- cv_suquan(train$x, train$y, method = "fixed", folds = folds, progress = FALSE)
    c(suquan = mean(predict(sq, test$x, type = "class") == test$y),
      qn = mean(predict(qn, test$x, type = "class") == test$y))
  }
  step <- accuracy("step", 21)
  expect_gt(step[["suquan"]], step[["qn"]] + 0.05)
  normal <- accuracy("normal", 31)
  expect_gt(normal[["suquan"]], normal[["qn"]] - 0.02)
})

test_that("lambda is scale-free: shifted or scaled data give the same fit and the same path", {
  data <- simulate_suquan(80, p = 30, seed = 3)
  fit <- suquan(data$x, data$y)
  for (x in list(10 * data$x, data$x + 5)) {
    other <- suquan(x, data$y)
    expect_equal(other$f, fit$f, tolerance = 1e-8)
    expect_equal(other$fitted, fit$fitted, tolerance = 1e-8)
    expect_equal(other$lambda, fit$lambda, tolerance = 1e-10)
  }
  # the constraint: f is centred with mean square at most 1
  expect_equal(mean(fit$f), 0, tolerance = 1e-12)
  expect_lte(mean(fit$f^2), 1 + 1e-12)
  expect_equal(fit$f_init, standardized(fit$mean_target))

  set.seed(4)
  cv <- cv_suquan(data$x, data$y, nlambda = 6, rounds = 0:2, nfolds = 3, progress = FALSE)
  for (x in list(10 * data$x, data$x + 5)) {
    set.seed(4)
    other <- cv_suquan(x, data$y, nlambda = 6, rounds = 0:2, nfolds = 3, progress = FALSE)
    expect_equal(other$lambda, cv$lambda, tolerance = 1e-10)
    expect_equal(other$cvm, cv$cvm, tolerance = 1e-6)
    expect_identical(predict(other, x, type = "class"), predict(cv, data$x, type = "class"))
  }
})

test_that("the lambda path starts at lambda_max, computed as glmnet does, for every family", {
  for (family in c("binomial", "gaussian", "multinomial")) {
    data <- simulate_suquan(60, p = 25, seed = 5, family = family)
    Y <- if (family == "gaussian") matrix(data$y) else if (family == "binomial") {
      matrix(as.numeric(data$y == "high"))
    } else outer(as.integer(data$y), 1:3, "==") + 0
    f0 <- standardized(quantile_target(data$x)$target)
    z <- normalize_quantiles(data$x, target = f0)
    for (alpha in c(0, 0.5, 1)) {
      set.seed(6)
      cv <- cv_suquan(data$x, data$y, family = family, alpha = alpha, nlambda = 4,
                      rounds = 0, nfolds = 3, progress = FALSE)
      expect_equal(cv$lambda[1], reference_lambda_max(z, Y, alpha), tolerance = 1e-10,
                   info = paste(family, alpha))
      expect_equal(cv$fit$lambda_max, cv$lambda[1])
      # as glmnet: 1e-4 for ridge or when there are at least as many samples as
      # features, 1e-2 otherwise
      expect_equal(cv$lambda[4] / cv$lambda[1], 1e-4)
    }
    set.seed(6)
    wide <- cv_suquan(data$x[, 1:20], data$y[1:20], family = family, alpha = 1, nlambda = 4,
                      rounds = 0, nfolds = 2, progress = FALSE)
    expect_equal(wide$lambda[4] / wide$lambda[1], 1e-2)
    # the lasso: every weight is zero at lambda_max, not below it
    lmax <- reference_lambda_max(z, Y, 1)
    at_max <- suquan(data$x, data$y, family = family, method = "fixed", alpha = 1,
                     lambda = lmax * 1.001)
    expect_true(all(at_max$w == 0), info = family)
    below <- suquan(data$x, data$y, family = family, method = "fixed", alpha = 1,
                    lambda = lmax * 0.9)
    expect_gt(sum(below$w != 0), 0)
  }
})

test_that("the elastic net at alpha = 0 is the ridge fit, and equals glmnet for alpha > 0", {
  for (family in c("binomial", "gaussian")) {
    data <- simulate_suquan(80, p = 30, seed = 7, family = family)
    fit <- suquan(data$x, data$y, family = family, method = "fixed", f_init = "normal",
                  lambda = 0.05, alpha = 0)
    z <- normalize_quantiles(data$x, target = standardized(qnorm(ppoints(30))))
    y01 <- if (family == "binomial") as.numeric(data$y == "high") else data$y
    ref <- reference_ridge(z, y01, 0.05, family)
    expect_equal(unname(fit$w), unname(ref$w), tolerance = 1e-6, info = family)
    expect_equal(fit$b, ref$b, tolerance = 1e-6, info = family)
    expect_equal(unname(fit$fitted), unname(colSums(ref$w * z) + ref$b), tolerance = 1e-6)
  }
  skip_if_not_installed("glmnet")
  # penalty lambda [(1 - alpha) ||w||^2 + alpha |w|_1] is glmnet's with
  # lambda_g = lambda (2 - alpha) and alpha_g = alpha / (2 - alpha)
  for (family in c("binomial", "gaussian", "multinomial")) {
    data <- simulate_suquan(80, p = 30, seed = 8, family = family)
    # glmnet scales a gaussian response to unit variance (1/n) before fitting
    if (family == "gaussian") data$y <- data$y / sqrt(mean((data$y - mean(data$y))^2))
    z <- normalize_quantiles(data$x, target = standardized(quantile_target(data$x)$target))
    for (alpha in c(0.5, 1)) {
      lambda <- if (family == "gaussian") 0.01 else 0.005
      fit <- suquan(data$x, data$y, family = family, method = "fixed", lambda = lambda,
                    alpha = alpha)
      g <- glmnet::glmnet(t(z), data$y, family = family, alpha = alpha / (2 - alpha),
                          lambda = lambda * (2 - alpha), standardize = FALSE, thresh = 1e-14,
                          maxit = 1e6)
      w_glmnet <- if (family == "multinomial") {
        sapply(coef(g), function(b) as.numeric(b)[-1])
      } else as.numeric(coef(g))[-1]
      link_glmnet <- predict(g, t(z), type = "link")
      link <- predict(fit)
      if (family == "multinomial") {
        link_glmnet <- link_glmnet[, , 1]
        # intercepts are defined up to a common shift
        link_glmnet <- link_glmnet - rowMeans(link_glmnet)
        link <- link - rowMeans(link)
        w_glmnet <- w_glmnet - rowMeans(w_glmnet)
        expect_equal(unname(fit$w - rowMeans(fit$w)), unname(w_glmnet), tolerance = 1e-4,
                     info = paste(family, alpha))
      } else {
        expect_equal(unname(fit$w), w_glmnet, tolerance = 1e-4, info = paste(family, alpha))
      }
      expect_equal(unname(link), unname(drop(link_glmnet)), tolerance = 1e-4,
                   info = paste(family, alpha))
    }
  }
})

test_that("rounds are early stopping, and cv_suquan chooses them with lambda", {
  data <- simulate_suquan(100, p = 30, seed = 9)
  one <- suquan(data$x, data$y, lambda = 0.01, rounds = 1)
  expect_identical(one$history$round, c(0L, 1L))
  expect_identical(one$history$step, c("linear model", "quantiles"))
  expect_identical(one$iterations, 1L)
  zero <- suquan(data$x, data$y, lambda = 0.01, rounds = 0)
  expect_equal(zero$w, suquan(data$x, data$y, lambda = 0.01, method = "fixed")$w)
  three <- suquan(data$x, data$y, lambda = 0.01, rounds = 3)
  expect_equal(three$history$objective[1:2], one$history$objective)
  converged <- suquan(data$x, data$y, lambda = 0.01, rounds = Inf, tol = 1e-6, max_iter = 200)
  expect_true(converged$converged)
  expect_lt(utils::tail(converged$history$objective, 1), utils::tail(three$history$objective, 1))

  set.seed(10)
  cv <- cv_suquan(data$x, data$y, nlambda = 5, rounds = c(0, 1, 3, Inf), nfolds = 3,
                  progress = FALSE)
  expect_identical(dim(cv$cvm), c(5L, 4L, 1L))
  expect_identical(dim(cv$errors), c(3L, 5L, 4L, 1L))
  expect_equal(min(cv$cvm), cv$cvm[cv$lambda == cv$lambda_min, cv$rounds == cv$rounds_min, 1])
  expect_identical(cv$fit$rounds, cv$rounds_min)
  expect_equal(cv$fit$lambda, cv$lambda_min)
  # the path's scores are those of separate fits on the training folds
  train <- cv$folds != 1
  for (r in c(1, 2)) {
    direct <- suquan(data$x[, train], data$y[train], lambda = cv$lambda[3], rounds = cv$rounds[r])
    eta <- predict(direct, data$x[, !train])
    y01 <- as.numeric(data$y[!train] == "high")
    deviance <- 2 * mean(pmax(eta, 0) + log1p(exp(-abs(eta))) - y01 * eta)
    expect_equal(cv$errors[1, 3, r, 1], deviance, tolerance = 1e-4)
  }
})

test_that("the roughness penalty smooths f and reproduces bnd at zero", {
  data <- simulate_suquan(120, p = 40, seed = 11)
  bnd <- suquan(data$x, data$y, lambda = 0.01, rounds = 3)
  same <- suquan(data$x, data$y, lambda = 0.01, rounds = 3, smooth = 0)
  same$call <- bnd$call <- NULL
  expect_identical(same, bnd)
  converged <- suquan(data$x, data$y, lambda = 0.01, rounds = Inf, tol = 1e-7, max_iter = 300)
  tiny <- suquan(data$x, data$y, lambda = 0.01, rounds = Inf, smooth = 1e-9, tol = 1e-7,
                 max_iter = 300)
  expect_equal(utils::tail(tiny$history$objective, 1), utils::tail(converged$history$objective, 1),
               tolerance = 1e-3)
  expect_gt(cor(tiny$f, converged$f), 0.99)
  roughness <- function(f) sum(diff(f, differences = 2)^2)
  rough <- sapply(c(0, 0.01, 1), function(s) {
    roughness(suquan(data$x, data$y, lambda = 0.01, rounds = Inf, smooth = s, max_iter = 300)$f)
  })
  expect_true(all(diff(rough) < 0))
  smooth <- suquan(data$x, data$y, lambda = 0.01, rounds = 2, smooth = 0.1)
  objective <- smooth$history$objective
  expect_true(all(diff(objective) <= 1e-12 * abs(objective[-1])))
  expect_false(is.unsorted(smooth$f))
  expect_equal(mean(smooth$f), 0, tolerance = 1e-10)
  set.seed(12)
  cv <- cv_suquan(data$x, data$y, nlambda = 3, rounds = 1, smooth = c(0, 0.01), nfolds = 3,
                  progress = FALSE)
  expect_identical(dim(cv$cvm), c(3L, 1L, 2L))
  expect_true(cv$smooth_min %in% c(0, 0.01))
  expect_identical(cv$fit$smooth, cv$smooth_min)
})

test_that("the objective never increases across steps", {
  settings <- list(list(family = "binomial", alpha = 0), list(family = "gaussian", alpha = 0),
                   list(family = "multinomial", alpha = 0), list(family = "binomial", alpha = 0.5))
  for (s in settings) {
    data <- simulate_suquan(120, p = 40, seed = 13, family = s$family)
    fit <- suquan(data$x, data$y, family = s$family, alpha = s$alpha, lambda = 1e-2,
                  rounds = 12, tol = 1e-6, max_iter = 15)
    objective <- fit$history$objective
    info <- paste(s$family, s$alpha)
    expect_true(all(diff(objective) <= 1e-12 * abs(objective[-1])), info = info)
    expect_gt(nrow(fit$history), 4)
    expect_false(is.unsorted(fit$f))
    expect_lte(mean(fit$f^2), 1 + 1e-12)
  }
})

test_that("a fit that stops at its iteration budget warns, gaussian too", {
  for (family in c("binomial", "gaussian")) {
    data <- simulate_suquan(60, p = 30, seed = 14, family = family)
    expect_warning(suquan(data$x, data$y, family = family, lambda = 1e-3, rounds = Inf,
                          max_iter = 2, tol = 1e-12),
                   "did not converge within 2 iterations .*; increase `max_iter`")
    expect_no_warning(suquan(data$x, data$y, family = family, lambda = 1e-3, rounds = 2,
                             max_iter = 2))
  }
})

test_that("method svd uses a Lanczos solver, reports the gap and warns when unconverged", {
  for (family in c("binomial", "multinomial")) {
    data <- simulate_suquan(50, p = 20, seed = 15, family = family)
    fit <- suquan(data$x, data$y, family = family, method = "svd", lambda = 0.01)
    Y <- if (family == "binomial") matrix(as.numeric(data$y == "high")) else
      outer(as.integer(data$y), 1:3, "==") + 0
    dense <- svd(reference_svd_matrix(data$x, Y))
    expect_equal(fit$svd$d, dense$d[1:2], tolerance = 1e-8, info = family)
    expect_equal(fit$svd$gap, 1 - dense$d[2] / dense$d[1], tolerance = 1e-8)
    u <- dense$u[, 1] * sign(sum(dense$u[, 1] * fit$f_init))
    expect_equal(fit$f, standardized(isotonic_regression(u - mean(u))), tolerance = 1e-6)
    expect_true(fit$svd$converged)
    expect_output(print(fit), "relative gap")
  }
  data <- simulate_suquan(80, p = 60, seed = 15, family = "multinomial")
  expect_warning(fit <- suquan(data$x, data$y, family = "multinomial", method = "svd",
                               max_iter = 1),
                 "singular value decomposition did not converge within 1 iterations")
  expect_false(fit$svd$converged)
})

test_that("the multinomial family has link, response and class predictions", {
  data <- simulate_suquan(90, p = 30, seed = 16, family = "multinomial")
  fit <- suquan(data$x, data$y, family = "multinomial", lambda = 0.01, rounds = 2)
  expect_identical(dim(fit$w), c(30L, 3L))
  expect_identical(colnames(fit$w), c("low", "mid", "high"))
  expect_named(fit$b, c("low", "mid", "high"))
  link <- predict(fit, data$x)
  expect_identical(dim(link), c(90L, 3L))
  expect_equal(link, fit$fitted)
  prob <- predict(fit, data$x, type = "response")
  expect_equal(unname(rowSums(prob)), rep(1, 90))
  classes <- predict(fit, data$x, type = "class")
  expect_identical(levels(classes), c("low", "mid", "high"))
  expect_identical(as.integer(classes), unname(max.col(link)))
  expect_gt(mean(classes == data$y), 0.6)
  expect_identical(coef(fit)$w, fit$w)
  expect_output(print(fit), "multinomial model")
  expect_output(print(summary(fit)), "largest weights")
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(fit), fit)
  # two classes: the difference of the links is the binomial link at lambda / 2
  two <- simulate_suquan(60, p = 20, seed = 17)
  multi <- suquan(two$x, two$y, family = "multinomial", lambda = 0.02, rounds = 2)
  binary <- suquan(two$x, two$y, family = "binomial", lambda = 0.01, rounds = 2)
  expect_equal(unname(multi$fitted[, 2] - multi$fitted[, 1]), unname(binary$fitted),
               tolerance = 1e-4)
  set.seed(18)
  cv <- cv_suquan(data$x, data$y, family = "multinomial", nlambda = 3, rounds = 0:1,
                  nfolds = 3, measure = "class", progress = FALSE)
  expect_output(print(cv), "misclassification rate")
  expect_identical(levels(predict(cv, data$x, type = "class")), c("low", "mid", "high"))
  expect_identical(plot(cv), cv)
})

test_that("missing and duplicated feature names are refused", {
  data <- simulate_suquan(40, p = 20, seed = 19)
  x <- data$x
  rownames(x)[3] <- NA
  expect_error(suquan(x, data$y), "`x` has 1 missing row name\\(s\\) \\(row 3 is the first\\)")
  rownames(x)[3] <- "g1"
  expect_error(suquan(x, data$y), "`x` has 1 duplicated row name\\(s\\) \\(\"g1\" is the first\\)")
  expect_error(cv_suquan(x, data$y), "duplicated row name")
  fit <- suquan(data$x, data$y)
  expect_error(predict(fit, x), "`newdata` has 1 duplicated row name")
  expect_silent(suquan(unname(data$x), data$y))
})

test_that("methods reject arguments they do not use", {
  data <- simulate_suquan(60, p = 20, seed = 20)
  fit <- suquan(data$x, data$y)
  expect_error(predict(fit, newx = data$x, type = "class"), "Unknown argument `newx`")
  expect_error(coef(fit, s = 0.1), "Unknown argument `s`")
  expect_error(print(fit, digits = 3), "Unknown argument `digits`")
  expect_error(summary(fit, 1), "Unknown argument an unnamed value")
  expect_error(suquan(data$x, data$y, lamda = 1), "Unknown argument `lamda`")
  expect_error(suquan(data$x, data$y, assay = 1), "Unknown argument `assay`")
  set.seed(21)
  cv <- cv_suquan(data$x, data$y, nlambda = 3, rounds = 0:1, nfolds = 3, progress = FALSE)
  expect_error(predict(cv, newx = data$x), "Unknown argument `newx`")
  expect_error(coef(cv, exact = TRUE), "Unknown argument `exact`")
  expect_error(print(cv, digits = 3), "Unknown argument `digits`")
  expect_error(summary(cv, foo = 1), "Unknown argument `foo`")
  expect_error(cv_suquan(data$x, data$y, foldid = 1), "Unknown argument `foldid`")
})

test_that("with f fixed the fit is a plain ridge fit on normalize_quantiles output", {
  for (family in c("binomial", "gaussian")) {
    data <- simulate_suquan(80, p = 30, seed = 22, family = family)
    target <- standardized(qnorm(ppoints(30)))
    fit <- suquan(data$x, data$y, family = family, method = "fixed", f_init = "normal",
                  lambda = 0.05)
    z <- normalize_quantiles(data$x, target = target)
    y01 <- if (family == "binomial") as.numeric(data$y == "high") else data$y
    ref <- reference_ridge(z, y01, 0.05, family)
    expect_equal(unname(fit$w), unname(ref$w), tolerance = 1e-6, info = family)
    expect_equal(fit$f, target)
  }
})

test_that("predict reproduces the fitted link and treats ties and NA as in training", {
  data <- simulate_suquan(60, p = 30, seed = 23)
  fit <- suquan(data$x, data$y, lambda = 0.01)
  expect_identical(predict(fit, data$x), fit$fitted)
  expect_identical(predict(fit), fit$fitted)
  expect_equal(predict(fit, data$x, type = "response"), plogis(fit$fitted))
  classes <- predict(fit, data$x, type = "class")
  expect_s3_class(classes, "factor")
  expect_identical(levels(classes), c("low", "high"))

  new <- round(simulate_suquan(5, p = 30, seed = 24)$x, 1)  # many ties
  new[3, 2] <- NA
  z <- normalize_quantiles(new, target = fit$f)
  z[is.na(z)] <- (fit$f[15] + fit$f[16]) / 2  # a missing value takes the median
  expect_equal(unname(predict(fit, new)), colSums(fit$w * z) + fit$b, tolerance = 1e-12)

  shuffled <- new[sample(nrow(new)), ]
  expect_equal(predict(fit, shuffled), predict(fit, new))
  expect_error(predict(fit, new[-1, ]), "lacks 1 of the model's features")
  expect_error(predict(fit, unname(new[-1, ])), "must have 30 rows")
})

test_that("fits and cross-validations with 1 and 2 threads are identical", {
  data <- simulate_suquan(50, p = 30, seed = 25)
  one <- suquan(data$x, data$y, rounds = 3, threads = 1)
  two <- suquan(data$x, data$y, rounds = 3, threads = 2)
  one$call <- two$call <- NULL
  expect_identical(one, two)
  set.seed(26)
  cv1 <- cv_suquan(data$x, data$y, nlambda = 3, rounds = 0:2, nfolds = 3, threads = 1,
                   progress = FALSE)
  set.seed(26)
  cv2 <- cv_suquan(data$x, data$y, nlambda = 3, rounds = 0:2, nfolds = 3, threads = 2,
                   progress = FALSE)
  expect_identical(cv1$errors, cv2$errors)
})

test_that("labels of every kind are accepted and bad input is refused clearly", {
  data <- simulate_suquan(40, p = 20, seed = 27)
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
  expect_error(suquan(data$x, rep("a", 40), family = "multinomial"), "at least two classes")
  expect_error(suquan(data$x, c(y01[-1], 2)), "only 0 and 1")
  expect_error(suquan(data$x, replace(y01, 1, NA)), "missing values")
  expect_error(suquan(matrix(letters[1:4], 2), c(0, 1)), "`x` must be a numeric")
  expect_error(suquan(data$x, data$y, family = "gaussian"), "must be numeric")
  expect_error(suquan(data$x, data$y, family = "poisson"), "`family` must be one of")
  expect_error(suquan(data$x, data$y, lambda = 0), "`lambda` must be a single finite number > 0")
  expect_error(suquan(data$x, data$y, lambda = -1), "`lambda`")
  expect_error(suquan(data$x, data$y, alpha = 2), "`alpha` must be a single finite number")
  expect_error(suquan(data$x, data$y, rounds = 1.5), "`rounds` must be a whole number >= 0")
  expect_error(suquan(data$x, data$y, smooth = -1), "`smooth` must be")
  expect_error(suquan(data$x, data$y, f_init = "uniform"), "`f_init` must be")
  expect_error(suquan(data$x, data$y, f_init = rep(0, 20)), "must not be constant")
  expect_error(suquan(data$x[1, , drop = FALSE], data$y), "at least two features")
  expect_error(suquan(data$x, data$y, max_iter = 0), "`max_iter` must be a whole number")
  expect_error(suquan(data$x, data$y, verbose = NA), "`verbose` must be TRUE or FALSE")
  g <- suquan(data$x, y01 * 2.5, family = "gaussian", method = "fixed")
  expect_error(predict(g, data$x, type = "class"), "for classification fits")
  expect_error(cv_suquan(data$x, data$y, nfolds = 1), "`nfolds` must be between 2")
  expect_error(cv_suquan(data$x, data$y, lambda = c(1, -1)), "`lambda` must be positive")
  expect_error(cv_suquan(data$x, data$y, measure = "mse"), "needs family = \"gaussian\"")
  expect_error(cv_suquan(data$x, data$y, folds = rep(1, 40)), "`folds` must give")
  expect_error(cv_suquan(data$x, data$y, rounds = -1), "`rounds` must be whole numbers")
})

test_that("methods print, summarize, plot and give coefficients; verbose prints", {
  data <- simulate_suquan(40, p = 20, seed = 28)
  fit <- suquan(data$x, data$y)
  expect_output(print(fit), "binomial model, method \"bnd\"")
  expect_output(print(fit), "stopped after 1 round\\(s\\), as asked")
  expect_output(print(summary(fit)), "largest weights")
  expect_named(coef(fit), c("f", "w", "b"))
  expect_identical(names(coef(fit)$w), rownames(data$x))
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(fit), fit)
  expect_silent(suquan(data$x, data$y))
  expect_output(suquan(data$x, data$y, verbose = TRUE), "objective")
  expect_equal(suquan(data$x, data$y, f_init = qnorm(ppoints(7)), method = "fixed")$f_init,
               standardized(approx(seq(0, 1, length.out = 7), qnorm(ppoints(7)),
                                   seq(0, 1, length.out = 20))$y))
})

test_that("cv_suquan draws folds with R's RNG and labels its measure", {
  data <- simulate_suquan(60, p = 20, seed = 29)
  set.seed(30)
  cv <- cv_suquan(data$x, data$y, nlambda = 4, rounds = 0:1, nfolds = 3, progress = FALSE)
  set.seed(30)
  again <- cv_suquan(data$x, data$y, nlambda = 4, rounds = 0:1, nfolds = 3, progress = FALSE)
  expect_identical(cv$cvm, again$cvm)
  expect_identical(cv$folds, again$folds)
  expect_s3_class(cv$fit, "suquan")
  # stratified folds: each fold holds both classes in proportion
  counts <- table(cv$folds, data$y)
  expect_true(all(apply(counts, 2, function(k) max(k) - min(k) <= 1)))
  expect_output(print(cv), "binomial deviance")
  expect_output(print(summary(cv)), "Fit on all samples")
  expect_equal(predict(cv, data$x), predict(cv$fit, data$x))
  expect_identical(coef(cv), coef(cv$fit))
  # given folds are used as they are
  given <- cv_suquan(data$x, data$y, nlambda = 4, rounds = 0:1, folds = cv$folds,
                     progress = FALSE)
  expect_identical(given$cvm, cv$cvm)
  pdf(NULL)
  on.exit(dev.off())
  expect_identical(plot(cv), cv)
  expect_identical(diffrank:::measure_label("class", "binomial"), "misclassification rate")
  expect_identical(diffrank:::measure_label("deviance", "gaussian"), "mean squared error")
  gaussian <- cv_suquan(data$x, as.numeric(data$y == "high") + rnorm(60, sd = 0.1),
                        family = "gaussian", nlambda = 3, rounds = 0:1, nfolds = 3,
                        measure = "mse", progress = FALSE)
  expect_identical(dim(gaussian$cvm), c(3L, 2L, 1L))
  expect_output(print(gaussian), "mean squared error")
  # methods "svd" and "fixed" have no rounds to choose
  for (method in c("svd", "fixed")) {
    other <- cv_suquan(data$x, data$y, method = method, nlambda = 3, nfolds = 3,
                       progress = FALSE)
    expect_identical(other$rounds, 0)
    expect_identical(other$fit$method, method)
  }
})

test_that("SummarizedExperiment input and newdata use assay.type", {
  skip_if_not_installed("SummarizedExperiment")
  data <- simulate_suquan(40, p = 20, seed = 31)
  se <- SummarizedExperiment::SummarizedExperiment(assays = list(raw = data$x, other = -data$x))
  fit <- suquan(se, data$y, assay.type = "raw", method = "fixed")
  expect_equal(fit$w, suquan(data$x, data$y, method = "fixed")$w)
  expect_equal(predict(fit, se, assay.type = "raw"), fit$fitted)
  expect_false(isTRUE(all.equal(predict(fit, se, assay.type = "other"), fit$fitted)))
  expect_error(suquan(se, data$y, assay.type = "missing"), "`assay.type` must name one")
  set.seed(32)
  cv <- cv_suquan(se, data$y, assay.type = 2L, nlambda = 3, rounds = 0:1, nfolds = 3,
                  progress = FALSE)
  set.seed(32)
  plain <- cv_suquan(-data$x, data$y, nlambda = 3, rounds = 0:1, nfolds = 3, progress = FALSE)
  expect_identical(cv$cvm, plain$cvm)
  expect_equal(predict(cv, se, assay.type = "other", type = "response"),
               predict(plain, -data$x, type = "response"))
})

test_that("cv_suquan extends the path when the best lambda is at its end, and says so when it stays there", {
  data <- simulate_suquan(60, p = 20, seed = 44)
  set.seed(44)
  expect_silent(cv <- cv_suquan(data$x, data$y, nlambda = 8, lambda_min_ratio = 0.01,
                                rounds = 0:1, nfolds = 3, progress = FALSE))
  # the first path (8 values down to 0.01 x lambda_max) ends at the best
  # value: it is followed further down, with the same spacing, two values
  # (a quarter of its length) at a time, until the best value is inside
  expect_gt(cv$extended, 0L)
  expect_identical(cv$extended %% 2L, 0L)
  expect_length(cv$lambda, 8L + cv$extended)
  ratios <- cv$lambda / cv$lambda_max
  expect_equal(ratios, 0.01^((seq_along(ratios) - 1) / 7), tolerance = 1e-12)
  expect_lt(ratios[8], 0.01 + 1e-12)
  expect_lt(match(cv$lambda_min, cv$lambda), length(cv$lambda))
  expect_gt(match(cv$lambda_min, cv$lambda), 8L)
  expect_identical(dim(cv$cvm), c(length(cv$lambda), 2L, 1L))
  # the same measures as a path given in full on the same folds
  expect_message(given <- cv_suquan(data$x, data$y, lambda = cv$lambda, rounds = 0:1,
                                    folds = cv$folds, progress = FALSE), NA)
  expect_equal(given$cvm, cv$cvm, tolerance = 1e-6)
  expect_identical(given$extended, 0L)
  expect_output(print(cv), "the path was extended by")

  # without extension, or with the path given, a message says that the best
  # value is at the end of the path
  expect_message(short <- cv_suquan(data$x, data$y, nlambda = 8, lambda_min_ratio = 0.01,
                                    rounds = 0:1, folds = cv$folds, extend = FALSE,
                                    progress = FALSE),
                 "best at the smallest lambda of the path \\(0.01 x lambda_max\\)")
  expect_identical(short$extended, 0L)
  expect_identical(short$lambda, cv$lambda[1:8])
  expect_identical(short$lambda_min, cv$lambda[8])
  expect_message(cv_suquan(data$x, data$y, lambda = cv$lambda[1:8], rounds = 0:1,
                           folds = cv$folds, progress = FALSE), "smaller `lambda_min_ratio`")
  # an extension that reaches its limit (as many values again) says so too
  expect_message(far <- cv_suquan(data$x, data$y, nlambda = 4, lambda_min_ratio = 0.5,
                                  rounds = 0:1, folds = cv$folds, progress = FALSE),
                 "\\(0.198 x lambda_max\\), after extending the path by 4 values")
  expect_identical(far$extended, 4L)
  expect_identical(far$lambda_min, far$lambda[8])
})

test_that("lambda_1se is the largest lambda within one standard error of the best", {
  data <- simulate_suquan(60, p = 20, seed = 45)
  for (measure in c("deviance", "class", "auc")) {
    set.seed(46)
    cv <- cv_suquan(data$x, data$y, nlambda = 12, lambda_min_ratio = 1e-4, rounds = 0:2,
                    nfolds = 4, measure = measure, progress = FALSE)
    sign <- if (measure == "auc") -1 else 1
    best <- arrayInd(which.min(sign * cv$cvm), dim(cv$cvm))
    expect_identical(cv$lambda_min, cv$lambda[best[1]])
    expect_identical(cv$rounds_min, cv$rounds[best[2]])
    curve <- sign * cv$cvm[, best[2], 1]
    bound <- curve[best[1]] + cv$cvsd[best[1], best[2], 1]
    expected <- max(cv$lambda[curve <= bound])
    expect_identical(cv$lambda_1se, expected)
    expect_gte(cv$lambda_1se, cv$lambda_min)
    # no larger lambda of the path is within one standard error
    expect_true(all(curve[cv$lambda > cv$lambda_1se] > bound))
    expect_identical(cv$fit_1se$lambda, cv$lambda_1se)
    expect_identical(cv$fit_1se$rounds, cv$rounds_min)
  }
  # here the rule picks a larger lambda than the best
  expect_gt(cv$lambda_1se, cv$lambda_min)
})

test_that("the AUC measure is the brute-force AUC of every test fold", {
  data <- simulate_suquan(48, p = 20, seed = 47)
  set.seed(48)
  cv <- cv_suquan(data$x, data$y, nlambda = 5, lambda_min_ratio = 1e-3, rounds = 0:1,
                  nfolds = 4, measure = "auc", extend = FALSE, progress = FALSE)
  brute_auc <- function(score, positive) {
    pairs <- outer(score[positive], score[!positive], "-")
    mean((pairs > 0) + 0.5 * (pairs == 0))
  }
  for (k in 1:4) {
    train <- cv$folds != k
    for (l in c(2, 4)) {
      for (r in 0:1) {
        fit <- suquan(data$x[, train], data$y[train], lambda = cv$lambda[l], rounds = r,
                      tol = 1e-8)
        score <- predict(fit, data$x[, !train])
        expect_equal(cv$errors[k, l, r + 1, 1], brute_auc(score, data$y[!train] == "high"),
                     tolerance = 1e-12)
      }
    }
  }
  # ties count one half
  expect_identical(diffrank:::auc_score(c(1, 2, 2, 3, 0), c(0, 1, 0, 1, 0)),
                   brute_auc(c(1, 2, 2, 3, 0), c(0, 1, 0, 1, 0) == 1))
  expect_identical(cv$cvm[, , 1],
                   apply(cv$errors, c(2, 3), weighted.mean, w = tabulate(cv$folds)))
  # the largest AUC is the best, and the table and print say AUC
  expect_identical(cv$lambda_min, cv$lambda[arrayInd(which.max(cv$cvm), dim(cv$cvm))[1]])
  expect_output(print(cv), "AUC")
})

test_that("predict() and coef() of cv_suquan use the fit that `s` names", {
  data <- simulate_suquan(60, p = 20, seed = 45)
  set.seed(46)
  cv <- cv_suquan(data$x, data$y, nlambda = 12, lambda_min_ratio = 1e-4, rounds = 0:2,
                  nfolds = 4, measure = "auc", progress = FALSE)
  expect_gt(cv$lambda_1se, cv$lambda_min)
  one_se <- suquan(data$x, data$y, lambda = cv$lambda_1se, rounds = cv$rounds_min)
  best <- suquan(data$x, data$y, lambda = cv$lambda_min, rounds = cv$rounds_min)
  for (type in c("link", "response", "class")) {
    expect_identical(predict(cv, data$x, type = type), predict(best, data$x, type = type))
    expect_identical(predict(cv, data$x, type = type, s = "lambda_min"),
                     predict(best, data$x, type = type))
    expect_identical(predict(cv, data$x, type = type, s = "lambda_1se"),
                     predict(one_se, data$x, type = type))
    expect_identical(predict(cv, data$x, type = type, s = "lambda.1se"),
                     predict(one_se, data$x, type = type))
  }
  expect_false(isTRUE(all.equal(predict(cv, data$x, s = "lambda_1se"), predict(cv, data$x))))
  expect_identical(coef(cv, s = "lambda_1se"), coef(one_se))
  expect_identical(coef(cv, s = "lambda.min"), coef(best))
  expect_identical(coef(cv), coef(best))
  expect_output(print(cv), "lambda_1se = ")
})

test_that("cv_suquan's new arguments are checked", {
  data <- simulate_suquan(40, p = 20, seed = 49)
  set.seed(49)
  cv <- cv_suquan(data$x, data$y, nlambda = 3, rounds = 0, nfolds = 3, progress = FALSE)
  expect_error(predict(cv, data$x, s = "lambda.max"),
               "`s` must be one of \"lambda_min\", \"lambda_1se\"")
  expect_error(predict(cv, data$x, s = 0.1), "`s` must be one of")
  expect_error(coef(cv, s = c("lambda_min", "lambda_1se", "x")), "`s` must be one of")
  old <- cv
  old$fit_1se <- NULL
  expect_error(predict(old, data$x, s = "lambda_1se"), "no fit at `lambda_1se`")
  expect_error(cv_suquan(data$x, data$y, measure = "AUC"), "`measure` must be one of")
  expect_error(cv_suquan(data$x, as.numeric(data$y == "high"), family = "gaussian",
                         measure = "auc"), "needs family = \"binomial\", not \"gaussian\"")
  three <- factor(rep(c("a", "b", "c"), length.out = 40))
  expect_error(cv_suquan(data$x, three, family = "multinomial", measure = "auc"),
               "needs family = \"binomial\"")
  # a test fold with one class has no AUC
  folds <- rep(1:2, length.out = 40)
  folds[which(data$y == "high")[1:3]] <- 3L
  expect_error(cv_suquan(data$x, data$y, measure = "auc", folds = folds),
               "needs both classes in every fold; fold 3 has only \"high\"")
  expect_error(cv_suquan(data$x, data$y, extend = NA), "`extend` must be TRUE or FALSE")
})

test_that("the extension stops where every training fold is fit almost perfectly, as glmnet's path does", {
  set.seed(1)
  x <- matrix(rnorm(100 * 40), 100, 40, dimnames = list(paste0("g", 1:100), NULL))
  y <- factor(ifelse(seq_len(40) %% 2 == 0, "a", "b"))
  x[1:10, y == "a"] <- x[1:10, y == "a"] + 6
  set.seed(1)
  expect_message(cv <- cv_suquan(x, y, nlambda = 8, lambda_min_ratio = 1e-4, rounds = 0:1,
                                 nfolds = 4, progress = FALSE),
                 "by 4 values; there every training fold is fit almost perfectly")
  expect_identical(cv$extended, 4L)
  expect_identical(cv$lambda_min, cv$lambda[12])
  # the share of the null deviance explained on the training samples of each
  # fold, at the best rounds: at least 99.9 % at the end of the path, not
  # everywhere at the end of the first path (or it would not have been extended)
  explained <- function(l) {
    vapply(1:4, function(k) {
      train <- cv$folds != k
      fit <- suquan(x[, train], y[train], lambda = cv$lambda[l], rounds = cv$rounds_min,
                    tol = 1e-8)
      y01 <- as.numeric(y[train] == "b")
      eta <- predict(fit, x[, train])
      deviance <- 2 * mean(log1p(exp(eta)) - y01 * eta)
      share <- mean(y01)
      1 - deviance / (-2 * (share * log(share) + (1 - share) * log(1 - share)))
    }, 0)
  }
  expect_true(all(explained(12) >= 0.999))
  expect_false(all(explained(8) >= 0.999))
})

test_that("the SummarizedExperiment methods take a colData column name as labels", {
  skip_if_not_installed("SummarizedExperiment")
  x <- all_leukemia$expr[1:200, ]
  type <- all_leukemia$pheno$type
  se <- SummarizedExperiment::SummarizedExperiment(list(expr = x),
                                                   colData = data.frame(type = type))
  expect_equal(coef(suquan(se, "type"))$w, coef(suquan(x, type))$w)
  expect_error(suquan(se, "lineage"), "`y` names no column of colData")
  folds <- rep(1:3, length.out = ncol(x))
  expect_equal(suppressMessages(cv_suquan(se, "type", folds = folds, rounds = 0))$lambda_min,
               suppressMessages(cv_suquan(x, type, folds = folds, rounds = 0))$lambda_min)
})
