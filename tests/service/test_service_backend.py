"""The service's backend reads a server's answers about a prompt with the client's reader (framepack_client.outcome):
the same history entry gives the service and the client the same result, in the shared job states. The server is a
stand-in object answering /history and /queue as ComfyUI does; tests/comfy/test_service_e2e.py uses real ones."""

from __future__ import annotations

import pytest
from PIL import Image

from framepack_client.errors import ComfyConnectionError
from framepack_client.hosted import HostedParams
from framepack_client.job_states import COMPLETED, FAILED, LOST, QUEUED, RUNNING
from framepack_client.jobs import check, new_job
from framepack_client.workflow import build_prompt, load_workflow
from framepack_service import backend

URL = "http://127.0.0.1:1"


class Answers:
    def __init__(self, history=None, running=(), pending=(), down=False):
        self.entries, self.running, self.pending, self.down = history or {}, running, pending, down

    def history(self, prompt_id):
        if self.down:
            raise ComfyConnectionError("GET /history failed: [Errno 111] Connection refused")
        return {prompt_id: self.entries[prompt_id]} if prompt_id in self.entries else {}

    def queue(self):
        return {"queue_running": [[0, p, {}, {}, []] for p in self.running],
                "queue_pending": [[1, p, {}, {}, []] for p in self.pending]}


def entry(prompt_id, sampler, *, end="execution_success"):
    data = {"prompt_id": prompt_id, "timestamp": 1500, "node_id": sampler, "node_type": "FramePackSampler"}
    return {"outputs": {sampler: {"framepack": [{"seed": 5}]},
                        "10": {"images": [{"filename": "v_00001.mp4", "subfolder": "fp", "type": "output"}]}},
            "status": {"status_str": "success" if end == "execution_success" else "error",
                       "messages": [["execution_start", {"prompt_id": prompt_id, "timestamp": 1000}], [end, data]]}}


@pytest.fixture
def job(tmp_path):
    image = tmp_path / "start.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(image)
    params = HostedParams.from_mapping({"image": str(image), "prompt": "p", "seed": 5})
    made = new_job(URL, params)
    made.prompt, made.prompt_id = build_prompt(params, load_workflow(made.workflow)), made.id
    return made


def outcome_and_job(monkeypatch, job, answers):
    monkeypatch.setattr(backend, "_client", lambda url, timeout: answers)
    return backend.outcome(URL, job.prompt_id, job.prompt, job.params, 1.0), check(answers, job)


def test_a_finished_prompt_reads_the_same_for_the_service_and_the_client(monkeypatch, job):
    sampler = next(i for i, n in job.prompt.items() if n["class_type"] == "FramePackSampler")
    found, followed = outcome_and_job(monkeypatch, job, Answers({job.prompt_id: entry(job.prompt_id, sampler)}))
    assert found.state == followed.status == COMPLETED and not found.interrupted
    assert found.videos == followed.remote_outputs == [{"filename": "v_00001.mp4", "subfolder": "fp", "type": "output"}]
    assert found.seed == followed.seed == 5 and found.inference_ms == followed.inference_ms == 500


def test_an_interrupted_prompt_is_failed_and_says_so(monkeypatch, job):
    sampler = next(i for i, n in job.prompt.items() if n["class_type"] == "FramePackSampler")
    answers = Answers({job.prompt_id: entry(job.prompt_id, sampler, end="execution_interrupted")})
    found, followed = outcome_and_job(monkeypatch, job, answers)
    assert found.state == followed.status == FAILED and found.interrupted  # the scheduler turns it into cancelled
    assert found.error == followed.error and found.error.startswith("interrupted in FramePackSampler")
    assert found.videos == followed.remote_outputs == [] and found.seed == followed.seed


@pytest.mark.parametrize("where,state", [("running", RUNNING), ("pending", QUEUED), ("nowhere", LOST)])
def test_queue_and_lost(monkeypatch, job, where, state):
    answers = Answers(**({where: [job.prompt_id]} if where != "nowhere" else {}))
    monkeypatch.setattr(backend, "_client", lambda url, timeout: answers)
    assert backend.outcome(URL, job.prompt_id, job.prompt, job.params, 1.0).state == state


def test_a_server_that_does_not_answer_is_down(monkeypatch, job):
    monkeypatch.setattr(backend, "_client", lambda url, timeout: Answers(down=True))
    with pytest.raises(backend.ServerDown, match="Connection refused"):
        backend.outcome(URL, job.prompt_id, job.prompt, job.params, 1.0)
