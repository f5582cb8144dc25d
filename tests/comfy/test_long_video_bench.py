"""bench/long_video_rss.py runs end to end on a short, small video: a real server of its own, the shipped I2V
workflow on the tiny weights, and a report whose frame count is read back from the MP4. This measures nothing (the
720p x 1800 figures come from running the script by hand); it keeps the benchmark working."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_long_video_benchmark_reports_memory_and_the_exact_frame_count(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "long_video_rss.py"), "--frames", "45", "--width", "64",
                           "--height", "64", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    report = json.loads(out.read_text())
    assert report["config"] == {**report["config"], "frames": 45, "width": 64, "height": 64, "return_frames": False,
                                                  "device": "cpu"}
    assert report["mp4_frames"] == 45
    assert report["mp4_mb"] > 0
    assert 0 < report["idle_rss_mb"] <= report["peak_rss_mb"]
    assert abs(report["peak_growth_mb"] - (report["peak_rss_mb"] - report["idle_rss_mb"])) <= 0.2
