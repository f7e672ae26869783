"""medsight vs nnU-Net v2 at an equal CPU budget: preprocessing speed and equal-budget quality (issues 6 and 22).

Two datasets: ``--dataset hippocampus`` (MSD Task04, 3D MRI, the default) and ``--dataset openkbp`` (head-and-neck
CT, 7 organs at risk, partial labels). nnU-Net needs torchvision and a newer torch than the project's, so it runs
from its own virtual environment, never the project's::

    python3 -m venv /work/nnunet-venv
    /work/nnunet-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 && /work/nnunet-venv/bin/pip install nnunetv2

Then, from the repository root (``../shared/data`` beside it)::

    python benchmarks/nnunet_compare.py preprocess --nnunet-venv /work/nnunet-venv --repeats 3 --workers 2
    python benchmarks/nnunet_compare.py train --nnunet-venv /work/nnunet-venv --budget 20m
    python benchmarks/nnunet_compare.py train --dataset openkbp --tools nnunet --nnunet-tta off --nnunet-venv /work/nnunet-venv --budget 20m

``preprocess``: wall time of each tool's own commands, run as subprocesses (interpreter start-up included on both
sides), alternating over ``--repeats`` rounds into fresh folders: medsight's fingerprint + plan (``medsight plan``) and
preprocessing (:func:`medsight.transforms.cache.preprocess_dataset`), nnU-Net's ``nnUNetv2_extract_fingerprint`` +
``nnUNetv2_plan_experiment`` and ``nnUNetv2_preprocess -c 3d_fullres``, each with ``--workers`` processes. Medians and
cases/s are reported.

``train``: fold 0 of one split (medsight's seeded 5-fold split, also written as nnU-Net's ``splits_final.json``), both
trained for the same wall time on the CPU with their own self-configured plans: ``medsight train --time-budget`` and
nnU-Net's ``3d_fullres`` with its default trainer except for one subclass that trains for the same wall time
(``nnUNetTrainer_WallBudget`` below: the poly learning-rate schedule runs over the budget instead of 1000 epochs,
and epochs are 25 training + 5 validation iterations, nnU-Net's 250:50 ratio, so the budget is checked often). Each
tool then predicts the fold's validation cases its own way (sliding window, mirror TTA) and both sets are scored by
the same code against the reference label maps (:class:`medsight.metrics.summary.SegmentationEvaluator`; on OpenKBP
an organ not contoured in a case is left out there, and HD95 and volume error are reported too). nnU-Net has no
partial labels: it learns an organ that was not contoured as background. Its dataset is the shared folder as it
is (OpenKBP already has nnU-Net's layout, ``channel_names`` ``CT``, so nnU-Net normalises it as CT).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from partial_scoring import score_folder  # noqa: E402
from time_to_quality import medsight_curve, nnunet_curve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Bench:
    """One shared dataset as both tools see it: its folder, nnU-Net's dataset id and name, its channel name (which
    picks nnU-Net's normalisation: ``CT`` clips and scales by the foreground HU percentiles) and label names."""

    data: Path
    nnunet_id: int
    nnunet_name: str
    channel: str
    label_names: dict[str, int]
    distances: bool


BENCHES = {
    "hippocampus": Bench(DATA / "msd_task04_hippocampus_cropped", 4, "Dataset004_Hippocampus", "MRI",
                         {"anterior": 1, "posterior": 2}, False),
    "openkbp": Bench(DATA / "openkbp_hn_ct", 22, "Dataset022_OpenKBP", "CT",
                     {"Brainstem": 1, "SpinalCord": 2, "RightParotid": 3, "LeftParotid": 4, "Esophagus": 5, "Larynx": 6,
                      "Mandible": 7}, True),
}

