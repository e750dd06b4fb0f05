# Block processing of data that live outside ordinary R matrices: a
# DelayedMatrix (in memory or on disk, e.g. an HDF5Matrix) or a sparse Matrix
# is read in column blocks of DelayedArray's block grid, each block goes
# through the same C++ entry points as an in-memory matrix, and results are
# written block by block to a realization sink. Blocks (and kernel tiles) can
# be spread over the workers of a BiocParallel back-end. Ordinary matrices
# never come here: their path is unchanged.

#' Large data: DelayedArray, HDF5 files, sparse matrices and BiocParallel
#'
#' Data too large for memory, kept in an HDF5 file (an `HDF5Matrix` of
#' HDF5Array, or a `SummarizedExperiment` whose assay is one) or in any other
#' `DelayedMatrix`, are processed in column blocks: they are never realized
#' whole in memory. The functions that process them in blocks are
#' [normalize_quantiles()], [normalize_quantiles_robust()],
#' [normalize_quantiles_groups()], [robust_weights()], [qsmooth_weights()],
#' [quantile_target()] and its [predict()] method, [sinkhorn_normalize()],
#' [kendall_kernel()], [mallows_kernel()], [weighted_kendall_kernel()], and
#' [suquan()] and the [predict()] methods of its fits. The fits that need
#' their data whole, [qmf()], [cv_suquan()] and [rank_regression()], and
#' [predict()] of a [qmf()] or [rank_regression()] fit, take the same inputs
#' and realize them in memory (see the section Blocks). The results are identical (`identical()`) to those of the same functions on
#' the data as an ordinary matrix, missing values and ties included, for any
#' block size and any `BPPARAM`.
#'
#' @section Blocks:
#' The blocks are groups of whole columns (samples), as many as fit in
#' `DelayedArray::getAutoBlockSize()` bytes as doubles (100 MB by default;
#' change it with `DelayedArray::setAutoBlockSize()`), on
#' `DelayedArray::colAutoGrid()`. The number of columns is rounded down to
#' whole chunks of the data's storage when a block holds at least one chunk
#' of columns (so that no chunk is read twice), else to a multiple of 16.
#' Peak
#' memory is a few blocks per process, plus what the result needs, on top of
#' the R session (with DelayedArray and HDF5Array loaded, about 400 MB). In
#' such a session R would let hundreds of MB of garbage build up between two
#' of its collections, so the block passes collect it as they go (a
#' young-generation `gc()` after every 16 MB of blocks, about 10 ms):
#' * [normalize_quantiles()] reads the data twice: a first pass sorts every
#'   block and adds its quantiles to the sums of the mean target (exact sums,
#'   as in the in-memory function: the target is the exact mean rounded once,
#'   identical to the last bit for any blocks and workers); a second pass normalizes
#'   each block to the target and writes it. [quantile_target()] needs the
#'   first pass only, `predict()` of a target and a given `target` the second
#'   only. [sinkhorn_normalize()] does the same with its Sinkhorn solver on each
#'   block; its result has no convergence attributes (a warning says when some
#'   columns did not converge).
#' * The kernels are computed in tiles: the kernel matrix between the columns
#'   of block I and those of block J (J >= I for a symmetric matrix), each
#'   tile reading and ranking its two blocks. The kernel matrix itself (samples
#'   x samples) is in memory.
#' * [normalize_quantiles_robust()] (and [robust_weights()]) reads the data
#'   once for the samples' means and variances (twice for values beyond
#'   `2^256` in size, which are scaled by a power of two), once for the
#'   weighted target (running long double sums) and once to write the
#'   result; with `trim > 0` the samples' quantile functions are held in
#'   memory at once (the size of the data, within the limit below).
#' * [normalize_quantiles_groups()] (and [qsmooth_weights()]) reads the data
#'   once for the global and group references, once more for the weights
#'   (`SST`, when `weight` is `NULL`) and once to write the result; each
#'   pass adds to exact running sums, so the weights and values are those of
#'   the in-memory function to the last bit.
#' * [suquan()] computes the positions (ranks) of the samples block by block;
#'   the fit then holds them in memory (as many values as the data), as the
#'   in-memory fit does. `predict()` of a fit computes positions and links
#'   block by block.
#' * `predict()` of a [qmf()] fit solves the new samples jointly with the
#'   training samples (each row's quantiles pool all of them): the new data
#'   are realized in memory, within the limit below.
#' * [qmf()], [cv_suquan()] and [rank_regression()] need their data whole:
#'   their fits are iterative and go over all of the data at every step. A
#'   `DelayedMatrix` (an `HDF5Matrix`, or the HDF5-backed assay of a
#'   `SummarizedExperiment`) or sparse `x` is realized as an ordinary double
#'   matrix within the limit below, and the fit is identical to that on
#'   `as.matrix(x)`; beyond the limit an error names its size and the
#'   option. They have no `BPPARAM` or `filepath`, and giving either is an
#'   error that says so. `predict()` of a [rank_regression()] fit realizes
#'   block `newdata` the same way; `predict()` of a [cv_suquan()] fit
#'   processes it in column blocks as [suquan()]'s does, and takes
#'   `BPPARAM`.
#'
#' @section Where results go:
#' The normalizers return a `DelayedMatrix` for a block input (and a
#' `SummarizedExperiment` method adds it as the new assay), written to
#' * the HDF5 file `filepath` when it is given (the dataset gets a new name
#'   from `HDF5Array::getHDF5DumpName()`);
#' * else the realization backend set with
#'   `DelayedArray::setAutoRealizationBackend()`, when one is set;
#' * else, when the input is stored on disk, an HDF5 file in HDF5Array's dump
#'   directory (`HDF5Array::getHDF5DumpFile()`);
#' * else memory (an in-memory `DelayedMatrix`).
#'
#' HDF5 results are stored in the input's chunks when it has chunks of a
#' moderate size, else in chunks of HDF5Array's default volume
#' (`HDF5Array::getHDF5DumpChunkLength()`) and shape, whose number of columns
#' divides the block width: every block writes whole chunks once, and reading
#' a few rows or columns of the result costs about as much as of the input.
#'
#' @section Workers (BPPARAM):
#' `BPPARAM` is a BiocParallel back-end (`BiocParallel::SerialParam()`,
#' `MulticoreParam()`, `SnowParam()`, `BatchtoolsParam()` for cluster
#' schedulers) over whose workers the blocks or tiles are spread, each to
#' the next free worker, so that at most one block per worker is held at
#' once. The default, `NULL`, runs the blocks one after
#' another in this process without BiocParallel: it starts no process, holds
#' one block at a time, and does not multiply with `threads` (each worker runs
#' `threads` threads, so `workers x threads` should not exceed the cores).
#' Unlike `BiocParallel::bpparam()`, which may start as many processes as the
#' machine has cores, it is safe on shared machines and in package checks.
#' Results do not depend on `BPPARAM`: the mean target's sums are exact, so
#' that each worker sums the quantiles of a range of blocks and this process
#' adds up the ranges' sums (the other running sums, of the robust and group
#' targets, happen in this process, in the order of the columns), and every
#' block is normalized the same way wherever it runs.
#'
#' With two or more workers and a result that goes to HDF5 (`filepath`, or an
#' on-disk input without a realization backend), each worker writes the
#' blocks it normalizes to an HDF5 file of its own, in parallel: `filepath`
#' without its extension (or a new name in `HDF5Array::getHDF5DumpDir()`)
#' followed by the worker's host and process id, e.g. `result-node1-4711.h5`,
#' one dataset per block. Each worker takes ranges of consecutive blocks
#' (four ranges per worker, each to the next free worker,
#' `BiocParallel::bpiterate()`), reads and writes them one block at a time,
#' and sends back where it wrote them. The result is one `DelayedMatrix`
#' over these datasets (`DelayedArray::nseed()` is the number of blocks),
#' with the same values;
#' `HDF5Array::writeHDF5Array()` copies it to a single file when one is
#' needed. Every call writes a new dataset, so files of earlier calls stay
#' valid. Workers on other machines (`BatchtoolsParam()` on a cluster
#' scheduler) therefore need the input file and the result's folder on a
#' file system they share with this process. With one worker, or serial
#' blocks, this process writes the result to one dataset. On-disk data are read
#' by the workers themselves (only the small `DelayedMatrix` object is sent);
#' an in-memory `DelayedMatrix` is sent block by block to workers that do not
#' share memory (SnowParam, BatchtoolsParam). Workers of a SnowParam or
#' BatchtoolsParam load diffrank from their library paths.
#'
#' Starting workers costs time in every call that starts them: fresh
#' SnowParam workers load the packages (4 to 6 s on the bench's machine), and
#' forked MulticoreParam workers copy the pages of this session's memory
#' that their first full garbage collection touches (about 300 MB; 3 to 4
#' s per call on the bench's virtual machine, where copying a page takes 15
#' microseconds). A back-end
#' started once with `BiocParallel::bpstart()` keeps its workers for every
#' call until `BiocParallel::bpstop()`, and pays these costs once.
#'
#' `BPPARAM` has no effect on ordinary matrices, which use `threads` only;
#' wrap one in `DelayedArray::DelayedArray()` to spread it over processes.
#'
#' @section Sparse matrices:
#' A sparse matrix of the Matrix package (for example a `dgCMatrix` of
#' single-cell counts) is processed in column blocks as a `DelayedMatrix`:
#' one block at a time is made dense, and its zeros are ties, handled exactly
#' by the tie rules of each function (the results are identical to those of
#' the dense matrix). The normalized values are not sparse (all zeros of a
#' column take one target value), so the normalizers return a `DelayedMatrix`
#' written as above. A result that would be kept in memory and is larger
#' than the limit below is an error naming its size, never a silent dense
#' copy: give `filepath` (or set a realization backend) to write it to disk.
#'
#' @section Memory limit:
#' Where a whole block input must be in memory (`x` of [qmf()],
#' [cv_suquan()] and [rank_regression()], the new data of `predict()` of a
#' [qmf()] or [rank_regression()] fit, the samples' quantiles of a trimmed
#' robust target, the in-memory result of a normalizer), its
#' size as a dense double matrix may not exceed the option
#' `diffrank.memory_limit`, in bytes (4e9, 4 GB, when unset; its former name
#' `diffrank.dense_limit` is still read). The same limit bounds the work that
#' size arguments ask for (`n_targets`, `n_samples`, `n_quantiles`, ...): a
#' call that would allocate more is an error naming the
#' argument and the size.
#'
#' @section Packages:
#' DelayedArray is needed for block inputs, HDF5Array for HDF5 files and
#' BiocParallel for `BPPARAM`; they are suggested, not required, and a clear
#' error names the one that is missing.
#'
#' @name diffrank_blocks
#' @aliases large-data
#' @examples
#' if (requireNamespace("DelayedArray", quietly = TRUE)) {
#'   x <- matrix(rnorm(2000), 200, dimnames = list(NULL, paste0("s", 1:10)))
#'   delayed <- DelayedArray::DelayedArray(x)
#'   old <- DelayedArray::setAutoBlockSize(200 * 8 * 4)  # 4 columns per block
#'   normalized <- normalize_quantiles(delayed)
#'   identical(as.matrix(normalized), normalize_quantiles(x))
#'   k <- kendall_kernel(delayed)
#'   identical(unclass(k), unclass(kendall_kernel(x)))
#'   DelayedArray::setAutoBlockSize(old)
#' }
NULL

