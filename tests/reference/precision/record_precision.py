"""Record the precision reached against the lme4 references: tests/reference/precision/precision.json.

Run from the repository root (with glmmlab importable):

    python tests/reference/precision/record_precision.py                       # every section
    python tests/reference/precision/record_precision.py --section lme4_dispersion models_dispersion

Sections: ``glmmTMB_dispersion`` (../shared/reference/dispersion, tests/engine/test_reference_dispersion.py),
``lme4`` (../shared/reference, tests/engine/test_reference_lme4.py), ``models``
(../shared/reference/models, tests/engine/test_reference_models.py), and apart from them ``lme4_dispersion`` and
``models_dispersion``: the Gamma / Gaussian non-identity-link cases, whose fit is about to change (re-record them
alone after that change). Sections not named keep their stored values. Re-record only for an intended change that
stays within the stated tolerances, and say why in the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.conftest import MODELS, REFERENCE, reference_files  # noqa: E402
from tests.precision import FACTOR, FLOOR, PRECISION, is_dispersion_case  # noqa: E402

SECTIONS = ("lme4", "lme4_dispersion", "models", "models_dispersion", "glmmTMB_dispersion")
ABOUT = ("Largest differences from the references per case and quantity (see README.md here). The tests fail "
         "when one grows more than `factor`-fold over the value here floored at `floor`. Written by "
         "tests/reference/precision/record_precision.py.")


def _round(v):
    return None if v is None else float(f"{v:.3g}")


def record(sections: list[str]) -> dict:
    import tests.engine.test_reference_dispersion as t_disp
    import tests.engine.test_reference_lme4 as t_lme4
    import tests.engine.test_reference_models as t_models

    old = json.loads(PRECISION.read_text()) if PRECISION.exists() else {}
    doc = {"about": ABOUT, "factor": FACTOR, "floor": FLOOR}
    for sec in SECTIONS:
        doc[sec] = old.get(sec, {})
    for sec in sections:
        doc[sec] = {}
    jobs = [(REFERENCE, t_lme4, "lme4"), (MODELS, t_models, "models")]
    for folder, module, base in jobs:
        files = reference_files(folder)
        if not files:
            raise SystemExit(f"no reference cases under {folder}")
        for p in files:
            ref = json.loads(p.read_text())
            sec = base + ("_dispersion" if is_dispersion_case(ref) else "")
            if sec not in sections:
                continue
            for key in ref["results"]:
                m = module.measure(p.stem, key)
                doc[sec][f"{p.stem}-{key}"] = {q: _round(v) for q, v in m.items()}
                print(sec, p.stem, key, {q: _round(v) for q, v in m.items()}, flush=True)
    if "glmmTMB_dispersion" in sections:  # ../shared/reference/dispersion: the default fit against glmmTMB
        for case in t_disp.dispersion_cases():
            m = t_disp.measure(case)
            doc["glmmTMB_dispersion"][case] = {q: _round(v) for q, v in m.items()}
            print("glmmTMB_dispersion", case, doc["glmmTMB_dispersion"][case], flush=True)
    return doc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = ap.parse_args(argv)
    doc = record(args.section)
    PRECISION.write_text(json.dumps(doc, indent=1) + "\n")
    print("wrote", PRECISION)


if __name__ == "__main__":
    main()
