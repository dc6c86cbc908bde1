# Fit one case with lme4 in this R process and write what was measured as JSON.
#
#   Rscript fit_lme4.R SPEC.json OUT.json
#
# Gaussian + identity: lmer(REML = TRUE).  Everything else:
# glmer(nAGQ = nagq, control = glmerControl(optimizer = "bobyqa")).
# fit_seconds is system.time()'s elapsed time around the lmer/glmer call only (not R start-up, not reading data).
# Memory: VmRSS after library(lme4) (baseline), after reading the data, and the VmHWM high-water mark during the
# fit (reset through /proc/self/clear_refs just before it, so reading the CSV does not count).

args <- commandArgs(trailingOnly = TRUE)
spec <- jsonlite::fromJSON(args[1])
out_path <- args[2]

status_kb <- function(field) {
  s <- tryCatch(readLines("/proc/self/status"), error = function(e) character(0))
  line <- grep(paste0("^", field, ":"), s, value = TRUE)
  if (length(line) == 0) return(NA_real_)
  as.numeric(gsub("[^0-9]", "", line[1]))
}

out <- list(fitter = "lme4", status = "error")
write_out <- function() {
  writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), out_path)
}

suppressMessages(library(lme4))
out$versions <- list(lme4 = as.character(packageVersion("lme4")), R = R.version.string,
                     Matrix = as.character(packageVersion("Matrix")))
out$rss_baseline_kb <- status_kb("VmRSS")

d <- if (requireNamespace("data.table", quietly = TRUE)) {
  as.data.frame(data.table::fread(spec$data, showProgress = FALSE))
} else {
  read.csv(spec$data)
}
d[[spec$group]] <- factor(d[[spec$group]])
out$rss_after_load_kb <- status_kb("VmRSS")
out$n_rows_read <- nrow(d)

fixed <- spec$fixed
rhs <- paste(c(if (length(fixed) > 0) fixed else "1", sprintf("(1 | %s)", spec$group)), collapse = " + ")
fm <- as.formula(paste(spec$response, "~", rhs))
family <- spec$family
link <- spec$link
nagq <- if (is.null(spec$nagq)) 1L else as.integer(spec$nagq)

invisible(gc())
out$hwm_reset <- tryCatch({ writeLines("5", "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE,
                          warning = function(w) FALSE)

msgs <- character(0)
fit <- NULL
elapsed <- NA_real_
err <- tryCatch({
  withCallingHandlers({
    if (family == "gaussian" && link == "identity") {
      tm <- system.time(fit <- lmer(fm, data = d, REML = TRUE))
      out$method <- "lmer REML"
    } else {
      fam <- switch(family,
        binomial = binomial(link = link),
        poisson = poisson(link = link),
        gamma = Gamma(link = link),
        gaussian = gaussian(link = link),
        stop(paste("unknown family", family)))
      tm <- system.time(fit <- glmer(fm, data = d, family = fam, nAGQ = nagq,
                                     control = glmerControl(optimizer = "bobyqa")))
      out$method <- sprintf("glmer nAGQ=%d bobyqa", nagq)
    }
    elapsed <- tm[["elapsed"]]
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
fe <- fixef(fit)
out$fixef <- as.list(fe)
out$se <- as.list(sqrt(diag(as.matrix(vcov(fit)))))
names(out$se) <- names(fe)
vc <- as.data.frame(VarCorr(fit))
out$var_group <- vc$vcov[vc$grp == spec$group][1]
out$log_likelihood <- as.numeric(logLik(fit))
out$log_likelihood_kind <- if (isLMM(fit)) "REML" else if (nagq > 1) "AGQ" else "Laplace"
conv <- fit@optinfo$conv$lme4$messages
out$warnings <- unique(c(msgs, if (is.null(conv)) character(0) else conv))
out$converged <- length(conv) == 0 || all(grepl("singular", conv))
out$singular <- isSingular(fit)
out$status <- "ok"
write_out()
