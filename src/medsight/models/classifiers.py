"""Classification networks, 2D and 3D: every model is an image encoder + optional tabular branch + linear head.

Registered names: ``resnet18``, ``resnet50``, ``densenet121`` (MONAI), ``smallcnn`` (ours, for tiny images),
``cnnlstm`` (a volume read as a sequence of axial slices) and ``vit`` (a small Vision Transformer). Each builder has the signature
``f(*, spatial_dims, in_channels, num_classes, input_size, tabular_features=0, dropout=0.0, **options)`` and takes
only JSON-plain arguments, so a checkpoint rebuilds the network with ``create_model(name, **init_args)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from medsight.errors import user_error

log = logging.getLogger(__name__)

#: 2D inputs whose smallest side is at most this many pixels (3D: voxels, the second value) get a stride-1 stem
#: without max-pooling. 3D is stricter: a full-resolution first stage costs D times more, and a 36x52x36 volume
#: still leaves a 2x2x2 map for layer4 with the standard stem.
SMALL_INPUT = 64
SMALL_INPUT_3D = 32


def small_stem(input_size: int | Sequence[int], spatial_dims: int) -> bool:
    """Whether a ResNet/DenseNet for this input gets the stride-1 stem (see :data:`SMALL_INPUT`)."""
    return min(_size(input_size, spatial_dims)) <= (SMALL_INPUT if spatial_dims == 2 else SMALL_INPUT_3D)
#: Width of the tabular branch (age, sex, ...) whose output is concatenated with the image features.
TABULAR_WIDTH = 32
#: Default channel widths of the four ``smallcnn`` blocks.
SMALLCNN_CHANNELS = (32, 64, 128, 256)
#: ``smallcnn`` pools after a block only while the smallest side stays at least this large.
SMALLCNN_MIN_MAP = 6
#: Patch sizes ``vit`` tries, largest first, and the fewest tokens it accepts for an automatic choice.
VIT_PATCHES = (16, 8, 4, 2)
VIT_MIN_TOKENS = 49
#: Feature widths of the MONAI ResNets (512 x block expansion).
RESNET_FEATURES = {18: 512, 50: 2048}


class Classifier(nn.Module):
    """Image encoder, optional tabular MLP fused by concatenation, and a Dropout + Linear head.

    Args:
        encoder: maps images ``(B, C, H, W[, D])`` to features ``(B, feature_dim)``.
        feature_dim: number of image features.
        num_classes: number of output logits.
        tabular_features: number of per-case tabular values; 0 for none.
        dropout: dropout probability before the final Linear.
        cam_layer: dotted module name of the last spatial feature map (for Grad-CAM), or ``None``.
        cam_slices: ``True`` when ``cam_layer`` runs once per axial slice (batch ``B * D``), as in ``cnnlstm``.
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int, *, tabular_features: int = 0,
                 dropout: float = 0.0, cam_layer: str | None = None, cam_slices: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise user_error("num_classes >= 1", num_classes, None, "pass the number of classes in the dataset")
        if tabular_features < 0:
            raise user_error("tabular_features >= 0", tabular_features, None, "pass 0 when there are no tabular columns")
        if not 0.0 <= dropout < 1.0:
            raise user_error("dropout in [0, 1)", dropout, None, "pass a probability such as 0.2")
        self.encoder = encoder
        self.tabular: nn.Module | None = None
        if tabular_features:
            self.tabular = nn.Sequential(nn.Linear(tabular_features, TABULAR_WIDTH), nn.ReLU(),
                                         nn.Linear(TABULAR_WIDTH, TABULAR_WIDTH), nn.ReLU())
        self.tabular_features = tabular_features
        self.num_classes = num_classes
        self.head = nn.Sequential(nn.Dropout(dropout),
                                  nn.Linear(feature_dim + (TABULAR_WIDTH if tabular_features else 0), num_classes))
        self.cam_layer = cam_layer
        self.cam_slices = cam_slices
        self.encoder_frozen = False

    def features(self, x: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Fused features ``(B, F)`` (image features, then tabular features when the model has a tabular branch).

        Args:
            x: images ``(B, C, *spatial)``.
            tabular: per-case values ``(B, tabular_features)``; required exactly when ``tabular_features > 0``.
        """
        feats = self.encoder(x)
        if self.tabular is None:
            if tabular is not None:
                raise user_error("no tabular input for a model built with tabular_features=0",
                                 f"a tensor of shape {tuple(tabular.shape)}", None,
                                 "rebuild the model with tabular_features set, or drop the tabular columns")
            return feats
        if tabular is None or tabular.shape != (x.shape[0], self.tabular_features):
            got = "none" if tabular is None else f"shape {tuple(tabular.shape)}"
            raise user_error(f"tabular input of shape ({x.shape[0]}, {self.tabular_features})", got, None,
                             "pass the same tabular columns the model was built with")
        return torch.cat([feats, self.tabular(tabular.to(feats.dtype))], dim=1)

    def forward(self, x: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, *spatial)`` and optional tabular ``(B, T)``."""
        return self.head(self.features(x, tabular))

    def freeze_encoder(self) -> None:
        """Stop training the image encoder (transfer learning): no gradients, and it stays in eval mode.

        Keeping the encoder in eval mode means ``model.train()`` does not update its BatchNorm running statistics
        or apply its dropout, so a frozen encoder computes exactly what it computed when it was trained.
        """
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder_frozen = True
        self.encoder.eval()

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def load_pretrained(self, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
        """Load every tensor whose name and shape match this model (fine-tuning with another head).

        Returns:
            The names in ``state_dict`` that were not loaded (absent here or of another shape), sorted.

        Raises:
            MedsightError: no tensor matched, so the checkpoint belongs to another architecture.
        """
        own = self.state_dict()
        matched = {k: v for k, v in state_dict.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
        if not matched:
            raise user_error("a checkpoint of the same architecture", "no tensor matching this model by name and shape",
                             None, "initialise from a checkpoint trained with the same --model")
        own.update(matched)
        self.load_state_dict(own)
        untouched = sorted(set(own) - set(matched))
        if untouched:
            log.info("load_pretrained: %d tensors keep their initial values: %s", len(untouched), ", ".join(untouched))
        return sorted(set(state_dict) - set(matched))


# ---------------------------------------------------------------------------------------------------- helpers
def _check_dims(name: str, spatial_dims: int, allowed: tuple[int, ...] = (2, 3)) -> None:
    if spatial_dims not in allowed:
        fix = ("use a 3D dataset (volumes), or another model such as smallcnn or resnet18 for 2D images"
               if allowed == (3,) else "pass spatial_dims=2 for images or 3 for volumes")
        raise user_error(f"spatial_dims in {allowed} for model {name!r}", spatial_dims, None, fix)


def _size(input_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    """``input_size`` as a tuple of ``spatial_dims`` positive ints."""
    size = (int(input_size),) * spatial_dims if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    if len(size) != spatial_dims or min(size) < 1:
        raise user_error(f"input_size with {spatial_dims} positive sizes", list(size), None,
                         "pass the spatial size of the (resampled) images, e.g. [28, 28] or [16, 32, 32]")
    return size


def _norm(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "instance":
        return (nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d)(channels, affine=True)
    raise user_error("norm 'batch' or 'instance'", repr(kind), None, "pass norm='batch' or norm='instance'")


def _classifier(encoder: nn.Module, feature_dim: int, num_classes: int, tabular_features: int, dropout: float,
                cam_layer: str | None, *, cam_slices: bool = False) -> Classifier:
    return Classifier(encoder, feature_dim, num_classes, tabular_features=tabular_features, dropout=dropout,
                      cam_layer=cam_layer, cam_slices=cam_slices)


# ---------------------------------------------------------------------------------------------------- smallcnn
class SmallCNNEncoder(nn.Module):
    """Four blocks of (conv-norm-ReLU) x 2, 2x max-pooling after the first three while the map stays >= 6 px,
    then global average pooling. Images ``(B, C, *spatial)`` -> features ``(B, channels[-1])``."""

    def __init__(self, *, spatial_dims: int, in_channels: int, input_size: Sequence[int],
                 channels: Sequence[int] = SMALLCNN_CHANNELS, norm: str = "batch") -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        smallest = min(input_size)
        blocks: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate(channels):
            layers: list[nn.Module] = [conv(cin, cout, 3, padding=1, bias=False), _norm(norm, spatial_dims, cout), nn.ReLU(),
                                       conv(cout, cout, 3, padding=1, bias=False), _norm(norm, spatial_dims, cout), nn.ReLU()]
            if i < len(channels) - 1 and smallest // 2 >= SMALLCNN_MIN_MAP:
                layers.append(pool(2))
                smallest //= 2
            blocks.append(nn.Sequential(*layers))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = (nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d)(1)
        self.out_features = int(channels[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(x)).flatten(1)


def _smallcnn_channels(channels: Sequence[int] | None) -> list[int]:
    chans = [int(c) for c in (channels if channels is not None else SMALLCNN_CHANNELS)]
    if not chans or min(chans) < 1:
        raise user_error("channels as a non-empty list of positive widths", chans, None, "pass e.g. [32, 64, 128, 256]")
    return chans


def smallcnn(*, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
             tabular_features: int = 0, dropout: float = 0.0, channels: Sequence[int] | None = None,
             norm: str = "batch", **_: Any) -> Classifier:
    """A compact CNN for tiny images (MedMNIST 28 px) and small volumes; ``channels`` sets the block widths."""
    _check_dims("smallcnn", spatial_dims)
    chans = _smallcnn_channels(channels)
    enc = SmallCNNEncoder(spatial_dims=spatial_dims, in_channels=in_channels, input_size=_size(input_size, spatial_dims),
                          channels=chans, norm=norm)
    return _classifier(enc, enc.out_features, num_classes, tabular_features, dropout, f"encoder.blocks.{len(chans) - 1}")


# ---------------------------------------------------------------------------------------------------- cnnlstm
class CNNLSTMEncoder(nn.Module):
    """A volume ``(B, C, D, H, W)`` read as ``D`` axial slices: a shared 2D ``smallcnn`` encoder per slice gives
    ``(B, D, F)``, a bidirectional LSTM reads the sequence, and the outputs are averaged over slices -> ``(B, 2 * hidden)``.
    """

    def __init__(self, *, in_channels: int, slice_size: Sequence[int], channels: Sequence[int], hidden: int,
                 norm: str) -> None:
        super().__init__()
        self.slices = SmallCNNEncoder(spatial_dims=2, in_channels=in_channels, input_size=slice_size, channels=channels,
                                      norm=norm)
        self.lstm = nn.LSTM(self.slices.out_features, hidden, batch_first=True, bidirectional=True)
        self.out_features = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise user_error("a volume batch (B, C, D, H, W) for cnnlstm", f"shape {tuple(x.shape)}", None,
                             "pass 3D volumes, or use smallcnn/resnet18 for 2D images")
        b, c, d, h, w = x.shape
        per_slice = self.slices(x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w))
        seq, _ = self.lstm(per_slice.view(b, d, -1))
        return seq.mean(dim=1)


def cnnlstm(*, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
            tabular_features: int = 0, dropout: float = 0.0, channels: Sequence[int] | None = None, hidden: int = 128,
            norm: str = "batch", **_: Any) -> Classifier:
    """CNN-LSTM for volumes: per-slice 2D CNN features, a bidirectional LSTM over the axial (first) axis."""
    _check_dims("cnnlstm", spatial_dims, (3,))
    size = _size(input_size, 3)
    enc = CNNLSTMEncoder(in_channels=in_channels, slice_size=size[1:], channels=_smallcnn_channels(channels),
                         hidden=int(hidden), norm=norm)
    return _classifier(enc, enc.out_features, num_classes, tabular_features, dropout,
                       f"encoder.slices.blocks.{len(enc.slices.blocks) - 1}", cam_slices=True)


# ---------------------------------------------------------------------------------------------------- MONAI CNNs
def _resnet(depth: int, *, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
            tabular_features: int, dropout: float) -> Classifier:
    from monai.networks.nets import resnet18, resnet50

    _check_dims(f"resnet{depth}", spatial_dims)
    small = small_stem(input_size, spatial_dims)
    stem: dict[str, Any] = ({"conv1_t_size": 3, "conv1_t_stride": 1, "no_max_pool": True} if small
                            else {"conv1_t_size": 7, "conv1_t_stride": 2, "no_max_pool": False})
    build = resnet18 if depth == 18 else resnet50
    enc = build(spatial_dims=spatial_dims, n_input_channels=in_channels, feed_forward=False, **stem)
    return _classifier(enc, RESNET_FEATURES[depth], num_classes, tabular_features, dropout, "encoder.layer4")


def resnet18(*, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
             tabular_features: int = 0, dropout: float = 0.0, **_: Any) -> Classifier:
    """MONAI ResNet-18 (512 features); a stride-1 3x3 stem without max-pooling for small inputs
    (:func:`small_stem`)."""
    return _resnet(18, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes,
                   input_size=input_size, tabular_features=tabular_features, dropout=dropout)


def resnet50(*, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
             tabular_features: int = 0, dropout: float = 0.0, **_: Any) -> Classifier:
    """MONAI ResNet-50 (2048 features); a stride-1 3x3 stem without max-pooling for small inputs
    (:func:`small_stem`)."""
    return _resnet(50, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes,
                   input_size=input_size, tabular_features=tabular_features, dropout=dropout)


def densenet121(*, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
                tabular_features: int = 0, dropout: float = 0.0, **_: Any) -> Classifier:
    """MONAI DenseNet-121 without its final Linear (1024 features).

    For small inputs (:func:`small_stem`) the 7x7 stride-2 stem conv and its max-pool are replaced by a 3x3
    stride-1 conv, so a 28 px image still has a 3x3 map after the three transitions.
    """
    from monai.networks.nets import DenseNet121

    _check_dims("densenet121", spatial_dims)
    enc = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
    linear, stem = enc.get_submodule("class_layers.out"), enc.get_submodule("features.conv0")
    assert isinstance(linear, nn.Linear) and isinstance(stem, (nn.Conv2d, nn.Conv3d))  # MONAI's layout
    enc.class_layers.out = nn.Identity()
    if small_stem(input_size, spatial_dims):
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        enc.features.conv0 = conv(in_channels, stem.out_channels, 3, padding=1, bias=False)
        nn.init.kaiming_normal_(enc.features.conv0.weight)
        enc.features.pool0 = nn.Identity()
    return _classifier(enc, linear.in_features, num_classes, tabular_features, dropout, "encoder.class_layers.relu")


# ---------------------------------------------------------------------------------------------------- ViT
def vit_patch_size(size: Sequence[int]) -> int:
    """The largest patch size in (16, 8, 4, 2) that divides every side and leaves at least 49 tokens.

    Raises:
        MedsightError: no candidate divides the input size.
    """
    dividing = [p for p in VIT_PATCHES if all(s % p == 0 for s in size)]
    if not dividing:
        raise user_error("an input size divisible by 2 for vit", list(size), None,
                         "resample or pad the images to a multiple of 4 (e.g. 28 or 32 px), or pass patch_size")
    tokens = [p for p in dividing if torch.Size(s // p for s in size).numel() >= VIT_MIN_TOKENS]
    return tokens[0] if tokens else dividing[-1]


class ViTEncoder(nn.Module):
    """A pre-norm Vision Transformer (ViT-Tiny shape by default); output tokens averaged -> ``(B, hidden)``.

    Built from PyTorch's own transformer layers: MONAI's ``ViT`` needs ``einops``, which is not a medsight
    dependency. Patch embedding is a conv with kernel = stride = ``patch_size``, then learned position embeddings,
    ``layers`` encoder blocks (GELU MLP of ``mlp_ratio * hidden``) and a final LayerNorm; there is no class token.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, input_size: Sequence[int], patch_size: int, hidden: int,
                 layers: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.input_size = tuple(input_size)
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.patch_embed = conv(in_channels, hidden, patch_size, stride=patch_size)
        tokens = torch.Size(s // patch_size for s in self.input_size).numel()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, hidden))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        block = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=hidden * mlp_ratio, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.input_size:
            raise user_error(f"images of spatial size {list(self.input_size)} for this vit", list(x.shape[2:]), None,
                             "resample the images to the input size the model was built with")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        return self.norm(self.blocks(tokens)).mean(dim=1)


def vit(*, spatial_dims: int, in_channels: int, num_classes: int, input_size: int | Sequence[int],
        tabular_features: int = 0, dropout: float = 0.0, patch_size: int | None = None, hidden: int = 192,
        layers: int = 6, heads: int = 3, mlp_ratio: int = 4, **_: Any) -> Classifier:
    """A small Vision Transformer (hidden 192, 6 layers, 3 heads, MLP 4x by default); no Grad-CAM layer.

    ``patch_size`` defaults to :func:`vit_patch_size` (4 for 28 px images, 16 for 224 px).
    """
    _check_dims("vit", spatial_dims)
    size = _size(input_size, spatial_dims)
    patch = vit_patch_size(size) if patch_size is None else int(patch_size)
    if patch < 1 or any(s % patch for s in size):
        raise user_error(f"an input size divisible by the vit patch size {patch}", list(size), None,
                         "pick a patch_size that divides every side, or leave it unset to choose one")
    if hidden % heads:
        raise user_error(f"hidden divisible by heads ({heads})", hidden, None, "pass e.g. hidden=192 with heads=3")
    enc = ViTEncoder(spatial_dims=spatial_dims, in_channels=in_channels, input_size=size, patch_size=patch,
                     hidden=int(hidden), layers=int(layers), heads=int(heads), mlp_ratio=int(mlp_ratio))
    return _classifier(enc, enc.out_features, num_classes, tabular_features, dropout, None)

