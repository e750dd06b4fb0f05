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

# The help pages say what is true of themselves: formulas have a plain-text
# form (text help renders a one-argument \eqn{} or \deqn{} as raw LaTeX, such
# as "lambda<=ft("), every "see the section X" names a section of the page
# (or of the page it names), and every argument named in "when `arg` is
# NULL" (TRUE, FALSE, given) is an argument of the page.
test_that("help pages render formulas as text and refer to what they contain", {
  skip_on_cran()
  db <- tools::Rd_db("diffrank")
  pages <- c("perturbed.Rd", "fy_loss.Rd", "rank_regression.Rd", "soft_topk_loss.Rd", "qmf.Rd",
             "qmf-methods.Rd", "sinkhorn_rank.Rd", "sinkhorn_rank_fn.Rd",
             "sinkhorn_normalize.Rd", "soft_quantile_loss.Rd", "normalize_quantiles_groups.Rd",
             "qsmooth_weights.Rd", "normalize_quantiles_robust.Rd", "robust_weights.Rd",
             "diffrank_operator.Rd", "soft_rank.Rd", "soft_rank_fn.Rd", "spearman_loss.Rd",
             "plot_soft_path.Rd", "suquan.Rd", "cv_suquan.Rd", "quantile_target.Rd",
             "plot_qsmooth_weights.Rd", "rank_svm.Rd")
  expect_true(all(pages %in% names(db)))
  one_argument_formulas <- function(rd) {
    found <- character()
    walk <- function(x) {
      tag <- attr(x, "Rd_tag")
      if (!is.null(tag) && tag %in% c("\\eqn", "\\deqn") && length(x) < 2L) {
        found <<- c(found, paste(unlist(x), collapse = ""))
      }
      if (is.list(x)) for (e in x) walk(e)
    }
    walk(rd)
    found
  }
  tagged <- function(rd, tag) Filter(function(e) identical(attr(e, "Rd_tag"), tag), rd)
  for (page in pages) {
    rd <- db[[page]]
    expect_identical(one_argument_formulas(rd), character(), label = page)
    plain <- list(underline_titles = FALSE)
    text <- paste(utils::capture.output(tools::Rd2txt(rd, options = plain)), collapse = " ")
    text <- gsub("\\s+", " ", text)
    expect_false(grepl("<=ft|\\\\(frac|left|right|varepsilon|theta|lambda|langle)\\b", text),
                 label = page)
    sections <- vapply(tagged(rd, "\\section"), function(e) {
      paste(unlist(e[[1L]]), collapse = "")
    }, "")
    pattern <- "(?i)see the section [A-Z][A-Za-z -]*?[A-Za-z](?=[.,;:)]| of)( of)?"
    refs <- regmatches(text, gregexpr(pattern, text, perl = TRUE))[[1L]]
    own <- sub("(?i)see the section ", "", refs[!grepl(" of$", refs)], perl = TRUE)
    expect_true(all(own %in% sections), label = sprintf("%s: sections %s", page,
                                                        paste(own, collapse = ", ")))
    arguments <- unlist(lapply(tagged(tagged(rd, "\\arguments")[[1L]], "\\item"), function(e) {
      trimws(strsplit(paste(unlist(e[[1L]]), collapse = ""), ",")[[1L]])
    }))
    # (quotes are plain under testthat, curly in a UTF-8 session)
    named <- regmatches(text, gregexpr(
      "when ['\u2018][A-Za-z_.]+['\u2019] is (not )?['\u2018]?(NULL|TRUE|FALSE|given|missing)",
      text))[[1L]]
    named <- gsub("^when ['\u2018]|['\u2019] is .*$", "", named)
    expect_true(all(named %in% arguments), label = sprintf("%s: arguments %s", page,
                                                           paste(named, collapse = ", ")))
  }
})
