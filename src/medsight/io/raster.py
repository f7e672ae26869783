"""PNG, TIFF, JPEG, GIF and BMP through Pillow (grayscale, RGB, 16-bit, palette, multi-page TIFF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from medsight.core.guard import check_allocation
from medsight.core.image import Image, SourceInfo
from medsight.errors import user_error

RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".gif", ".bmp")

# Pillow refuses images above this many pixels with a DecompressionBombError; we do our own memory check.
PILImage.MAX_IMAGE_PIXELS = None


def _frame_array(frame: PILImage.Image) -> np.ndarray:
    mode = frame.mode
    if mode == "P":
        # Palette: keep gray palettes as their gray values, otherwise convert to RGB.
        pal = np.asarray(frame.getpalette() or [], dtype=np.int32).reshape(-1, 3)
        idx = np.asarray(frame)
        used = np.unique(idx)
        # a two-entry black/white palette is a binary mask: keep the indices {0, 1}
        # (DRIVE's 2nd_manual uses (4, 2, 4) and (252, 254, 252))
        if pal.size and set(used.tolist()) <= {0, 1} and len(pal) >= 2 and pal[0].max() <= 8 and pal[1].min() >= 247:
            return idx.astype(np.uint8)[None]
        # near-grey palettes are grey images
        if pal.size and used.max() < len(pal) and np.ptp(pal[used], axis=1).max(initial=0) <= 4:
            return np.rint(pal[:, :3].mean(axis=1))[idx].astype(np.uint8)[None]
        frame = frame.convert("RGB")
        mode = "RGB"
    if mode in ("RGBA", "LA", "PA"):
        frame = frame.convert("RGB" if mode != "LA" else "L")
        mode = frame.mode
    if mode == "1":
        return np.asarray(frame, dtype=np.uint8)[None]
    if mode in ("CMYK", "YCbCr", "HSV", "LAB"):
        frame = frame.convert("RGB")
        mode = "RGB"
    arr = np.asarray(frame)
    if arr.ndim == 2:
        return arr[None]
    return np.moveaxis(arr, -1, 0)


#: What Pillow raises for damaged files beyond UnidentifiedImageError (struct/zlib errors surface as these too).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
                  PILImage.DecompressionBombError)


def read_raster(path: str | Path) -> Image:
    """Read a 2D raster image as ``(C, H, W)`` (C = 1 gray or 3 RGB); a multi-page TIFF as ``(C, D, H, W)``."""
    path = Path(path)
    try:
        pil = PILImage.open(path)
    except UnidentifiedImageError as exc:
        raise user_error(
            f"a {path.suffix.lstrip('.').upper() or 'raster'} image", "a file Pillow cannot identify", path,
            "check the file is really an image (not text or a truncated download)",
        ) from exc
    except _DECODE_ERRORS as exc:  # a header Pillow recognises but cannot parse (damaged IHDR, bad chunk lengths)
        raise user_error("a complete image file", f"a damaged header ({exc})", path, "re-export the image") from exc
    with pil:
        try:
            w, h = pil.size
            n = getattr(pil, "n_frames", 1)
        except _DECODE_ERRORS as exc:
            raise user_error("a complete image file", f"a damaged header ({exc})", path, "re-export the image") from exc
        check_allocation(w * h * max(n, 1) * 4 * 3, path)
        try:
            if n > 1 and path.suffix.lower() in (".tif", ".tiff"):
                frames = []
                for i in range(n):
                    pil.seek(i)
                    frames.append(_frame_array(pil))
                arr = np.stack(frames, axis=1)
            else:
                arr = _frame_array(pil)
        except _DECODE_ERRORS as exc:
            raise user_error("a complete image file", f"a decoding error ({exc})", path, "re-export the image") from exc
    fmt = {".jpg": "jpeg", ".tif": "tiff"}.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
    return Image(np.ascontiguousarray(arr), source=SourceInfo(path=str(path), format=fmt))


def write_raster(image: Image, path: str | Path) -> Path:
    """Write a 2D image with 1 (gray) or 3 (RGB) channels as PNG/TIFF/BMP/JPEG (uint8 or uint16 gray).

    Floats and other integer types are refused: convert first (``medsight convert`` rescales for display).
    """
    path = Path(path)
    arr = image.array
    if image.ndim != 2 or arr.shape[0] not in (1, 3):
        raise user_error(
            "a 2D image with 1 or 3 channels", f"shape {arr.shape}", path,
            "write volumes as NIfTI, or write one slice per file with 'medsight convert'",
        )
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype not in (np.uint8, np.uint16) or (arr.dtype == np.uint16 and arr.shape[0] == 3):
        raise user_error(
            "uint8 (or uint16 grayscale) pixels", f"dtype {arr.dtype}", path,
            "rescale to 0-255 first, or write NIfTI to keep the values",
        )
    if arr.shape[0] == 1:
        pil = PILImage.fromarray(np.ascontiguousarray(arr[0]))
    else:
        pil = PILImage.fromarray(np.ascontiguousarray(np.moveaxis(arr, 0, -1)), mode="RGB")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF"}
    pil.save(path, format=fmt.get(path.suffix.lower(), "PNG"))
    return path
