"""``medsight explain`` for classification runs: each input is preprocessed exactly as for prediction, then Grad-CAM
(and/or occlusion) of the target class is drawn over the network's input (2D overlay, or a slice montage for 3D).
Heat maps are also saved as ``<case>_heatmap.npz`` (arrays on the network's input grid)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.engine.checkpoint import model_from_checkpoint
from medsight.errors import user_error
from medsight.explain import grad_cam, occlusion
from medsight.explain.render import explain_inputs, read_channels, render_heatmap, save_heatmap_npz
from medsight.tasks.classification.plan import ClassificationPlan
from medsight.transforms.classification import prepare_image


def target_index(target: str | None, names: list[str], predicted: int) -> int:
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
    for cid, files in explain_inputs(input_path, len(plan.channel_names)):
        x = torch.from_numpy(prepare_image(read_channels(files), plan))[None].to(dev)
        with torch.no_grad():
            logits = model(x)
        logits = logits / temperature
        probs = (torch.sigmoid(logits) if plan.multilabel else torch.softmax(logits, 1))[0].cpu().numpy()
        k = target_index(target, plan.class_names, int(probs.argmax()))
        maps = {}
        for m in methods:
            maps[m] = grad_cam(model, x, k) if m == "gradcam" else occlusion(model, x, k, multilabel=plan.multilabel)
            title = f"{cid}: {plan.class_names[k]} p={probs[k]:.2f} ({'Grad-CAM' if m == 'gradcam' else 'occlusion'})"
            written.append(render_heatmap(x[0, 0].cpu().numpy(), maps[m], out / f"{cid}_{m}.png", title))
        written.append(save_heatmap_npz(out / f"{cid}_heatmap.npz", image=x[0].cpu().numpy(), probabilities=probs,
                                 target=np.asarray(k), **maps))
    return written
