# Block processing of HDF5-backed matrices, in one run:
# * normalize_quantiles() of a 50,000 x 1,000 HDF5Matrix: time and peak
#   resident memory (VmHWM of /proc/self/status, in MB) against the dense
#   matrix's size; time against the I/O floor (reading the matrix block by
#   block and writing it back once with DelayedArray, doing nothing else);
#   the in-memory function on the same matrix; the peak on half and on five
#   times the columns; SnowParam(2) and MulticoreParam(2), whose workers
#   write their own blocks, against serial blocks on 2 threads and on 1
#   (and the workers' own peak memory; the first and a second call of each
#   back-end, started once);
# * kendall_kernel() of a 20,000 x 500 HDF5Matrix, in tiles, serially and on
#   2 workers (the first and a second call of each);
# * beyond one machine's memory: normalize_quantiles() and quantile_target()
#   of a 50,000 x 10,000 HDF5Matrix (3.7 GB dense), peak memory above the
#   session against the dense size and time against the file's
#   read-and-write floor, and two fresh SnowParam workers against one
#   process (DIFFRANK_BENCH_BIG=0 skips it).
# Every case runs in a fresh Rscript process, so that its peak memory is its
# own. Run after installing diffrank: Rscript bench/blocks.R (about 17
# minutes on 2 cores, and 25 more for the 10,000 columns).
# DIFFRANK_BENCH_SCALE=0.1 shrinks every matrix for a quick check.
suppressPackageStartupMessages(library(diffrank))
for (pkg in c("DelayedArray", "HDF5Array", "BiocParallel")) {
  if (!requireNamespace(pkg, quietly = TRUE)) stop("bench/blocks.R needs ", pkg)
}
if (file.exists("/proc/loadavg")) {
  cat("Load average before the run:", readLines("/proc/loadavg"), "\n")
}
cat(sprintf("Cores: %d\n", parallel::detectCores()))

scale <- as.numeric(Sys.getenv("DIFFRANK_BENCH_SCALE", "1"))
p <- round(50000 * scale)
n <- round(1000 * scale)
p_kernel <- round(20000 * scale)
n_kernel <- round(500 * scale)
# Normalization in blocks of 3.2 MB (8 columns of 50,000 doubles, the file's
# chunks): the memory a run adds to its R session is a few blocks plus a
# fixed part. The kernel in blocks of 10 MB (48 columns of 20,000).
block_size <- 3.2e6
kernel_block_size <- 1e7
dir <- tempfile("diffrank-blocks-")
dir.create(dir)
on.exit(unlink(dir, recursive = TRUE), add = TRUE)

