"""One network out of PyTorch and back in: ONNX / TorchScript export, onnxruntime sessions, int8 quantisation.

:class:`OnnxNetwork` wraps an onnxruntime ``InferenceSession`` as a parameter-free ``nn.Module`` so that the
existing predictors (:class:`~medsight.tasks.segmentation.predictor.Predictor`, whose sliding window calls ``model(x)``, and
:func:`~medsight.tasks.classification.trainer.predict_logits`, which calls ``model(x[, tabular])``) run it unchanged: the
preprocessing, sliding window, test-time mirroring, fold averaging, calibration and postprocessing stay one code path.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsight.core.pinned import read_bytes
from medsight.errors import did_you_mean, user_error

log = logging.getLogger(__name__)

#: ONNX opset of exported graphs (onnxruntime >= 1.14 runs it).
OPSET = 17
ENGINES = ("torch", "onnx")
FORMATS = ("onnx", "torchscript")
#: Networks that are fully convolutional: exported with dynamic spatial axes (any multiple of the total stride).
FULLY_CONVOLUTIONAL = ("dynunet", "unet", "segresnet")
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class Signature:
    """What an exported network takes.

    Attributes:
        example: shape of the example image ``(1, C, *spatial)`` used to trace the network.
        tabular: width of the second input ``tabular`` ``(B, T)``; 0 when the network has none.
        dynamic_spatial: spatial axes are dynamic (fully convolutional networks); otherwise only the batch is.
    """

    example: tuple[int, ...]
    tabular: int = 0
    dynamic_spatial: bool = False

    @property
    def input_names(self) -> list[str]:
        return ["image", "tabular"] if self.tabular else ["image"]

    def example_inputs(self) -> tuple[torch.Tensor, ...]:
        gen = torch.Generator().manual_seed(0)
        image = torch.randn(self.example, generator=gen)
        return (image, torch.zeros(self.example[0], self.tabular)) if self.tabular else (image,)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``{input or output name: {axis: name}}`` for :func:`torch.onnx.export`."""
        spatial = {i + 2: f"dim{i}" for i in range(len(self.example) - 2)} if self.dynamic_spatial else {}
        axes = {"image": {0: "batch", **spatial}, "logits": {0: "batch", **spatial}}
        if self.tabular:
            axes["tabular"] = {0: "batch"}
        return axes

    def to_dict(self) -> dict[str, Any]:
        dims = len(self.example) - 2
        spatial: list[int | str] = [f"dim{i}" for i in range(dims)] if self.dynamic_spatial else list(self.example[2:])
        out: dict[str, Any] = {"image": ["batch", self.example[1], *spatial], "output": "logits"}
        if self.tabular:
            out["tabular"] = ["batch", self.tabular]
        return out


def signature(state: dict[str, Any]) -> Signature:
    """The inputs of a checkpoint's network (see :func:`medsight.engine.checkpoint.load_checkpoint`)."""
    args, plan, arch = state["init_args"], state.get("plan") or {}, state["architecture"]
    channels = int(args.get("in_channels", len(plan.get("channel_names", [])) or 1))
    if arch in FULLY_CONVOLUTIONAL:
        return Signature((1, channels, *[int(p) for p in plan["patch_size"]]), dynamic_spatial=True)
    if plan.get("task") == "classification":
        size = [int(s) for s in args["input_size"]]
        return Signature((1, channels, *size), tabular=int(args.get("tabular_features", 0)))
    raise user_error("a segmentation or classification network", f"architecture {arch!r}", None,
                     "export a segmentation or classification run")


@contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the tracer's expected warnings (shape checks frozen into the graph, instance norm in eval mode)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*instance_norm.*")
        yield


