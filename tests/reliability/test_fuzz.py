"""Property-based fuzzing of the readers (hypothesis): mutated NIfTI, PNG, DICOM and dataset.json inputs may only
ever raise medsight's own one-line errors, never another exception type, and never hang.

CI runs a bounded number of examples per reader; for a longer campaign set ``MEDSIGHT_FUZZ_EXAMPLES`` (e.g. 5000).
Inputs that once crashed a reader are kept as corpus cases (tests/reliability/corpus.py) and as explicit examples.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medsight.errors import MedsightError

pytestmark = pytest.mark.reliability

EXAMPLES = int(os.environ.get("MEDSIGHT_FUZZ_EXAMPLES", "40"))
PER_INPUT_SECONDS = 20
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("MEDSIGHT_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Hang(Exception):
    """A reader ran longer than :data:`PER_INPUT_SECONDS` on one small input."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def fire(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _only_medsight_errors(read: Callable[[], object]) -> None:
    """Run ``read``; a MedsightError (the one-line user error) or success is fine, anything else fails the test."""
    with _time_limit(PER_INPUT_SECONDS):
        try:
            read()
        except MedsightError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), repr(exc)


# ------------------------------------------------------------------------------------------------ seeds
def _nifti_bytes() -> bytes:
    import nibabel as nib

    arr = np.random.default_rng(0).normal(0, 1, (6, 7, 5)).astype(np.float32)
    return nib.Nifti1Image(arr, np.diag([0.8, 0.9, 1.5, 1.0])).to_bytes()


def _png_bytes() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(16 * 12, dtype=np.uint8).reshape(16, 12)).save(buf, format="PNG")
    return buf.getvalue()


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, header: int) -> bytes:
    """``seed`` with 1-8 byte edits (biased to the first ``header`` bytes), maybe truncated or extended."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        hot = draw(st.booleans())
        pos = draw(st.integers(0, min(header, len(data)) - 1 if hot else len(data) - 1))
        op = draw(st.sampled_from(["set", "flip", "max", "zero"]))
        if op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        else:
            data[pos] = 0xFF if op == "max" else 0
    cut = draw(st.sampled_from(["none", "none", "truncate", "extend"]))
    if cut == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif cut == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def _read_file(payload: bytes, name: str) -> None:
    from medsight.io import read_image

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(payload)
        _only_medsight_errors(lambda: read_image(path))


NIFTI = _nifti_bytes()
PNG = _png_bytes()


@FUZZ
@given(payload=mutated(NIFTI, 352))
@example(payload=NIFTI[:348])  # header only, no data
def test_fuzz_nifti_reader(payload: bytes) -> None:
    _read_file(payload, "case.nii")


@FUZZ
@given(payload=mutated(NIFTI, 352))
@example(payload=NIFTI[:108] + b"\x00\x00\xb0S" + NIFTI[112:])  # found: vox_offset 1.5e12 exhausted memory
def test_fuzz_gzipped_nifti_reader(payload: bytes) -> None:
    _read_file(gzip.compress(payload), "case.nii.gz")


@FUZZ
@given(payload=mutated(PNG, 64))
@example(payload=PNG[:33])  # signature and IHDR only
def test_fuzz_png_reader(payload: bytes) -> None:
    _read_file(payload, "image.png")


def _dicom_seed() -> bytes:
    from _factory import load_dicom_factory

    with tempfile.TemporaryDirectory() as d:
        written = load_dicom_factory().write_series(Path(d) / "s", n_slices=1, modality="CT", slope=1.0,
                                                           intercept=-1024.0)
        return written.paths[0].read_bytes()


DICOM = _dicom_seed()


def _wrong_group_length(dicom: bytes) -> bytes:
    """Found by fuzzing: (0002,0000) given VR UN with a length that is no multiple of 4 (pydicom BytesLengthException)."""
    at = dicom.index(b"\x02\x00\x00\x00UL")
    return dicom[:at] + b"\x02\x00\x00\x00UN\x04\x00\xce\x00\x00\x00" + dicom[at + 12:]


@FUZZ
@given(payload=mutated(DICOM, len(DICOM) - 8 * 6 * 2))
@example(payload=_wrong_group_length(DICOM))
def test_fuzz_dicom_reader(payload: bytes) -> None:
    _read_file(payload, "slice.dcm")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
SPEC_KEYS = ["name", "channel_names", "labels", "numTraining", "file_ending", "training", "test", "task", "layout"]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medsight.data.synthetic import write_phantom_dataset

    return write_phantom_dataset(tmp_path_factory.mktemp("fuzzds") / "ds", num_cases=2, shape=(8, 10, 9), seed=1)


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(SPEC_KEYS), JSON_VALUES, min_size=1, max_size=4),
       drop=st.lists(st.sampled_from(SPEC_KEYS), max_size=3))
@example(edits={"name": None, "test": [None], "training": []}, drop=[])  # found: AttributeError
@example(edits={"name": None, "test": True, "training": []}, drop=[])  # found: TypeError
def test_fuzz_dataset_json(small_dataset: Path, edits: dict[str, object], drop: list[str]) -> None:
    from medsight.data.check import check_dataset
    from medsight.data.dataset import load_dataset

    spec = json.loads((small_dataset / "dataset.json").read_text())
    for key in drop:
        spec.pop(key, None)
    spec.update(edits)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "ds"
        root.mkdir()
        for sub in ("imagesTr", "labelsTr"):
            (root / sub).symlink_to(small_dataset / sub)
        (root / "dataset.json").write_text(json.dumps(spec))
        _only_medsight_errors(lambda: check_dataset(load_dataset(root)))
