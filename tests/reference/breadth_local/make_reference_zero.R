## Reference fits of zero and dispersion models that ../shared/reference/breadth has no case of: a Gamma hurdle
## (ziGamma), hurdles of truncated_poisson and truncated_nbinom1, and dispersion models of beta_family, nbinom1 and
## t_family (the t's df estimated beside a dispersion model). Same JSON fields as ../shared/reference/breadth
## (results.ML with fixef/se by part, fitted, fitted_conditional, zi_prob, dispersion, as its README describes).
## Run from the repository root with glmmTMB 1.1.5:
##   Rscript tests/reference/breadth_local/make_reference_zero.R tests/reference/breadth_local ../shared/reference/breadth
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[1] else "."
breadth <- if (length(args) > 1) args[2] else "../shared/reference/breadth"

sig <- function(x) signif(x, 10)
named <- function(x) if (length(x)) as.list(x) else setNames(list(), character(0))

one <- function(case, data, formula, zi, disp, family, link, source, note, needs) {
  csv <- if (is.character(data)) file.path(breadth, data) else file.path(out, paste0(case, ".csv"))
  if (!is.character(data)) write.csv(data, csv, row.names = FALSE)
  d <- read.csv(csv, stringsAsFactors = TRUE)
  fam <- do.call(family, list(link = link))
  t0 <- Sys.time()
  fit <- glmmTMB(as.formula(formula), ziformula = if (is.null(zi)) ~0 else as.formula(zi),
                 dispformula = if (is.null(disp)) ~1 else as.formula(disp), data = d, family = fam)
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  stopifnot(fit$fit$convergence == 0, fit$sdr$pdHess)
  fe <- fixef(fit)
  V <- vcov(fit)
  se <- lapply(c(cond = "cond", zi = "zi", disp = "disp"), function(p) if (is.null(V[[p]])) numeric(0) else
    sqrt(diag(V[[p]])))
  names(se$zi) <- sub("^zi~", "", names(se$zi))  # vcov's names carry the part (zi~x, d~x); fixef's do not
  names(se$disp) <- sub("^d~", "", names(se$disp))
  if (is.null(disp)) {  # the breadth README's convention: a constant dispersion is in family_parameter, not fixef
    fe$disp <- numeric(0)
    se$disp <- numeric(0)
  }
  vcl <- VarCorr(fit)$cond
  vc <- do.call(rbind, lapply(names(vcl), function(gn) {
    m <- vcl[[gn]]; sdv <- attr(m, "stddev")
    data.frame(grp = gn, var1 = names(sdv), vcov = diag(m), sdcor = sdv, stringsAsFactors = FALSE)
  }))
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  ll <- logLik(fit)
  fp <- list()
  if (is.null(disp)) {
    if (family %in% c("nbinom1", "beta_family", "truncated_nbinom1")) fp <- list(phi = sigma(fit))
    if (family == "ziGamma") fp <- list(sigma = sigma(fit), shape = 1 / sigma(fit)^2)
  }
  if (family == "t_family") fp <- c(if (is.null(disp)) list(sigma = sigma(fit)) else list(),
                                    list(df = unname(family_params(fit))))
  res <- list(
    logLik = as.numeric(ll), df = attr(ll, "df"), AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit),
    ngroups = as.list(fit$modelInfo$reTrms$cond$flist |> sapply(nlevels)),
    fixef = list(cond = named(fe$cond), zi = named(fe$zi), disp = named(fe$disp)),
    se = list(cond = named(se$cond), zi = named(se$zi), disp = named(se$disp)),
    varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i], var2 = NULL,
      vcov = vc$vcov[i], sdcor = vc$sdcor[i], component = vc$grp[i], model = "cond")),
    singular = any(vc$sdcor < 1e-3),
    sigma = if (is.null(disp)) sigma(fit) else NULL,
    family_parameter = if (length(fp)) fp else setNames(list(), character(0)),
    ranef = list(model = as.character(re$component), grpvar = as.character(re$grpvar), term = as.character(re$term),
                 grp = as.character(re$grp), condval = sig(re$condval), condsd = sig(re$condsd)),
    rows = seq_len(nrow(d)) - 1,
    fitted = sig(as.numeric(predict(fit, type = "response"))),
    fitted_conditional = if (is.null(zi)) NULL else sig(as.numeric(predict(fit, type = "conditional"))),
    zi_prob = if (is.null(zi)) NULL else sig(as.numeric(predict(fit, type = "zprob"))),
    dispersion = if (is.null(disp)) NULL else sig(as.numeric(predict(fit, type = "disp"))),
    eta = sig(as.numeric(predict(fit, type = "link"))),
    converged = TRUE, messages = list(), seconds = secs, fit_used = "glmmTMB default (nlminb)",
    optimizer_message = fit$fit$message)
  doc <- list(case = case, formula = formula, zi = zi, disp = disp, family = family, link = link,
              csv = if (is.character(data)) paste0("breadth/", data) else NULL,
              weights = NULL, offset = NULL, needs = needs, source = source, note = note, engine = "glmmTMB",
              versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                              TMB = as.character(packageVersion("TMB"))),
              results = list(ML = res))
  writeLines(toJSON(doc, auto_unbox = TRUE, digits = NA, null = "null", pretty = TRUE),
             file.path(out, paste0(case, ".json")))
  cat(case, format(as.numeric(ll), digits = 12), "\n")
}