# Runs `code` in a fresh Rscript and returns the numbers it prints on lines
# "RESULT name value". Every case loads the same packages, then records the
# peak memory so far (the baseline), does its work, and records it again.
run_case <- function(code, block = block_size) {
  prelude <- sprintf('
suppressPackageStartupMessages({library(diffrank); library(HDF5Array); library(BiocParallel)})
# kernlab (which the kernels load for their class) is in the baseline too
invisible(requireNamespace("kernlab", quietly = TRUE))
hwm <- function() {
  status <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmHWM", status, value = TRUE))) / 1024
}
report <- function(name, value) cat(sprintf("RESULT %%s %%.6g\\n", name, value))
invisible(suppressMessages(DelayedArray::setAutoBlockSize(%.0f)))
invisible(gc())
report("baseline_mb", hwm())
', block)
  file <- tempfile(fileext = ".R", tmpdir = dir)
  writeLines(c(prelude, code, 'report("peak_mb", hwm())'), file)
  out <- system2(file.path(R.home("bin"), "Rscript"), file, stdout = TRUE, stderr = TRUE)
  lines <- grep("^RESULT ", out, value = TRUE)
  if (!is.null(attr(out, "status")) || !any(grepl("^RESULT peak_mb", lines))) {
    stop("case failed:\n", paste(out, collapse = "\n"))
  }
  parts <- strsplit(lines, " ")
  stats::setNames(as.numeric(vapply(parts, `[`, "", 3L)), vapply(parts, `[`, "", 2L))
}

# The matrices, written once: log-normal values rounded to 2 decimals (ties),
# a few missing values (none for the kernel), HDF5Array's default compression
# (level 6) and chunks of whole columns, one block wide, as sample-wise access
# wants.
write_matrix <- function(file, rows, cols, seed, missing, chunk_columns) {
  code <- sprintf('
set.seed(%d)
sink <- HDF5Array::HDF5RealizationSink(c(%dL, %dL), type = "double", filepath = "%s", name = "x",
                                      chunkdim = c(%dL, %dL))
grid <- DelayedArray::RegularArrayGrid(c(%dL, %dL), c(%dL, %dL))
for (b in seq_along(grid)) {
  d <- dim(grid[[b]])
  block <- round(matrix(rnorm(prod(d), mean = 7, sd = 2), d[1L]) + rnorm(d[2L], sd = 0.5)[col(matrix(0, d[1L], d[2L]))], 2)
  block[sample(length(block), %d)] <- NA
  DelayedArray::write_block(sink, grid[[b]], block)
}
DelayedArray::close(sink)
', seed, rows, cols, file, rows, chunk_columns, rows, cols, rows, chunk_columns, missing)
  run_case(code)
}
h5_qn <- file.path(dir, "qn.h5")
h5_kernel <- file.path(dir, "kernel.h5")
cat(sprintf("Writing the %s x %s and %s x %s HDF5 matrices...\n", format(p, big.mark = ","),
            format(n, big.mark = ","), format(p_kernel, big.mark = ","), n_kernel))
invisible(write_matrix(h5_qn, p, n, 1, missing = 10L, chunk_columns = 8L))
invisible(write_matrix(h5_kernel, p_kernel, n_kernel, 2, missing = 0L, chunk_columns = 16L))
dense_mb <- 8 * p * n / 2^20
cat(sprintf("HDF5 file %.0f MB on disk; the dense matrix is %.0f MB\n",
            file.size(h5_qn) / 2^20, dense_mb))

open_x <- function(file) sprintf('x <- HDF5Array::HDF5Array("%s", "x")', file)
out_file <- function(name) file.path(dir, paste0(name, ".h5"))

# I/O floor: read every block and write it back once, with the same grid and
# the same kind of sink (chunks, compression) as diffrank.
floor_code <- function(file, out) c(open_x(file), sprintf('
t <- system.time({
  plan <- diffrank:::block_plan(x)
  sink <- diffrank:::block_sink(x, "%s", plan$width)
  for (b in seq_len(plan$n)) {
    block <- DelayedArray::read_block(x, plan$grid[[b]])
    DelayedArray::write_block(sink, plan$grid[[b]], block)
  }
  y <- diffrank:::finish_sink(sink)
})[["elapsed"]]
report("seconds", t)
report("blocks", plan$n)
', out))
floor_case <- run_case(floor_code(h5_qn, out_file("floor")))

serial_case <- run_case(c(open_x(h5_qn), sprintf('
t <- system.time(y <- normalize_quantiles(x, filepath = "%s"))[["elapsed"]]
report("seconds", t)
saveRDS(y, "%s")
', out_file("serial"), file.path(dir, "serial.rds"))))

# One process on one thread: the unit that workers multiply, as in the
# kernel's comparison below (the run above uses both cores already).
serial_one_case <- run_case(c(open_x(h5_qn), sprintf('
t <- system.time(y <- normalize_quantiles(x, filepath = "%s", threads = 1L))[["elapsed"]]
report("seconds", t)
', out_file("serial-one"))))

# The same on the first half of the columns: what a run adds to its session
# depends on the block size, not on the number of samples.
half_case <- run_case(c(open_x(h5_qn), sprintf('
x <- x[, seq_len(%dL)]
t <- system.time(y <- normalize_quantiles(x, filepath = "%s"))[["elapsed"]]
report("seconds", t)
', as.integer(n %/% 2), out_file("half"))))

# Five times the columns (a delayed cbind() of the file with itself,
# 50,000 x 5,000, 1.9 GB dense) in the same blocks of 8 columns.
wide_case <- run_case(c(open_x(h5_qn), sprintf('
x <- DelayedArray::cbind(x, x, x, x, x)
t <- system.time(y <- normalize_quantiles(x, filepath = "%s"))[["elapsed"]]
report("seconds", t)
', out_file("wide"))))

# Two workers started once, each writing its blocks to files of its own:
# the first call pays for their start (SnowParam's workers load the
# packages, MulticoreParam's forked workers copy the pages of the session
# that their first full garbage collection touches), later calls do not.
workers_case <- function(bp, name, after) run_case(c(open_x(h5_qn), sprintf('
bp <- %s
bpstart(bp)
t <- system.time(y <- normalize_quantiles(x, filepath = "%s", BPPARAM = bp,
                                         threads = 1L))[["elapsed"]]
report("first_seconds", t)
t <- system.time(y <- normalize_quantiles(x, filepath = "%s", BPPARAM = bp,
                                         threads = 1L))[["elapsed"]]
report("seconds", t)
', bp, out_file(paste0(name, "-first")), out_file(name)), after))
snow_case <- workers_case("SnowParam(2)", "snow", '
workers <- unlist(bplapply(1:2, function(i) {
  status <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", grep("^VmHWM", status, value = TRUE))) / 1024
}, BPPARAM = bp))
report("worker_max_mb", max(workers))
report("worker_sum_mb", sum(workers))
bpstop(bp)
')
multicore_case <- workers_case("MulticoreParam(2)", "multicore", sprintf('
bpstop(bp)
# the peak of the normalization, before the check below holds two dense copies
report("peak_mb", hwm())
report("identical", identical(as.matrix(readRDS("%s")), as.matrix(y)))
', file.path(dir, "serial.rds")))

memory_case <- run_case(c(open_x(h5_qn), sprintf('
t_read <- system.time(m <- as.matrix(x))[["elapsed"]]
t <- system.time(y <- normalize_quantiles(m))[["elapsed"]]
report("read_seconds", t_read)
report("seconds", t)
report("peak_mb", hwm())
report("identical", identical(as.matrix(readRDS("%s")), y))
', file.path(dir, "serial.rds"))))

cat(sprintf("\nnormalize_quantiles, %s x %s HDF5Matrix, blocks of %d columns (%d blocks)\n",
            format(p, big.mark = ","), format(n, big.mark = ","), as.integer(n / floor_case[["blocks"]] + 0.5),
            as.integer(floor_case[["blocks"]])))
row <- function(label, case) {
  cat(sprintf("  %-34s %7.1f s   peak %6.0f MB (baseline %4.0f, +%4.0f MB)\n", label,
              case[["seconds"]], case[["peak_mb"]], case[["baseline_mb"]],
              case[["peak_mb"]] - case[["baseline_mb"]]))
}
row("I/O floor (read + write once)", floor_case)
row("blocks, serial, 2 threads", serial_case)
row("blocks, serial, 1 thread", serial_one_case)
row(sprintf("blocks, serial, first %d columns", as.integer(n %/% 2)), half_case)
row(sprintf("blocks, serial, %d columns", as.integer(5 * n)), wide_case)
row("blocks, SnowParam(2), 1 thread each", snow_case)
cat(sprintf("  %-34s %7.1f s   (first call: the workers load the packages)\n", "",
            snow_case[["first_seconds"]]))
cat(sprintf("  %-34s %7.1f s   workers' peaks: largest %.0f MB, sum %.0f MB\n", "",
            snow_case[["seconds"]], snow_case[["worker_max_mb"]], snow_case[["worker_sum_mb"]]))
row("blocks, MulticoreParam(2), 1 thread each", multicore_case)
cat(sprintf("  %-34s %7.1f s   (first call: the forked workers copy the session's pages)\n", "",
            multicore_case[["first_seconds"]]))
row("in memory (normalize only)", memory_case)
cat(sprintf("  %-34s %7.1f s   (reading the HDF5 file whole)\n", "", memory_case[["read_seconds"]]))
cat(sprintf("serial blocks / I/O floor:              %.2fx (goal <= 2)\n",
            serial_case[["seconds"]] / floor_case[["seconds"]]))
# Scale-out is two workers of 1 thread against one process of 1 thread
# (the goal, as for the kernel below), with the back-end started once; the
# serial run on 2 threads uses both cores already, and its ratio is printed
# too.
cat(sprintf("serial on 1 thread / SnowParam(2):      %.2fx (goal >= 1.6); first call %.2fx\n",
            serial_one_case[["seconds"]] / snow_case[["seconds"]],
            serial_one_case[["seconds"]] / snow_case[["first_seconds"]]))
cat(sprintf("serial on 1 thread / MulticoreParam(2): %.2fx (goal >= 1.6); first call %.2fx; identical: %s\n",
            serial_one_case[["seconds"]] / multicore_case[["seconds"]],
            serial_one_case[["seconds"]] / multicore_case[["first_seconds"]],
            if (multicore_case[["identical"]] == 1) "yes" else "NO"))
cat(sprintf("serial on 2 threads / SnowParam(2):     %.2fx (first call %.2fx); / MulticoreParam(2): %.2fx (first call %.2fx)\n",
            serial_case[["seconds"]] / snow_case[["seconds"]],
            serial_case[["seconds"]] / snow_case[["first_seconds"]],
            serial_case[["seconds"]] / multicore_case[["seconds"]],
            serial_case[["seconds"]] / multicore_case[["first_seconds"]]))
# The baseline is R with diffrank, DelayedArray, HDF5Array, BiocParallel and
# kernlab loaded (about 400 MB, more than this dense matrix): what the
# normalization itself holds is the peak above it.
cat(sprintf("peak above the session's baseline / dense: %.0f%% (goal < 25%%); whole process: %.0f%%\n",
            100 * (serial_case[["peak_mb"]] - serial_case[["baseline_mb"]]) / dense_mb,
            100 * serial_case[["peak_mb"]] / dense_mb))
cat(sprintf("peak of the serial run above the I/O floor's: %.0f MB (%.0f%% of dense)\n",
            serial_case[["peak_mb"]] - floor_case[["peak_mb"]],
            100 * (serial_case[["peak_mb"]] - floor_case[["peak_mb"]]) / dense_mb))
cat(sprintf("whole process, %d columns / their dense size: %.0f MB / %.0f MB = %.0f%%\n",
            as.integer(5 * n), wide_case[["peak_mb"]], 5 * dense_mb,
            100 * wide_case[["peak_mb"]] / (5 * dense_mb)))
cat(sprintf("above the baseline with %d / %d / %d columns: %.0f / %.0f / %.0f MB\n",
            as.integer(n %/% 2), as.integer(n), as.integer(5 * n),
            half_case[["peak_mb"]] - half_case[["baseline_mb"]],
            serial_case[["peak_mb"]] - serial_case[["baseline_mb"]],
            wide_case[["peak_mb"]] - wide_case[["baseline_mb"]]))
cat(sprintf("in-memory peak / dense:                 %.0f%%\n",
            100 * memory_case[["peak_mb"]] / dense_mb))
cat(sprintf("blocks identical to in memory:          %s\n",
            if (memory_case[["identical"]] == 1) "yes" else "NO"))

# Kendall kernel in tiles, twice in each process: workers started once pay
# for their start (loading the packages, or copying the session's pages) in
# the first call only.
kernel_code <- function(bp) c(open_x(h5_kernel), sprintf('
%s
if (!is.null(bp)) bpstart(bp)
t <- system.time(k <- kendall_kernel(x, threads = 1L, progress = FALSE, BPPARAM = bp))[["elapsed"]]
report("first_seconds", t)
t <- system.time(k <- kendall_kernel(x, threads = 1L, progress = FALSE, BPPARAM = bp))[["elapsed"]]
report("seconds", t)
if (!is.null(bp)) bpstop(bp)
saveRDS(unclass(k), "%s")
', bp, file.path(dir, paste0("kernel-", substr(bp, 7, 10), ".rds"))))
kernel_serial <- run_case(kernel_code("bp <- NULL"), kernel_block_size)
kernel_multicore <- run_case(kernel_code("bp <- MulticoreParam(2)"), kernel_block_size)
kernel_snow <- run_case(kernel_code("bp <- SnowParam(2)"), kernel_block_size)
same <- identical(readRDS(file.path(dir, "kernel-NULL.rds")),
                  readRDS(file.path(dir, "kernel-Mult.rds"))) &&
  identical(readRDS(file.path(dir, "kernel-NULL.rds")), readRDS(file.path(dir, "kernel-Snow.rds")))
cat(sprintf("\nkendall_kernel, %s x %s HDF5Matrix (%s pairs), 1 thread per process\n",
            format(p_kernel, big.mark = ","), n_kernel,
            format(n_kernel * (n_kernel + 1) / 2, big.mark = ",")))
row("tiles, serial (BPPARAM = NULL)", kernel_serial)
row("tiles, MulticoreParam(2)", kernel_multicore)
row("tiles, SnowParam(2)", kernel_snow)
cat(sprintf("(second calls; first calls: serial %.1f s, MulticoreParam(2) %.1f s, SnowParam(2) %.1f s)\n",
    kernel_serial[["first_seconds"]], kernel_multicore[["first_seconds"]],
    kernel_snow[["first_seconds"]]))
cat(sprintf("serial / MulticoreParam(2):             %.2fx (goal >= 1.6); first call %.2fx\n",
            kernel_serial[["seconds"]] / kernel_multicore[["seconds"]],
            kernel_serial[["first_seconds"]] / kernel_multicore[["first_seconds"]]))
cat(sprintf("serial / SnowParam(2):                  %.2fx (goal >= 1.6); first call %.2fx\n",
            kernel_serial[["seconds"]] / kernel_snow[["seconds"]],
            kernel_serial[["first_seconds"]] / kernel_snow[["first_seconds"]]))
cat(sprintf("kernels identical:                      %s\n", if (same) "yes" else "NO"))

# Beyond one machine's memory: 10 times the samples, a matrix of its own
# (not a delayed cbind(), so that every block is read from its own chunks).
if (Sys.getenv("DIFFRANK_BENCH_BIG", "1") != "0") {
  n_big <- 10L * n
  h5_big <- file.path(dir, "big.h5")
  cat(sprintf("\nWriting the %s x %s HDF5 matrix...\n", format(p, big.mark = ","),
              format(n_big, big.mark = ",")))
  t_write <- system.time(write_matrix(h5_big, p, n_big, 3, missing = 100L, chunk_columns = 8L))
  big_dense_mb <- 8 * p * n_big / 2^20
  cat(sprintf("HDF5 file %.0f MB on disk, written in %.0f s; the dense matrix is %.0f MB\n",
              file.size(h5_big) / 2^20, t_write[["elapsed"]], big_dense_mb))
  big_floor <- run_case(floor_code(h5_big, out_file("big-floor")))
  big_qn <- run_case(c(open_x(h5_big), sprintf('
t <- system.time(y <- normalize_quantiles(x, filepath = "%s"))[["elapsed"]]
report("seconds", t)
', out_file("big-qn"))))
  # workers at this scale: one process on 1 thread, and two fresh SnowParam
  # workers, whose start (loading the packages) is a fixed cost
  big_one <- run_case(c(open_x(h5_big), sprintf('
t <- system.time(y <- normalize_quantiles(x, filepath = "%s", threads = 1L))[["elapsed"]]
report("seconds", t)
', out_file("big-one"))))
  big_snow <- run_case(c(open_x(h5_big), sprintf('
t <- system.time(y <- normalize_quantiles(x, filepath = "%s", BPPARAM = SnowParam(2),
                                         threads = 1L))[["elapsed"]]
report("seconds", t)
', out_file("big-snow"))))
  big_target <- run_case(c(open_x(h5_big), '
t <- system.time(target <- quantile_target(x))[["elapsed"]]
report("seconds", t)
'))
  cat(sprintf("\n%s x %s HDF5Matrix (%.1f GB dense), serial blocks of 8 columns\n",
              format(p, big.mark = ","), format(n_big, big.mark = ","), big_dense_mb / 1024))
  row("I/O floor (read + write once)", big_floor)
  row("normalize_quantiles()", big_qn)
  row("quantile_target()", big_target)
  row("normalize_quantiles(), 1 thread", big_one)
  row("normalize_quantiles(), SnowParam(2)", big_snow)
  cat(sprintf("serial / fresh SnowParam(2): %.2fx on 1 thread, %.2fx on 2 threads\n",
              big_one[["seconds"]] / big_snow[["seconds"]],
              big_qn[["seconds"]] / big_snow[["seconds"]]))
  for (case in list(list("normalize_quantiles", big_qn), list("quantile_target", big_target))) {
    cat(sprintf("%-20s peak above the session / dense: %.1f%% (goal < 10%%); time / I/O floor: %.2fx (goal <= 2)\n",
                case[[1]], 100 * (case[[2]][["peak_mb"]] - case[[2]][["baseline_mb"]]) / big_dense_mb,
                case[[2]][["seconds"]] / big_floor[["seconds"]]))
  }
}
