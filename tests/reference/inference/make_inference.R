# Reference values for glmmlab's inference features (issue 12 points 1, 3, 4, 5):
# anova of nested models (lme4), ML fits (lmer REML = FALSE), Satterthwaite df (lmerTest),
# Nakagawa R2 (performance::r2_nakagawa) and population-level prediction intervals (predict(re.form = NA) + vcov).
# Run from this folder: Rscript make_inference.R  (writes inference.json). Data: ../../../../shared/reference.
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(performance); library(jsonlite)})
ref <- "../../../../shared/reference"
rd <- function(f) read.csv(file.path(ref, f), stringsAsFactors = FALSE)
sleep <- rd("sleepstudy_gaussian.csv")
sleep2 <- rd("models/sleepstudy_slope.csv"); sleep2$Subject <- factor(sleep2$Subject)
cbpp <- rd("models/cbpp_trials.csv"); cbpp$herd <- factor(cbpp$herd)
grouse <- rd("grouseticks_poisson_log.csv")
pen <- rd("models/penicillin_crossed.csv")
exam <- rd("exam_gaussian.csv")
probit <- rd("sim_binomial_probit.csv")
gam <- rd("sim_gamma_log.csv")
mmmec <- rd("models/mmmec_offset.csv")
sala <- rd("models/salamanders_negbin.csv")
ctrl <- glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5))

tab <- function(a) {
  a <- as.data.frame(a)
  list(rows = rownames(a), columns = as.list(setNames(lapply(names(a), function(k) unname(a[[k]])), names(a))))
}
out <- list(R_version = R.version.string, lme4 = as.character(packageVersion("lme4")),
            lmerTest = as.character(packageVersion("lmerTest")),
            performance = as.character(packageVersion("performance")),
            insight = as.character(packageVersion("insight")))

# -- anova ---------------------------------------------------------------------------------------------------
an <- list()
m0 <- lme4::lmer(Reaction ~ Days + (1 | Subject), sleep)
m1 <- lme4::lmer(Reaction ~ Days + (Days | Subject), sleep)
an$sleepstudy <- c(list(data = "sleepstudy_gaussian.csv", family = "gaussian",
                        formulas = c("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)")),
                   tab(anova(m0, m1)))
g0 <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp, binomial, control = ctrl)
g1 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial, control = ctrl)
an$cbpp <- c(list(data = "models/cbpp_trials.csv", family = "binomial",
                  formulas = c("cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
                               "cbind(incidence, size - incidence) ~ period + (1 | herd)")), tab(anova(g0, g1)))
p0 <- glmer(TICKS ~ YEAR96 + YEAR97 + (1 | BROOD), grouse, poisson, control = ctrl)
p1 <- glmer(TICKS ~ YEAR96 + YEAR97 + cHEIGHT + (1 | BROOD), grouse, poisson, control = ctrl)
an$grouse <- c(list(data = "grouseticks_poisson_log.csv", family = "poisson",
                    formulas = c("TICKS ~ YEAR96 + YEAR97 + (1 | BROOD)", "TICKS ~ YEAR96 + YEAR97 + cHEIGHT + (1 | BROOD)")),
               tab(anova(p0, p1)))
# three models, REML refitted by ML: (1 | Subject) < (Days || Subject) < (Days | Subject)
mu <- lme4::lmer(Reaction ~ Days + (Days || Subject), sleep)
an$sleepstudy3 <- c(list(data = "sleepstudy_gaussian.csv", family = "gaussian",
                         formulas = c("Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days || Subject)",
                                      "Reaction ~ Days + (Days | Subject)")), tab(anova(m0, mu, m1)))
out$anova <- an

# -- ML fits (lmer REML = FALSE) --------------------------------------------------------------------------------
ml <- list()
mlfit <- function(name, data, formula) {
  m <- lme4::lmer(as.formula(formula), get(data), REML = FALSE)
  ml[[name]] <<- list(data = data, formula = formula, logLik = as.numeric(logLik(m)), fixef = I(unname(fixef(m))),
                      se = I(unname(sqrt(diag(as.matrix(vcov(m)))))), sigma = sigma(m),
                      varcor = I(as.data.frame(VarCorr(m))$vcov))
}
mlfit("sleep_ri", "sleep", "Reaction ~ Days + (1 | Subject)")
mlfit("sleep_slope", "sleep", "Reaction ~ Days + (Days | Subject)")
mlfit("penicillin", "pen", "diameter ~ 1 + (1 | plate) + (1 | sample)")
mlfit("exam", "exam", "normexam ~ standLRT + sex_M + (1 | school)")
out$ml <- ml

