# Moments of lme4's parametric bootstrap (bootMer, nsim = 1000) for glmmlab's bootstrap test
# (tests/services/test_bootstrap_lme4.py).
# Run from the repository root:  Rscript tests/reference/bootstrap/make_bootstrap.R
# Writes tests/reference/bootstrap/bootmer.json: per case the mean and SD of each parameter's bootstrap
# distribution (the statistics of make_intervals.R: the random-effect SDs and correlations, sigma where there is
# one, the fixed effects, with lme4's names), their kurtosis m4 / s^4 (for the Monte Carlo error of the SD: heavy
# tails, such as a binomial fixed effect's near-separated replicates, make it larger than for a normal), the
# number of successful refits, nsim and the seed.
# Data: ../shared/reference (the same CSVs the fits use).
suppressMessages({library(lme4); library(jsonlite)})
ref <- "../shared/reference"
out <- "tests/reference/bootstrap/bootmer.json"
nsim <- 1000
seed <- 20261130

one <- function(case, data, fit, note) {
  cat(case, "\n")
  set.seed(seed)
  secs <- system.time(
    bb <- bootMer(fit, FUN = function(x) {
      th <- x@theta; nvec <- lengths(x@cnms)
      ss <- if (isLMM(x)) Cv_to_Sv(th, n = nvec, s = sigma(x)) else Cv_to_Sv(th, n = nvec)
      c(ss, fixef(x))
    }, nsim = nsim))[["elapsed"]]
  nm <- c(lme4:::profnames(fit, FALSE, useSc = as.logical(fit@devcomp$dims[["useSc"]])), names(fixef(fit)))
  tt <- bb$t[complete.cases(bb$t), , drop = FALSE]
  list(case = case, data = data, note = note, formula = deparse(formula(fit), width.cutoff = 500),
       family = family(fit)$family, link = family(fit)$link, REML = isREML(fit),
       names = nm, estimate = unname(bb$t0), mean = unname(colMeans(tt)), sd = unname(apply(tt, 2, sd)),
       kurtosis = unname(apply(tt, 2, function(x) mean((x - mean(x))^4) / mean((x - mean(x))^2)^2)),
       n = nrow(tt), nsim = nsim, seed = seed, failed = nsim - nrow(tt), seconds = secs,
       lme4_version = as.character(packageVersion("lme4")), R_version = R.version.string)
}

rd <- function(f) read.csv(file.path(ref, f), stringsAsFactors = FALSE)
res <- list()
d <- rd("models/cbpp_trials.csv")
res$cbpp_trials <- one("cbpp_trials", "models/cbpp_trials.csv",
                       glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), d, family = binomial,
                             control = glmerControl(optimizer = "bobyqa")),
                       "binomial trials, random intercept, Laplace")
d <- rd("dyestuff_gaussian.csv")
res$dyestuff <- one("dyestuff", "dyestuff_gaussian.csv", lmer(Yield ~ 1 + (1 | Batch), d),
                    "Gaussian random intercept, REML")
d <- rd("models/sleepstudy_slope.csv")
res$sleepstudy_slope <- one("sleepstudy_slope", "models/sleepstudy_slope.csv",
                            lmer(Reaction ~ Days + (Days | Subject), d), "correlated random slope, REML")
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
