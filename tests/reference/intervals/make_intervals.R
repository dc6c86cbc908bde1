# Reference intervals from lme4 for glmmlab's result.conf_int(method = "profile" | "boot").
# Run from the repository root:  Rscript tests/reference/intervals/make_intervals.R
# Writes tests/reference/intervals/<case>.json. Data: ../shared/reference (the same CSVs the fits use).
suppressMessages({library(lme4); library(jsonlite)})
ref <- "../shared/reference"
out <- "tests/reference/intervals"
nsim <- 1000

# Monte Carlo standard error of a percentile interval's bounds, from the bootstrap replicates themselves:
# the p-quantile's SE ~ half the distance between the order statistics n p -/+ sqrt(n p (1 - p)).
quantile_se <- function(x, p) {
  x <- sort(x[is.finite(x)]); n <- length(x); s <- sqrt(n * p * (1 - p))
  lo <- max(1, floor(n * p - s)); hi <- min(n, ceiling(n * p + s))
  (x[hi] - x[lo]) / 2
}

one <- function(case, fit, boot = TRUE, note = "") {
  cat(case, "\n")
  t_prof <- system.time(pr <- confint(fit, method = "profile", oldNames = FALSE, quiet = TRUE))[["elapsed"]]
  res <- list(case = case, note = note, formula = deparse(formula(fit), width.cutoff = 500),
              family = family(fit)$family, link = family(fit)$link, REML = isREML(fit),
              lme4_version = as.character(packageVersion("lme4")), R_version = R.version.string,
              level = 0.95,
              profile = list(names = rownames(pr), lower = unname(pr[, 1]), upper = unname(pr[, 2]),
                             seconds = t_prof))
  if (boot) {
    set.seed(20261129)
    t_boot <- system.time(
      bb <- bootMer(fit, FUN = function(x) {
        th <- x@theta; nvec <- lengths(x@cnms)
        ss <- if (isLMM(x)) Cv_to_Sv(th, n = nvec, s = sigma(x)) else Cv_to_Sv(th, n = nvec)
        c(ss, fixef(x))
      }, nsim = nsim))[["elapsed"]]
    # what confint(fit, method = "boot", nsim = nsim, oldNames = FALSE) does: bootMer with these statistics,
    # then percentile intervals (one bootMer run, whose replicates also give the Monte Carlo standard errors)
    bt <- confint(bb, type = "perc", level = 0.95)
    rownames(bt) <- c(lme4:::profnames(fit, FALSE, useSc = as.logical(fit@devcomp$dims[["useSc"]])), names(fixef(fit)))
    tt <- bb$t
    res$boot <- list(names = rownames(bt), nsim = nsim, seed = 20261129,
                     lower = unname(bt[, 1]), upper = unname(bt[, 2]),
                     se_lower = unname(apply(tt, 2, quantile_se, p = 0.025)),
                     se_upper = unname(apply(tt, 2, quantile_se, p = 0.975)),
                     failed = sum(!complete.cases(tt)), seconds = t_boot)
  }
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, paste0(case, ".json")))
}

rd <- function(f) read.csv(file.path(ref, f), stringsAsFactors = FALSE)
only <- commandArgs(trailingOnly = TRUE)  # case names to (re)make; none: every case
one_case <- one
one <- function(case, ...) if (!length(only) || case %in% only) one_case(case, ...)

d <- rd("models/sleepstudy_slope.csv")
one("sleepstudy_slope", lmer(Reaction ~ Days + (Days | Subject), d), note = "REML fit; lme4 profiles the ML deviance")
d <- rd("models/penicillin_crossed.csv")
one("penicillin_crossed", lmer(diameter ~ 1 + (1 | plate) + (1 | sample), d), note = "crossed, REML fit")
d <- rd("cbpp_binomial_logit.csv")
one("cbpp_binomial_logit", glmer(y ~ period2 + period3 + period4 + (1 | herd), d, family = binomial,
                                 control = glmerControl(optimizer = "bobyqa")), note = "random-intercept binomial, Laplace")
d <- rd("models/cbpp_trials.csv")
one("cbpp_trials", glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), d, family = binomial,
                         control = glmerControl(optimizer = "bobyqa")), boot = FALSE, note = "binomial trials (general path)")
d <- rd("models/contraception_slope.csv")
one("contraception_slope", glmer(use ~ age + I(age^2) + urban + livch + (1 + urban | district), d, family = binomial,
                                 control = glmerControl(optimizer = "bobyqa")), boot = FALSE,
    note = "general GLMM: correlated random slope")
