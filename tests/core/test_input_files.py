"""Names a workflow gives FramePack Load Image / Load Video are held to ComfyUI's input folder
(framepack_core.input_files): absolute paths, '..', ComfyUI's other-folder annotations and links out of the folder
are refused with a message that names the file as given and never the server's folders; files inside (also in a
subfolder, through a link that stays inside, or annotated "[input]") are found."""

from __future__ import annotations

import os

import pytest

from framepack_core.errors import InputError
from framepack_core.input_files import confined_input_file


@pytest.fixture
def folders(tmp_path):
    inside, outside = tmp_path / "input", tmp_path / "elsewhere"
    (inside / "clips").mkdir(parents=True)
    outside.mkdir()
    (inside / "a.mp4").write_bytes(b"a")
    (inside / "clips" / "b.mp4").write_bytes(b"b")
    (outside / "secret.mp4").write_bytes(b"s")
    os.symlink(outside / "secret.mp4", inside / "leak.mp4")
    os.symlink(outside, inside / "leakdir")
    os.symlink(inside / "a.mp4", inside / "alias.mp4")
    return inside, outside


@pytest.mark.parametrize("name,expected", [("a.mp4", "a.mp4"), ("clips/b.mp4", "clips/b.mp4"),
                                           ("a.mp4 [input]", "a.mp4"), ("alias.mp4", "a.mp4")])
def test_files_inside_the_folder_are_found(folders, name, expected):
    inside, _ = folders
    assert confined_input_file(inside, name, "video") == (inside / expected).resolve()


@pytest.mark.parametrize("name,words", [
    ("ABSOLUTE", "is an absolute path"),
    ("../elsewhere/secret.mp4", "climbs out of ComfyUI's input folder"),
    ("clips/../../elsewhere/secret.mp4", "climbs out"),
    ("clips\\..\\..\\elsewhere\\secret.mp4", "climbs out"),
    ("C:\\Windows\\win.ini", "is an absolute path"),
    ("leak.mp4", "is a link that leads out of ComfyUI's input folder"),
    ("leakdir/secret.mp4", "is a link that leads out"),
    ("secret.mp4 [output]", "is in another ComfyUI folder"),
    ("x.mp4 [temp]", "is in another ComfyUI folder"),
    ("missing.mp4", "is not in ComfyUI's input folder: upload it"),
    ("clips", "is not in ComfyUI's input folder"),  # a folder is not a file
    ("", "no video file given"),
    ("a.mp4\x00.png", "holds a NUL character"),
])
def test_names_outside_the_folder_are_refused(folders, name, words):
    inside, outside = folders
    if name == "ABSOLUTE":
        name = str(outside / "secret.mp4")
    with pytest.raises(InputError) as err:
        confined_input_file(inside, name, "video")
    message = str(err.value)
    assert words in message
    assert str(inside) not in message and str(inside.parent) not in message.replace(name, ""), \
        "the message names the server's folders"
