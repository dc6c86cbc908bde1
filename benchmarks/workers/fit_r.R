# Fit one case with an R fitter (lme4 or glmmTMB) in this R process and write what was measured as JSON.
#
#   Rscript fit_r.R SPEC.json OUT.json
#
# SPEC: fitter (lme4 | glmmTMB), data (CSV), family, link, nagq, and either formula (+ weights, offset: column
# names or null; levels: factor column -> R's level order) or response/group/fixed (a random-intercept model).
# lme4: Gaussian + identity: lmer(REML = TRUE); otherwise glmer(nAGQ = nagq, control = glmerControl(optimizer =
# "bobyqa")); negbin: n/a (glmer.nb is a different procedure).  glmmTMB: glmmTMB(REML = TRUE for Gaussian +
# identity; family binomial/poisson/gaussian/Gamma(link), nbinom2 for negbin), its default controls (one thread).
# fit_seconds is system.time()'s elapsed time around the fitting call only (not R start-up, not reading data);
# cpu_seconds its user + system time (R's own, one core unless a BLAS threads).
# Memory: VmRSS after loading the package (baseline), after reading the data, and the VmHWM high-water mark during
# the fit (reset through /proc/self/clear_refs just before it, so reading the CSV does not count).

args <- commandArgs(trailingOnly = TRUE)
spec <- jsonlite::fromJSON(args[1], simplifyVector = TRUE)
out_path <- args[2]
fitter <- spec$fitter

status_kb <- function(field) {
  s <- tryCatch(readLines("/proc/self/status"), error = function(e) character(0))
  line <- grep(paste0("^", field, ":"), s, value = TRUE)
  if (length(line) == 0) return(NA_real_)
  as.numeric(gsub("[^0-9]", "", line[1]))
}

out <- list(fitter = fitter, status = "error")
write_out <- function() {
  writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
}

family <- spec$family
link <- spec$link
nagq <- if (is.null(spec$nagq)) 1L else as.integer(spec$nagq)
if (fitter == "lme4" && family == "negbin") {
  out$status <- "n/a"
  out$error <- "lme4 fits the negative binomial with glmer.nb (another procedure); compare with glmmTMB"
  write_out()
  quit(status = 0)
}
pkg <- if (fitter == "glmmTMB") "glmmTMB" else "lme4"
if (!suppressMessages(requireNamespace(pkg, quietly = TRUE))) {
  out$status <- "unavailable"
  out$error <- paste("R package", pkg, "is not installed")
  write_out()
  quit(status = 0)
}
suppressMessages(library(pkg, character.only = TRUE))
out$versions <- setNames(list(as.character(packageVersion(pkg))), pkg)
out$versions$R <- R.version.string
out$versions$Matrix <- as.character(packageVersion("Matrix"))
out$rss_baseline_kb <- status_kb("VmRSS")

d <- if (requireNamespace("data.table", quietly = TRUE)) {
  as.data.frame(data.table::fread(spec$data, showProgress = FALSE))
} else {
  read.csv(spec$data, stringsAsFactors = FALSE)
}
# string columns become factors with their levels in code-point order (R's C locale, Python's sorted), or in
# R's original order where the case gives it (VerbAgg's mode: want, do)
for (col in names(d)) {
  if (!is.null(spec$levels) && !is.null(spec$levels[[col]])) {
    d[[col]] <- factor(as.character(d[[col]]), levels = spec$levels[[col]])
  } else if (is.character(d[[col]])) {
    d[[col]] <- factor(d[[col]], levels = sort(unique(d[[col]]), method = "radix"))
  }
}
if (is.null(spec$formula)) {
  d[[spec$group]] <- factor(d[[spec$group]])
  fixed <- spec$fixed
  rhs <- paste(c(if (length(fixed) > 0) fixed else "1", sprintf("(1 | %s)", spec$group)), collapse = " + ")
  fm <- as.formula(paste(spec$response, "~", rhs))
} else {
  fm <- as.formula(spec$formula)
}
out$formula <- paste(deparse(fm, width.cutoff = 500L), collapse = " ")
out$rss_after_load_kb <- status_kb("VmRSS")
out$n_rows_read <- nrow(d)

