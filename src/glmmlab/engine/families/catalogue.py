"""Every family by its canonical name (:data:`FAMILIES`), glmmTMB's and R's other spellings (:data:`ALIASES`), and
:func:`resolve` of a family and link by name. Built here from the modules that define the families (lme4's and the
negative binomial in :mod:`~glmmlab.engine.families.distributions`, glmmTMB's in
:mod:`~glmmlab.engine.families.glmmtmb`, the cumulative-link family in :mod:`~glmmlab.engine.families.ordinal`):
no family registers itself by being imported. The names are known at import; each family other than lme4's is built,
and its module imported, when it is first looked up (a fit of lme4's families never loads glmmTMB's or the ordinal
family's code)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from functools import partial

from glmmlab.engine.errors import GlmmInputError
from glmmlab.engine.families.distributions import BASE_FAMILIES, Family
from glmmlab.engine.families.links import LINKS, Link

# glmmTMB's families, by glmmTMB's names: their constructor in families.glmmtmb and default parameters
_GLMMTMB = {"nbinom1": ("nbinom1_family", (1.0,)), "beta_family": ("beta_family", (1.0,)),
            "betabinomial": ("betabinomial_family", (1.0,)), "t_family": ("t_family", (1.0, 10.0)),
            "tweedie": ("tweedie_family", (1.0, 1.5))}


def _base(name: str) -> Family:
    return BASE_FAMILIES[name]


def _glmmtmb(name: str) -> Family:
    from glmmlab.engine.families import glmmtmb

    constructor, parameters = _GLMMTMB[name]
    return getattr(glmmtmb, constructor)(*parameters)


def _ordinal() -> Family:
    from glmmlab.engine.families.ordinal import ordinal_family

    return ordinal_family()


# glmmTMB's hurdle families: the count (or positive) part of a hurdle model, truncated at zero; fitted with their
# zero model by engine.families.modelled (these entries give their names, links and response checks)
_HURDLES = {"truncated_poisson": ("poisson", "Truncated Poisson (hurdle)", ("log",)),
            "truncated_nbinom2": ("negbin", "Truncated Negative Binomial (NB2, hurdle)", ("log",)),
            "truncated_nbinom1": ("nbinom1", "Truncated Negative Binomial (NB1, hurdle)", ("log",)),
            "ziGamma": ("gamma", "Gamma with exact zeros (hurdle)", ("log", "inverse"))}


def _hurdle(name: str) -> Family:
    base, label, links = _HURDLES[name]
    return replace(FAMILIES[base], name=name, label=label, links=links)


class Catalogue(Mapping[str, Family]):
    """Families by name, in a fixed order, each built by its function when first looked up and kept."""

    def __init__(self, builders: dict[str, Callable[[], Family]]):
        self._builders = builders
        self._built: dict[str, Family] = {}

    def __getitem__(self, key: str) -> Family:
        fam = self._built.get(key)
        if fam is None:
            fam = self._builders[key]()  # KeyError for a name not in the catalogue
            fam = self._built.setdefault(key, fam)  # threads that built it at once all get the first one kept
        return fam

    def __contains__(self, key: object) -> bool:
        return key in self._builders

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


FAMILIES: Mapping[str, Family] = Catalogue({
    **{name: partial(_base, name) for name in BASE_FAMILIES},
    **{name: partial(_glmmtmb, name) for name in _GLMMTMB},
    **{name: partial(_hurdle, name) for name in _HURDLES},
    "ordinal": _ordinal,
})


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
