"""``medsight plan``, ``train``, ``predict``: parse the options, find the task in :data:`medsight.tasks.TASKS` (the
``--task`` given, else the dataset's or the run's own) and call it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medsight.cli.common import parse_duration, parse_folds
from medsight.errors import MedsightError

TASK_HELP = "a task of medsight.tasks.TASKS: segmentation, classification, multitask, registration, synthesis"
CLASSIFIERS = ("resnet18", "resnet50", "densenet121", "smallcnn", "cnnlstm", "vit")

# Options that only some tasks take; each task lists the ones it accepts (medsight.tasks.task.Task).
PLAN_OPTIONS = ("model", "tabular", "base_filters", "voxel_budget", "label_from_name", "loss_weighting", "heatmap", "max_size")
TRAIN_OPTIONS = (*(o for o in PLAN_OPTIONS if o != "voxel_budget"), "init_from", "freeze_encoder", "target_sensitivity",
                 "synthetic", "freeze_encoder_epochs")
PREDICT_OPTIONS = ("save_probabilities", "dicom_seg", "rtstruct", "split")


def add_task_options(parser: argparse.ArgumentParser, *, train: bool) -> None:
    """The options that only some tasks take (on ``plan`` and ``train``)."""
    s = parser.add_argument_group("segmentation")
    s.add_argument("--base-filters", type=int, help="network width when planning (default 32 with a GPU, 16 on CPU)")
    if train:
        s.add_argument("--freeze-encoder-epochs", type=int, metavar="N", help="with --init-from: keep the encoder's "
                       "weights fixed for the first N epochs (the new head and decoder adapt first)")
    if not train:
        s.add_argument("--voxel-budget", type=int, help="patch voxels x batch size per step")
    c = parser.add_argument_group("classification")
    c.add_argument("--model", help="network: " + ", ".join(CLASSIFIERS) + " (default resnet18)")
    c.add_argument("--tabular", help="CSV columns fused with the image features, e.g. age,sex")
    if train:
        c.add_argument("--init-from", help="classification or segmentation: a medsight checkpoint to fine-tune from "
                       "(weights matching by name and shape are loaded; segmentation: a new head when the labels differ)")
        c.add_argument("--freeze-encoder", action="store_true", help="with --init-from: train only the head")
        c.add_argument("--target-sensitivity", type=float, help="choose the decision threshold for this sensitivity "
                       "on validation data (default: Youden's J)")
    g = parser.add_argument_group("multitask (joint segmentation + classification)")
    g.add_argument("--label-from-name", nargs="?", const=r"_([^_]+)$", metavar="REGEX",
                   help="take each case's class from its file name: the first group of REGEX (default: the last _ token, "
                        "as in Montgomery's MCUCXR_0387_1.png -> 1)")
    g.add_argument("--loss-weighting", choices=["uncertainty", "fixed"],
                   help="learned uncertainty weights (Kendall et al. 2018, default) or the fixed loss_weights of plans.json")
    g.add_argument("--heatmap", action="store_true", help="also train a lesion-centre heat-map head")
    g.add_argument("--max-size", type=int, help="longest side of the network input in voxels "
                   "(default 256 in 2D / 96 in 3D on a CPU, 512 / 128 with a GPU)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="fingerprint a dataset and write an editable plans.json")
    p.add_argument("dataset", help="dataset folder, dataset.json, CSV or NPZ")
    p.add_argument("--task", default="auto", help=f"{TASK_HELP} (default: the dataset's)")
    p.add_argument("--out", help="run folder or .json path (default runs/<dataset name>)")
    add_task_options(p, train=False)
    p.set_defaults(func=cmd_plan)

    t = sub.add_parser("train", help="train a self-configuring model (segmentation, classification, multitask, ...)")
    t.add_argument("dataset", help="dataset folder, dataset.json, CSV or NPZ")
    t.add_argument("--task", default="auto", help=f"{TASK_HELP} (default: the dataset's: label maps -> "
                   "segmentation, class labels -> classification)")
    t.add_argument("--fold", default="0", help="fold 0..4, a list (0,1), 'cv' for all five, or 'all' (train on every case)")
    t.add_argument("--out", help="run folder (default runs/<dataset name>)")
    t.add_argument("--epochs", type=int, help="epochs (default from the plan)")
    t.add_argument("--iterations", type=int, help="iterations per epoch (default from the plan)")
    t.add_argument("--time-budget", help="train until this wall time, e.g. 20m; the learning rate is scheduled over it")
    t.add_argument("--resume", action="store_true", help="continue from fold_K/checkpoint_last.pt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="training arithmetic: auto = float16 autocast on a GPU; on a CPU, bfloat16 autocast for segmentation "
                   "where the processor has bfloat16 instructions (avx512_bf16/AMX), else float32; bf16 = bfloat16 "
                   "autocast (see docs/benchmarks.md)")
    t.add_argument("--devices", help="segmentation or classification: train the folds side by side, one process per "
                   "device, e.g. --fold cv --devices cuda:0,cuda:1,cuda:2 ('cuda' = every GPU; 'cpu,cpu' shares the cores); "
                   "each fold logs to fold_K/log.txt")
    t.add_argument("--plan", help="use this plans.json")
    t.add_argument("--val-every", type=int, default=1, help="validate every N epochs (under --time-budget also only "
                   "while validation stays within 10 %% of the time trained; the last epoch is always validated)")
    t.add_argument("--patience", type=int, help="early stopping: epochs without a better validation score "
                   "(classification default 20)")
    t.add_argument("--synthetic", help="segmentation or classification: a folder written by 'medsight synthesize sample'; "
                   "its cases join training batches only (never validation or test)")
    t.add_argument("--synthetic-ratio", type=float, default=0.5,
                   help="with --synthetic: probability that a training sample is synthetic (0-1, default 0.5)")
    add_task_options(t, train=True)
    t.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="apply a trained run to a file, a folder or a DICOM series")
    q.add_argument("run_dir")
    q.add_argument("input")
    q.add_argument("output", help="output folder (or a file name when INPUT is one file)")
    q.add_argument("--no-tta", action="store_true", help="no mirror test-time augmentation (faster)")
    q.add_argument("--folds", help="comma-separated folds to ensemble (default: all trained)")
    q.add_argument("--device")
    q.add_argument("--series", help="SeriesInstanceUID when a DICOM folder holds several")
    q.add_argument("--save-probabilities", action="store_true", help="also write <case>_probabilities.npz")
    q.add_argument("--overwrite", action="store_true", help="replace outputs that exist (an input is never written over)")
    q.add_argument("--dicom-seg", action="store_true", help="DICOM series input: also write <case>_seg.dcm (DICOM-SEG)")
    q.add_argument("--rtstruct", action="store_true",
                   help="DICOM series input: also write <case>_rtstruct.dcm (RT Structure Set: contours)")
    q.add_argument("--split", help="classification of a MedMNIST .npz: which split (default test)")
    q.add_argument("--uncertainty", action="store_true", help="segmentation: also write <case>_uncertainty beside each "
                   "label map and uncertainty.csv (score, review flag); classification: uncertainty and review columns "
                   "in predictions.csv (see docs/uncertainty.md)")
    d = q.add_argument_group("deployment (RUN_DIR may also be a 'medsight export' folder)")
    d.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                   help="torch (PyTorch, or a TorchScript export) or onnx (onnxruntime; a run's checkpoints are exported in memory)")
    d.add_argument("--verify", action="store_true", help="consistency check only: refuse weights, plans.json, calibration "
                   "or export.json whose SHA-256 differs from the model_card.json beside them (whoever swaps the files "
                   "can rewrite that card: pin a digest with --expect-sha256 to establish integrity)")
    d.add_argument("--expect-sha256", metavar="DIGEST", help="refuse the model unless the digest of the files this "
                   "prediction loads (weights of the folds used, plans.json, calibration, export.json) is DIGEST, as "
                   "'medsight card' / 'medsight export' print it (default: $MEDSIGHT_MODEL_SHA256)")
    d.add_argument("--strict", action="store_true", help="refuse inputs unlike the training data (modality, spacing, "
                   "intensity) instead of warning")
    d.add_argument("--audit-log", help="append the audit line here (default: $MEDSIGHT_AUDIT_LOG, else OUTPUT/audit.jsonl)")
    q.set_defaults(func=cmd_predict)


def given_options(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The task-specific options the user set (a flag left at its default is not given)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) not in (None, False)}


def chosen_task(dataset: str, name: str) -> Any:
    """The task asked for with ``--task``, or the dataset's own (``auto``)."""
    from medsight.tasks import get_task, task_of_dataset

    return task_of_dataset(dataset) if name == "auto" else get_task(name)