# TRUE for the inputs of the block path: a DelayedMatrix or a sparse Matrix
# (S4 objects only, so that ordinary matrices cost one isS4()).
is_block_input <- function(x) {
  isS4(x) && (methods::is(x, "DelayedArray") || methods::is(x, "sparseMatrix"))
}

need_package <- function(pkg, what) {
  if (!requireNamespace(pkg, quietly = TRUE)) {
    abort("The %s package is needed for %s; install it with BiocManager::install(\"%s\").",
          pkg, what, pkg)
  }
}

# A block input as a numeric DelayedMatrix (a sparse matrix is wrapped),
# checked for shape and type.
block_input <- function(x, arg = "x") {
  need_package("DelayedArray", sprintf("`%s`, %s", arg, describe(x)))
  if (!methods::is(x, "DelayedArray")) x <- DelayedArray::DelayedArray(x)
  if (length(dim(x)) != 2L) {
    abort("`%s` must have two dimensions, not %d.", arg, length(dim(x)))
  }
  if (!DelayedArray::type(x) %in% c("double", "integer", "logical")) {
    abort("`%s` must hold numbers, not values of type \"%s\".", arg, DelayedArray::type(x))
  }
  if (nrow(x) == 0L || ncol(x) == 0L) {
    abort("`%s` must have at least one row and one column, not %d x %d.", arg, nrow(x), ncol(x))
  }
  x
}

