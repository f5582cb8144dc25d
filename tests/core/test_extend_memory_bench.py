"""bench/extend_memory.py at a small size: continuing an 1800-frame input takes about the same memory as continuing a
300-frame one, because the input is streamed (only its tail is held), and the MP4 holds exactly input + new frames.
The 720p figures come from running the script by hand (bench/extend_memory.md)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MB = 1024 * 1024


def test_extending_a_longer_input_does_not_take_more_memory(tmp_path):
    width, height, short, long = 128, 96, 300, 1800
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "extend_memory.py"), "--inputs", str(short),
                           str(long), "--width", str(width), "--height", str(height), "--new-frames", "30",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    runs = json.loads(out.read_text())["runs"]
    assert [r["input_frames"] for r in runs] == [short, long]
    for run in runs:
        assert run["mp4_frames"] == run["input_frames"] + 30
        assert run["tail_frames"] <= 77 and 0 < run["idle_rss_mb"] < run["peak_rss_mb"]
    # Holding the 1500 extra input frames would cost 53 MB as uint8 (and 4x that as float32), keeping a reference to
    # each decoded chunk about 30 MB; streaming them costs nothing that grows with them (allocator noise: ~1 MB).
    extra_uint8_mb = (long - short) * width * height * 3 / MB
    assert runs[1]["peak_growth_mb"] - runs[0]["peak_growth_mb"] < extra_uint8_mb / 4
    for phase in ("conditioning", "pass_through", "seam_and_new_frames"):
        assert runs[1]["phases"][phase]["growth_mb"] - runs[0]["phases"][phase]["growth_mb"] < extra_uint8_mb / 4
