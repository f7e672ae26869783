"""``medsight plan``, ``train``, ``predict``: thin wrappers around :mod:`medsight.tasks.segmentation` and
:mod:`medsight.tasks.classification` (the task comes from the dataset, or from the run's plans.json)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from medsight.errors import MedsightError


def parse_duration(text: str) -> float:
    """``"20m"``, ``"1h30m"``, ``"90s"``, ``"45"`` (minutes) -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
    if not parts or "".join(a + b for a, b in parts) != t.replace(" ", ""):
        raise MedsightError(f"Expected a duration like 20m, 1h30m or 90s, got {text!r}; fix --time-budget")
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)


def _folds(text: str) -> list[int] | str:
    if text == "all":
        return "all"
    if text in ("cv", "0-4"):
        return [0, 1, 2, 3, 4]
    try:
        return [int(x) for x in text.split(",")]
    except ValueError as exc:
        raise MedsightError(f"Expected --fold as 0..4, a list like 0,1, 'cv' or 'all', got {text!r}; fix --fold") from exc


def register(sub: argparse._SubParsersAction) -> None:
    from medsight.cli.multitask import add_arguments as add_multitask_arguments

    p = sub.add_parser("plan", help="fingerprint a dataset and write an editable plans.json")
    p.add_argument("dataset", help="dataset folder, dataset.json, CSV or NPZ")
    p.add_argument("--task", default="auto", choices=TASKS, help="task (default: the dataset's)")
    p.add_argument("--model", help="classification network: " + ", ".join(CLASSIFIERS))
    p.add_argument("--tabular", help="classification from a CSV: comma-separated columns fused with the image (e.g. age,sex)")
    p.add_argument("--out", help="run folder or .json path (default runs/<dataset name>)")
    p.add_argument("--base-filters", type=int, help="network width (default 32 with a GPU, 16 on CPU)")
    p.add_argument("--voxel-budget", type=int, help="patch voxels x batch size per step")
    add_multitask_arguments(p)
    p.set_defaults(func=cmd_plan)

    t = sub.add_parser("train", help="train a self-configuring model (segmentation or classification)")
    t.add_argument("dataset", help="dataset folder, dataset.json, CSV or NPZ")
    t.add_argument("--task", default="auto", choices=TASKS, help="task (default: the dataset's: label maps -> segmentation, "
                   "class labels -> classification)")
    t.add_argument("--fold", default="0", help="fold 0..4, a list (0,1), 'cv' for all five, or 'all' (train on every case)")
    t.add_argument("--out", help="run folder (default runs/<dataset name>)")
    t.add_argument("--epochs", type=int, help="epochs (default from the plan)")
    t.add_argument("--iterations", type=int, help="iterations per epoch (default from the plan)")
    t.add_argument("--time-budget", help="train until this wall time, e.g. 20m; the learning rate is scheduled over it")
    t.add_argument("--resume", action="store_true", help="continue from fold_K/checkpoint_last.pt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")
    t.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="training arithmetic: auto = float16 autocast on a GPU, float32 on a CPU; bf16 = bfloat16 autocast "
                   "(faster on CPUs with bfloat16 instructions, see docs/benchmarks.md)")
    t.add_argument("--devices", help="segmentation or classification: train the folds side by side, one process per "
                   "device, e.g. --fold cv --devices cuda:0,cuda:1,cuda:2 ('cuda' = every GPU; 'cpu,cpu' shares the cores); "
                   "each fold logs to fold_K/log.txt")
    t.add_argument("--plan", help="use this plans.json")
    t.add_argument("--base-filters", type=int, help="network width when planning (default 32 GPU / 16 CPU)")
    t.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    t.add_argument("--synthetic", help="segmentation or classification: a folder written by 'medsight synthesize sample'; "
                   "its cases join training batches only (never validation or test)")
    t.add_argument("--synthetic-ratio", type=float, default=0.5,
                   help="with --synthetic: probability that a training sample is synthetic (0-1, default 0.5)")
    c = t.add_argument_group("classification")
    c.add_argument("--model", help="network: " + ", ".join(CLASSIFIERS) + " (default resnet18)")
    c.add_argument("--tabular", help="CSV columns fused with the image features, e.g. age,sex")
    c.add_argument("--init-from", help="a medsight checkpoint to fine-tune from (matching weights are loaded)")
    c.add_argument("--freeze-encoder", action="store_true", help="with --init-from: train only the head")
    c.add_argument("--patience", type=int, help="early stopping: epochs without a better validation AUC (default 20)")
    c.add_argument("--target-sensitivity", type=float, help="choose the decision threshold for this sensitivity "
                   "on validation data (default: Youden's J)")
    add_multitask_arguments(t)
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
    q.add_argument("--dicom-seg", action="store_true", help="DICOM series input: also write <case>_seg.dcm (DICOM-SEG)")
    q.add_argument("--split", help="classification of a MedMNIST .npz: which split (default test)")
    d = q.add_argument_group("deployment (RUN_DIR may also be a 'medsight export' folder)")
    d.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                   help="torch (PyTorch, or a TorchScript export) or onnx (onnxruntime; a run's checkpoints are exported in memory)")
    d.add_argument("--verify", action="store_true", help="refuse weights whose SHA-256 differs from the model card's")
    d.add_argument("--strict", action="store_true", help="refuse inputs unlike the training data (modality, spacing, "
                   "intensity) instead of warning")
    d.add_argument("--audit-log", help="append the audit line here (default: $MEDSIGHT_AUDIT_LOG, else OUTPUT/audit.jsonl)")
    q.set_defaults(func=cmd_predict)