# The number of columns of a block: as many doubles as the automatic block
# size holds (at least one column), rounded down to whole chunks of columns
# when x is stored in chunks and a block holds at least one (so that no chunk
# is read twice), else to a multiple of 16 beyond 16 columns (blocks then
# start on the column boundaries of the chunks of the C++ cores).
block_width <- function(x) {
  bytes <- DelayedArray::getAutoBlockSize()
  width <- max(1, floor(bytes / (8 * max(nrow(x), 1L))))
  chunk <- DelayedArray::chunkdim(x)
  if (!is.null(chunk) && chunk[2L] > 1L && width >= chunk[2L]) {
    width <- chunk[2L] * floor(width / chunk[2L])
  } else if (width > 16) {
    width <- 16 * floor(width / 16)
  }
  as.integer(min(width, ncol(x)))
}

# The column blocks of x: DelayedArray's grid, with the columns of each block.
block_plan <- function(x, width = block_width(x)) {
  grid <- DelayedArray::colAutoGrid(x, ncol = width)
  n <- length(grid)
  starts <- seq(1L, ncol(x), by = width)
  cols <- lapply(seq_len(n), function(b) starts[b]:min(ncol(x), starts[b] + width - 1L))
  list(x = x, grid = grid, n = n, width = width, cols = cols, labels = colnames(x),
       on_disk = block_on_disk(x))
}

