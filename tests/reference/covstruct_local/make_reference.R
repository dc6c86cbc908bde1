## Reference fits of covariance structures that ../shared/reference/breadth has no case of, made with glmmTMB 1.1.5:
## a binomial ar1 model (bin_ar1), a continuous-time AR1 over unequally spaced times (gauss_ou: glmmTMB's
## ou(numFactor(hours) + 0 | id), hours = tnum^1.5), and an ar1 model fitted by REML (reml_ar1). The data are
## ../shared/reference/breadth/sim_longitudinal_ar1.csv with derived columns (yb = y above its median; hours),
## written here as covstruct_local.csv. Run from the repository root:
##   Rscript tests/reference/covstruct_local/make_reference.R tests/reference/covstruct_local ../shared/reference/breadth
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
breadth <- if (length(args) > 1) args[2] else "../shared/reference/breadth"

d <- read.csv(file.path(breadth, "sim_longitudinal_ar1.csv"), stringsAsFactors = TRUE)
d$yb <- as.integer(d$y > median(d$y))
d$hours <- d$tnum^1.5
write.csv(d, file.path(out, "covstruct_local.csv"), row.names = FALSE)
d <- read.csv(file.path(out, "covstruct_local.csv"), stringsAsFactors = TRUE)
d$hours_f <- numFactor(d$hours)

one <- function(case, formula, glmmlab_formula, family, reml = FALSE) {
  fit <- glmmTMB(as.formula(formula), data = d, family = family, REML = reml)
  stopifnot(fit$fit$convergence == 0, fit$sdr$pdHess)
  vc <- VarCorr(fit)$cond[[1]]
  sd <- attr(vc, "stddev")
  corr <- attr(vc, "correlation")
  res <- list(logLik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"),
              fixef = as.list(fixef(fit)$cond), se = as.list(sqrt(diag(vcov(fit)$cond))),
              sd = unname(sd), corr = unname(corr), sigma = sigma(fit))
  doc <- list(case = case, formula = glmmlab_formula, glmmTMB_formula = formula, family = family$family,
              link = family$link, reml = reml, csv = "covstruct_local.csv",
              versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB"))),
              results = res)
  write_json(doc, file.path(out, paste0(case, ".json")), auto_unbox = TRUE, digits = NA, pretty = TRUE)
}

one("bin_ar1", "yb ~ tnum + trt + ar1(0 + time | id)", "yb ~ tnum + trt + ar1(0 + time | id)", binomial())
one("gauss_ou", "y ~ tnum + trt + ou(hours_f + 0 | id)", "y ~ tnum + trt + ou(0 + hours | id)", gaussian())
one("reml_ar1", "y ~ tnum + trt + ar1(0 + time | id)", "y ~ tnum + trt + ar1(0 + time | id)", gaussian(),
    reml = TRUE)
