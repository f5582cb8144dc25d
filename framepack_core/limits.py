"""Every user-facing limit, default, option list and mode name of FramePack, written once.

The core's validation, the ComfyUI nodes (schemas and validate_inputs) and the API client all read from here, so
a range cannot disagree between them. Standard library only, and `framepack_core/__init__.py` is lazy: the client
imports this module without torch.

Two step ranges, on purpose:
- MIN_STEPS..MAX_STEPS (4-50, default 25) is the hosted APIs' range; the nodes offer the same, so a workflow and
  an API request accept the same values.
- The core accepts CORE_MIN_STEPS..CORE_MAX_STEPS (1-100). It is also the library under tests, benchmarks and
  experiments that run one or two steps on tiny models, so it refuses only what cannot run (no step at all) and
  what would make one request's work unbounded; 100 leaves experiments room past the product's 50.
"""

from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    """Section order. The values are the strings workflows and API requests carry."""

    INVERTED = "inverted"  # FramePackI2V_HY, anti-drifting: sections sampled from the end of the video backwards
    FORWARD = "forward"  # F1: sections sampled from the start

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


MODES = tuple(m.value for m in Mode)
AUTO = "auto"  # the option that lets the pack choose (variant from the file name, mode from the variant, ...)

# -- models --------------------------------------------------------------------------------------------------------
VARIANTS = ("I2V_HY", "F1")  # FramePackI2V_HY and FramePack_F1_I2V_HY_20250503
VARIANT_MODES = {"I2V_HY": Mode.INVERTED, "F1": Mode.FORWARD}
VARIANT_CHOICES = (AUTO, *VARIANTS)
MODE_CHOICES = (AUTO, *MODES)
# The dtypes the model may compute in. No fp16: HunyuanVideo-family activations exceed its range (fp16 files
# still load; their weights are converted).
COMPUTE_DTYPE_NAMES = ("bf16", "fp32")
DEFAULT_COMPUTE_DTYPE = "bf16"
# auto: fp8 files stay fp8, GGUF-quantized weights stay quantized, others take the compute dtype; compute: always
# the compute dtype (a GGUF is dequantized at load); fp8_*: block weights stored in that fp8 format
STORAGE_CHOICES = (AUTO, "compute", "fp8_e4m3fn", "fp8_e5m2")
DEFAULT_ATTENTION = "sdpa"  # PyTorch's own; attention.BACKENDS lists the others
MAX_VRAM_RESERVE_GB = 128.0  # the loader's vram_reserve_gb (0 = derived from each job)
MAX_LORA_STRENGTH = 10.0  # a LoRA's strength, either sign

# -- length and time -----------------------------------------------------------------------------------------------
FPS = 30  # the models were trained on 30 fps video
MAX_FPS = 240
MIN_FRAMES, MAX_FRAMES = 30, 1800  # 1 s to 60 s at 30 fps
DEFAULT_FRAMES, DEFAULT_FRAMES_WITH_END = 180, 240  # the hosted APIs' defaults (image-to-video, first+last frame)
MIN_WINDOW, MAX_WINDOW = 1, 33  # latents per section
DEFAULT_WINDOW = 9  # 33 frames, the trained setting
MAX_KEYFRAME_SECONDS = MAX_FRAMES / FPS

# -- starts: an image, a blank (text-to-video) or the end of an input video -----------------------------------------
START_IMAGE = "image"
BLANK_KINDS = ("black", "white", "grey", "noise")  # text-to-video starts
START_KINDS = (START_IMAGE, *BLANK_KINDS)
# SigLIP embeddings of a blank start: the blank image's own, or zeros (README: text-to-video)
BLANK_EMBEDDINGS = ("blank_image", "zero")
MAX_CONTEXT_LATENTS = 19  # F1's history: 16 latents at 4x, 2 at 2x, 1 at 1x compression
MIN_INPUT_FRAMES = 5  # one latent beyond the first frame: the least a video's context can be
MAX_INPUT_FRAMES = 10_800  # 6 minutes at 30 fps: an input video is decoded twice, so its length is bounded
MAX_INPUT_SIDE = 8192  # pixels; larger inputs are refused before any frame is decoded
# An input video's frame: the decoder itself refuses a larger one before building it (FFmpeg's max_pixels), so a
# file whose header names a small size cannot make it decode huge frames. 8K UHD (7680 x 4320) fits.
MAX_INPUT_FRAME_PIXELS = 36_000_000
# Pixels x frames of an input video: it is decoded two or three times (count, tail, pass-through), so its work is
# bounded by size as well as by length: six minutes of 1080p, 90 s of 4K, 22 s of 8K.
MAX_INPUT_PIXEL_FRAMES = 1920 * 1080 * MAX_INPUT_FRAMES
FPS_TOLERANCE = 0.05  # 29.97 (30000/1001) counts as 30

