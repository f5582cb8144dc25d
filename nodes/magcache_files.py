"""MagCache calibration files in ComfyUI/models/framepack_magcache: listed for the sampler, read and written only
there (names resolved inside the folder, JSON only, bounded size: framepack_core.magcache)."""

from __future__ import annotations

import os
import time

import folder_paths

from ..framepack_core.errors import InputError
from ..framepack_core.magcache import confined_path, published_ratios, ratios_to_json, read_ratios_file

FOLDER = "framepack_magcache"
PUBLISHED = "published"

if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.folder_names_and_paths[FOLDER] = ([os.path.join(folder_paths.models_dir, FOLDER)], {".json"})


def ratio_choices() -> list[str]:
    return [PUBLISHED, *folder_paths.get_filename_list(FOLDER)]


def load_ratios(choice: str, variant: str) -> tuple[float, ...]:
    """The published ratios of the model's variant, or a calibration file of the folder."""
    if choice == PUBLISHED:
        return published_ratios(variant)
    for root in folder_paths.get_folder_paths(FOLDER):
        path = confined_path(root, choice)
        if path.is_file():
            return tuple(read_ratios_file(path))
    raise InputError(f"MagCache calibration file {choice!r} is not in models/{FOLDER}; run the sampler with cache "
                     "= magcache_calibrate to make one, then refresh")


def save_calibration(calibration: dict, variant: str, steps: int, **about) -> str:
    """Writes a calibration run's ratios as a new file in the folder; returns its name (what the sampler lists)."""
    root = folder_paths.get_folder_paths(FOLDER)[0]
    os.makedirs(root, exist_ok=True)
    name = f"{variant}_{steps}steps_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path = confined_path(root, name)
    for n in range(1, 100):
        if not path.exists():
            break
        path = confined_path(root, name.replace(".json", f"_{n}.json"))
    text = ratios_to_json(calibration["ratios"], calibration["sections"], variant=variant, **about)
    with open(path, "x", encoding="utf-8") as f:  # never overwrites
        f.write(text)
    return path.name
