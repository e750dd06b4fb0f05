# Shapes and containers shared by every family: the shape of a user's input
# and outputs shaped like it, and the SummarizedExperiment helpers (assay in,
# assay out).

# The shape of an operator's input: a vector of length n or an n x ncol
# matrix (each column one problem), with its names or dimnames, so that
# gradients come back shaped like the user's x.
input_shape <- function(x, m) {
  vector_x <- is.null(dim(x)) && !is.data.frame(x)
  list(vector = vector_x, nrow = nrow(m), ncol = ncol(m),
       names = if (vector_x) names(x) else NULL,
       dimnames = if (vector_x) NULL else dimnames(m),
       what = if (vector_x) sprintf("a vector of length %d", nrow(m))
              else sprintf("a %d x %d matrix, column by column", nrow(m), ncol(m)))
}

# A plain vector or matrix of rows x shape$ncol values in the shape of the
# input: a vector for a vector, else a matrix with the input's column names
# and, when `row_names`, its row names.
shape_like_input <- function(out, shape, row_names = TRUE) {
  if (shape$vector) {
    out <- as.vector(out)
    if (row_names && !is.null(shape$names)) names(out) <- shape$names
    return(out)
  }
  # no column: the rows are those of the input (a p x 0 matrix keeps its p rows)
  rows <- if (shape$ncol > 0L) length(out) %/% shape$ncol else if (is.null(shape$nrow)) 0L else shape$nrow
  dim(out) <- c(rows, shape$ncol)
  dn <- shape$dimnames
  if (!row_names && !is.null(dn)) dn[1L] <- list(NULL)
  if (!is.null(dn) && !all(vapply(dn, is.null, TRUE))) dimnames(out) <- dn
  out
}

# The output of a function that keeps the shape of x (a vector for a vector,
# else a matrix), with x's names or dimnames.
restore_shape <- function(out, x, m) {
  shape_like_input(out, input_shape(x, m))
}

# The assay `assay.type` of a SummarizedExperiment as a matrix with dimnames;
# with `blocks`, a DelayedMatrix or sparse assay as it is, for the functions
# that process it block by block (R/blocks.R), and else realized only within
# the memory limit of ?diffrank_blocks.
se_assay <- function(x, assay.type, blocks = FALSE) {
  if (!requireNamespace("SummarizedExperiment", quietly = TRUE)) {
    abort("The SummarizedExperiment package is needed for this method.")
  }
  names <- SummarizedExperiment::assayNames(x)
  n <- length(SummarizedExperiment::assays(x))
  ok <- length(assay.type) == 1L && !is.na(assay.type) &&
    ((is.character(assay.type) && assay.type %in% names) ||
       (is.numeric(assay.type) && assay.type >= 1 && assay.type <= n &&
          assay.type == round(assay.type)))
  if (!ok) {
    abort("`assay.type` must name one of the object's %d assays (%s), not %s.", n,
          paste(names, collapse = ", "), describe(assay.type))
  }
  a <- SummarizedExperiment::assay(x, assay.type, withDimnames = TRUE)
  if (is_block_input(a)) {
    if (blocks) return(a)
    return(realize_block_input(a, "x", "this function needs the whole assay in memory."))
  }
  as.matrix(a)
}

# x with one more assay, `name`, holding `values` (a matrix of x's shape).
se_add_assay <- function(x, name, values) {
  if (!is.character(name) || length(name) != 1L || is.na(name) || !nzchar(name)) {
    abort("`name` must be a single assay name, not %s.", describe(name))
  }
  SummarizedExperiment::assay(x, name, withDimnames = FALSE) <- values
  x
}