set.seed(20261205)
G <- 30; per <- 30
g <- rep(sprintf("g%02d", 1:G), each = per)
x <- round(runif(G * per, -1, 1), 6)
b <- rnorm(G, 0, 0.5)[as.integer(factor(g))]
mu <- exp(1 + 0.6 * x + b)
y <- rgamma(G * per, shape = 2, scale = mu / 2)
y[runif(G * per) < plogis(-0.5 + 1.2 * x)] <- 0
one("sim_zigamma", data.frame(y = round(y, 6), x = x, g = g), "y ~ x + (1 | g)", "~ x", NULL, "ziGamma", "log",
    "simulated (seed 20261205)", "Gamma hurdle: P(y = 0) logit -0.5 + 1.2 x; positive part log mu 1 + 0.6 x, SD 0.5, shape 2",
    list("hurdle"))

one("salamanders_hurdle_poisson", "salamanders_zip.csv", "count ~ mined + (1 | site)", "~ mined", NULL,
    "truncated_poisson", "log", "../shared/reference/breadth/salamanders_zip.csv", "Poisson hurdle",
    list("hurdle"))

one("owls_hurdle_nbinom1", "owls_zinb1.csv",
    "SiblingNegotiation ~ FoodTreatment + SexParent + offset(log(BroodSize)) + (1 | Nest)", "~ FoodTreatment", NULL,
    "truncated_nbinom1", "log", "../shared/reference/breadth/owls_zinb1.csv", "NB1 hurdle with an offset",
    list("hurdle"))

one("owls_nbinom1_disp", "owls_zinb1.csv",
    "SiblingNegotiation ~ FoodTreatment * SexParent + offset(log(BroodSize)) + (1 | Nest)", NULL, "~ FoodTreatment",
    "nbinom1", "log", "../shared/reference/breadth/owls_zinb1.csv", "NB1 with a dispersion model", list("disp"))

set.seed(20261206)
G <- 30; per <- 40
g <- rep(sprintf("g%02d", 1:G), each = per)
x <- round(runif(G * per, -1, 1), 6)
b <- rnorm(G, 0, 0.4)[as.integer(factor(g))]
mu <- plogis(-0.2 + 0.8 * x + b)
phi <- exp(2 + 0.8 * x)
y <- rbeta(G * per, mu * phi, (1 - mu) * phi)
y <- pmin(pmax(round(y, 6), 1e-6), 1 - 1e-6)
one("sim_beta_disp", data.frame(y = y, x = x, g = g), "y ~ x + (1 | g)", NULL, "~ x", "beta_family", "logit",
    "simulated (seed 20261206)", "beta with log phi 2 + 0.8 x", list("disp"))

set.seed(20261207)
G <- 30; per <- 40
g <- rep(sprintf("g%02d", 1:G), each = per)
x <- round(runif(G * per, -1, 1), 6)
b <- rnorm(G, 0, 0.7)[as.integer(factor(g))]
y <- 1 + 0.5 * x + b + exp(-0.5 + 0.6 * x) * rt(G * per, df = 4)
one("sim_t_disp", data.frame(y = round(y, 6), x = x, g = g), "y ~ x + (1 | g)", NULL, "~ x", "t_family", "identity",
    "simulated (seed 20261207)", "Student t, df 4, log sigma -0.5 + 0.6 x", list("disp"))
