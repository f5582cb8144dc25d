"""Memory of continuing a long video: the part that depends on the INPUT's length, on the CPU, without the model.

    python bench/extend_memory.py                                   # 300 and 1800 input frames at 1280x720, +180
    python bench/extend_memory.py --inputs 45 90 --width 128 --height 96 --new-frames 30   # a quick run

For each input length an H.264 MP4 (yuv420p, like a user's file; framepack_dev.videos' moving test picture) is
written, then a fresh Python process runs what a continuation does with its input, exactly as FramePack Video
Conditioning and FramePack Video Combine call the core:
1. conditioning: video_input.VideoFile (opens the file, counts its frames by decoding them), Fitted to the output
   size, read_tail of starts.tail_frames(N, 19) frames (the history's pixels, uint8 then float), and a STAND-IN
   encoder to the history latents;
2. mp4.write_mp4 with the continuation (keep_input on, return_frames off), in two phases: pass_through (the input
   decoded again and its frames before the seam encoded into the MP4, up to the first decode call) and
   seam_and_new_frames (the seam blended, then the new frames from a STAND-IN decoder, and the file closed).

The stand-ins (not the HunyuanVideo VAE: far too slow at 720p on a CPU, and its working memory depends on the
output size, not on the input's length) are cheap tensor maps with the real shapes: the encoder averages 8x8 pixel
blocks and groups of 4 frames into 16 latent channels, the decoder turns a latent chunk into 4T - 3 frames at full
size. The new latents are random. So the figures are the input-dependent memory (decoding, tail, pass-through,
seam, MP4 encoder) plus stand-in buffers; the VAE's and the transformer's own working memory come on top and do not
grow with the input (bench/long_video_rss.py measures a whole job through the server).

The history's pixels (77 frames at 720p: 213 MB as uint8, divided in place into one 852 MB float32 copy, as the node
does) are freed once encoded, as the node frees them when it returns.

Reports per input length: the process's RSS after imports (idle), its peak (VmHWM, reset after the idle reading
and after each phase through /proc/self/clear_refs where the kernel allows it, with 20 ms samples as a cross-check;
the peaks of later phases include what earlier phases still hold, such as the history) during each phase,
the growth over idle, the frames written (checked: input + new), and, for scale, what the input would take as
float32 frames (computed, not allocated).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MB = 1024 * 1024
CONTEXT_LATENTS = 19  # F1's full history, the node's default


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler(threading.Thread):
    """The process's own RSS every `every` seconds (a cross-check of VmHWM, and the peak where it cannot be reset)."""

    def __init__(self, every: float = 0.02):
        super().__init__(daemon=True)
        self.every, self.peak_kb, self.done = every, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.peak_kb = max(self.peak_kb, status_kb("VmRSS"))


def stand_in_encode(pixels):
    """uint8-range floats [T, H, W, 3] (T = 4m + 1) -> [1, 16, m + 1, H/8, W/8]: the causal VAE's shapes (the first
    frame alone, then groups of 4), 8x8 block means of the 3 colours repeated to 16 channels."""
    import torch
    import torch.nn.functional as F

    x = pixels.movedim(-1, 1)  # [T, 3, H, W]
    x = F.avg_pool2d(x, 8)  # [T, 3, h, w]
    groups = [x[:1]] + [x[i:i + 4].mean(0, keepdim=True) for i in range(1, len(x), 4)]
    lat = torch.cat(groups).movedim(0, 1)  # [3, m + 1, h, w]
    return lat.repeat(6, 1, 1, 1)[:16].unsqueeze(0) * 2 - 1


def stand_in_decode(latents):
    """[1, 16, T, h, w] -> [4T - 3, 8h, 8w, 3] in [0, 1]: the chunk's first latent gives 1 frame, each later one 4."""
    import torch

    rgb = torch.sigmoid(latents[0, :3]).movedim(0, -1)  # [T, h, w, 3]
    rgb = rgb.repeat_interleave(8, dim=1).repeat_interleave(8, dim=2)
    repeats = torch.tensor([1] + [4] * (rgb.shape[0] - 1))
    return rgb.repeat_interleave(repeats, dim=0)


