"""Turn whatever a notebook user has in hand into an RGB PIL image a vision encoder can take.

`load_image` accepts a file path, an http(s) URL, a base64 data URL, raw bytes, a PIL image or a
NumPy array, and copes with the awkward corners of real images: EXIF rotation, transparency,
palettes, CMYK, 16-bit and float medical images, DICOM, decompression bombs and animations.
Every failure is an `ImageError` whose message names the input and says what to do next.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import math
import os
import re
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlkit.errors import ImageError

__all__ = ["describe_source", "image_to_data_url", "load_image"]

ACCEPTED_SOURCES = (
    "a file path (str or pathlib.Path), an http(s) URL, a data URL, bytes, a PIL image "
    "or a NumPy array"
)
READABLE_FORMATS = "PNG, JPEG, WEBP, GIF, BMP, TIFF or DICOM"

# Exceptions PIL's decoders are known to leak on corrupt input besides OSError.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError)
_DECODE_ERRORS += (struct.error, zlib.error)  # from the PNG and TIFF readers

# Formats whose extra frames are animation. Multi-frame TIFF and MPO (phone cameras) keep the
# first frame instead, because there the first frame is the picture itself.
_ANIMATED_FORMATS = {"GIF", "WEBP", "PNG"}

_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/=_\-\s]+")
_LONGEST_NAME = 120


def describe_source(source: object) -> str:
    """Return a short human name for an image source, for use in messages."""
    if isinstance(source, Path):
        return str(source)
    if isinstance(source, str):
        if source[:5].lower() == "data:":
            return f"data URL ({len(source):,} chars)"
        if len(source) > _LONGEST_NAME:
            # Long strings are usually pasted base64 or signed URLs: never echo them whole.
            return f"{source[:60]!r}... (a string of {len(source):,} chars)"
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"bytes ({len(source):,} bytes)"
    if isinstance(source, Image.Image):
        return f"PIL image ({source.mode}, {source.width}x{source.height})"
    if isinstance(source, np.ndarray):
        return f"NumPy array of shape {source.shape}, dtype {source.dtype}"
    return f"object of type {type(source).__qualname__}"


def load_image(
    source: object,
    *,
    max_bytes: int = 20 * 1024 * 1024,
    max_pixels: int = 64_000_000,
    timeout: float = 10.0,
) -> Image.Image:
    """Load `source` as an RGB PIL image.

    `source` may be a file path, an http(s) URL, a data URL, bytes, a PIL image or a NumPy
    array (HxW, HxWx1, HxWx3 or HxWx4). `max_bytes` caps what is downloaded from a URL or
    decoded from a data URL, `max_pixels` caps width*height (checked before decoding), and
    `timeout` is the total time in seconds allowed for a download.

    Raises ImageError, and only ImageError, when the source cannot be turned into an image.
    """
    name = describe_source(source)
    try:
        return _load(source, name, max_bytes, max_pixels, timeout)
    except ImageError:
        raise
    except Exception as exc:
        # A decoder failed in a way not anticipated below; keep the promise that callers only
        # ever need to catch ImageError.
        raise ImageError(
            f"{name} could not be loaded ({_why(exc)}): check the file, or convert it to PNG"
        ) from exc


def image_to_data_url(image: object, format: str = "PNG") -> str:
    """Load `image` (any source `load_image` accepts) and encode it as a base64 data URL."""
    fmt = "JPEG" if format.upper() in ("JPG", "JPEG") else format.upper()
    rgb, buffer = load_image(image), io.BytesIO()
    try:
        rgb.save(buffer, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    except (KeyError, ValueError, OSError) as exc:
        raise ImageError(
            f"cannot encode images as {format!r}: use 'PNG', 'JPEG' or 'WEBP'"
        ) from exc
    mime = Image.MIME.get(fmt, f"image/{fmt.lower()}")
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _why(exc: BaseException) -> str:
    """The exception as a short phrase; some carry a whole file name or payload, so cap it."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:200] + "..."


