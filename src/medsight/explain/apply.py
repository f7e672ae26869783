"""Explain a trained run on new images: the ``medsight explain`` command's library side.

Classification: each input is preprocessed exactly as for prediction, then Grad-CAM (and/or occlusion) of the
target class is drawn over the network's input (2D overlay, or a slice montage for 3D). Segmentation: the image is
preprocessed as the predictor does, a patch of the training patch size is cut around the predicted structure, and
Grad-CAM of the label's mean logit over that structure is drawn (a decoder layer one level above full resolution).
Heat maps are also saved as ``<case>_heatmap.npz`` (arrays on the network's input grid).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.errors import user_error
from medsight.io.atomic import atomic_path

log = logging.getLogger(__name__)


def _inputs(input_path: str | Path, channels: int) -> list[tuple[str, list[Path]]]:
    from medsight.tasks.segmentation import input_cases

    inp = Path(input_path)
    if not inp.exists():
        raise user_error("an existing input file or folder", "nothing", inp, "check the path")
    return input_cases(inp, channels)


def _read(files: list[Path]) -> Any:
    from medsight.io import read_image

    parts = [read_image(f) for f in files]
    return parts[0] if len(parts) == 1 else parts[0].with_array(np.concatenate([p.array for p in parts]))


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return path


def _render(volume: np.ndarray, heat: np.ndarray, out_png: Path, title: str) -> Path:
    from medsight.explain.render import montage_3d, overlay_heatmap

    if volume.ndim == 2:
        return overlay_heatmap(volume, heat, out_png, title=title)
    return montage_3d(volume, heat, out_png, title=title)


def _target_index(target: str | None, names: list[str], predicted: int) -> int:
    if target is None:
        return predicted
    if target in names:
        return names.index(target)
    if target.isdigit() and int(target) < len(names):
        return int(target)
    raise user_error(f"--target among the classes {names} (or an index)", target, None, "choose a class of this model")


def explain_classification(state: dict[str, Any], input_path: str | Path, out: Path, *, target: str | None = None,
                           method: str = "both", device: str | None = None, temperature: float = 1.0) -> list[Path]:
    """Heat maps for every input image; returns the files written (``temperature`` calibrates the probabilities
    shown in the titles, as in prediction)."""
    from medsight.explain import grad_cam, occlusion
    from medsight.plan.classification import ClassificationPlan
    from medsight.preprocess.classification import prepare_image
    from medsight.train.checkpoint import model_from_checkpoint

    plan = ClassificationPlan.from_dict(state["plan"])
    if plan.tabular:
        raise user_error("a model without tabular inputs for 'explain' on plain images", "a model fusing "
                         + ", ".join(plan.tabular.get("columns", [])), None, "explain an image-only model")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model_from_checkpoint(state).to(dev)
    has_cam = bool(getattr(model, "cam_layer", None))
    methods = {"gradcam": ["gradcam"], "occlusion": ["occlusion"], "both": ["gradcam", "occlusion"]}[method]
    if not has_cam:
        if method == "gradcam":
            raise user_error("a network with a spatial feature map for Grad-CAM", plan.network, None, "use --method occlusion")
        methods = ["occlusion"]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cid, files in _inputs(input_path, len(plan.channel_names)):
        x = torch.from_numpy(prepare_image(_read(files), plan))[None].to(dev)
        with torch.no_grad():
            logits = model(x)
        logits = logits / temperature
        probs = (torch.sigmoid(logits) if plan.multilabel else torch.softmax(logits, 1))[0].cpu().numpy()
        k = _target_index(target, plan.class_names, int(probs.argmax()))
        maps = {}
        for m in methods:
            maps[m] = grad_cam(model, x, k) if m == "gradcam" else occlusion(model, x, k, multilabel=plan.multilabel)
            title = f"{cid}: {plan.class_names[k]} p={probs[k]:.2f} ({'Grad-CAM' if m == 'gradcam' else 'occlusion'})"
            written.append(_render(x[0, 0].cpu().numpy(), maps[m], out / f"{cid}_{m}.png", title))
        written.append(_save_npz(out / f"{cid}_heatmap.npz", image=x[0].cpu().numpy(), probabilities=probs,
                                 target=np.asarray(k), **maps))
    return written


def explain_segmentation(state: dict[str, Any], input_path: str | Path, out: Path, *, label: int | None = None,
                         device: str | None = None) -> list[Path]:
    """Label saliency of a segmentation network for every input image; returns the files written."""
    from medsight.data.case import Case
    from medsight.explain import segmentation_saliency
    from medsight.infer.predictor import Predictor
    from medsight.plan.planner import Plan
    from medsight.preprocess.cache import preprocess_case
    from medsight.train.checkpoint import model_from_checkpoint
    from medsight.train.sampler import crop_padded

    plan = Plan.from_dict(state["plan"])
    fg = [v for v in plan.labels.values() if v != 0]
    lab = fg[0] if label is None else label
    if lab not in plan.labels.values():
        raise user_error(f"--label among {sorted(plan.labels.values())}", lab, None, "choose a label of this model")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model_from_checkpoint(state).to(dev)
    ups = [n for n, _ in model.named_modules() if n.startswith("net.upsamples.") and n.count(".") == 2]
    layer = ups[-2] if len(ups) >= 2 else "net.bottleneck"
    predictor = Predictor(plan=plan, models=[model], device=dev, tta=False)
    name = next(k for k, v in plan.labels.items() if v == lab)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cid, files in _inputs(input_path, len(plan.channel_names)):
        pre = preprocess_case(Case(case_id=cid, image=_read(files)), plan)
        pred = predictor.probabilities(pre.image).argmax(0).numpy()
        where = np.argwhere(pred == lab)
        centre = where.mean(0).round().astype(int) if len(where) else np.asarray(pred.shape) // 2
        patch = tuple(int(p) for p in plan.patch_size)
        x = torch.from_numpy(crop_padded(np.asarray(pre.image, dtype=np.float32), centre, patch))[None].to(dev)
        heat = segmentation_saliency(model, x, lab, layer=layer)
        title = f"{cid}: saliency of label {lab} ({name}){'' if len(where) else ' - not predicted'}"
        written.append(_render(x[0, 0].cpu().numpy(), heat, out / f"{cid}_saliency.png", title))
        written.append(_save_npz(out / f"{cid}_heatmap.npz", image=x[0].cpu().numpy(), saliency=heat,
                                 prediction=crop_padded(pred[None].astype(np.uint8), centre, patch)[0]))
    return written