# TRUE when a seed of x is not an in-memory array (an HDF5 file, ...).
block_on_disk <- function(x) {
  in_memory <- function(seed) {
    is.array(seed) || is.data.frame(seed) || methods::is(seed, "Matrix") ||
      methods::is(seed, "SparseArraySeed") || methods::is(seed, "ConstantArraySeed") ||
      methods::is(seed, "RleArraySeed") || methods::is(seed, "DataFrame")
  }
  !all(unlist(DelayedArray::seedApply(x, in_memory)))
}

# One block of `plan` as a double matrix whose column names are those of x
# (or the columns' numbers), so that error messages name the right column.
block_read <- function(x, spec) {
  m <- as.matrix(DelayedArray::read_block(x, spec$viewport))
  if (storage.mode(m) != "double") storage.mode(m) <- "double"
  dimnames(m) <- list(NULL, spec$labels)
  m
}

# Loads the packages of the classes of x and of its seeds (HDF5Array for an
# HDF5Matrix), whose methods read the blocks. The package of x's own class
# comes first: the first S4 dispatch on x (seedApply()) would otherwise
# attach it through methods, which prints the start-up messages of it and
# its dependencies from every fresh worker.
load_seed_packages <- function(x) {
  package_of <- function(object) attr(class(object), "package")
  load_quietly <- function(packages) {
    for (pkg in packages) {
      if (!isNamespaceLoaded(pkg)) {
        suppressPackageStartupMessages(requireNamespace(pkg, quietly = TRUE))
      }
    }
  }
  load_quietly(package_of(x))
  load_quietly(unique(unlist(DelayedArray::seedApply(x, package_of), use.names = FALSE)))
}

# The blocks of a task are named by an item: an integer vector of block
# numbers whose names are the plans (sources) they come from, c(x = 3L) for a
# column block, c(x = 1L, x = 4L) for a kernel tile. Items are cheap; the
# specs, with their viewports (S4 objects that take milliseconds and hundreds
# of KB of R's memory to build), are made one item at a time.
block_spec <- function(plan, b, source) {
  b <- as.integer(b)
  cols <- plan$cols[[b]]
  list(source = source, viewport = plan$grid[[b]], cols = cols,
       labels = if (is.null(plan$labels)) as.character(cols) else plan$labels[cols],
       bytes = 8 * as.double(nrow(plan$x)) * length(cols))
}

item_specs <- function(plans, item) {
  lapply(seq_along(item), function(k) block_spec(plans[[names(item)[k]]], item[[k]], names(item)[k]))
}

# R collects garbage when its heap reaches a trigger set from the memory in
# use, which the Bioconductor packages that come with block inputs put at
# hundreds of MB: a pass over many blocks would keep that much garbage
# (copies of blocks, the S4 objects of viewports) before a collection. A
# young-generation collection after every 16 MB of blocks, in this process
# and in every worker, keeps it to a few blocks' worth; a collection takes
# about 10 ms, so one after every 2 MB (every block of the bench) cost 10% of
# the time of a pass.
garbage <- new.env(parent = emptyenv())
garbage$pending <- 0

collect_garbage <- function(bytes, every = 2^24) {
  garbage$pending <- garbage$pending + bytes
  if (garbage$pending >= every) {
    gc(verbose = FALSE, full = FALSE)
    garbage$pending <- 0
  }
  invisible()
}