def _load(source: object, name: str, max_bytes: int, max_pixels: int, timeout: float):
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, name, max_pixels)
        return _to_rgb(source, name)
    if isinstance(source, np.ndarray):
        if source.ndim >= 2:
            _check_size(source.shape[1], source.shape[0], name, max_pixels)
        return _array_to_image(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(source), name, max_pixels)
    if isinstance(source, Path):
        return _load_path(source, name, max_pixels)
    if isinstance(source, str):
        text = source.strip()
        if text[:5].lower() == "data:":
            return _decode_bytes(_parse_data_url(text, name, max_bytes), name, max_pixels)
        if text[:8].lower().startswith(("http://", "https://")):
            return _decode_bytes(_download(text, name, max_bytes, timeout), name, max_pixels)
        if _URL_SCHEME.match(text):
            scheme = text.split(":", 1)[0]
            raise ImageError(
                f"{name} uses the unsupported URL scheme {scheme}://: pass an http(s) URL, a "
                "data URL or a local path (for file:// URLs, pass the path itself)"
            )
        return _load_path(Path(source), name, max_pixels)
    hint = ""
    if hasattr(source, "numpy") and hasattr(source, "shape"):
        hint = " (for a tensor, pass tensor.cpu().numpy() with channels last)"
    raise ImageError(f"cannot load an image from {name}: pass {ACCEPTED_SOURCES}{hint}")


def _load_path(path: Path, name: str, max_pixels: int) -> Image.Image:
    path = path.expanduser()
    try:
        exists = path.exists()
    except OSError:  # e.g. a name longer than the file system allows
        exists = False
    if not exists:
        hint = f"check the spelling; relative paths start from {os.getcwd()}"
        if len(str(path)) >= 64 and _BASE64_TEXT.fullmatch(str(path)):
            hint = "if this is base64 image data, prefix it with 'data:image/png;base64,'"
        raise ImageError(f"no such file: {name}: {hint}")
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not an image file: pass one of the files in it")
    if path.stat().st_size == 0:
        raise ImageError(f"{name} is an empty file (0 bytes): re-save or re-download the image")
    try:
        with path.open("rb") as file:
            head = file.read(132)
    except OSError as exc:
        raise ImageError(
            f"{name} could not be read ({exc.strerror or _why(exc)}): check that it is a "
            "readable file"
        ) from exc
    if _is_dicom(head, path.suffix):
        return _load_dicom(path, name)
    return _decode_with_pil(path, name, max_pixels)


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError(f"{name} is empty: pass the encoded bytes of an image file")
    if _is_dicom(data[:132], ""):
        return _load_dicom(io.BytesIO(data), name)
    return _decode_with_pil(io.BytesIO(data), name, max_pixels)


def _is_dicom(head: bytes, suffix: str) -> bool:
    # DICOM Part 10 files carry 'DICM' after a 128-byte preamble; older files only have the name.
    return head[128:132] == b"DICM" or suffix.lower() == ".dcm"


def _parse_data_url(url: str, name: str, max_bytes: int) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma:
        raise ImageError(
            f"{name} has no ',' separating its header from its data: expected "
            "'data:image/png;base64,<data>'"
        )
    params = header[5:].split(";")
    media_type = params[0].strip().lower()
    if media_type and not media_type.startswith(("image/", "application/")):
        raise ImageError(
            f"{name} holds {media_type}, not an image: pass a data URL such as "
            "'data:image/png;base64,...'"
        )
    if "base64" not in (p.strip().lower() for p in params[1:]):
        return urllib.parse.unquote_to_bytes(payload)
    # Checked before decoding, so an enormous paste is refused without a second copy in memory.
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageError(
            f"{name} decodes to more than max_bytes={max_bytes:,} bytes: shrink the image, "
            "or pass a larger max_bytes"
        )
    # Copies from browsers and JSON often lose padding, wrap lines or use the URL-safe alphabet.
    cleaned = re.sub(r"\s+", "", urllib.parse.unquote(payload)).replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(
            f"{name} is not valid base64 ({exc}): check the data URL was copied whole"
        ) from exc


