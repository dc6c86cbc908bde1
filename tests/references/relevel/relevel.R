# lme4's fits of relevel.csv with factor f's reference level set to "b" (R: relevel in data preparation).
# Run from this directory: Rscript relevel.R > relevel.json
suppressMessages({library(lme4); library(jsonlite)})
d <- read.csv("relevel.csv", stringsAsFactors = TRUE)
d$f <- relevel(d$f, "b")
out <- function(m) {
  list(formula = deparse(formula(m)), logLik = as.numeric(logLik(m)), fixef = as.list(fixef(m)),
       se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       varcorr = as.data.frame(VarCorr(m))$vcov)
}
lmm <- lmer(y ~ x * f + (1 | g), data = d, REML = TRUE)
pois <- glmer(count ~ x + f + (1 | g), data = d, family = poisson(),
              control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
cat(toJSON(list(lme4 = as.character(packageVersion("lme4")), reference = list(f = "b"),
                gaussian = out(lmm), poisson = out(pois)), digits = 15, auto_unbox = TRUE, pretty = TRUE))