# Runs on a worker (or in this process): reads the blocks of `specs` from
# their matrices in `sources` (or takes those sent with them) and calls
# task(block, ..., args). Errors come back as values, so that they are raised
# here with their own message. A worker (`collect`) collects its garbage.
# An item of a range of blocks (a fold or `each`) reads them one at a time:
# with `fold` (a function) they are folded, state <- task(block, state,
# args) from state NULL, and fold(last state) is the value; with `each`,
# task(block, args) is called on every block and the value is the list of
# their values. `specs` may then be an item, whose specs are made here one
# block at a time from the `layouts` of the plans (fold_layouts()). `fold`
# is sent to the workers: a function of the package's namespace, not a
# closure over a caller's data. A task that writes its own result
# (part_task) is told which columns its block holds.
block_worker <- function(specs, sources, task, args, collect = FALSE, fold = NULL,
                         layouts = NULL, each = FALSE) {
  read <- function(spec) if (!is.null(spec$data)) spec$data else block_read(sources[[spec$source]], spec)
  columns <- function(spec) if (".cols" %in% names(formals(task))) list(.cols = spec$cols)
  value <- tryCatch({
    # a fresh worker process loads the packages that read the matrices
    for (source in sources) load_seed_packages(source)
    if (is.null(fold) && !each) {
      do.call(task, c(unname(lapply(specs, read)), args, columns(specs[[1L]])))
    } else {
      state <- NULL
      values <- vector("list", length(specs))
      for (k in seq_along(specs)) {
        spec <- if (is.list(specs)) specs[[k]] else {
          source <- names(specs)[k]
          block_spec(c(layouts[[source]], list(x = sources[[source]])), specs[[k]], source)
        }
        if (each) {
          values[[k]] <- do.call(task, c(list(read(spec)), args, columns(spec)))
        } else {
          state <- do.call(task, c(list(read(spec), state), args))
        }
        collect_garbage(spec$bytes)
      }
      if (each) values else fold(state)
    }
  }, error = function(e) {
    structure(list(message = conditionMessage(e)), class = "diffrank_block_error")
  })
  if (collect && is.null(fold) && !each) collect_garbage(sum(vapply(specs, `[[`, 0, "bytes")))
  value
}

# What block_spec() needs of the plans but their matrices: small, and sent
# to the workers with every item that is a range of blocks.
fold_layouts <- function(plans) lapply(plans, `[`, c("grid", "cols", "labels"))

# Calls task on the blocks of every item of `items` (see block_spec()),
# spread over the workers of BPPARAM, and consume(i, value) here, in the
# order of the items; with `each` (items that are ranges of blocks of one
# plan, whose task runs on every block, see block_worker()), consume(b,
# value) for every block b, in order. `plans` holds the plans of the
# blocks, by name. With `progress`, a progress bar (cli's, shown when the
# work takes more than a few seconds) counts the items.
run_blocks <- function(plans, items, task, args, consume, BPPARAM = NULL, progress = FALSE,
                       label = "blocks", fold = NULL, each = FALSE) {
  if (progress) {
    bar <- cli::cli_progress_bar(label, total = length(items), .envir = environment())
  }
  failure <- NULL
  done <- function(i, value) {
    if (inherits(value, "diffrank_block_error")) abort("%s", value$message)
    if (each) {
      for (k in seq_along(value)) consume(items[[i]][[k]], value[[k]])
    } else {
      consume(i, value)
    }
    if (progress) cli::cli_progress_update(id = bar)
  }
  sources <- lapply(plans, `[[`, "x")
  ranges <- !is.null(fold) || each
  layouts <- if (ranges) fold_layouts(plans)
  if (is.null(BPPARAM)) {
    for (i in seq_along(items)) {
      if (ranges) {
        done(i, block_worker(items[[i]], sources, task, args, fold = fold, layouts = layouts,
                             each = each))
        next
      }
      specs <- item_specs(plans, items[[i]])
      done(i, block_worker(specs, sources, task, args))
      collect_garbage(sum(vapply(specs, `[[`, 0, "bytes")))
    }
    return(invisible())
  }
  if (!BiocParallel::bpisup(BPPARAM)) {
    BiocParallel::bpstart(BPPARAM)
    on.exit(BiocParallel::bpstop(BPPARAM), add = TRUE)
  }
  send <- sends_blocks(plans, BPPARAM)
  # bpiterate() hands a worker its next item as soon as it returns one, and
  # this process consumes the values in the order of the items while the
  # workers go on: with one synchronous batch of items per worker at a time,
  # the workers waited for the slowest of each batch and for this process,
  # and two workers were slower than one. After an error no item is handed
  # out and the error is raised once the workers are done.
  sent <- 0L
  next_item <- function() {
    if (sent >= length(items) || !is.null(failure)) return(NULL)
    sent <<- sent + 1L
    # the worker of a range makes the specs of its blocks itself, one at a
    # time (a range's viewports would be hundreds of KB each, to build and
    # send)
    if (ranges && !send) return(items[[sent]])
    specs <- item_specs(plans, items[[sent]])
    # handing out an item leaves garbage here too (its task serialized for
    # the worker, about a block's worth)
    collect_garbage(sum(vapply(specs, `[[`, 0, "bytes")))
    if (send) {
      specs <- lapply(specs, function(spec) c(spec, list(data = block_read(sources[[spec$source]], spec))))
    }
    specs
  }
  consumed <- 0L
  reduce <- function(unused, value) {
    consumed <<- consumed + 1L
    if (is.null(failure)) {
      failure <<- tryCatch({
        done(consumed, value)
        NULL
      }, error = identity)
    }
    collect_garbage(block_value_bytes(value))
    NULL
  }
  BiocParallel::bpiterate(next_item, block_worker, sources = if (send) NULL else sources,
                          task = task, args = args, collect = TRUE, fold = fold,
                          layouts = layouts, each = each, REDUCE = reduce,
                          init = NULL, reduce.in.order = TRUE, BPPARAM = BPPARAM)
  if (!is.null(failure)) stop(failure)
  invisible()
}

