"""Which GDMs are reference points (the no-3D floor), for the stages that compare encoders.

The registry's `reference = True` class attribute is the source (tests/structure/test_fixed_and_variants.py checks
that this set equals it). It is repeated here, torch-free and import-free, so that the analysis stages and `use/`
can ask without importing the encoders: their dvc.yaml deps then do not grow by every GDM module.
A reference encoder is shown beside the GDMs (alignment table, Table 1) but kept out of the findings F1-F8,
RQ2/RQ3 and `use/`'s default pair.
"""

from __future__ import annotations

REFERENCE_GDMS = frozenset({"composition"})


def is_reference(gdm: str, structure=None) -> bool:
    """True for a reference GDM, or a variant (structure.<alias>.base) of one when `structure` params are given."""
    base = structure.base(gdm) if structure is not None else gdm
    return base in REFERENCE_GDMS


def compared_gdms(structure) -> tuple[str, ...]:
    """structure.gdms without the reference encoders: the GDMs the findings compare."""
    return tuple(g for g in structure.gdms if not is_reference(g, structure))
