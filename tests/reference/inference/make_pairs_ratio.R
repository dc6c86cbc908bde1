# Reference values for pairwise comparisons on the response scale (issue 19, point 5): emmeans' pairs() of means
# computed with type = "response" on a log or logit link are ratios (Poisson, log) and odds ratios (binomial, logit):
# the contrast "a / b", the ratio exp(difference), its SE by the delta method, z and p as on the link scale.
# emmeans 1.8.4-1, lme4 1.1-31; GLMMs with vcov. = vcov(fit, use.hessian = FALSE) (glmmlab's working-weight covariance).
# Run from this folder: Rscript make_pairs_ratio.R  (writes pairs_ratio.json). Data: ../../../../shared/reference.
suppressPackageStartupMessages({library(lme4); library(emmeans); library(jsonlite)})
ref <- "../../../../shared/reference"
rd <- function(f) read.csv(file.path(ref, f), stringsAsFactors = TRUE)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
cbpp <- rd("models/cbpp_trials.csv"); cbpp$herd <- factor(cbpp$herd)
ticks <- rd("grouseticks_poisson_log.csv")
# the year as a factor (the file holds its two indicator columns), its levels as glmmlab sorts text
ticks$year <- factor(ifelse(ticks$YEAR96 == 1, "y96", ifelse(ticks$YEAR97 == 1, "y97", "y95")))
cols <- function(a) {
  a <- as.data.frame(a)
  setNames(lapply(names(a), function(k) { v <- a[[k]]; if (is.factor(v)) as.character(v) else unname(v) }), names(a))
}
cases <- list(
  cbpp_period = list(data = "models/cbpp_trials.csv", frame = cbpp, family = "binomial",
                     formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", specs = ~ period),
  ticks_year = list(data = "grouseticks_poisson_log.csv", frame = ticks, family = "poisson",
                    formula = "TICKS ~ year + cHEIGHT + (1 | BROOD)", specs = ~ year))
out <- list(R_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
            emmeans = as.character(packageVersion("emmeans")))
for (nm in names(cases)) {
  cs <- cases[[nm]]
  fam <- if (cs$family == "binomial") binomial else poisson
  m <- glmer(as.formula(cs$formula), cs$frame, fam, control = ctrl)
  e <- emmeans(m, cs$specs, type = "response", vcov. = vcov(m, use.hessian = FALSE))
  out[[nm]] <- list(data = cs$data, family = cs$family, formula = cs$formula, term = all.vars(cs$specs),
                    tukey = cols(summary(pairs(e, adjust = "tukey"))),
                    holm = cols(summary(pairs(e, adjust = "holm"))))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), "pairs_ratio.json")