#: nnU-Net's own configuration mechanism is a trainer subclass found by name; the benchmark writes this one into the
#: nnU-Net environment. It changes the training length only: wall time instead of 1000 x 250 iterations.
WALL_BUDGET_TRAINER = '''
import os
import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_WallBudget(nnUNetTrainer):
    """nnU-Net's default trainer trained for a wall-clock budget (env MEDSIGHT_BENCH_BUDGET_S, seconds)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.budget_s = float(os.environ["MEDSIGHT_BENCH_BUDGET_S"])
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
        self.num_epochs = 100000
        self._t0 = None

    def _fraction(self):
        return min((time.time() - self._t0) / self.budget_s, 1.0)

    def train_step(self, batch):
        lr = self.initial_lr * (1 - min(self._fraction(), 0.999)) ** 0.9  # nnU-Net's poly schedule over wall time
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return super().train_step(batch)

    def run_training(self):
        self.on_train_start()
        self._t0 = time.time()
        while self._fraction() < 1.0:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = []
            for _ in range(self.num_iterations_per_epoch):
                outputs.append(self.train_step(next(self.dataloader_train)))
                if self._fraction() >= 1.0:
                    break
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val)) for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
        self.print_to_log_file(f"wall budget reached after {self.current_epoch} epochs, {time.time() - self._t0:.0f} s")
        self.on_train_end()

    def perform_actual_validation(self, save_probabilities: bool = False):
        if os.environ.get("MEDSIGHT_BENCH_NNUNET_TTA") == "off":
            return  # the benchmark predicts the validation cases with nnUNetv2_predict --disable_tta instead
        return super().perform_actual_validation(save_probabilities)
'''


def _cases(bench: Bench) -> dict[str, tuple[Path, Path]]:
    """Case id -> (image, label) of every labelled case, as medsight reads the folder."""
    from medsight.data.dataset import load_dataset

    return {c.case_id: (c.images[0], c.label) for c in load_dataset(bench.data).cases if c.label is not None}


def nnunet_env(work: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(nnUNet_raw=str(work / "nnUNet_raw"), nnUNet_preprocessed=str(work / "nnUNet_preprocessed"),
               nnUNet_results=str(work / "nnUNet_results"))
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(key, None)
    return env


def write_nnunet_raw(work: Path, bench: Bench) -> Path:
    """The shared cases as an nnU-Net raw dataset (symbolic links; ``_0000`` channel suffix)."""
    raw = work / "nnUNet_raw" / bench.nnunet_name
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    cases = _cases(bench)
    for cid, (image, label) in cases.items():
        for src, dst in ((image, raw / "imagesTr" / f"{cid}_0000.nii.gz"), (label, raw / "labelsTr" / f"{cid}.nii.gz")):
            if not dst.exists():
                dst.symlink_to(src.resolve())
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": bench.channel}, "labels": {"background": 0} | bench.label_names,
        "numTraining": len(cases), "file_ending": ".nii.gz"}, indent=1))
    return raw


