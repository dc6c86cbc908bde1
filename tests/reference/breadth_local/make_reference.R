## Reference fits of glmmTMB's families that ../shared/reference/breadth has no case of: nbinom1 without
## zero-inflation (owls_nbinom1, sim_nbinom1) and tweedie with the power held at a given value
## (sim_tweedie_power: glmmTMB's start + map of psi). Same JSON fields as ../shared/reference/breadth (results.ML, as
## its README describes), plus "tweedie_power" for the held power. Run from the repository root with glmmTMB 1.1.5:
##   Rscript tests/reference/breadth_local/make_reference.R tests/reference/breadth_local ../shared/reference/breadth
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
breadth <- if (length(args) > 1) args[2] else "../shared/reference/breadth"

sig <- function(x) signif(x, 10)

## data: a data frame written to <case>.csv here, or the name of a breadth CSV fitted as it is (recorded in "csv")
one <- function(case, data, formula, family, link, source, note, power = NULL) {
  csv <- if (is.character(data)) file.path(breadth, data) else file.path(out, paste0(case, ".csv"))
  if (!is.character(data)) write.csv(data, csv, row.names = FALSE)
  d <- read.csv(csv, stringsAsFactors = TRUE)
  t0 <- Sys.time()
  fam <- do.call(family, list(link = link))
  fit <- if (is.null(power)) glmmTMB(as.formula(formula), data = d, family = fam) else
    glmmTMB(as.formula(formula), data = d, family = fam, start = list(psi = qlogis(power - 1)),
            map = list(psi = factor(NA)))
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  stopifnot(fit$fit$convergence == 0, fit$sdr$pdHess)
  fe <- fixef(fit)$cond
  se <- sqrt(diag(vcov(fit)$cond))
  vcl <- VarCorr(fit)$cond
  vc <- do.call(rbind, lapply(names(vcl), function(gn) {
    m <- vcl[[gn]]; sdv <- attr(m, "stddev")
    data.frame(grp = gn, var1 = names(sdv), var2 = NA, vcov = diag(m), sdcor = sdv, stringsAsFactors = FALSE)
  }))  # random intercepts / uncorrelated terms only (as here)
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  ## conditional SD given the estimates: the inner Hessian of the joint negative log-density at the modes
  obj <- fit$obj
  par <- fit$fit$parfull
  H <- obj$env$spHess(par, random = TRUE)
  cs_given <- sqrt(diag(solve(as.matrix(H))))
  ll <- logLik(fit)
  res <- list(
    logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit),
    ngroups = as.list(fit$modelInfo$reTrms$cond$flist |> sapply(nlevels)),
    fixef = list(cond = as.list(fe), zi = setNames(list(), character(0)), disp = setNames(list(), character(0))),
    se = list(cond = as.list(se), zi = setNames(list(), character(0)), disp = setNames(list(), character(0))),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i],
      var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i],
      component = vc$grp[i], model = "cond")),
    singular = any(vc$sdcor[is.na(vc$var2)] < 1e-3),
    sigma = sigma(fit),
    family_parameter = if (family == "tweedie") list(phi = sigma(fit), power = unname(family_params(fit))) else
      list(phi = sigma(fit)),
    ranef = list(model = as.character(re$component), grpvar = as.character(re$grpvar), term = as.character(re$term),
                 grp = as.character(re$grp), condval = sig(re$condval), condsd = sig(re$condsd),
                 condsd_given_params = sig(cs_given)),
    rows = seq_len(nrow(d)) - 1,
    fitted = sig(as.numeric(predict(fit, type = "response"))),
    eta = sig(as.numeric(predict(fit, type = "link"))),
    converged = TRUE, messages = list(), seconds = secs, fit_used = "glmmTMB default (nlminb)",
    optimizer_message = fit$fit$message)
  doc <- list(case = case, formula = formula, zi = NULL, disp = NULL, family = family, link = link,
              tweedie_power = power, csv = if (is.character(data)) paste0("breadth/", data) else NULL,
              weights = NULL, offset = NULL, needs = list("family"), source = source, note = note,
              engine = "glmmTMB",
              versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                              TMB = as.character(packageVersion("TMB"))),
              results = list(ML = res))
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
             file.path(out, paste0(case, ".json")))
  cat(case, format(as.numeric(ll), digits = 12), "\n")
}

owls <- read.csv(file.path(breadth, "owls_zinb1.csv"))
one("owls_nbinom1", owls,
    "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)", "nbinom1", "log",
    "glmmTMB::Owls (as ../shared/reference/breadth/owls_zinb1.csv)",
    "NB1 with an offset, no zero-inflation (owls_zinb1's model without its zi part)")

set.seed(20261310)
G <- 40; per <- 25
g <- rep(sprintf("g%02d", 1:G), each = per)
x <- round(runif(G * per, -1, 1), 6)
b <- rnorm(G, 0, 0.6)[as.integer(factor(g))]
mu <- exp(0.8 + 0.5 * x + b)
phi <- 2.5
y <- rnbinom(G * per, size = mu / phi, mu = mu)
one("sim_nbinom1", data.frame(y = y, x = x, g = g), "y ~ x + (1 | g)", "nbinom1", "log",
    "simulated (seed 20261310)", "NB1 counts: truth intercept 0.8, slope 0.5, random-intercept SD 0.6, phi 2.5")

one("sim_tweedie_power", "sim_tweedie.csv", "y ~ x + (1 | g)", "tweedie", "log",
    "../shared/reference/breadth/sim_tweedie.csv",
    "sim_tweedie with the power held at 1.5 (psi mapped): phi and the rest estimated", power = 1.5)