# TRUE when the workers of BPPARAM do not share this process's memory and
# the plans hold an in-memory matrix: they get its blocks with the items,
# not the whole matrix with every item.
sends_blocks <- function(plans, BPPARAM) {
  !is.null(BPPARAM) && !all(vapply(plans, `[[`, TRUE, "on_disk")) &&
    !methods::is(BPPARAM, "SerialParam") && !methods::is(BPPARAM, "MulticoreParam")
}

# The bytes of the numbers a worker sent back, for collect_garbage().
block_value_bytes <- function(value) {
  if (is.numeric(value)) return(8 * as.double(length(value)))
  if (is.raw(value)) return(as.double(length(value)))
  if (!is.list(value)) return(0)
  sum(vapply(value, block_value_bytes, 0))
}

# Starts the workers of BPPARAM when they are not running, so that the
# passes of one call share them; TRUE when the caller must stop them.
start_workers <- function(BPPARAM) {
  if (is.null(BPPARAM) || BiocParallel::bpisup(BPPARAM)) return(FALSE)
  BiocParallel::bpstart(BPPARAM)
  TRUE
}

check_bpparam <- function(BPPARAM) {
  if (is.null(BPPARAM)) return(NULL)
  need_package("BiocParallel", "`BPPARAM`")
  if (!methods::is(BPPARAM, "BiocParallelParam")) {
    abort("`BPPARAM` must be NULL or a BiocParallel back-end such as BiocParallel::SerialParam(), not %s.",
          describe(BPPARAM))
  }
  BPPARAM
}

check_filepath <- function(filepath) {
  if (is.null(filepath)) return(NULL)
  if (!is.character(filepath) || length(filepath) != 1L || is.na(filepath) || !nzchar(filepath)) {
    abort("`filepath` must be NULL or the path of an HDF5 file, not %s.", describe(filepath))
  }
  need_package("HDF5Array", "`filepath`")
  filepath
}

# Arguments that only block inputs use, on an ordinary input: checked, so
# that a wrong value is an error whatever the input.
check_block_args <- function(BPPARAM, filepath = NULL) {
  check_bpparam(BPPARAM)
  check_filepath(filepath)
  invisible()
}

# An error when x as a dense double matrix is larger than the limit.
check_dense_size <- function(x, arg, what) {
  bytes <- 8 * as.double(nrow(x)) * as.double(ncol(x))
  if (bytes > memory_limit()) {
    abort("`%s` (%s x %s) would take %s as a dense matrix, more than the limit of %s (option diffrank.memory_limit): %s",
          arg, big(nrow(x)), big(ncol(x)), format_bytes(bytes), format_bytes(memory_limit()), what)
  }
}

# A block input realized as an ordinary matrix, for a function that needs
# all of it at once (within the memory limit); other inputs as they are.
realize_block_input <- function(x, arg, why) {
  if (!is_block_input(x)) return(x)
  x <- block_input(x, arg)
  check_dense_size(x, arg, why)
  m <- as.matrix(x)
  if (storage.mode(m) != "double") storage.mode(m) <- "double"
  m
}

