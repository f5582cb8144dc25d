"""The walk of a request's parameters to the server visits each module once: the service's intake (the contract's
defaults), the hosted parameters (the one validation), the workflow (the sampler's inputs), the server. A job sent
by the scheduler is not validated again on the way (the client's jobs: tests/client/test_cli_offline.py), and
num_frames arrives as asked. The server is a stand-in object recording what it is sent;
tests/comfy/test_service_e2e.py sends to real ones."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image

from framepack_client.fetch import UrlPolicy
from framepack_client.hosted import HostedParams
from framepack_client.workflow import find_node
from framepack_core.limits import DEFAULT_FRAMES_WITH_END
from framepack_service import backend
from framepack_service.intake import FAL_FLF2V, WAVESPEED, IntakeSettings, intake
from framepack_service.scheduler import Scheduler, SchedulerSettings
from framepack_service.servers import ServerPool
from framepack_service.store import JobStore as ServiceStore

URL = "http://127.0.0.1:1"


class RecordingServer:
    """What backend.submit asks of a ComfyUI server: uploads and a queued prompt."""

    def __init__(self, *args, **kwargs):
        self.uploads, self.prompts = [], []
        self.base_url, self.client_id, self.timeout = URL, "c", 1.0

    def upload_image(self, data, name, overwrite=False):
        self.uploads.append(name)
        return name

    def queue_prompt(self, prompt, prompt_id=None):
        self.prompts.append(prompt)
        return prompt_id


@pytest.fixture
def validations(monkeypatch) -> list:
    """One entry per validation of hosted parameters (HostedParams.problems, which from_mapping and validate use)."""
    calls = []
    real = HostedParams.problems

    def counted(self, *args, **kwargs):
        calls.append(self.num_frames)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(HostedParams, "problems", counted)
    return calls


def png_uri() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("contract, body, frames", [
    (WAVESPEED, {"image": "IMAGE", "prompt": "p", "num_frames": 97}, 97),
    (FAL_FLF2V, {"image_url": "IMAGE", "end_image_url": "IMAGE", "prompt": "p"}, DEFAULT_FRAMES_WITH_END),
])
def test_a_service_request_is_validated_once_and_reaches_the_sampler(tmp_path, monkeypatch, validations, contract,
                                                                     body, frames):
    server = RecordingServer()
    monkeypatch.setattr(backend, "_client", lambda url, timeout: server)
    monkeypatch.setattr(backend, "status", lambda url, timeout: backend.ServerStatus(queue_length=0))
    monkeypatch.setattr(backend, "model_choices", lambda url, timeout: {record.model_file})
    monkeypatch.setattr(backend, "other_files", lambda url, timeout: {})  # lists nothing else: not checked
    settings = IntakeSettings(inputs_dir=tmp_path / "inputs", policy=UrlPolicy())
    store = ServiceStore(tmp_path / "jobs.sqlite3")
    record = store.add(intake(contract, {k: png_uri() if v == "IMAGE" else v for k, v in body.items()}, settings))
    assert validations == [frames]  # the request, with the contract's default filled in
    scheduler = Scheduler(store, ServerPool([URL], grace_s=0.0, timeout=1.0), tmp_path / "outputs",
                          SchedulerSettings())
    scheduler.tick()
    deadline = time.monotonic() + 30
    while scheduler._busy or not server.prompts:
        assert time.monotonic() < deadline, "the job was not sent"
        time.sleep(0.01)
    [prompt] = server.prompts
    assert find_node(prompt, "FramePackSampler")[1]["inputs"]["num_frames"] == frames
    assert store.get(record.id).status == "dispatched" and store.get(record.id).graph == prompt
    assert len(validations) == 1, "the scheduler and the workflow must not validate the request again"
    store.close()
