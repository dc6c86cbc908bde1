## Reference fits of ordinal::clmm that ../shared/reference/breadth has no case of: adaptive Gauss-Hermite
## quadrature (nAGQ = 10) on the wine data for the logit and probit links, crossed random intercepts
## (sim_clmm_crossed: 40 judges x 30 items) and nested ones (sim_clmm_nested: classes within 20 schools), simulated
## here with fixed seeds and written beside as CSV, and the cumulative-link model without random effects (clm) for
## the three links on the wine data. Fields as ../shared/reference/breadth's (logLik, fixef.cond,
## thresholds, se, se_thresholds, se_log_sd, varcorr sdcor) for the clmm fits; logLik, thresholds and fixef for clm.
## Run from the repository root with ordinal 2022.11-16:
##   Rscript tests/reference/ordinal_local/make_reference.R tests/reference/ordinal_local ../shared/reference/breadth
suppressPackageStartupMessages({library(ordinal); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
breadth <- if (length(args) > 1) args[2] else "../shared/reference/breadth"
d <- read.csv(file.path(breadth, "wine_clmm_logit.csv"))
d$rating <- factor(d$rating, ordered = TRUE); d$judge <- factor(d$judge)
th_names <- function(fit) names(fit$alpha)
for (lk in c("logit", "probit")) {
  fit <- clmm(rating ~ temp + contact + (1 | judge), data = d, link = lk, nAGQ = 10)
  stopifnot(fit$optRes$convergence == 0)
  se <- sqrt(diag(vcov(fit)))
  res <- list(logLik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"),
              fixef = list(cond = as.list(fit$beta)), se = list(cond = as.list(se[names(fit$beta)])),
              thresholds = as.list(fit$alpha), se_thresholds = as.list(se[names(fit$alpha)]),
              se_log_sd = list(judge = unname(se["ST1"])),
              varcorr = list(list(grp = "judge", sdcor = unname(fit$ST$judge[1, 1]))),
              max_gradient = max(abs(fit$gradient)))
  case <- list(case = paste0("wine_clmm_", lk, "_agq10"), csv = "wine_clmm_logit.csv",
               formula = "rating ~ temp + contact + (1 | judge)", link = lk, nagq = 10,
               versions = list(R = R.version.string, ordinal = as.character(packageVersion("ordinal"))),
               results = list(ML = res))
  write(toJSON(case, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, paste0(case$case, ".json")))
}
clms <- list()
for (lk in c("logit", "probit", "cloglog")) {
  fit <- clm(rating ~ temp + contact, data = d, link = lk)
  clms[[lk]] <- list(logLik = as.numeric(logLik(fit)), thresholds = as.list(fit$alpha),
                     fixef = as.list(fit$beta))
}
write(toJSON(list(case = "wine_clm", csv = "wine_clmm_logit.csv", formula = "rating ~ temp + contact",
                  versions = list(R = R.version.string, ordinal = as.character(packageVersion("ordinal"))),
                  fits = clms), auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out, "wine_clm.json"))

## crossed and nested random intercepts (simulated; seeds fixed), with the modes and their conditional SDs
ranef_rows <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  do.call(rbind, lapply(names(re), function(g) data.frame(grpvar = g, term = "(Intercept)",
    grp = rownames(re[[g]]), condval = signif(re[[g]][, 1], 10),
    condsd = signif(sqrt(attr(re[[g]], "condVar")[, 1]), 10), stringsAsFactors = FALSE)))
}
sim_case <- function(case, d, formula, note, response = "y", csv = NULL) {
  if (is.null(csv)) {
    csv <- file.path(out, paste0(case, ".csv"))
    write.csv(d, csv, row.names = FALSE)
  }
  d <- read.csv(csv)
  d[[response]] <- factor(d[[response]], ordered = TRUE)
  for (g in setdiff(names(d), c(response, "x"))) d[[g]] <- factor(d[[g]])
  fit <- clmm(as.formula(formula), data = d)
  stopifnot(fit$optRes$convergence == 0, max(abs(fit$gradient)) < 0.01)
  se <- sqrt(diag(vcov(fit)))
  st <- names(fit$ST)
  ll <- logLik(fit)
  ## clmm optimises log(SD) for one random term but the SDs themselves for several (its optRes$par ends with
  ## them): vcov's ST rows are then SEs of the SDs, put here on the log scale (SE(SD) / SD) as the breadth set's
  sds <- sapply(st, function(g) fit$ST[[g]][1, 1])
  tau <- tail(unname(fit$optRes$par), length(st))
  se_st <- unname(se[paste0("ST", seq_along(st))])
  se_log <- if (isTRUE(all.equal(tau, unname(log(sds))))) se_st else se_st / unname(sds)
  res <- list(logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit),
              ngroups = as.list(fit$dims$nlev.re),
              fixef = list(cond = as.list(fit$beta)), se = list(cond = as.list(se[names(fit$beta)])),
              thresholds = as.list(fit$alpha), se_thresholds = as.list(se[names(fit$alpha)]),
              se_log_sd = setNames(as.list(se_log), st),
              varcorr = lapply(st, function(g) list(grp = g, sdcor = unname(fit$ST[[g]][1, 1]))),
              ranef = ranef_rows(fit), max_gradient = max(abs(fit$gradient)))
  case <- list(case = case, formula = formula, link = "logit", response_levels = levels(d[[response]]),
               note = note,
               versions = list(R = R.version.string, ordinal = as.character(packageVersion("ordinal"))),
               results = list(ML = res))
  if (grepl("^wine", case$case)) case$csv <- basename(csv)  # a breadth CSV, fitted as it is
  write(toJSON(case, auto_unbox = TRUE, digits = NA, pretty = TRUE, dataframe = "columns"),
        file.path(out, paste0(case$case, ".json")))
}
set.seed(31)
nj <- 40; ni <- 30
g <- expand.grid(judge = 1:nj, item = 1:ni)
x <- rnorm(nrow(g))
lat <- 0.9 * x + rnorm(nj, 0, 0.8)[g$judge] + rnorm(ni, 0, 0.5)[g$item] + rlogis(nrow(g))
sim_case("sim_clmm_crossed", data.frame(y = cut(lat, c(-Inf, -1.2, 0, 1.1, 2.4, Inf), labels = FALSE),
         x = round(x, 6), judge = g$judge, item = g$item), "y ~ x + (1 | judge) + (1 | item)",
         "seed 31; 40 judges crossed with 30 items; true slope 0.9, SDs 0.8 (judge) and 0.5 (item)")
set.seed(5)
n <- 600; school <- rep(1:20, each = 30); class <- rep(1:60, each = 10)
x <- rnorm(n)
lat <- 0.8 * x + rnorm(20, 0, 0.7)[school] + rnorm(60, 0, 0.5)[class] + rlogis(n)
sim_case("sim_clmm_nested", data.frame(y = cut(lat, c(-Inf, -1, 0.5, 2, Inf), labels = FALSE), x = round(x, 6),
         school = school, class = class), "y ~ x + (1 | school/class)",
         "seed 5; 60 classes (10 rows each) within 20 schools; true slope 0.8, SDs 0.7 (school) and 0.5 (class)")
sim_case("wine_clmm_null", NULL, "rating ~ 1 + (1 | judge)",
         "the wine data without predictors: thresholds and the judge SD only", response = "rating",
         csv = file.path(breadth, "wine_clmm_logit.csv"))
