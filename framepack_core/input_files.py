"""Files a workflow names, confined to one folder (ComfyUI's input folder for FramePack Load Image and FramePack
Load Video).

Why our own check: ComfyUI 0.3.x does not compare a V3 node's combo value with its list when a prompt is queued,
and core LoadVideo joins whatever it is given to the input folder, so an API caller can make it read any video on
the host (an absolute path, `../`, another user's outputs with `[output]`). Here a name is accepted only when it is
a relative path without `..` whose real path (symlinks followed) lies inside the folder and is a regular file.
Messages name the file as given, never the server's folders.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import InputError

INPUT_ANNOTATION = " [input]"  # ComfyUI's "name [input]" means the input folder; other annotations are refused
_OTHER_FOLDERS = ("[output]", "[temp]")


def confined_input_file(folder: str | os.PathLike, name: str, what: str) -> Path:
    """The real path of `name` inside `folder`, a regular file; InputError naming the problem otherwise. `what`
    names the input ("image", "video") in messages."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"no {what} file given: pick one from ComfyUI's input folder (or upload it)")
    if name.endswith(INPUT_ANNOTATION):
        name = name[:-len(INPUT_ANNOTATION)]
    if name.rstrip().endswith(_OTHER_FOLDERS):
        raise InputError(f"{what} file {name!r} is in another ComfyUI folder; FramePack reads {what}s only from the "
                         "input folder: upload it there (or copy it into ComfyUI/input)")
    if "\x00" in name:
        raise InputError(f"{what} file name {name!r} holds a NUL character; give the file's name as listed")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        raise InputError(f"{what} file {name!r} is an absolute path; FramePack reads {what}s only from ComfyUI's "
                         "input folder: upload the file there (or copy it into ComfyUI/input) and give its name")
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise InputError(f"{what} file {name!r} climbs out of ComfyUI's input folder with '..'; give a name inside "
                         "that folder")
    root = Path(folder).resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise InputError(f"{what} file {name!r} is a link that leads out of ComfyUI's input folder; FramePack reads "
                         f"only files inside it: copy the {what} into the folder instead of linking it")
    if not path.is_file():
        raise InputError(f"{what} file {name!r} is not in ComfyUI's input folder: upload it (or copy it into "
                         "ComfyUI/input), then refresh")
    return path