TASKS = ("auto", "segmentation", "classification", "registration", "multitask")
CLASSIFIERS = ("resnet18", "resnet50", "densenet121", "smallcnn", "cnnlstm", "vit")


def dataset_task(dataset: str, task: str) -> str:
    """The task asked for, or the dataset's own (``auto``)."""
    if task != "auto":
        return task
    from medsight.data.dataset import load_dataset

    return load_dataset(dataset).task


def run_task(run_dir: str) -> str:
    """The task of a trained run, from its plans.json."""
    from medsight.plan.classification import load_plan

    return str(load_plan(Path(run_dir) / "plans.json").task)


def _default_run(dataset: str) -> Path:
    from medsight.data.dataset import load_dataset

    return Path("runs") / load_dataset(dataset).name


def cmd_plan(args: argparse.Namespace) -> int:
    from medsight.cli.progress import case_bar
    from medsight.tasks.segmentation import plan_dataset

    out = Path(args.out) if args.out else _default_run(args.dataset)
    if args.task == "multitask":
        from medsight.cli.multitask import plan_multitask_command

        plan: Any = plan_multitask_command(args, out)
    elif dataset_task(args.dataset, args.task) == "classification":
        from medsight.tasks.classification import plan_classification

        plan = plan_classification(args.dataset, out, network=args.model, tabular=_columns(args.tabular),
                                        progress=case_bar("fingerprint", args.quiet))
    else:
        plan = plan_dataset(args.dataset, out, base_filters=args.base_filters, voxel_budget=args.voxel_budget,
                            progress=case_bar("fingerprint", args.quiet))
    width = max(len(k) for k, _ in plan.table())
    for k, v in plan.table():
        print(f"{k:<{width}}  {v}")
    print(f"\nwritten: {out if out.suffix == '.json' else out / 'plans.json'} (edit it, then 'medsight train')")
    return 0


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def cmd_train(args: argparse.Namespace) -> int:
    from medsight.cli.progress import TrainingProgress
    from medsight.tasks.segmentation import train
    from medsight.train.trainer import TrainConfig

    budget = parse_duration(args.time_budget) if args.time_budget else None
    config = TrainConfig(epochs=args.epochs, time_budget_s=budget, iterations_per_epoch=args.iterations, seed=args.seed,
                         device=args.device, resume=args.resume, val_every=args.val_every, patience=args.patience,
                         precision=args.precision)
    run = Path(args.out) if args.out else _default_run(args.dataset)
    if args.synthetic and args.task in ("registration", "multitask"):
        raise MedsightError(f"Expected --synthetic only for segmentation or classification, got --task {args.task}; "
                            "drop --synthetic")
    if args.devices:
        from medsight.train.parallel import parse_devices

        if args.task in ("registration", "multitask"):
            raise MedsightError(f"Expected --devices only for segmentation or classification, got --task {args.task}; "
                                "drop --devices")
        if args.device:
            raise MedsightError("Expected either --device (one process) or --devices (folds side by side), got both; drop one")
        args.devices = parse_devices(args.devices)
    if args.task == "registration":
        from medsight.cli.registration import train_registration_command
        return train_registration_command(args, config, run)
    if args.task == "multitask":
        from medsight.cli.multitask import train_multitask_command

        return train_multitask_command(args, config, run)
    if dataset_task(args.dataset, args.task) == "classification":
        from medsight.cli.classification import train_classification_command

        return train_classification_command(args, config, run)
    for flag in ("model", "tabular", "init_from", "target_sensitivity"):
        if getattr(args, flag):
            raise MedsightError(f"Expected --{flag.replace('_', '-')} only with classification, got it for the segmentation "
                                f"dataset {args.dataset}; drop the flag or pass --task classification")
    summary = train(args.dataset, run, folds=_folds(args.fold), config=config, plan_path=args.plan,
                    base_filters=args.base_filters, progress=TrainingProgress(quiet=args.quiet),
                    synthetic=args.synthetic, synthetic_ratio=args.synthetic_ratio, devices=args.devices)
    from medsight.train import distributed

    if not distributed.finish():  # torchrun: only rank 0 reports
        return 0
    for fold, res in summary.get("trained_now", {}).items():
        val = res.get("validation") or {}
        md = val.get("mean_dice")
        print(f"fold {fold}: {res['epochs']} epochs in {res['seconds']:.0f}s; validation mean Dice "
              f"{md:.4f} on {val.get('cases')} cases" if md is not None else f"fold {fold}: {res['epochs']} epochs in {res['seconds']:.0f}s")
    cv = summary.get("cross_validation")
    if cv and cv.get("mean_dice") is not None:
        print(f"validation (folds {summary['folds_with_validation']}): mean Dice {cv['mean_dice']:.4f} {cv['per_label_dice']}")
    print(f"run folder: {run}  (report: {run / 'report.html'})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from medsight.cli.progress import case_bar
    from medsight.deploy.audit import audited_prediction
    from medsight.tasks.segmentation import predict

    folds = [int(f) for f in args.folds.split(",")] if args.folds else None
    deploy: dict[str, Any] = {"engine": args.engine, "strict": args.strict}
    recorded = {"tta": not args.no_tta, "device": args.device, "strict": args.strict, "split": args.split,
                "save_probabilities": args.save_probabilities, "dicom_seg": args.dicom_seg, "series_given": bool(args.series)}
    with audited_prediction(args.run_dir, args.input, args.output, folds=folds, engine=args.engine, verify=args.verify,
                            parameters=recorded, log_path=args.audit_log) as written:
        if run_task(args.run_dir) == "multitask":
            from medsight.cli.multitask import predict_multitask_files

            written += predict_multitask_files(args, folds)
        elif run_task(args.run_dir) == "classification":
            from medsight.tasks.classification import predict_classification

            written += predict_classification(args.run_dir, args.input, args.output, split=args.split, folds=folds, device=args.device,
                                              tta=not args.no_tta, series_uid=args.series, progress=case_bar("predict", args.quiet),
                                              **deploy)
        else:
            written += predict(args.run_dir, args.input, args.output, tta=not args.no_tta, folds=folds, device=args.device,
                               save_probabilities=args.save_probabilities, series_uid=args.series,
                               progress=case_bar("predict", args.quiet), dicom_seg=args.dicom_seg, **deploy)
    for w in written:
        print(w)
    return 0
