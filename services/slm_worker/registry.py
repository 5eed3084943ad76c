"""Where model files come from and what they are.

Models ship as files on disk or inside installed Python packages. Nothing is
downloaded: a package is located with ``importlib.util.find_spec`` without
importing it (some model packages import heavy or broken dependencies at
import time); only a package that ships its model in chunks is imported, for
its ``assemble(output_path)`` helper, and only once per cache directory.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from pathlib import Path

import structlog

from rationer.errors import FailedPrecondition
from services.slm_worker.settings import ModelEntry

log = structlog.get_logger(__name__)

GGUF_MAGIC = b"GGUF"

# llama.cpp's ``llama_ftype`` values as stored in ``general.file_type``.
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4",
}  # fmt: skip


def quantization_name(metadata: dict[str, str]) -> str:
    raw = metadata.get("general.file_type", "")
    try:
        return _FILE_TYPES.get(int(raw), f"ftype-{raw}")
    except ValueError:
        return "unknown"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition(
            f"model package {package!r} is not installed; install it with pip "
            f"(e.g. `pip install {package.replace('_', '-')}`) or set 'path' to a GGUF file"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _from_package(package: str, cache_dir: Path) -> Path:
    found = sorted(_package_dir(package).rglob("*.gguf"))
    if found:
        return found[0]
    module = importlib.import_module(package)
    assemble = getattr(module, "assemble", None)
    name = getattr(module, "MODEL_NAME", f"{package}.gguf")
    if assemble is None:
        raise FailedPrecondition(f"model package {package!r} ships no .gguf file and no assemble() helper")
    target = cache_dir.expanduser() / str(name)
    stamp = target.with_name(target.name + ".verified")
    if _stamp_of(target, module) == _read(stamp):
        # Verified by an earlier start and unchanged since: skip hashing its chunks and the file
        # (two sha256 passes over the model, about a second per process on this box; issue 17).
        return target
    try:
        # Reuses an existing file after checking its sha256; else joins the chunks.
        path = Path(assemble(target))
    except (OSError, ValueError) as exc:
        raise FailedPrecondition(f"could not assemble model from package {package!r}: {exc}") from exc
    log.info("model assembled from package chunks", package=package, target=str(path))
    if path == target:
        with contextlib.suppress(OSError):
            stamp.write_text(_stamp_of(target, module))
    return path


def _stamp_of(target: Path, module: object) -> str:
    """What a verified file looks like: the package's expected hash, the file's size and mtime."""
    try:
        st = target.stat()
    except OSError:
        return "missing"
    return f"{getattr(module, 'EXPECTED_SHA256', '')}:{st.st_size}:{st.st_mtime_ns}"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def resolve_model_path(entry: ModelEntry, cache_dir: Path | str = "~/.cache/rationer/models") -> Path:
    """The GGUF file of ``entry``, checked to exist and carry the GGUF magic."""
    if entry.path is not None:
        path = Path(entry.path).expanduser()
    else:
        assert entry.package is not None  # guaranteed by ModelEntry's validator
        path = _from_package(entry.package, Path(cache_dir))
    check_gguf(path, entry.name)
    return path


def check_gguf(path: Path, name: str) -> None:
    """Fail fast, with the path in the message, on a missing or non-GGUF file."""
    if not path.is_file():
        raise FailedPrecondition(f"model {name!r}: file {path} does not exist")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise FailedPrecondition(
            f"model {name!r}: {path} is not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})"
        )
