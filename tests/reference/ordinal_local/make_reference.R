## Reference fits of ordinal::clmm that ../shared/reference/breadth has no case of: adaptive Gauss-Hermite
## quadrature (nAGQ = 10) on the wine data for the logit and probit links, and the cumulative-link model without
## random effects (clm) for the three links. Fields as ../shared/reference/breadth's (logLik, fixef.cond,
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