def to_onnx(model: nn.Module, sig: Signature, target: str | Path | None = None) -> bytes:
    """Export ``model`` (eval mode) to ONNX with the legacy TorchScript-based exporter; returns the model bytes.

    Args:
        model: a network taking ``image`` ``(B, C, *spatial)`` (and ``tabular`` ``(B, T)``), returning logits.
        sig: its inputs; spatial axes are dynamic for fully convolutional networks.
        target: write the model there (not atomically: callers write into a temporary folder); default a
            temporary file that is removed.
    """
    model.eval()
    with tempfile.TemporaryDirectory(prefix="medsight-onnx-") as tmp:
        path = Path(target) if target is not None else Path(tmp) / "model.onnx"
        with _quiet_tracing(), torch.no_grad():
            torch.onnx.export(model, sig.example_inputs(), str(path), dynamo=False, input_names=sig.input_names,
                              output_names=["logits"], dynamic_axes=sig.dynamic_axes(), opset_version=OPSET,
                              do_constant_folding=True)
        return path.read_bytes()


def to_torchscript(model: nn.Module, sig: Signature, target: str | Path) -> Path:
    """Trace ``model`` (eval mode) with :func:`torch.jit.trace` and save it; shapes stay dynamic where the code allows."""
    model.eval()
    with _quiet_tracing(), torch.no_grad():
        traced = torch.jit.trace(model, sig.example_inputs(), check_trace=False)
    traced.save(str(target))
    return Path(target)


def quantize_int8(source: str | Path, target: str | Path) -> Path:
    """Dynamic int8 quantisation (onnxruntime): weights stored as uint8, activations quantised at run time.

    Runs onnxruntime's recommended pre-processing (shape inference, graph optimisation) first.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(source), Path(target)
    prepared = target.with_name(target.stem + ".prep.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QUInt8)
    finally:
        prepared.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class OnnxOptions:
    """onnxruntime session settings.

    Attributes:
        optimization: graph optimisation level: ``disable``, ``basic``, ``extended`` or ``all``.
        threads: intra-op threads; 0 uses PyTorch's current thread count, so both engines get the same CPU share.
    """

    optimization: str = "all"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise did_you_mean(self.optimization, OPTIMIZATION_LEVELS, "onnxruntime optimisation level")


def make_session(model: bytes | str | Path, options: OnnxOptions | None = None) -> Any:
    """An onnxruntime CPU ``InferenceSession`` for model bytes or a ``.onnx`` file."""
    import onnxruntime as ort

    options = options or OnnxOptions()
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.optimization]
    so.intra_op_num_threads = options.threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only
    source = model if isinstance(model, bytes) else read_bytes(model)  # the hashed bytes when pinned (core.pinned)
    try:
        return ort.InferenceSession(source, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid or corrupt graphs
        where = "the exported bytes" if isinstance(model, bytes) else model
        raise user_error("a valid ONNX model", f"a file onnxruntime cannot load ({type(exc).__name__})", where,
                         "export it again with 'medsight export RUN --format onnx OUT'") from exc


class OnnxNetwork(nn.Module):
    """An onnxruntime session behind the ``nn.Module`` call of a medsight network: ``model(x[, tabular]) -> logits``.

    It has no parameters; ``eval()`` and ``to()`` are no-ops for it. Inputs are moved to the CPU as float32 and the
    logits come back as a CPU tensor (on the input's device when that is another one).
    """

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        shape = session.get_outputs()[0].shape
        if len(shape) == 2 and isinstance(shape[1], int):
            self.num_classes = shape[1]

    def forward(self, x: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        feeds = {self.input_names[0]: np.ascontiguousarray(x.detach().float().cpu().numpy())}
        if tabular is not None and len(self.input_names) > 1:
            feeds[self.input_names[1]] = np.ascontiguousarray(tabular.detach().float().cpu().numpy())
        out = torch.from_numpy(self.session.run(None, feeds)[0])
        return out if x.device.type == "cpu" else out.to(x.device)


def load_torchscript(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """A TorchScript network written by :func:`to_torchscript` (eval mode)."""
    try:
        model = torch.jit.load(io.BytesIO(read_bytes(path)), map_location=device)  # pinned bytes (core.pinned)
    except RuntimeError as exc:
        raise user_error("a TorchScript archive", f"a file torch.jit cannot load ({exc.__class__.__name__})", path,
                         "export it again with 'medsight export RUN --format torchscript OUT'") from exc
    model.eval()
    return model


def check_engine(engine: str) -> str:
    """``engine`` when it is one of :data:`ENGINES`; a did-you-mean error otherwise."""
    if engine not in ENGINES:
        raise did_you_mean(engine, ENGINES, "engine")
    return engine
