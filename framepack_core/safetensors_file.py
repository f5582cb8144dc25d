"""What model and LoRA files have in common: only .safetensors is read, pickle files are refused without being
opened (unpickling can run code), and a file safetensors cannot parse is told apart from a pickle renamed to
.safetensors. Also the float8 dtypes such files store.

`what` names the kind of file in messages ("model", "LoRA"); `fix` is the sentence that tells the user what to do
instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError

from .errors import CheckpointError

PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle", ".pt2"}
# The fp8 formats a file may be converted to, by the names users choose them by.
FP8_STORAGE = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
# Every float8 dtype a loaded weight may have (the fnuz variants come from AMD-made files).
FP8_DTYPES = frozenset(getattr(torch, name) for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                                                         "float8_e5m2fnuz") if hasattr(torch, name))
# The smallest valid safetensors file: an 8-byte header length.
_MIN_BYTES = 8
# What opening or reading a damaged file can raise (safetensors' own error, mmap and read failures, a header that
# asks for more memory than there is); each becomes a CheckpointError naming the file.
UNREADABLE = (SafetensorError, OSError, ValueError, RuntimeError, BufferError, MemoryError)


def is_pickle_name(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES


def refuse_pickle(path: Path, what: str, fix: str) -> None:
    """Refuses a pickle-based file by its suffix, before anything opens it."""
    if is_pickle_name(path):
        raise CheckpointError(f"{path.name} is a pickle-based file ({path.suffix}); {what} files are read only from "
                              f".safetensors, because pickle files can run code when opened. {fix}")


def check_file(path: Path, what: str, fix: str) -> None:
    """A .safetensors candidate that exists and is long enough to hold a header; pickles are refused first."""
    refuse_pickle(path, what, fix)
    if not path.is_file():
        raise CheckpointError(f"{what} file {path.name} does not exist")
    size = path.stat().st_size
    if size < _MIN_BYTES:
        raise CheckpointError(f"{path.name} is empty or truncated ({size} bytes); download it again.")


def _starts_like_pickle(head: bytes) -> bool:
    """A zip archive (what torch.save writes) or a raw pickle of protocol 2 to 5. A safetensors file starts with
    its header length (8 bytes, little endian) and then "{": lengths such as 640 (80 02) or 19280 ("PK") begin
    like a pickle, so the bytes after the length decide."""
    if head[8:9] == b"{":
        return False
    return head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def describe_error(err: BaseException, path: Path) -> str:
    """An error's text with the file named by its name only: messages reach API callers, who need not learn where
    the models live."""
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    return text.replace(str(path), path.name)


def unreadable(path: Path, err: Exception, what: str, fix: str) -> CheckpointError:
    """The error for a file safetensors could not open. Its first bytes are looked at only now, because a valid
    header length may start with the same bytes as a pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        head = b""
    if _starts_like_pickle(head):
        return CheckpointError(f"{path.name} is a PyTorch zip/pickle checkpoint renamed to .safetensors; it is "
                               f"refused (pickle files can run code when opened). {fix}")
    return CheckpointError(f"{path.name} is not a readable safetensors file (truncated or corrupt: "
                           f"{describe_error(err, path)}); download it again, or use another .safetensors {what} file.")
