# Every differentiable family checked through the same contract
# (helper-operators.R). A new family adds its rows here.

test_that("soft ranks and sorts follow the operator contract", {
  set.seed(40)
  x <- rnorm(9)
  for (reg in c("l2", "kl")) {
    for (decreasing in c(FALSE, TRUE)) {
      for (scale in c("spacing", "none")) {
        eps <- if (scale == "none") 0.3 else 3
        label <- paste("soft", reg, decreasing, scale)
        expect_operator_contract(
          function(z) soft_rank_fn(z, eps, reg, decreasing, scale), x,
          function(z) soft_rank(z, eps, reg, decreasing, scale),
          function(z, v) soft_rank_vjp(z, v, eps, reg, decreasing, scale),
          label = paste(label, "rank"))
        sort_eps <- if (scale == "none") 2 else 0.05
        expect_operator_contract(
          function(z) soft_sort_fn(z, sort_eps, reg, decreasing, scale), x,
          function(z) soft_sort(z, sort_eps, reg, decreasing, scale),
          function(z, v) soft_sort_vjp(z, v, sort_eps, reg, decreasing, scale),
          label = paste(label, "sort"))
      }
    }
  }
})

test_that("the Sinkhorn operators follow the operator contract", {
  set.seed(41)
  x <- rnorm(8)
  tol <- 1e-13
  tw <- c(1, 2, 3, 2, 1)
  expect_operator_contract(
    function(z) sinkhorn_rank_fn(z, eps = 0.05, n_targets = 5, target_weights = tw, tol = tol),
    x, function(z) sinkhorn_rank(z, eps = 0.05, n_targets = 5, target_weights = tw, tol = tol),
    function(z, v) sinkhorn_rank_vjp(z, v, eps = 0.05, n_targets = 5, target_weights = tw,
                                     tol = tol),
    inputs = list(target_weights = list(value = tw, make = function(w) {
      sinkhorn_rank_fn(x, eps = 0.05, n_targets = 5, target_weights = w, tol = tol)
    })), label = "sinkhorn_rank")
  expect_operator_contract(
    function(z) sinkhorn_rank_fn(z, eps = 0.05, decreasing = TRUE, tol = tol), x,
    function(z) sinkhorn_rank(z, eps = 0.05, decreasing = TRUE, tol = tol),
    function(z, v) sinkhorn_rank_vjp(z, v, eps = 0.05, decreasing = TRUE, tol = tol),
    label = "sinkhorn_rank decreasing")
  expect_operator_contract(
    function(z) sinkhorn_cdf_fn(z, eps = 0.05, weights = 1:8, tol = tol), x,
    function(z) sinkhorn_cdf(z, eps = 0.05, weights = 1:8, tol = tol),
    function(z, v) sinkhorn_cdf_vjp(z, v, eps = 0.05, weights = 1:8, tol = tol),
    label = "sinkhorn_cdf")
  expect_operator_contract(
    function(z) sinkhorn_sort_fn(z, eps = 0.03, decreasing = TRUE, tol = tol), x,
    function(z) sinkhorn_sort(z, eps = 0.03, decreasing = TRUE, tol = tol),
    function(z, v) sinkhorn_sort_vjp(z, v, eps = 0.03, decreasing = TRUE, tol = tol),
    label = "sinkhorn_sort")
  expect_operator_contract(
    function(z) sinkhorn_quantile_fn(z, probs = c(0, 0.3, 1), width = 0.2, eps = 0.05, tol = tol),
    x, function(z) sinkhorn_quantile(z, probs = c(0, 0.3, 1), width = 0.2, eps = 0.05, tol = tol),
    function(z, v) sinkhorn_quantile_vjp(z, v, probs = c(0, 0.3, 1), width = 0.2, eps = 0.05,
                                         tol = tol),
    label = "sinkhorn_quantile")
  expect_operator_contract(
    function(z) soft_topk_fn(z, k = 3, eps = 0.03, tol = tol), x,
    function(z) soft_topk(z, k = 3, eps = 0.03, tol = tol),
    function(z, v) soft_topk_vjp(z, v, k = 3, eps = 0.03, tol = tol), label = "soft_topk")
  target <- c(2, 9, 4, 1)
  expect_operator_contract(
    function(z) sinkhorn_normalize_fn(z, target = target, target_weights = 1:4, eps = 0.05,
                                      scale = "none", tol = tol),
    x, function(z) sinkhorn_normalize(z, target = target, target_weights = 1:4, eps = 0.05,
                                      scale = "none", tol = tol),
    function(z, v) sinkhorn_normalize_vjp(z, v, target = target, target_weights = 1:4,
                                          eps = 0.05, scale = "none", tol = tol),
    inputs = list(
      target = list(value = target, make = function(t) {
        sinkhorn_normalize_fn(x, target = t, target_weights = 1:4, eps = 0.05, scale = "none",
                              tol = tol)
      }),
      target_weights = list(value = 1:4 + 0, make = function(w) {
        sinkhorn_normalize_fn(x, target = target, target_weights = w, eps = 0.05,
                              scale = "none", tol = tol)
      })),
    label = "sinkhorn_normalize")
})

test_that("an operator's state does not survive saveRDS()", {
  op <- soft_rank_fn(c(0.1, 0.5, 0.3))
  path <- tempfile(fileext = ".rds")
  saveRDS(op, path)
  back <- readRDS(path)
  expect_identical(back$value, op$value)
  expect_error(back$vjp(c(1, 0, 0)), "saved and reloaded")
  op <- sinkhorn_rank_fn(c(0.1, 0.5, 0.3))
  saveRDS(op, path)
  expect_error(readRDS(path)$vjp(c(1, 0, 0)), "saved and reloaded")
})

test_that("perturbed optimizers follow the operator contract", {
  x <- c(0.3, -0.2, 1.1, 0.9, 0.4)
  for (solver in c("argmax", "rank", "sort")) {
    for (noise in c("normal", "gumbel")) {
      seeded <- function(f) function(...) withr::with_seed(42, f(...))
      expect_operator_contract(
        seeded(function(z) perturbed_fn(z, solver, eps = 0.5, n_samples = 50, noise = noise)),
        x, seeded(function(z) perturbed_fn(z, solver, eps = 0.5, n_samples = 50,
                                          noise = noise)$value),
        seeded(function(z, v) perturbed_vjp(z, v, solver, eps = 0.5, n_samples = 50,
                                           noise = noise)),
        finite_differences = FALSE, label = paste("perturbed", solver, noise))
    }
  }
})

test_that("a Sinkhorn value can serve as a direction", {
  op <- sinkhorn_rank_fn(c(0.3, 1.2, 1.25, -0.7), eps = 0.05)
  expect_equal(op$vjp(op$value), op$vjp(as.vector(op$value)))
})