# -- Satterthwaite (lmerTest) -----------------------------------------------------------------------------------
sat <- list()
satfit <- function(name, data, formula) {
  m <- lmerTest::lmer(as.formula(formula), get(data))
  co <- summary(m)$coefficients
  sat[[name]] <<- list(data = data, formula = formula, names = I(rownames(co)), estimate = I(unname(co[, 1])),
                       se = I(unname(co[, 2])), df = I(unname(co[, 3])), t = I(unname(co[, 4])),
                       p = I(unname(co[, 5])), varpar = I(unname(c(getME(m, "theta"), sigma(m)))))
}
satfit("sleep_slope", "sleep", "Reaction ~ Days + (Days | Subject)")
satfit("sleep_ri", "sleep", "Reaction ~ Days + (1 | Subject)")
satfit("penicillin", "pen", "diameter ~ 1 + (1 | plate) + (1 | sample)")
satfit("exam", "exam", "normexam ~ standLRT + sex_M + (1 | school)")
out$satterthwaite <- sat

# -- Nakagawa R2 (performance::r2_nakagawa) ---------------------------------------------------------------------
r2 <- list()
r2fit <- function(name, data, formula, m, extra = list()) {
  r <- suppressWarnings(performance::r2_nakagawa(m))
  r2[[name]] <<- c(list(data = data, formula = formula, family = family(m)$family, link = family(m)$link,
                        marginal = unname(r$R2_marginal), conditional = unname(r$R2_conditional)), extra)
}
r2fit("sleep_ri", "sleepstudy_gaussian.csv", "Reaction ~ Days + (1 | Subject)", m0)
r2fit("sleep_slope", "sleepstudy_gaussian.csv", "Reaction ~ Days + (Days | Subject)", m1)
r2fit("penicillin", "models/penicillin_crossed.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)",
      lme4::lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen))
r2fit("cbpp", "models/cbpp_trials.csv", "cbind(incidence, size - incidence) ~ period + (1 | herd)", g1)
r2fit("probit", "sim_binomial_probit.csv", "y ~ x1 + x2 + (1 | grp)",
      glmer(y ~ x1 + x2 + (1 | grp), probit, binomial("probit"), control = ctrl))
r2fit("grouse", "grouseticks_poisson_log.csv", "TICKS ~ YEAR96 + YEAR97 + cHEIGHT + (1 | BROOD)", p1)
r2fit("mmmec", "models/mmmec_offset.csv", "deaths ~ uvb + offset(log(expected)) + (1 | region)",
      glmer(deaths ~ uvb + offset(log(expected)) + (1 | region), mmmec, poisson, control = ctrl))
# glmer's Gamma criterion (glmmlab's dispersion = "lme4") and the model's likelihood (glmmTMB, glmmlab's default)
r2fit("gamma", "sim_gamma_log.csv", "y ~ x1 + x2 + (1 | grp)",
      glmer(y ~ x1 + x2 + (1 | grp), gam, Gamma("log"), control = ctrl), list(dispersion = "lme4"))
r2fit("gamma_glmmTMB", "sim_gamma_log.csv", "y ~ x1 + x2 + (1 | grp)",
      glmmTMB::glmmTMB(y ~ x1 + x2 + (1 | grp), gam, family = Gamma("log")), list(engine = "glmmTMB"))
r2fit("salamanders", "models/salamanders_negbin.csv", "count ~ mined + (1 | site)",
      glmmTMB::glmmTMB(count ~ mined + (1 | site), sala, family = glmmTMB::nbinom2))
r2fit("sleep_uncorrelated", "sleepstudy_gaussian.csv", "Reaction ~ Days + (Days || Subject)", mu)
out$r2 <- r2

# -- prediction intervals: predict(re.form = NA) and the vcov-based Wald bounds on the link scale ---------------------
cbpp_f <- cbpp; cbpp_f$period <- factor(cbpp_f$period)
gp <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_f, binomial, control = ctrl)
Xn <- model.matrix(~ period, data.frame(period = factor(levels(cbpp_f$period), levels = levels(cbpp_f$period))))
eta <- predict(gp, newdata = data.frame(period = levels(cbpp_f$period)), re.form = NA, type = "link")
# glmmlab's covariance of the fixed effects is lme4's from the working weights (use.hessian = FALSE); lme4's default
# vcov() for a glmer fit uses the finite-difference Hessian instead
se <- sqrt(rowSums((Xn %*% as.matrix(vcov(gp, use.hessian = FALSE))) * Xn))
z <- qnorm(0.975)
out$predict <- list(cbpp = list(data = "models/cbpp_trials.csv",
                                formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                period = levels(cbpp_f$period), eta = unname(eta), se = unname(se),
                                lower = unname(plogis(eta - z * se)), upper = unname(plogis(eta + z * se)),
                                prediction = unname(plogis(eta))))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"), "inference.json")
