"""I/O benchmark: medsight's readers vs SimpleITK (and nibabel) on the shared real data, in one run.

Loads each input several times with each reader (alternating, so machine noise hits both alike), reports the median
time, the ratio medsight / SimpleITK and checks that the arrays agree. Target (issue 6): DICOM series load within 1.2x
of SimpleITK's time.

    python benchmarks/io_load.py --repeats 7 --out docs/results/io_load.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def _sitk_series(folder: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    uid = reader.GetGDCMSeriesIDs(str(folder))[0]
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
    return sitk.GetArrayFromImage(reader.Execute())


def _sitk_file(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _nibabel(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj).T  # nibabel is (x, y, z); the others (z, y, x)


def _medsight(path: Path) -> np.ndarray:
    from medsight.io import read_image

    return read_image(path).array[0]


def _time(fn: Callable[[Path], np.ndarray], path: Path) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    arr = fn(path)
    return time.perf_counter() - t0, arr


def bench(name: str, path: Path, readers: dict[str, Callable[[Path], np.ndarray]], repeats: int) -> dict:
    times: dict[str, list[float]] = {k: [] for k in readers}
    arrays: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for key, fn in readers.items():
            dt, arr = _time(fn, path)
            times[key].append(dt)
            arrays[key] = arr
    ref = arrays["simpleitk"]
    row = {"input": name, "path": str(path.relative_to(SHARED)), "shape": list(ref.shape), "repeats": repeats,
           "median_s": {k: statistics.median(v) for k, v in times.items()},
           "same_values": {k: bool(np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)))
                           for k, a in arrays.items()}}
    row["ratio_medsight_over_simpleitk"] = row["median_s"]["medsight"] / row["median_s"]["simpleitk"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "io_load.json")
    args = ap.parse_args(argv)
    series = SHARED / "tcia_pgbm005_mr_t1post_dicom" / "volume"
    nifti = SHARED / "msd_task04_hippocampus_cropped" / "images" / "hippocampus_001.nii.gz"
    if not series.is_dir() or not nifti.is_file():
        print(f"shared data not found under {SHARED}", file=sys.stderr)
        return 2
    rows = [
        bench("DICOM series (TCIA PGBM-005, MR)", series, {"simpleitk": _sitk_series, "medsight": _medsight}, args.repeats),
        bench("NIfTI .nii.gz (Hippocampus 001)", nifti,
              {"simpleitk": _sitk_file, "nibabel": _nibabel, "medsight": _medsight}, args.repeats),
    ]
    print(f"{'input':<36} {'shape':<16} {'SimpleITK s':>12} {'medsight s':>11} {'ratio':>6}  same values")
    for r in rows:
        print(f"{r['input']:<36} {'x'.join(map(str, r['shape'])):<16} {r['median_s']['simpleitk']:>12.4f} "
              f"{r['median_s']['medsight']:>11.4f} {r['ratio_medsight_over_simpleitk']:>6.2f}  {r['same_values']}")
    result = {"command": "python benchmarks/io_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores",
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
