"""Memory of a long video at the real output size, through the real server: a ComfyUI with the pack (on the CPU)
runs the shipped I2V workflow on the tiny random-weight transformer and the tiny TAEHV, with return_frames false,
and we read the server process's resident memory.

    python bench/long_video_rss.py                                  # 1800 frames at 1280x720, 4 steps
    python bench/long_video_rss.py --frames 120 --out result.json   # a shorter run
    python bench/long_video_rss.py --gpu                            # the server on the GPU when its torch sees one

On the CPU the 1800-frame 720p run takes hours (attention over ~40k tokens per step, even for the tiny model); with
--gpu it takes minutes. Either way the RSS measured is the server's host memory.

Reports the server's idle RSS (started, models not yet loaded), its peak RSS during the job (the kernel's
high-water mark VmHWM, reset after the idle reading through /proc/PID/clear_refs, and our own 0.5 s samples as a
cross-check), the growth of the peak over idle (the goal at 1800 frames of 720p is under 2 GB), and the exact frame
count of the MP4 (every frame decoded again). The weights are tiny, so what grows is what scales with the video:
latents, context history, decoding and the MP4 writer, not the 13B model.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from framepack_dev.comfy_server import CPU_ARGS, ComfyServer, locate_comfyui  # noqa: E402
from framepack_dev.device import DeviceChoice, choose_device, probe_torch_cuda  # noqa: E402
from framepack_dev.tiny_models import install_tiny_models, node_of, tiny_workflow  # noqa: E402

MB = 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.done = pid, every, [], threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.samples.append((round(time.monotonic() - self.start_time, 1), status_kb(self.pid, "VmRSS")))
            except (OSError, KeyError):
                return


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1800)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=6 * 3600)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    ap.add_argument("--gpu", action="store_true", help="run the server on the GPU when its torch sees one")
    args = ap.parse_args()

    install = locate_comfyui()
    device = (choose_device(probe_torch_cuda(install.python)) if args.gpu
              else DeviceChoice("cpu", "the default; --gpu for the GPU", CPU_ARGS))
    print(device.line(), file=sys.stderr, flush=True)
    with ComfyServer(install=install, device_args=device.comfy_args) as server:
        install_tiny_models(server.models_dir, server.input_dir)
        pid = server.process.pid
        time.sleep(5)  # let start-up settle before the idle reading
        idle_kb = 0
        for _ in range(3):
            idle_kb = max(idle_kb, status_kb(pid, "VmRSS"))
            time.sleep(1)
        peak_was_reset = reset_peak(pid)
        graph = tiny_workflow("framepack_i2v", num_frames=args.frames, steps=args.steps, width=args.width,
                              height=args.height, prefix="bench/long_video")
        node_of(graph, "FramePackVideoCombine")["inputs"]["return_frames"] = False
        sampler = RssSampler(pid)
        sampler.start()
        started = time.monotonic()
        result = server.client().run(graph, timeout=args.timeout)
        seconds = time.monotonic() - started
        sampler.done.set()
        peak_kb = status_kb(pid, "VmHWM")
        if not result.ok:
            print(result.error_message, file=sys.stderr)
            return 1
        video = next(server.output_dir.glob("bench/long_video_*.mp4"))
        report = {
            "config": {"frames": args.frames, "width": args.width, "height": args.height, "steps": args.steps,
                       "transformer": "tiny random weights (framepack_core.config.TINY)", "vae": "tiny TAEHV",
                       "return_frames": False, "device": device.device},
            "idle_rss_mb": round(idle_kb / 1024, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "peak_growth_mb": round((peak_kb - idle_kb) / 1024, 1),
            "peak_of_samples_mb": round(max(kb for _, kb in sampler.samples) / 1024, 1) if sampler.samples else None,
            "peak_is_job_only": peak_was_reset,
            "mp4_frames": count_frames(video),
            "mp4_mb": round(video.stat().st_size / MB, 2),
            "job_seconds": round(seconds, 1),
            "rss_samples_mb": [(t, round(kb / 1024)) for t, kb in sampler.samples[:: max(1, len(sampler.samples) // 60)]],
        }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["mp4_frames"] == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