# A realization sink for a double matrix shaped like x (see ?diffrank_blocks,
# section Where results go).
block_sink <- function(x, filepath, width = block_width(x), BPPARAM = NULL) {
  dims <- dim(x)
  dn <- dimnames(x)
  if (workers_write(x, filepath, BPPARAM)) return(parts_sink(x, filepath, width))
  if (!is.null(filepath)) {
    return(HDF5Array::HDF5RealizationSink(dims, dn, "double", filepath = filepath,
                                          name = new_dataset_name(filepath),
                                          chunkdim = result_chunkdim(x, width)))
  }
  if (!is.null(DelayedArray::getAutoRealizationBackend())) {
    return(DelayedArray::AutoRealizationSink(dims, dn, "double"))
  }
  if (block_on_disk(x)) {
    need_package("HDF5Array", "writing the result of an on-disk input")
    return(HDF5Array::HDF5RealizationSink(dims, dn, "double",
                                          chunkdim = result_chunkdim(x, width)))
  }
  check_dense_size(x, "x", paste0("the result would be kept in memory; give `filepath` to write ",
                                  "it to an HDF5 file (see ?diffrank_blocks)."))
  DelayedArray::AutoRealizationSink(dims, dn, "double")
}

# The chunks of an HDF5 result: the input's when it is stored in chunks of
# a moderate size (blocks are whole chunks of its columns), else HDF5Array's
# default chunk volume and shape, with a number of columns that divides the
# block width. Either way every block writes whole chunks, once, and reading
# a few rows or columns of the result costs no more than of the input (one
# chunk of whole columns per block made row reads read everything).
result_chunkdim <- function(x, width) {
  volume <- HDF5Array::getHDF5DumpChunkLength()
  chunk <- DelayedArray::chunkdim(x)
  one_block <- width >= ncol(x)
  if (!is.null(chunk) && prod(as.double(chunk)) <= 10 * volume &&
      (one_block || width %% chunk[2L] == 0L)) {
    return(as.integer(chunk))
  }
  box <- DelayedArray::makeCappedVolumeBox(volume, dim(x), HDF5Array::getHDF5DumpChunkShape())
  cols <- max(1L, box[2L])
  if (!one_block) {
    candidates <- seq_len(min(cols, width))
    cols <- max(candidates[width %% candidates == 0L])
  }
  as.integer(c(box[1L], cols))
}

# A name from HDF5Array's automatic names that the HDF5 file `filepath` (when
# it exists) does not use yet.
new_dataset_name <- function(filepath) {
  used <- character(0)
  if (file.exists(filepath)) {
    listing <- HDF5Array::h5ls(filepath)
    used <- sub("^/+", "/", paste0(listing$group, "/", listing$name))
  }
  repeat {
    name <- HDF5Array::getHDF5DumpName(for.use = TRUE)
    if (!sub("^/*", "/", name) %in% used) return(name)
  }
}

# With several workers and an HDF5 result, every worker writes the blocks it
# computes to an HDF5 file of its own (a dataset per block), in parallel; the
# result is one DelayedMatrix over them. When this process compressed and
# wrote every block, two workers were slower than one.
workers_write <- function(x, filepath, BPPARAM) {
  if (is.null(BPPARAM) || BiocParallel::bpnworkers(BPPARAM) < 2L) return(FALSE)
  !is.null(filepath) || (is.null(DelayedArray::getAutoRealizationBackend()) && block_on_disk(x))
}

# The sink of worker-written results: an environment that collects the
# dataset of every block. The files are `filepath` without its extension (or
# a new name in HDF5Array's dump directory) followed by the worker's host and
# process id; the datasets have a new name in every call, so that results of
# earlier calls are never overwritten.
parts_sink <- function(x, filepath, width) {
  need_package("HDF5Array", "writing the result to HDF5 files")
  prefix <- if (is.null(filepath)) {
    file.path(HDF5Array::getHDF5DumpDir(), basename(tempfile("diffrank-")))
  } else {
    sub("\\.(h5|hdf5)$", "", filepath, ignore.case = TRUE)
  }
  if (file.access(dirname(prefix), 2L) != 0L) {
    abort("`filepath`: cannot write the result's files in the folder \"%s\".", dirname(prefix))
  }
  sink <- new.env(parent = emptyenv())
  sink$prefix <- prefix
  sink$name <- basename(tempfile("diffrank"))
  sink$chunkdim <- result_chunkdim(x, width)
  sink$dimnames <- dimnames(x)
  sink$parts <- list()
  sink
}