def child(args) -> dict:
    """One measurement in this (fresh) process: conditioning, then writing; phases as the nodes run them."""
    import torch

    from framepack_core.mp4 import count_frames, write_mp4
    from framepack_core.planning import plan_video
    from framepack_core.starts import Continuation, history_from_encoding, tail_frames
    from framepack_core.video_input import Fitted, VideoFile

    import av  # noqa: F401  (imported before the idle reading, as ComfyUI has it loaded)

    torch.set_num_threads(args.threads)
    time.sleep(0.5)
    idle_kb = status_kb("VmRSS")
    resettable = reset_peak()
    sampler = RssSampler()
    sampler.start()
    phases = {}

    def end_phase(name: str, started: float) -> float:
        """Records the phase's peak, then resets the peak for the next phase; returns the time."""
        peak = max(status_kb("VmHWM") if resettable else 0, sampler.peak_kb, status_kb("VmRSS"))
        phases[name] = {"peak_rss_mb": round(peak / 1024, 1), "growth_mb": round((peak - idle_kb) / 1024, 1),
                        "seconds": round(time.monotonic() - started, 1)}
        reset_peak()
        sampler.peak_kb = 0
        return time.monotonic()

    started = time.monotonic()
    source = VideoFile(str(args.input))
    fitted = Fitted(source, args.width, args.height)
    # as FramePack Video Conditioning does: the uint8 tail divided in place, nothing else kept
    tail_count = tail_frames(source.frames, CONTEXT_LATENTS)
    pixels = fitted.read_tail(tail_count).float().div_(255)
    history = history_from_encoding(stand_in_encode(pixels), CONTEXT_LATENTS)
    del pixels
    continuation = Continuation(history, source.frames)
    started = end_phase("conditioning", started)

    plan = plan_video(args.new_frames, "forward", start_in_output=False)
    lead = continuation.latents
    generator = torch.Generator().manual_seed(0)
    new = torch.randn((1, 16, plan.total_latents - 1, *history.shape[-2:]), generator=generator)
    latents = torch.cat([history, new], dim=2)

    def decode(chunk):
        nonlocal started
        if "pass_through" not in phases:  # write_mp4 streams the input's frames before its first decode
            started = end_phase("pass_through", started)
        return stand_in_decode(chunk)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "continued.mp4"
        write_mp4(str(out), plan, latents, decode, keep_frames=False, lead_latents=lead, continues=fitted,
                  keep_input=True)
        end_phase("seam_and_new_frames", started)
        sampler.done.set()
        written = count_frames(str(out))
        size = out.stat().st_size
    peak = max(p["peak_rss_mb"] for p in phases.values())
    return {
        "input_frames": source.frames, "new_frames": args.new_frames, "width": args.width, "height": args.height,
        "tail_frames": tail_count, "history_latents": lead,
        "idle_rss_mb": round(idle_kb / 1024, 1), "peak_rss_mb": peak,
        "peak_growth_mb": round(peak - idle_kb / 1024, 1), "phases": phases, "peak_is_measurement_only": resettable,
        "mp4_frames": written, "mp4_frames_expected": source.frames + args.new_frames, "mp4_mb": round(size / MB, 1),
        "input_as_float32_mb": round(source.frames * args.width * args.height * 3 * 4 / MB),
    }


def make_input(path: Path, frames: int, width: int, height: int) -> Path:
    from framepack_dev.videos import moving_frames, write_video

    return write_video(path, moving_frames(frames, height, width), width, height, lossless=False)


def measure(input_frames: int, width: int, height: int, new_frames: int, workdir: Path, threads: int = 2) -> dict:
    """Writes the input, runs the child measurement in a fresh interpreter and returns its report."""
    started = time.monotonic()
    video = make_input(workdir / f"input_{input_frames}_{width}x{height}.mp4", input_frames, width, height)
    made = time.monotonic() - started
    started = time.monotonic()
    done = subprocess.run([sys.executable, __file__, "--child", str(video), "--width", str(width), "--height",
                           str(height), "--new-frames", str(new_frames), "--threads", str(threads)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measurement failed:\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["input_mb"] = round(video.stat().st_size / MB, 1)
    report["input_write_seconds"] = round(made, 1)
    report["measurement_seconds"] = round(time.monotonic() - started, 1)
    video.unlink()
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, nargs="+", default=[300, 1800], help="input lengths in frames")
    ap.add_argument("--new-frames", type=int, default=180)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the measured process")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        args.input = args.child
        print(json.dumps(child(args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(n, args.width, args.height, args.new_frames, Path(tmp), args.threads) for n in args.inputs]
    growths = [r["peak_growth_mb"] for r in runs]
    report = {"runs": runs, "growth_ratio_longest_to_shortest": round(growths[-1] / max(growths[0], 1e-9), 3),
              "encoder_and_decoder": "stand-ins (module docstring), not the HunyuanVideo VAE"}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(r["mp4_frames"] == r["mp4_frames_expected"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
