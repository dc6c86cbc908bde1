# Reference values for glmmlab's omnibus tests per model term and estimated marginal means (issue 19 points 3, 5):
# - lmerTest::anova(fit) (type III, Satterthwaite) and lmerTest::contestMD(fit, L) with L the rows of the identity
#   that pick a term's columns (the test glmmlab computes: a term's coefficients = 0 given all others, R's default
#   treatment contrasts, as car::Anova(type = 3));
# - car::Anova(fit, type = 3) Wald chi-square tests of GLMMs, with the working-weight covariance
#   vcov(fit, use.hessian = FALSE) (glmmlab's; lme4's default vcov() of a glmer fit uses a finite-difference Hessian);
# - emmeans 1.8.4-1: emmeans(), pairs() (Tukey and Holm) and covariate grids, lmer.df = "satterthwaite" (emmeans
#   would use Kenward-Roger when pbkrtest is installed), GLMMs with vcov. = vcov(fit, use.hessian = FALSE).
# Run from this folder: Rscript make_terms.R  (writes terms.json). Data: ../../../../shared/reference.
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(car); library(emmeans); library(jsonlite)})
ref <- "../../../../shared/reference"
rd <- function(f) read.csv(file.path(ref, f), stringsAsFactors = TRUE)
sleep <- rd("sleepstudy_gaussian.csv")
exam <- rd("models/exam_interaction.csv"); exam$school <- factor(exam$school)
pastes <- rd("models/pastes_nested.csv")
contra <- rd("models/contraception_slope.csv"); contra$district <- factor(contra$district)
cbpp <- rd("models/cbpp_trials.csv"); cbpp$herd <- factor(cbpp$herd)
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))
emm_options(lmer.df = "satterthwaite", lmerTest.limit = 1e6, pbkrtest.limit = 0)

cols <- function(a) {
  a <- as.data.frame(a)
  c(list(rows = rownames(a)), setNames(lapply(names(a), function(k) unname(a[[k]])), names(a)))
}
byterm <- function(m) {  # contestMD on each term's columns (R's "assign")
  X <- model.matrix(m); asg <- attr(X, "assign"); labs <- attr(terms(m), "term.labels")
  out <- lapply(seq_along(labs), function(j) {
    L <- diag(ncol(X))[asg == j, , drop = FALSE]
    as.data.frame(lmerTest::contestMD(m, L))
  })
  r <- do.call(rbind, out); rownames(r) <- labs
  cols(r)
}
out <- list(R_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
            lmerTest = as.character(packageVersion("lmerTest")), car = as.character(packageVersion("car")),
            emmeans = as.character(packageVersion("emmeans")))

# -- omnibus tests per term -------------------------------------------------------------------------------------
an <- list()
gauss <- list(
  sleep_slope = list("sleepstudy_gaussian.csv", sleep, "Reaction ~ Days + (Days | Subject)"),
  exam_interaction = list("models/exam_interaction.csv", exam, "normexam ~ standLRT * sex + (1 | school)"),
  pastes_cask = list("models/pastes_nested.csv", pastes, "strength ~ cask + (1 | batch)"),
  # a linear probability model: a 4-level factor in an interaction with a covariate, and a second factor
  contraception_lpm = list("models/contraception_slope.csv", contra, "use ~ age * livch + urban + (1 | district)"))
fits <- list()
for (nm in names(gauss)) {
  g <- gauss[[nm]]
  m <- lmerTest::lmer(as.formula(g[[3]]), g[[2]])
  fits[[nm]] <- m
  an[[nm]] <- list(data = g[[1]], formula = g[[3]], family = "gaussian", link = "identity",
                   lmerTest = cols(anova(m)), columns = byterm(m),
                   car = cols(car::Anova(m, type = 3)))
}
glmms <- list(
  cbpp = list("models/cbpp_trials.csv", cbpp, "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  contraception = list("models/contraception_slope.csv", contra, "use ~ age * livch + urban + (1 | district)"))
for (nm in names(glmms)) {
  g <- glmms[[nm]]
  m <- glmer(as.formula(g[[3]]), g[[2]], binomial, control = ctrl)
  fits[[nm]] <- m
  an[[nm]] <- list(data = g[[1]], formula = g[[3]], family = "binomial", link = "logit",
                   car = cols(car::Anova(m, type = 3, vcov. = vcov(m, use.hessian = FALSE))))
}
out$anova <- an

# -- estimated marginal means -------------------------------------------------------------------------------------
em <- list()
emm <- function(name, fit, specs, type = "link", at = NULL, pairs = TRUE) {
  v <- if (isGLMM(fit)) vcov(fit, use.hessian = FALSE) else vcov(fit)
  e <- if (is.null(at)) emmeans(fit, specs, type = type, vcov. = v) else emmeans(fit, specs, type = type, vcov. = v, at = at)
  r <- list(case = name, specs = deparse(specs), type = type, emmeans = cols(summary(e)))
  if (pairs) {
    e_link <- if (is.null(at)) emmeans(fit, specs, vcov. = v) else emmeans(fit, specs, vcov. = v, at = at)
    r$tukey <- cols(summary(pairs(e_link, adjust = "tukey")))
    r$holm <- cols(summary(pairs(e_link, adjust = "holm")))
    r$none <- cols(summary(pairs(e_link, adjust = "none")))
  }
  r
}
em$pastes_cask <- emm("pastes_cask", fits$pastes_cask, ~ cask)
em$contraception_lpm_livch <- emm("contraception_lpm", fits$contraception_lpm, ~ livch)
em$contraception_lpm_livch_by_urban <- emm("contraception_lpm", fits$contraception_lpm, ~ livch | urban)
age_grid <- seq(min(contra$age), max(contra$age), length.out = 20)
em$contraception_lpm_age_by_livch <- emm("contraception_lpm", fits$contraception_lpm, ~ age | livch,
                                          at = list(age = age_grid), pairs = FALSE)
em$exam_sex <- emm("exam_interaction", fits$exam_interaction, ~ sex)
em$cbpp_period <- emm("cbpp", fits$cbpp, ~ period, type = "response")
em$cbpp_period_link <- emm("cbpp", fits$cbpp, ~ period, type = "link", pairs = FALSE)
em$contraception_livch <- emm("contraception", fits$contraception, ~ livch, type = "response")
em$contraception_age_by_urban <- emm("contraception", fits$contraception, ~ age | urban, type = "response",
                                      at = list(age = age_grid), pairs = FALSE)
out$emmeans <- em
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), "terms.json")