fit_args <- list(formula = fm, data = d)
if (!is.null(spec$weights)) fit_args$weights <- d[[spec$weights]]
if (!is.null(spec$offset)) fit_args$offset <- d[[spec$offset]]
fam <- switch(family,
  binomial = binomial(link = link),
  poisson = poisson(link = link),
  gamma = Gamma(link = link),
  gaussian = gaussian(link = link),
  negbin = if (fitter == "glmmTMB") glmmTMB::nbinom2(link = link) else NULL,
  stop(paste("unknown family", family)))
lmm <- family == "gaussian" && link == "identity"

invisible(gc())
out$hwm_reset <- tryCatch({ writeLines("5", "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE,
                          warning = function(w) FALSE)

msgs <- character(0)
fit <- NULL
elapsed <- NA_real_
cpu <- NA_real_
err <- tryCatch({
  withCallingHandlers({
    if (fitter == "glmmTMB") {
      fit_args$family <- fam
      fit_args$REML <- lmm
      tm <- system.time(fit <- do.call(glmmTMB::glmmTMB, fit_args))
      out$method <- if (lmm) "glmmTMB REML" else "glmmTMB Laplace"
    } else if (lmm) {
      fit_args$REML <- TRUE
      tm <- system.time(fit <- do.call(lmer, fit_args))
      out$method <- "lmer REML"
    } else {
      fit_args$family <- fam
      fit_args$nAGQ <- nagq
      fit_args$control <- glmerControl(optimizer = "bobyqa")
      tm <- system.time(fit <- do.call(glmer, fit_args))
      out$method <- sprintf("glmer nAGQ=%d bobyqa", nagq)
    }
    elapsed <- tm[["elapsed"]]
    cpu <- sum(tm[c("user.self", "sys.self", "user.child", "sys.child")], na.rm = TRUE)
  }, warning = function(w) {
    msgs <<- c(msgs, conditionMessage(w))
    invokeRestart("muffleWarning")
  }, message = function(m) {
    msgs <<- c(msgs, trimws(conditionMessage(m)))
    invokeRestart("muffleMessage")
  })
  NULL
}, error = function(e) conditionMessage(e))

out$peak_fit_kb <- status_kb("VmHWM")
if (!is.null(err)) {
  out$error <- err
  write_out()
  quit(status = 0)
}

out$fit_seconds <- elapsed
out$cpu_seconds <- cpu
if (fitter == "glmmTMB") {
  fe <- fixef(fit)$cond
  out$se <- as.list(sqrt(diag(as.matrix(vcov(fit)$cond))))
  vc <- VarCorr(fit)$cond
  out$var_group <- if (length(vc) > 0) as.numeric(vc[[1]][1, 1]) else NULL
  conv <- character(0)
  if (!isTRUE(fit$sdr$pdHess)) conv <- c(conv, "non-positive-definite Hessian (sdr$pdHess is FALSE)")
  if (!identical(fit$fit$convergence, 0L) && !identical(fit$fit$convergence, 0)) {
    conv <- c(conv, paste("optimizer convergence code", fit$fit$convergence, fit$fit$message))
  }
  out$converged <- length(conv) == 0
  out$log_likelihood_kind <- if (lmm) "REML" else "Laplace"
} else {
  fe <- fixef(fit)
  out$se <- as.list(sqrt(diag(as.matrix(vcov(fit)))))
  vc <- as.data.frame(VarCorr(fit))
  out$var_group <- vc$vcov[vc$grp != "Residual"][1]
  conv <- fit@optinfo$conv$lme4$messages
  out$converged <- length(conv) == 0 || all(grepl("singular", conv))
  out$singular <- isSingular(fit)
  out$log_likelihood_kind <- if (isLMM(fit)) "REML" else if (nagq > 1) "AGQ" else "Laplace"
}
out$fixef <- as.list(fe)
names(out$se) <- names(fe)
out$log_likelihood <- as.numeric(logLik(fit))
out$warnings <- unique(c(msgs, if (is.null(conv)) character(0) else conv))
out$status <- "ok"
write_out()
