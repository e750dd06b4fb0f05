# Direct calls of the Sinkhorn glue (src/sinkhorn.cpp) for tests that need the
# plan, the unrolled reference or solver settings that the R functions do not
# expose.
sinkhorn_problem <- function(y, b, w = NULL) {
  list(y = y, b = b, w = w, cumsum = FALSE, rows = NULL)
}

sinkhorn_options <- function(eps, tol = 1e-9, max_iter = 1000L, squash = TRUE, ...) {
  list(eps = eps, power = 2, tol = tol, max_iter = as.integer(max_iter),
       scale = if (squash) "squash" else "none", progress = FALSE, ...)
}

plan_cpp <- function(x, a, y, b, eps, tol = 1e-9, max_iter = 1000L) {
  fit <- diffrank:::sinkhorn_forward_cpp(as.matrix(x), a, "plan", list(sinkhorn_problem(y, b)),
                                         sinkhorn_options(eps, tol, max_iter), 1L)
  matrix(fit$value, length(x), length(y))
}

# The forward pass of one problem ("rank"-like row kind when w is given, else
# "sort"); returns the value, convergence and the state for sinkhorn_vjp_cpp.
forward_cpp <- function(x, a, y, b, w, eps, tol, max_iter, ...) {
  diffrank:::sinkhorn_forward_cpp(as.matrix(x), a, if (is.null(w)) "sort" else "normalize",
                                  list(sinkhorn_problem(y, b, w)),
                                  sinkhorn_options(eps, tol, max_iter, ...), 1L)
}
