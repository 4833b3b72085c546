"""ScanNet's residue chemistry (spec ../shared/reference/scannet.md §1.3–1.4) as lookup arrays.

Every table is indexed [residue type, atom-name code] so featurization is a numpy gather, not a Python loop.
Residue row 20 is the "hidden type" row used when a residue's type is masked for self-supervised training: it
keeps only backbone atoms with type-independent classes. The released-weights quirks are reproduced on purpose
(His NE2 has no valency entry so it is class 0; Glu CG is CH), because fixing them shifts the imported features.
"""

from __future__ import annotations

import numpy as np

from protalign.corpus.store import AA_ORDER

ATOM_NAMES = (
    "C CA CB CD CD1 CD2 CE CE1 CE2 CE3 CG CG1 CG2 CH2 CZ CZ2 CZ3 N ND1 ND2 NE NE1 NE2 NH1 NH2 NZ O OD1 OD2 OE1 "
    "OE2 OG OG1 OH OXT SD SE SG"
).split()
ALIASES = {"OT1": "O", "OT2": "OXT"}
CODE = {name: i for i, name in enumerate(ATOM_NAMES)}
BACKBONE = ("N", "CA", "C", "O", "OXT")
HIDDEN = 20  # residue row for a masked (type-hidden) residue
VALENCIES = "C CH CH2 CH3 CPi O OH N NH NH2 S SH".split()
N_VALENCY = len(VALENCIES)
MASS = {"C": 12.0, "N": 14.0, "O": 16.0, "S": 32.0, "SE": 32.0}

_SIDE_VALENCY = {
    "A": "CB:CH3",
    "C": "CB:CH2 SG:SH",
    "D": "CB:CH2 CG:C OD1:O OD2:OH",
    "E": "CB:CH2 CG:CH CD:C OE1:O OE2:OH",
    "F": "CB:CH2 CG:CPi CD1:CPi CD2:CPi CE1:CPi CE2:CPi CZ:CPi",
    "G": "",
    "H": "CB:CH2 CG:CPi CE1:CPi CD2:CPi ND1:N ND2:NH2",
    "I": "CB:CH CG1:CH2 CG2:CH3 CD1:CH3",
    "K": "CB:CH2 CG:CH2 CD:CH2 CE:CH2 NZ:NH2",
    "L": "CB:CH2 CG:CH CD1:CH3 CD2:CH3",
    "M": "CB:CH2 CG:CH2 SD:S CE:CH3",
    "N": "CB:CH2 CG:C OD1:O ND2:NH2",
    "P": "CB:CH2 CG:CH2 CD:CH2",
    "Q": "CB:CH2 CG:CH2 CD:C OE1:O NE2:NH2",
    "R": "CB:CH2 CG:CH2 CD:CH2 NE:NH CZ:C NH1:NH NH2:NH2",
    "S": "CB:CH2 OG:OH",
    "T": "CB:CH OG1:OH CG2:CH3",
    "V": "CB:CH CG1:CH3 CG2:CH3",
    "W": "CB:CH2 CG:CPi CD1:CPi CD2:CPi CE2:CPi CE3:CPi CZ2:CPi CZ3:CPi CH2:CPi NE1:NH",
    "Y": "CB:CH2 CG:CPi CD1:CPi CD2:CPi CE1:CPi CE2:CPi CZ:CPi OH:OH",
}