# -- sampling ------------------------------------------------------------------------------------------------------
MIN_STEPS, MAX_STEPS = 4, 50  # the nodes and the hosted APIs (module docstring)
CORE_MIN_STEPS, CORE_MAX_STEPS = 1, 100  # the core's own check (module docstring)
DEFAULT_STEPS = 25
MAX_GUIDANCE, DEFAULT_GUIDANCE = 32.0, 10.0  # distilled guidance fed to the model
MAX_CFG, DEFAULT_CFG = 7.0, 1.0  # real classifier-free guidance; 1 = off
DEFAULT_END_STRENGTH = 0.8  # the hosted first+last-frame APIs' `strength`
DEFAULT_SAMPLER = "unipc_bh1"  # the original's sampler; samplers.SAMPLERS lists the others
MAX_SHIFT = 100.0  # sigma shift; 0 = FramePack's resolution-dependent rule
MAX_SEED = 2 ** 64 - 1
RANDOM_SEED_BOUND = 2 ** 31  # a random seed is drawn below this, so it also fits the hosted APIs' 32-bit seeds
RANDOM_SEED = -1  # the hosted APIs' (and the API client's) seed that asks for a random one; the used seed is reported
MAX_HOSTED_SEED = RANDOM_SEED_BOUND - 1  # the hosted APIs' seeds are 32-bit (the nodes take up to MAX_SEED)

# step caches (stepcache.py): which one skips steps; "magcache_calibrate" computes every step and records ratios
CACHE_CHOICES = ("teacache", "magcache", "magcache_calibrate", "easycache", "none")
DEFAULT_CACHE = "teacache"
DEFAULT_TEACACHE_THRESHOLD = 0.15  # the original's setting: ~2.1x faster, not lossless (teacache.py)
DEFAULT_MAGCACHE_THRESHOLD = 0.1  # the MagCache authors' demo default (magcache.py)
MAX_MAGCACHE_RATIO = 10.0  # a MagCache ratio (a calibration file's or a request's) lies in (0, this)
# EasyCache (easycache.py): the accumulated estimated output change allowed before the model runs again. 0.025 is
# the authors' setting for HunyuanVideo (H-EmbodVis/EasyCache, EasyCache4HunyuanVideo/easycache_sample_video.py,
# thresh); 0 = off (every step computed).
DEFAULT_EASYCACHE_THRESHOLD = 0.025
MAX_EASYCACHE_THRESHOLD = 1.0
# torch.compile modes offered (compile.py says why "reduce-overhead" is not one)
DEFAULT_COMPILE_MODE = "default"  # torch.compile's own default mode
COMPILE_MODES = (DEFAULT_COMPILE_MODE, "max-autotune-no-cudagraphs")

# -- output video --------------------------------------------------------------------------------------------------
DEFAULT_CRF, MAX_CRF = 19, 51  # H.264 quality (x264's crf: 0 is lossless, 51 the worst; lower is better and bigger)
# the safety checker (nodes/safety.py): a frame whose NSFW probability reaches the threshold flags the video
DEFAULT_NSFW_THRESHOLD = 0.5
DEFAULT_SAFETY_SAMPLE_FRAMES, MAX_SAFETY_SAMPLE_FRAMES = 8, 64  # frames scored, spread over the video

