"""User-facing errors. Every message names the problem and the fix, so nodes can show it as-is."""

PUBLIC_MODULE = "framepack"


class FramePackError(Exception):
    """Base class for errors a user can act on (bad file, bad value, bad combination of inputs).

    ComfyUI reports an exception by its module and class name, and a custom node's module name is its folder's
    path on disk; every class here (and every subclass, the nodes' included) is named as module "framepack", so
    API callers see "framepack.InputError" and not where the pack is installed."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = PUBLIC_MODULE


class CheckpointError(FramePackError):
    """A model or LoRA file that cannot be used: wrong format, wrong model, truncated, missing shard."""


class NotFramePackError(CheckpointError):
    """A readable file that holds another model (a VAE, a LoRA, another transformer). ``family`` is the guess of
    what it is, or None; ``is_lora`` says that it is a LoRA, which belongs on top of a base model instead."""

    def __init__(self, message: str, family: str | None = None, is_lora: bool = False):
        super().__init__(message)
        self.family, self.is_lora = family, is_lora


class InputError(FramePackError, ValueError):
    """A parameter or conditioning input that is out of range or inconsistent."""


class Interrupted(FramePackError):
    """Raised by the sampling loop when the caller's interrupt check asks it to stop."""


FramePackError.__module__ = PUBLIC_MODULE