# Runs on a worker: the task's result for one block, written to its own file;
# returns the file (with the task's other values, when it returns a list
# whose `value` is the block's result).
part_task <- function(..., .task, .prefix, .name, .chunkdim, .cols) {
  value <- if (".cols" %in% names(formals(.task))) .task(..., .cols = .cols) else .task(...)
  m <- if (is.list(value)) value$value else value
  # one file per worker process (host and process id, unique among workers
  # that share a file system), a dataset per block: a file per block made
  # 1,250 files for 10,000 samples
  file <- sprintf("%s-%s-%d.h5", .prefix, Sys.info()[["nodename"]], Sys.getpid())
  # a sink written once and closed: writeHDF5Array() took about twice as long
  # per block (it realizes its input through a block loop and reopens the
  # result as an HDF5Array)
  dims <- dim(m)
  chunk <- as.integer(pmin(.chunkdim, dims))
  name <- sprintf("%s_%010d", .name, .cols[1L])
  sink <- HDF5Array::HDF5RealizationSink(dims, type = "double", filepath = file, name = name,
                                         chunkdim = chunk)
  DelayedArray::write_block(sink, DelayedArray::RegularArrayGrid(dims)[[1L]], unname(m))
  DelayedArray::close(sink)
  part <- list(file = normalizePath(file), name = name, dim = dims, chunkdim = chunk,
               first = m[1L, 1L])
  if (!is.list(value)) return(list(part = part))
  value$value <- NULL
  c(value, list(part = part))
}

# The task and its arguments for run_blocks(), as the sink needs them.
sink_task <- function(sink, task, args) {
  if (!is.environment(sink)) return(list(task = task, args = args))
  list(task = part_task, args = c(args, list(.task = task, .prefix = sink$prefix,
                                             .name = sink$name, .chunkdim = sink$chunkdim)))
}

# Keeps the result of block i: writes it to the sink, or records the file a
# worker wrote it to.
sink_write <- function(sink, plan, i, value) {
  if (is.environment(sink)) {
    sink$parts[[i]] <- value$part
  } else {
    DelayedArray::write_block(sink, plan$grid[[i]], unname(if (is.list(value)) value$value else value))
  }
}

finish_sink <- function(sink) {
  if (is.environment(sink)) {
    # HDF5ArraySeed() reads the first value of its dataset, which decompresses
    # a whole chunk (60 ms per block of the bench), and its validity method
    # opens the file several times (in all, +120 MB of resident memory here
    # for 50 blocks). The workers sent each dataset's dimensions, chunks and
    # first value, which are all a seed holds: only the first dataset is
    # opened, and the other seeds are copies of its seed with their own
    # slots.
    template <- HDF5Array::HDF5ArraySeed(sink$parts[[1L]]$file, sink$parts[[1L]]$name)
    parts <- lapply(sink$parts, function(part) {
      seed <- template
      seed@filepath <- part$file
      seed@name <- part$name
      seed@dim <- part$dim
      seed@chunkdim <- part$chunkdim
      seed@first_val <- part$first
      DelayedArray::DelayedArray(seed)
    })
    result <- do.call(DelayedArray::acbind, parts)
    dimnames(result) <- sink$dimnames
    return(result)
  }
  DelayedArray::close(sink)
  methods::as(sink, "DelayedArray")
}

# Items of one block each, for the passes over the columns.
column_items <- function(plan) lapply(seq_len(plan$n), function(b) c(x = b))

# The blocks of plan in `pieces` ranges of consecutive blocks, as items of
# run_blocks() with `fold` or `each`.
range_items <- function(plan, pieces) {
  pieces <- max(1L, min(as.integer(pieces), plan$n))
  ranges <- split(seq_len(plan$n), ((seq_len(plan$n) - 1L) * pieces) %/% plan$n)
  lapply(unname(ranges), function(r) stats::setNames(r, rep("x", length(r))))
}

# The items of a pass whose workers take ranges of blocks (a fold, or
# `each`, of run_blocks()): one range in this process; four per worker,
# which even out the workers' times and keep BiocParallel's costs per item
# (the task and its arguments, such as a target of nrow values, sent to the
# worker; a garbage collection after each task on MulticoreParam) to a few
# per worker: on the bench's 125 blocks, one block per item made a
# SnowParam(2) write pass 8% slower; one block per item for workers that
# are sent the blocks of an in-memory matrix.
worker_ranges <- function(plan, BPPARAM) {
  pieces <- if (is.null(BPPARAM)) 1L else if (sends_blocks(list(x = plan), BPPARAM)) plan$n else
    4L * BiocParallel::bpnworkers(BPPARAM)
  range_items(plan, pieces)
}