# -- picture size --------------------------------------------------------------------------------------------------
ASPECT_RATIOS = (AUTO, "16:9", "9:16")
RESOLUTION_SIZES = {"480p": (848, 480), "720p": (1280, 720)}  # their 16:9 (width, height)
BUCKETS_RESOLUTION = "640"  # FramePack's own 640 buckets
CUSTOM_RESOLUTION = "custom"
RESOLUTION_CHOICES = (*RESOLUTION_SIZES, BUCKETS_RESOLUTION, CUSTOM_RESOLUTION)
HOSTED_RESOLUTION_CHOICES = (*RESOLUTION_SIZES, CUSTOM_RESOLUTION)  # the API client and service: no 640 buckets
SIDE_STEP = 16  # 8x VAE downsampling, then 2x2 patches
MIN_SIDE, MAX_SIDE = 64, 2048
DEFAULT_CUSTOM_SIZE = (832, 480)  # (width, height)

# -- bounds on what a workflow, a file or a server hands us (README "Security") -------------------------------------
# Every one of these is checked before the work it bounds starts, with an error that names the limit.
MAX_PROMPT_TEXT_CHARS = 20_000  # FramePack Timestamped Prompts text; the model reads 256 tokens per prompt anyway
# One prompt of FramePack Timestamped Prompts, the only prompt text the pack's nodes see (the positive and negative
# prompts of the shipped workflows go through ComfyUI's CLIPTextEncode; the client and the service cap those):
# FramePack reads the first 256 LLaMA tokens of a prompt, and natural text takes 3.5-4.8 characters a token with
# HunyuanVideo's LLaMA 3 tokenizer (measured: English prose 3.6, a typical negative prompt 3.8, long English words
# 4.8; German 2.6), so 256 tokens are about 1,000-1,250 characters. 2,000 leaves natural text room to spare, and
# bounds the text encoder's work for one prompt (ComfyUI's tokenizer cuts nothing).
MAX_ONE_PROMPT_CHARS = 2_000
MAX_TIMED_PROMPTS = 64  # prompts in one timestamped text
MAX_LORAS = 16  # different LoRA files in one stack (a file chained twice counts once, its strengths added)
MAX_ALPHA_PATTERNS = 4096  # alpha_pattern entries in a LoRA's PEFT metadata (module names)
MAX_ALPHA_PATTERN_CHARS = 256  # one alpha_pattern entry: a module name is far shorter
MAX_CHECKPOINT_JSON_BYTES = 16 * 1024 * 1024  # a model folder's config.json or shard index (real ones: < 200 KB)
# GGUF model files (gguf_file.py): what a header may claim before the reader walks it. FramePack's 13B has 1000-odd
# tensors, a handful of metadata entries and no array; LLaMA GGUFs (refused by architecture, after reading) carry
# tokenizer arrays of up to ~300k entries. The largest FramePack tensor has 47 million elements.
MAX_GGUF_TENSORS = 4096
MAX_GGUF_METADATA = 1024
MAX_GGUF_ARRAY_ITEMS = 300_000
MAX_GGUF_TENSOR_ELEMENTS = 2 ** 30
# Model config fields from a file (config.json or safetensors metadata): (low, high), inclusive. The released
# checkpoints sit well inside (20 / 40 / 2 layers, 24 heads of 128, widths 4096 / 768 / 1152); the bounds keep a
# hostile config from building a huge model before the weights are compared with it.
MODEL_CONFIG_BOUNDS = {
    "in_channels": (1, 64), "out_channels": (1, 64), "num_attention_heads": (1, 128), "attention_head_dim": (2, 512),
    "num_layers": (1, 128), "num_single_layers": (0, 256), "num_refiner_layers": (0, 16), "mlp_ratio": (0.25, 16.0),
    "patch_size": (1, 8), "patch_size_t": (1, 4), "text_embed_dim": (1, 16384), "pooled_projection_dim": (1, 16384),
    "image_proj_dim": (1, 16384), "rope_theta": (1.0, 1e9),
}
MAX_MODEL_INNER_DIM = 16384  # num_attention_heads x attention_head_dim (released: 3072)
# Input images (the client checks them before uploading, the service before storing, FramePack Load Image before
# decoding): the size of every frame from the headers (framepack_core/image_header.py),
# before anything is decoded. 8K UHD (7680 x 4320) fits; a 500 KB PNG of 13000 x 13000 does not.
MAX_IMAGE_SIDE = 8192
MAX_IMAGE_PIXELS = 36_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024
# Animated images (GIF, APNG, WebP, MPO) and multi-page TIFFs: every frame is held to the two limits above, and a
# decoder builds every frame at the canvas size (ComfyUI's LoadImage decodes them all; a 60-frame 1024 x 1024 GIF
# grew it by 0.75 GB), so the frames together may hold no more pixels than one still image, and at most this many
# frames. FramePack uses the first frame only (FramePack Load Image decodes nothing else).
MAX_IMAGE_FRAMES = 1000
MAX_IMAGE_ALL_FRAMES_PIXELS = MAX_IMAGE_PIXELS
# An input video to continue (local file, URL or data: URI), before it is uploaded; ComfyUI itself refuses uploads
# over its --max-upload-size (100 MB by default), so a larger one also needs that raised.
MAX_VIDEO_BYTES = 1024 ** 3
# The local service (framepack-video serve) takes requests from others: their bodies and the images they name are
# capped tighter than the client's own (each bound has an option: --max-body-mb, --max-image-mb, --url-timeout).
SERVICE_MAX_IMAGE_BYTES = 32 * 1024 ** 2  # one image fetched by URL
SERVICE_URL_SECONDS = 30.0  # one image download, redirects included
# The hosted APIs' prompt (fal's page: at most 500 characters) and the negative prompt, held to the same length:
# the text encoder reads 256 tokens of either, and a longer text only fills the job store.
MAX_HOSTED_PROMPT_CHARS = 500
MAX_NEGATIVE_PROMPT_CHARS = MAX_HOSTED_PROMPT_CHARS
# A request body holds what a job needs and no more: two images as data: URIs of up to SERVICE_MAX_DATA_URI_BYTES
# each (base64: 4 characters per 3 bytes, plus the "data:image/...;base64," head), the two prompts (a character
# can take 6 bytes as a JSON \uXXXX escape, 12 as a surrogate pair) and the other fields. Larger images go by URL.
SERVICE_MAX_DATA_URI_BYTES = 8 * 1024 ** 2
SERVICE_MAX_BODY_BYTES = (2 * (4 * -(-SERVICE_MAX_DATA_URI_BYTES // 3) + 64)
                          + 12 * (MAX_HOSTED_PROMPT_CHARS + MAX_NEGATIVE_PROMPT_CHARS) + 16 * 1024)
# A body's JSON: a request is one flat object of a few fields, so more arrays/objects or values than these are
# refused (400) before it is parsed, by a linear scan; deep nesting cannot reach the parser's recursion.
SERVICE_MAX_JSON_CONTAINERS = 8
SERVICE_MAX_JSON_VALUES = 256
# Connections (framepack_service/connections.py): a client that does not finish its request's head within
# SERVICE_HEADER_SECONDS, or its body within SERVICE_BODY_SECONDS, is disconnected; one client address holds at
# most SERVICE_MAX_CLIENT_CONNECTIONS connections and all clients SERVICE_MAX_CONNECTIONS (the rest are closed at
# once, so a flood cannot use up the process's open files). Idle keep-alive connections close after
# SERVICE_KEEP_ALIVE_SECONDS.
SERVICE_HEADER_SECONDS = 10.0
SERVICE_BODY_SECONDS = 120.0
SERVICE_MAX_CLIENT_CONNECTIONS = 32
SERVICE_MAX_CONNECTIONS = 512
SERVICE_KEEP_ALIVE_SECONDS = 5
SERVICE_MAX_HEADER_BYTES = 16 * 1024  # h11's largest incomplete request head
# Jobs: at most SERVICE_MAX_QUEUED unfinished at once (more: 429 with Retry-After); finished jobs, their inputs
# and videos are deleted SERVICE_RETENTION_HOURS after they finished (7 days).
SERVICE_MAX_QUEUED = 200
SERVICE_RETRY_AFTER_SECONDS = 60
SERVICE_RETENTION_HOURS = 7 * 24.0
SERVICE_FETCH_WORKERS = 8  # image downloads at once (their own threads: a slow one never holds up a status lookup)
# FramePack Video Combine with return_frames on holds every frame as float32 (frames x height x width x 3 x 4
# bytes: 1800 frames at 720p would be 20 GB); above this it refuses and points to return_frames off (the MP4 and
# the VIDEO output hold the whole video either way).
MAX_RETURNED_FRAMES_BYTES = 8 * 1024 ** 3