def _download(url: str, name: str, max_bytes: int, timeout: float) -> bytes:
    too_big = (
        f"{name} is larger than max_bytes={max_bytes:,} bytes: download it yourself and pass "
        "the file, or pass a larger max_bytes"
    )
    timed_out = (
        f"{name} did not answer within {timeout:g} s: try again, pass a larger timeout, or "
        "download the image and pass the file"
    )
    # The socket timeout only bounds each read, so a server trickling bytes could stall us for
    # ever; a deadline bounds the whole download.
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "vlkit-image-loader"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "")
            if content_type.lower().startswith("text/html"):
                raise ImageError(
                    f"{name} is a web page (text/html), not an image: use the image's own "
                    "address (right-click the image, 'Copy image address')"
                )
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise ImageError(too_big)
            chunks, total = [], 0
            while chunk := response.read(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise ImageError(too_big)
                if time.monotonic() > deadline:
                    raise ImageError(timed_out)
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ImageError(
            f"{name} answered HTTP {exc.code} {exc.reason}: check the URL, or download the "
            "image and pass the file"
        ) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ImageError(timed_out) from exc
        raise ImageError(
            f"could not reach {name} ({exc.reason}): check the address and your network "
            "connection, or download the image and pass the file"
        ) from exc
    except TimeoutError as exc:
        raise ImageError(timed_out) from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise ImageError(
            f"could not download {name} ({_why(exc)}): check the URL, or download the image "
            "and pass the file"
        ) from exc


def _decode_with_pil(file: Path | io.BytesIO, name: str, max_pixels: int) -> Image.Image:
    not_image = (
        f"{name} is not an image PIL can read ({READABLE_FORMATS}): check the file or convert it"
    )
    # PIL only warns between its own limit and twice that. Make the warning an error unless the
    # caller has deliberately allowed more pixels than PIL does; our own check follows Image.open.
    pil_limit = Image.MAX_IMAGE_PIXELS
    bomb_action = "ignore" if pil_limit is not None and max_pixels > pil_limit else "error"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(bomb_action, Image.DecompressionBombWarning)
            with Image.open(file) as image:
                _check_size(image.width, image.height, name, max_pixels)
                if image.format in _ANIMATED_FORMATS and getattr(image, "is_animated", False):
                    raise ImageError(
                        f"{name} is an animated {image.format} with {image.n_frames} frames: "
                        "save the frame you want as a single image (PNG or JPEG) and load that"
                    )
                image.load()
                return _to_rgb(image, name)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{name} is too large to decode safely ({exc}): downscale it first"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(not_image) from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(
            f"{name} could not be decoded ({_why(exc)}): the file may be truncated or "
            "corrupt; re-save or re-download it"
        ) from exc