# atom:(prev,next); "-" = no partner. Backbone N/C partners across residues are handled in the featurizer.
_SIDE_BONDS = {
    "A": "CB:CA,-",
    "C": "CB:CA,SG SG:CB,-",
    "D": "CB:CA,CG CG:CB,OD1 OD1:CG,- OD2:CG,-",
    "E": "CB:CA,CG CG:CB,CD CD:CG,OE1 OE1:CD,- OE2:CD,-",
    "F": "CB:CA,CG CG:CB,CD1 CD1:CG,CE1 CE1:CD1,CZ CZ:CE1,CE2 CE2:CD2,CZ CD2:CG,CE2",
    "G": "",
    "H": "CB:CA,CG CG:CB,ND1 ND1:CG,CE1 CE1:ND1,NE2 NE2:CE1,CD2 CD2:NE2,CG",
    "I": "CB:CA,CG1 CG1:CB,CD1 CG2:CB,- CD1:CG1,-",
    "K": "CB:CA,CG CG:CB,CD CD:CG,CE CE:CD,NZ NZ:CE,-",
    "L": "CB:CA,CG CG:CB,CD1 CD1:CG,- CD2:CG,-",
    "M": "CB:CA,CG CG:CB,SD SD:CG,CE CE:SD,-",
    "N": "CB:CA,CG CG:CB,OD1 OD1:CG,- ND2:CG,-",
    "P": "CB:CA,CG CG:CB,CD CD:CG,N",
    "Q": "CB:CA,CG CG:CB,CD CD:CG,OE1 OE1:CD,- NE2:CD,-",
    "R": "CB:CA,CG CG:CB,CD CD:CG,NE NE:CD,CZ CZ:NE,NH1 NH1:CZ,- NH2:CZ,-",
    "S": "CB:CA,OG OG:CB,-",
    "T": "CB:CA,OG1 OG1:CB,- CG2:CB,-",
    "V": "CB:CA,CG1 CG1:CB,- CG2:CB,-",
    "W": "CB:CA,CG CG:CB,CD1 CD1:CG,NE1 NE1:CD1,CE2 CD2:CG,CE2 CE2:CD2,CZ2 CZ2:CE2,CH2 CH2:CZ2,CZ3 "
    "CZ3:CH2,CE3 CE3:CZ3,CD2",
    "Y": "CB:CA,CG CG:CB,CD1 CD1:CG,CE1 CE1:CD1,CZ CZ:CE1,CE2 CE2:CD2,CZ CD2:CG,CE2 OH:CZ,-",
}
# sentinels for the backbone partners that live in the neighbouring residue
PREV_C, NEXT_N = -2, -3


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """valency [21, 38] (class, default 0); prev/next [21, 38] (atom code, -1 none, PREV_C/NEXT_N cross-residue)."""
    n = len(ATOM_NAMES)
    val = np.zeros((21, n), np.int64)
    prev = np.full((21, n), -1, np.int64)
    nxt = np.full((21, n), -1, np.int64)
    v = VALENCIES.index
    for r, letter in enumerate([*AA_ORDER, "-"]):
        val[r, CODE["C"]], val[r, CODE["O"]], val[r, CODE["OXT"]] = v("C"), v("O"), v("OH")
        val[r, CODE["CA"]] = v("CH2") if letter == "G" else v("CH")
        val[r, CODE["N"]] = v("N") if letter == "P" else v("NH")
        prev[r, CODE["N"]], nxt[r, CODE["N"]] = PREV_C, CODE["CA"]
        prev[r, CODE["CA"]], nxt[r, CODE["CA"]] = CODE["N"], CODE["C"]
        prev[r, CODE["C"]], nxt[r, CODE["C"]] = CODE["CA"], NEXT_N
        prev[r, CODE["O"]] = prev[r, CODE["OXT"]] = CODE["C"]
        for item in _SIDE_VALENCY.get(letter, "").split():
            atom, cls = item.split(":")
            val[r, CODE[atom]] = v(cls)
        for item in _SIDE_BONDS.get(letter, "").split():
            atom, pair = item.split(":")
            p, q = pair.split(",")
            prev[r, CODE[atom]] = CODE[p] if p != "-" else -1
            nxt[r, CODE[atom]] = CODE[q] if q != "-" else -1
    return val, prev, nxt


VALENCY, PREV, NEXT = _tables()
IS_BACKBONE = np.isin(np.arange(len(ATOM_NAMES)), [CODE[a] for a in BACKBONE])


def atom_codes(names: np.ndarray) -> np.ndarray:
    """Atom-name code per atom (aliases OT1→O, OT2→OXT); -1 for names ScanNet drops (H, P of PTR, ...)."""
    names = np.asarray(names).astype(str)
    out = np.full(len(names), -1, np.int64)
    for name, code in [*CODE.items(), *((a, CODE[b]) for a, b in ALIASES.items())]:
        out[names == name] = code
    return out


def atom_masses(elements: np.ndarray) -> np.ndarray:
    """Masses for the side-chain centroid (C 12, N 14, O 16, S/Se 32; anything else counts as C)."""
    elements = np.char.upper(np.asarray(elements).astype(str))
    out = np.full(len(elements), 12.0)
    for el, m in MASS.items():
        out[elements == el] = m
    return out