def _default_run(dataset: str) -> Path:
    from medsight.data.dataset import load_dataset

    return Path("runs") / load_dataset(dataset).name


def cmd_plan(args: argparse.Namespace) -> int:
    from medsight.cli.progress import case_bar
    from medsight.tasks import TASKS
    from medsight.tasks.task import refuse_options

    task = chosen_task(args.dataset, args.task)
    if task.plan is None:
        raise MedsightError(f"Expected a task with a separate planning step, got --task {task.name}, which plans inside "
                            f"'medsight train'; run 'medsight train {args.dataset} --task {task.name}'")
    options = given_options(args, PLAN_OPTIONS)
    refuse_options(task, options, task.plan_options, TASKS.values(), "'medsight plan'")
    out = Path(args.out) if args.out else _default_run(args.dataset)
    plan = task.plan(args.dataset, out, options, case_bar("fingerprint", args.quiet))
    width = max(len(k) for k, _ in plan.table())
    for k, v in plan.table():
        print(f"{k:<{width}}  {v}")
    print(f"\nwritten: {out if out.suffix == '.json' else out / 'plans.json'} (edit it, then 'medsight train')")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from medsight.cli.progress import TrainingProgress, case_bar
    from medsight.engine import distributed
    from medsight.engine.config import RunOptions
    from medsight.engine.parallel import parse_devices
    from medsight.tasks import TASKS
    from medsight.tasks.task import TrainRequest, refuse_options

    task = chosen_task(args.dataset, args.task)
    options = given_options(args, TRAIN_OPTIONS)
    if "synthetic" in options:
        options["synthetic_ratio"] = args.synthetic_ratio
    refuse_options(task, options, task.train_options, TASKS.values(), "'medsight train'")
    devices = None
    if args.devices:
        if not task.parallel_folds:
            takers = " or ".join(t.name for t in TASKS.values() if t.parallel_folds)
            raise MedsightError(f"Expected --devices only for {takers}, got --task {task.name}; drop --devices")
        if args.device:
            raise MedsightError("Expected either --device (one process) or --devices (folds side by side), got both; drop one")
        devices = parse_devices(args.devices)
    budget = parse_duration(args.time_budget) if args.time_budget else None
    config = RunOptions(epochs=args.epochs, time_budget_s=budget, iterations_per_epoch=args.iterations, seed=args.seed,
                        device=args.device, resume=args.resume, val_every=args.val_every, patience=args.patience,
                        precision=args.precision)
    run = Path(args.out) if args.out else _default_run(args.dataset)
    request = TrainRequest(dataset=args.dataset, run=run, folds=parse_folds(args.fold), config=config, plan_path=args.plan,
                           devices=devices, progress=TrainingProgress(quiet=args.quiet),
                           case_progress=case_bar("prepare", args.quiet))
    summary = task.train(request, options)
    if not distributed.finish():  # torchrun: only rank 0 reports
        return 0
    for line in task.training_lines(summary, run):
        print(line)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from medsight.cli.progress import case_bar
    from medsight.deploy.audit import audited_prediction
    from medsight.tasks import TASKS, task_of_run
    from medsight.tasks.task import PredictRequest, refuse_options

    task = task_of_run(args.run_dir)
    if task.predict is None:
        raise MedsightError(f"Expected a run that 'medsight predict' applies, got a {task.name} run {args.run_dir}; "
                            "see 'medsight --help' for the command of this task")
    options = given_options(args, PREDICT_OPTIONS)
    refuse_options(task, options, task.predict_options, TASKS.values(), "'medsight predict'")
    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    request = PredictRequest(run=Path(args.run_dir), input=Path(args.input), output=Path(args.output), folds=folds,
                             device=args.device, tta=not args.no_tta, series_uid=args.series, engine=args.engine,
                             strict=args.strict, overwrite=args.overwrite, progress=case_bar("predict", args.quiet),
                             uncertainty=args.uncertainty)
    recorded = {"tta": not args.no_tta, "device": args.device, "strict": args.strict, "split": args.split,
                "save_probabilities": args.save_probabilities, "dicom_seg": args.dicom_seg,
                "rtstruct": args.rtstruct, "series_given": bool(args.series), "uncertainty": args.uncertainty}
    with audited_prediction(args.run_dir, args.input, args.output, folds=folds, engine=args.engine, verify=args.verify,
                            expect_sha256=args.expect_sha256, parameters=recorded, log_path=args.audit_log) as written:
        written += task.predict(request, options)
    for w in written:
        print(w)
    return 0


__all__ = ["add_task_options", "cmd_plan", "cmd_predict", "cmd_train", "register"]