def _timed(cmd: list[str], *, env: dict[str, str] | None = None, log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return time.perf_counter() - t0


def _medsight_preprocess_cmd(run: Path, data: Path, workers: int) -> list[str]:
    code = ("import sys; from pathlib import Path; from medsight.data.dataset import load_dataset; "
            "from medsight.tasks.segmentation.plan import Plan; from medsight.transforms.cache import preprocess_dataset; "
            "run = Path(sys.argv[1]); preprocess_dataset(load_dataset(sys.argv[2]), Plan.load(run / 'plans.json'), "
            "run / 'preprocessed', workers=int(sys.argv[3]))")
    return [sys.executable, "-c", code, str(run), str(data), str(workers)]


def bench_preprocess(args: argparse.Namespace) -> dict:
    nn_bin = Path(args.nnunet_venv) / "bin"
    work = Path(args.work)
    bench = BENCHES[args.dataset]
    n = len(_cases(bench))
    log = work / "preprocess.log"
    work.mkdir(parents=True, exist_ok=True)
    write_nnunet_raw(work, bench)
    rows: dict[str, list[float]] = {k: [] for k in ("medsight_plan", "medsight_preprocess", "nnunet_plan", "nnunet_preprocess")}
    for r in range(args.repeats):
        run = work / f"medsight_{r}"
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(work / "nnUNet_preprocessed", ignore_errors=True)
        env = nnunet_env(work)
        order = ["medsight", "nnunet"] if r % 2 == 0 else ["nnunet", "medsight"]
        for tool in order:
            if tool == "medsight":
                rows["medsight_plan"].append(_timed([sys.executable, "-m", "medsight.cli.app", "--quiet", "plan", str(bench.data),
                                                     "--out", str(run)], log=log))
                rows["medsight_preprocess"].append(_timed(_medsight_preprocess_cmd(run, bench.data, args.workers), log=log))
            else:
                rows["nnunet_plan"].append(
                    _timed([str(nn_bin / "nnUNetv2_extract_fingerprint"), "-d", str(bench.nnunet_id), "-np", str(args.workers)], env=env, log=log)
                    + _timed([str(nn_bin / "nnUNetv2_plan_experiment"), "-d", str(bench.nnunet_id)], env=env, log=log))
                rows["nnunet_preprocess"].append(_timed([str(nn_bin / "nnUNetv2_preprocess"), "-d", str(bench.nnunet_id), "-c", "3d_fullres",
                                                         "-np", str(args.workers)], env=env, log=log))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in rows.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {"cases": n, "workers": args.workers, "repeats": args.repeats, "seconds": rows, "median_s": med,
            "cases_per_s": {k: n / v for k, v in med.items()},
            "preprocess_speedup": med["nnunet_preprocess"] / med["medsight_preprocess"],
            "plan_speedup": med["nnunet_plan"] / med["medsight_plan"],
            "total_speedup": (med["nnunet_plan"] + med["nnunet_preprocess"]) / (med["medsight_plan"] + med["medsight_preprocess"])}


def _score(pred_dir: Path, val_ids: list[str], bench: Bench) -> dict:
    """Dice (and on CT HD95 and volume error) per label of ``pred_dir/<case>.nii.gz`` against the references;
    a structure that was not annotated in a case is not scored there."""
    per = score_folder(bench.data, pred_dir, val_ids, names={v: k for k, v in bench.label_names.items()},
                       distances=bench.distances)
    out: dict = {"cases": len(val_ids)}
    for name, m in per.items():
        out[name] = m["dice"] | ({"hd95_mm": m["hd95"]["mean"], "volume_error_ml": m["volume_error"]["mean"]}
                                 if bench.distances else {})
    out["mean_dice"] = float(np.mean([out[n]["mean"] for n in bench.label_names if n in out]))  # of the labels scored
    return out


def predict_without_tta(work: Path, bench: Bench, val_ids: list[str], nn_bin: Path, env: dict[str, str], log: Path) -> tuple[Path, float]:
    """nnU-Net's prediction of the validation cases from its final checkpoint without mirror TTA (8x fewer
    forward passes: on 2 CPU cores a 128^3 OpenKBP case took 122 s with TTA); returns the folder and seconds."""
    cases = _cases(bench)
    inp, out = work / "nnunet_val_images", work / "nnunet_val_no_tta"
    shutil.rmtree(inp, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    inp.mkdir(parents=True)
    for cid in val_ids:
        (inp / f"{cid}_0000.nii.gz").symlink_to(cases[cid][0].resolve())
    t = _timed([str(nn_bin / "nnUNetv2_predict"), "-i", str(inp), "-o", str(out), "-d", str(bench.nnunet_id), "-c", "3d_fullres",
                "-f", "0", "-tr", "nnUNetTrainer_WallBudget", "-chk", "checkpoint_final.pth", "--disable_tta",
                "-device", "cpu", "-npp", "1", "-nps", "1"], env=env, log=log)
    return out, t


def bench_train(args: argparse.Namespace) -> dict:
    from medsight.cli.common import parse_duration
    from medsight.data.splits import kfold

    budget = parse_duration(args.budget)
    nn_bin = Path(args.nnunet_venv) / "bin"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "train.log"
    env = nnunet_env(work)
    env["MEDSIGHT_BENCH_BUDGET_S"] = str(budget)
    env["MEDSIGHT_BENCH_NNUNET_TTA"] = args.nnunet_tta
    bench = BENCHES[args.dataset]
    splits = kfold(list(_cases(bench)))
    val_ids = splits[0]["val"]
    out: dict = {"dataset": args.dataset, "budget_s": budget, "fold": 0, "train_cases": len(splits[0]["train"]), "val_cases": len(val_ids)}

    # nnU-Net: raw dataset, its own fingerprint/plan/preprocess, our split, the wall-budget trainer
    write_nnunet_raw(work, bench)
    pre = work / "nnUNet_preprocessed" / bench.nnunet_name
    if not (pre / "nnUNetPlans_3d_fullres").is_dir():
        _timed([str(nn_bin / "nnUNetv2_plan_and_preprocess"), "-d", str(bench.nnunet_id), "-c", "3d_fullres", "-np", "2"], env=env, log=log)
    (pre / "splits_final.json").write_text(json.dumps(splits, indent=1))
    site = subprocess.run([str(nn_bin / "python"), "-c", "import nnunetv2, os; print(os.path.dirname(nnunetv2.__file__))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "training", "nnUNetTrainer", "variants", "nnUNetTrainer_WallBudget.py").write_text(WALL_BUDGET_TRAINER)

    run = work / "medsight_run"
    if "medsight" in args.tools:
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        (run / "splits.json").write_text(json.dumps(splits, indent=1))
        t = _timed([sys.executable, "-m", "medsight.cli.app", "--quiet", "train", str(bench.data), "--out", str(run), "--fold", "0",
                    "--time-budget", f"{budget:.0f}s", "--device", "cpu"], log=log)
        metrics = (run / "fold_0" / "metrics.csv").read_text()
        out["medsight"] = {"wall_s": t, "epochs": len(metrics.splitlines()) - 1, "curve": medsight_curve(metrics),
                           "score": _score(run / "fold_0" / "validation", val_ids, bench),
                           "plan": json.loads((run / "plans.json").read_text())["network"]}
        print(f"medsight: {out['medsight']['score']['mean_dice']:.4f} mean Dice ({t:.0f}s)", flush=True)
    if "nnunet" in args.tools:
        res = work / "nnUNet_results"
        shutil.rmtree(res, ignore_errors=True)
        t = _timed([str(nn_bin / "nnUNetv2_train"), str(bench.nnunet_id), "3d_fullres", "0", "-tr", "nnUNetTrainer_WallBudget",
                    "-device", "cpu"], env=env, log=log)
        fold = res / bench.nnunet_name / "nnUNetTrainer_WallBudget__nnUNetPlans__3d_fullres" / "fold_0"
        text = (sorted(fold.glob("training_log_*.txt"))[-1]).read_text()
        plans = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
        if args.nnunet_tta == "off":
            pred_dir, pred_s = predict_without_tta(work, bench, val_ids, nn_bin, env, log)
            own_mean = None
        else:
            pred_dir, pred_s = fold / "validation", None
            own_mean = json.loads((pred_dir / "summary.json").read_text())["foreground_mean"]["Dice"]
        out["nnunet"] = {"wall_s": t, "epochs_of_25_iterations": text.count("Epoch time"), "curve": nnunet_curve(text),
                         "validation_tta": args.nnunet_tta, "prediction_s": pred_s,
                         "score": _score(pred_dir, val_ids, bench),
                         "own_summary_foreground_mean_dice": own_mean,
                         "plan": {k: plans.get(k) for k in ("patch_size", "batch_size", "spacing")}
                         | {"features_per_stage": plans["architecture"]["arch_kwargs"]["features_per_stage"]}}
        print(f"nnU-Net: {out['nnunet']['score']['mean_dice']:.4f} mean Dice ({t:.0f}s)", flush=True)
    if "medsight" in out and "nnunet" in out:
        out["dice_difference"] = out["medsight"]["score"]["mean_dice"] - out["nnunet"]["score"]["mean_dice"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["preprocess", "train"])
    ap.add_argument("--dataset", choices=sorted(BENCHES), default="hippocampus")
    ap.add_argument("--nnunet-venv", required=True, help="virtual environment with nnunetv2 installed")
    ap.add_argument("--work", type=Path, help="working folder (default runs/nnunet_compare, runs/nnunet_compare_openkbp)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", default="20m")
    ap.add_argument("--tools", default="medsight,nnunet")
    ap.add_argument("--nnunet-tta", choices=["on", "off"], default="on",
                    help="nnU-Net's validation with mirror TTA (its default) or without (nnUNetv2_predict --disable_tta)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    args.tools = args.tools.split(",")
    suffix = "" if args.dataset == "hippocampus" else f"_{args.dataset}"
    args.work = args.work or ROOT / "runs" / f"nnunet_compare{suffix}"
    if not BENCHES[args.dataset].data.is_dir():
        print(f"{args.dataset} not found under {BENCHES[args.dataset].data}", file=sys.stderr)
        return 2
    if not (Path(args.nnunet_venv) / "bin" / "nnUNetv2_train").is_file():
        print(f"nnunetv2 not found in {args.nnunet_venv}; install it there (see this script's docstring)", file=sys.stderr)
        return 2
    result = bench_preprocess(args) if args.what == "preprocess" else bench_train(args)
    nn_version = subprocess.run([str(Path(args.nnunet_venv) / "bin" / "python"), "-c",
                                 "import importlib.metadata as m; print(m.version('nnunetv2'), m.version('torch'))"],
                                capture_output=True, text=True).stdout.split()
    import torch

    result |= {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                           "nnunetv2": nn_version[:1], "nnunet_torch": nn_version[1:]},
               "date": time.strftime("%Y-%m-%d %H:%M")}
    out = args.out or ROOT / "docs" / "results" / f"nnunet_{args.what}{suffix}_cpu.json"
    out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: v for k, v in result.items() if k not in ("seconds",)}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
