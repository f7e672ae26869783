"""Coded anatomy of DICOM-SEG segments: a label name -> SNOMED CT category, type and laterality.

A DICOM-SEG segment carries a Segmented Property Category and Type as codes (CID 7150 / CID 7151), which viewers
and archives use to know what a segment is; a free-text label alone is not searchable. :func:`segment_coding`
maps common organ names as datasets spell them (``liver``, ``kidney_left``, ``LeftParotid``, ``SpinalCord``,
``Brainstem``, ``vertebrae_L5``, ``urinary_bladder``) to the SNOMED CT concept of pydicom's code dictionary
(``pydicom.sr.codedict.codes.SCT``), with the side as a Segmented Property Type Modifier (Left/Right). Names are
matched case-, separator- and CamelCase-insensitively after dropping side words and numbered parts (``rib_left_1``
-> rib, left). Abnormal findings (tumour, lesion, oedema...) get the category Morphologically Abnormal Structure;
anything else stays ``Tissue``/``Tissue``, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: normalised name -> codes.SCT attribute (organs and other anatomical structures).
ANATOMY: dict[str, str] = {
    "liver": "Liver", "spleen": "Spleen", "kidney": "Kidney", "mandible": "Mandible", "esophagus": "Esophagus",
    "oesophagus": "Esophagus", "larynx": "Larynx", "parotid": "ParotidGland", "parotid gland": "ParotidGland",
    "spinal cord": "SpinalCord", "spinalcord": "SpinalCord", "cord": "SpinalCord", "brainstem": "BrainStem",
    "brain stem": "BrainStem", "hippocampus": "Hippocampus", "pancreas": "Pancreas", "stomach": "Stomach",
    "gallbladder": "Gallbladder", "gall bladder": "Gallbladder", "heart": "Heart", "aorta": "Aorta",
    "lung": "Lung", "brain": "Brain", "trachea": "Trachea", "bladder": "Bladder", "urinary bladder": "Bladder",
    "prostate": "Prostate", "duodenum": "Duodenum", "colon": "Colon", "small bowel": "SmallIntestine",
    "small intestine": "SmallIntestine", "adrenal gland": "AdrenalGland", "adrenal": "AdrenalGland",
    "thyroid": "Thyroid", "thyroid gland": "Thyroid", "femur": "Femur", "humerus": "Humerus", "sternum": "Sternum",
    "rib": "Rib", "skull": "Skull", "sacrum": "Sacrum", "vertebra": "Vertebra", "vertebrae": "Vertebra",
    "rectum": "Rectum", "optic nerve": "OpticNerve", "optic chiasm": "OpticChiasm", "chiasm": "OpticChiasm",
    "eye": "Eye", "globe": "Eye", "lens": "Lens", "submandibular gland": "SubmandibularGland",
    "submandibular": "SubmandibularGland", "oral cavity": "OralCavity", "pharynx": "Pharynx", "uterus": "Uterus",
    "breast": "Breast", "cerebellum": "Cerebellum", "scapula": "Scapula", "clavicle": "Clavicle",
    "clavicula": "Clavicle", "hip": "Hip", "pelvis": "Pelvis", "iliac artery": "IliacArtery",
    "portal vein": "PortalVein", "inferior vena cava": "InferiorVenaCava", "muscle": "Muscle", "skin": "Skin",
    "bone": "Bone", "fat": "Fat",
}
#: normalised name -> codes.SCT attribute (findings: category Morphologically Abnormal Structure).
FINDINGS: dict[str, str] = {
    "tumour": "Neoplasm", "tumor": "Neoplasm", "neoplasm": "Neoplasm", "lesion": "Lesion", "mass": "Mass",
    "edema": "Edema", "oedema": "Edema", "necrosis": "Necrosis", "cyst": "Cyst",
}
_SIDES = {"left": "Left", "l": "Left", "lt": "Left", "right": "Right", "r": "Right", "rt": "Right"}


@dataclass(frozen=True)
class SegmentCoding:
    """The codes of one segment (pydicom ``Code`` objects).

    Attributes:
        category: Segmented Property Category (Anatomical Structure, Morphologically Abnormal Structure, Tissue).
        type: Segmented Property Type (the organ or finding, else Tissue).
        laterality: Left or Right (a Segmented Property Type Modifier), or ``None``.
    """

    category: Any
    type: Any
    laterality: Any = None


def normalise(name: str) -> tuple[str, str | None]:
    """``(words, side)`` of a label name: lower case, CamelCase and separators split, side and numbered parts
    dropped (``"RightParotid"`` -> ``("parotid", "Right")``, ``"vertebrae_L5"`` -> ``("vertebrae", None)``)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    words = [w for w in re.split(r"[\s_\-./,()]+", spaced.lower()) if w]
    side = None
    kept = []
    for word in words:
        if word in _SIDES:
            side = _SIDES[word]
        elif not any(ch.isdigit() for ch in word):
            kept.append(word)
    return " ".join(kept), side


def segment_coding(name: str) -> SegmentCoding:
    """The SNOMED CT codes for a label name (see the module docstring); ``Tissue`` when no entry fits."""
    from pydicom.sr.codedict import codes

    words, side = normalise(name)
    candidates = [words, words.replace(" ", ""), words[:-1] if words.endswith("s") else words]
    laterality = getattr(codes.SCT, side) if side else None
    for key in candidates:
        if key in ANATOMY:
            return SegmentCoding(codes.SCT.AnatomicalStructure, getattr(codes.SCT, ANATOMY[key]), laterality)
        if key in FINDINGS:
            return SegmentCoding(codes.SCT.MorphologicallyAbnormalStructure, getattr(codes.SCT, FINDINGS[key]),
                                 laterality)
    return SegmentCoding(codes.SCT.Tissue, codes.SCT.Tissue, None)


__all__ = ["ANATOMY", "FINDINGS", "SegmentCoding", "normalise", "segment_coding"]
