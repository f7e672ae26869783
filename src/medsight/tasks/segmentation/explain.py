"""``medsight explain`` for segmentation runs: the image is preprocessed as the predictor does, a patch of the training
patch size is cut around the predicted structure, and Grad-CAM of the label's mean logit over that structure is drawn
(the decoder layer at half the full resolution). Heat maps are also saved as ``<case>_heatmap.npz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.core.case import Case
from medsight.engine.checkpoint import model_from_checkpoint
from medsight.errors import user_error
from medsight.explain import segmentation_saliency
from medsight.explain.render import explain_inputs, read_channels, render_heatmap, save_heatmap_npz
from medsight.tasks.segmentation.plan import Plan
from medsight.tasks.segmentation.predictor import Predictor
from medsight.transforms.cache import preprocess_case
from medsight.transforms.sampler import crop_padded


def explain_segmentation(state: dict[str, Any], input_path: str | Path, out: Path, *, label: int | None = None,
                         device: str | None = None) -> list[Path]:
    """Label saliency of a segmentation network for every input image; returns the files written."""

    plan = Plan.from_dict(state["plan"])
    fg = [v for v in plan.labels.values() if v != 0]
    lab = fg[0] if label is None else label
    if lab not in plan.labels.values():
        raise user_error(f"--label among {sorted(plan.labels.values())}", lab, None, "choose a label of this model")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model_from_checkpoint(state).to(dev)
    ups = [n for n, _ in model.named_modules() if n.startswith("net.upsamples.") and n.count(".") == 2]
    half = 1 if getattr(model, "head", None) is not None else 2  # a strided first stage: its last decoder layer
    layer = ups[-half] if len(ups) >= half else "net.bottleneck"
    predictor = Predictor(plan=plan, models=[model], device=dev, tta=False)
    name = next(k for k, v in plan.labels.items() if v == lab)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cid, files in explain_inputs(input_path, len(plan.channel_names)):
        pre = preprocess_case(Case(case_id=cid, image=read_channels(files)), plan)
        pred = predictor.probabilities(pre.image).argmax(0).numpy()
        where = np.argwhere(pred == lab)
        centre = where.mean(0).round().astype(int) if len(where) else np.asarray(pred.shape) // 2
        patch = tuple(int(p) for p in plan.patch_size)
        x = torch.from_numpy(crop_padded(np.asarray(pre.image, dtype=np.float32), centre, patch))[None].to(dev)
        heat = segmentation_saliency(model, x, lab, layer=layer)
        title = f"{cid}: saliency of label {lab} ({name}){'' if len(where) else ' - not predicted'}"
        written.append(render_heatmap(x[0, 0].cpu().numpy(), heat, out / f"{cid}_saliency.png", title))
        written.append(save_heatmap_npz(out / f"{cid}_heatmap.npz", image=x[0].cpu().numpy(), saliency=heat,
                                 prediction=crop_padded(pred[None].astype(np.uint8), centre, patch)[0]))
    return written
