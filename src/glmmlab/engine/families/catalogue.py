"""Every family by its canonical name (:data:`FAMILIES`), glmmTMB's and R's other spellings (:data:`ALIASES`), and
:func:`resolve` of a family and link by name. Built here from the modules that define the families (lme4's and the
negative binomial in :mod:`~glmmlab.engine.families.distributions`, glmmTMB's in
:mod:`~glmmlab.engine.families.glmmtmb`, the cumulative-link family in :mod:`~glmmlab.engine.families.ordinal`):
no family registers itself by being imported."""

from __future__ import annotations

from dataclasses import replace

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import BASE_FAMILIES, Family
from glmmlab.engine.families.glmmtmb import (
    beta_family,
    betabinomial_family,
    nbinom1_family,
    t_family,
    tweedie_family,
)
from glmmlab.engine.families.links import LINKS, Link
from glmmlab.engine.families.ordinal import ordinal_family

FAMILIES: dict[str, Family] = dict(BASE_FAMILIES)
# glmmTMB's families, by glmmTMB's names
FAMILIES.update({
    "nbinom1": nbinom1_family(1.0),
    "beta_family": beta_family(1.0),
    "betabinomial": betabinomial_family(1.0),
    "t_family": t_family(1.0, 10.0),
    "tweedie": tweedie_family(1.0, 1.5),
})
# glmmTMB's hurdle families: the count (or positive) part of a hurdle model, truncated at zero; fitted with their
# zero model by engine.families.modelled (these entries give their names, links and response checks)
FAMILIES.update({
    "truncated_poisson": replace(FAMILIES["poisson"], name="truncated_poisson", label="Truncated Poisson (hurdle)",
                                 links=("log",)),
    "truncated_nbinom2": replace(FAMILIES["negbin"], name="truncated_nbinom2",
                                 label="Truncated Negative Binomial (NB2, hurdle)", links=("log",)),
    "truncated_nbinom1": replace(FAMILIES["nbinom1"], name="truncated_nbinom1",
                                 label="Truncated Negative Binomial (NB1, hurdle)", links=("log",)),
    "ziGamma": replace(FAMILIES["gamma"], name="ziGamma", label="Gamma with exact zeros (hurdle)",
                       links=("log", "inverse")),
})
FAMILIES["ordinal"] = ordinal_family()


# glmmTMB's and R's other spellings of a family (the catalogue's keys are the canonical names)
ALIASES = {"nbinom2": "negbin", "negative_binomial": "negbin", "beta": "beta_family", "t": "t_family",
           "zigamma": "ziGamma"}


def family_key(family: str) -> str:
    """The canonical name of a family as a user may spell it (glmmTMB's ``nbinom2`` is ``negbin``)."""
    key = str(family).strip().lower()
    return ALIASES.get(key, key)


def resolve(family: str, link: str | None) -> tuple[Family, Link]:
    """Return the (family, link) pair, refusing names and pairs the GLMM tab does not offer."""
    fam_key = family_key(family)
    if fam_key not in FAMILIES:
        raise GlmmInputError(
            f"unknown family {family!r}: choose one of {', '.join(FAMILIES)}"
        )
    fam = FAMILIES[fam_key]
    if link is None:
        return fam, LINKS[fam.canonical_link]
    link_key = str(link).strip().lower()
    if link_key not in fam.links:
        raise GlmmInputError(
            f"link {link!r} is not available for the {fam.name} family: "
            f"choose one of {', '.join(fam.links)}"
        )
    return fam, LINKS[link_key]