def _check_size(width: int, height: int, name: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} = {width * height:,} pixels, more than "
            f"max_pixels={max_pixels:,} (a guard against decompression bombs): downscale the "
            "image first, or pass a larger max_pixels if you trust it"
        )


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    image.load()  # a PIL image handed in may still be lazy; decode before reading EXIF
    try:
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        # A mangled EXIF block should not cost the user the picture; show it unrotated.
        image = image.copy()

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # 16-bit and float images (scanners, microscopes, medical) rarely use their full range,
        # so clipping to 8 bits would show them as black or white; scale them instead.
        return _array_to_image(np.asarray(image), name)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return _composite_on_white(image.convert("RGBA"))
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageError(
            f"{name} uses the colour mode {image.mode}, which cannot be converted to RGB: "
            "re-save it as an 8-bit RGB PNG or JPEG"
        ) from exc


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    # Encoders were trained on opaque pictures; transparent pixels usually mean "background",
    # and white is how viewers and browsers show them.
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _array_to_image(array: np.ndarray, name: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = "; for channels-first data use array.transpose(1, 2, 0)"
        raise ImageError(
            f"{name} is not an image: expected shape HxW, HxWx1, HxWx3 or HxWx4 "
            f"(channels last){hint}"
        )
    if array.size == 0:
        raise ImageError(f"{name} has no pixels: pass a non-empty array")
    if array.dtype.kind not in "biuf":
        raise ImageError(
            f"{name} does not hold numbers PIL can show: convert it to uint8, uint16 or float"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageError(
            f"{name} contains NaN or infinite values: replace them first, e.g. with "
            "np.nan_to_num(array)"
        )
    if array.ndim == 3 and array.shape[2] == 4:
        colour = _scale_to_uint8(array[:, :, :3])
        alpha = _alpha_to_uint8(array[:, :, 3])
        rgba = Image.fromarray(np.ascontiguousarray(np.dstack([colour, alpha])))
        return _composite_on_white(rgba)
    return Image.fromarray(np.ascontiguousarray(_scale_to_uint8(array))).convert("RGB")


def _scale_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    if array.dtype.kind == "f" and values.min() >= 0.0 and values.max() <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    return _min_max(values)


def _min_max(values: np.ndarray) -> np.ndarray:
    # One range over all channels together, so colours keep their balance.
    low, high = float(values.min()), float(values.max())
    if high == low:
        # A constant image has no contrast to stretch; show it black rather than divide by 0.
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _alpha_to_uint8(alpha: np.ndarray) -> np.ndarray:
    # Alpha is a fraction of the type's full range, never stretched: a fully opaque image
    # must stay opaque even though its alpha channel is constant.
    if alpha.dtype == np.uint8:
        return alpha
    if alpha.dtype == np.bool_:
        return alpha.astype(np.uint8) * 255
    if alpha.dtype.kind == "f":
        return np.rint(np.clip(alpha, 0.0, 1.0) * 255.0).astype(np.uint8)
    top = float(np.iinfo(alpha.dtype).max)
    return np.rint(np.clip(alpha, 0, None) / top * 255.0).astype(np.uint8)


def _load_dicom(file: Path | io.BytesIO, name: str) -> Image.Image:
    try:
        import pydicom
    except ImportError as exc:
        raise ImageError(
            f"{name} is a DICOM file, and reading DICOM needs pydicom: pip install pydicom"
        ) from exc
    try:
        # force: files named .dcm without the Part 10 preamble are still worth a try.
        return _dicom_to_image(pydicom.dcmread(file, force=True), name)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(
            f"{name} is a DICOM file pydicom could not read ({_why(exc)}): check the file; "
            "compressed DICOM may need `pip install pylibjpeg pylibjpeg-libjpeg "
            "pylibjpeg-openjpeg`"
        ) from exc


def _dicom_to_image(dataset, name: str) -> Image.Image:
    if not any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageError(
            f"{name} is a DICOM file without pixel data (a report, DICOMDIR or similar): "
            "pass an image file from the series instead"
        )
    # Multi-frame files (cine, ultrasound loops, enhanced CT): the first frame stands in.
    # pydicom 3 can decode just that frame, which matters for loops of hundreds of frames.
    first_only = int(dataset.get("NumberOfFrames", 1) or 1) > 1
    try:
        from pydicom.pixels import pixel_array

        pixels = pixel_array(dataset, index=0) if first_only else dataset.pixel_array
    except ImportError:
        pixels = dataset.pixel_array[0] if first_only else dataset.pixel_array
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        try:
            from pydicom.pixels import apply_color_lut
        except ImportError:  # pydicom 2.x kept it elsewhere
            from pydicom.pixel_data_handlers.util import apply_color_lut

        return _array_to_image(apply_color_lut(pixels, dataset), name)
    if samples > 1:
        # Colour DICOM (ultrasound, photographs, pathology) is shown as stored.
        return _array_to_image(pixels, name)

    slope = float(dataset.get("RescaleSlope", 1) or 1)
    values = pixels.astype(np.float64) * slope + float(dataset.get("RescaleIntercept", 0) or 0)
    center = _first_value(dataset.get("WindowCenter"))
    width = _first_value(dataset.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        # The window is how the modality meant the image to be viewed; values outside it clip.
        gray = np.rint(np.clip((values - center + width / 2) / width, 0.0, 1.0) * 255.0)
        gray = gray.astype(np.uint8)
    else:
        gray = _min_max(values)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 stores low values as white (e.g. many X-rays); flip to the usual sense.
        gray = 255 - gray
    return _array_to_image(gray, name)


def _first_value(value: object) -> float | None:
    """DICOM window attributes may hold several windows; the first is the default view."""
    if value is not None and not isinstance(value, str) and hasattr(value, "__getitem__"):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
