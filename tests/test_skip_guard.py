"""scripts/test.sh fails when any test skips (tests/skip_guard.py), except the ones allowed with a reason; a plain
pytest run still allows skips. Each case runs a small pytest (or test.sh itself) on made-up tests in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = """
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("diffusers is missing")
"""


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=120)


def _folder(tmp_path: Path, source: str = TESTS, allowed: str = "") -> Path:
    (tmp_path / "test_made_up.py").write_text(source)
    (tmp_path / "allowed.txt").write_text(allowed)
    return tmp_path


def test_a_skip_fails_the_run_and_is_named(tmp_path):
    folder = _folder(tmp_path)
    done = _pytest(folder, "-p", "tests.skip_guard", "--allowed-skips", "allowed.txt")
    assert done.returncode == 1, done.stdout
    assert "1 skipped, which fails this run" in done.stdout
    assert "SKIPPED test_made_up.py::test_skips: diffusers is missing" in done.stdout


def test_without_the_guard_a_skip_passes(tmp_path):
    done = _pytest(_folder(tmp_path))
    assert done.returncode == 0, done.stdout
    assert "1 passed, 1 skipped" in done.stdout


def test_a_skip_allowed_with_a_reason_passes(tmp_path):
    folder = _folder(tmp_path, allowed="test_made_up.py::test_sk*  # needs a CUDA device\n")
    done = _pytest(folder, "-p", "tests.skip_guard", "--allowed-skips", "allowed.txt")
    assert done.returncode == 0, done.stdout
    assert "which fails this run" not in done.stdout


def test_an_allowance_without_a_reason_is_refused(tmp_path):
    folder = _folder(tmp_path, allowed="test_made_up.py::test_skips\n")
    done = _pytest(folder, "-p", "tests.skip_guard", "--allowed-skips", "allowed.txt")
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    assert "allowed.txt:1: write `<test id pattern>  # <why it cannot run here>`" in done.stderr


def test_module_skips_and_xfails_fail_the_run_too(tmp_path):
    (tmp_path / "test_module_skip.py").write_text(
        'import pytest\npytest.importorskip("no_such_module_xyz")\n\ndef test_x():\n    pass\n')
    folder = _folder(tmp_path, source='import pytest\n\n@pytest.mark.xfail(reason="flaky")\ndef test_x():\n'
                                      '    assert False\n')
    done = _pytest(folder, "-p", "tests.skip_guard", "--allowed-skips", "allowed.txt")
    assert done.returncode == 1, done.stdout
    assert "2 skipped, which fails this run" in done.stdout
    assert "SKIPPED test_module_skip.py: could not import 'no_such_module_xyz'" in done.stdout
    assert "SKIPPED test_made_up.py::test_x: xfail: flaky" in done.stdout


def test_scripts_test_sh_exits_non_zero_on_a_skip(tmp_path):
    """scripts/test.sh itself, in a copy of the repository's layout whose environment step is a stub (the real one
    installs into the shared venv): one skip makes it exit 1; without it, 0."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "comfy_env.sh").write_text(
        f'case "$1" in install) exit 0 ;; python) echo "{sys.executable}" ;; esac\n')
    (tmp_path / "tests").mkdir()
    for name in ("skip_guard.py", "allowed_skips.txt"):
        shutil.copy(REPO / "tests" / name, tmp_path / "tests" / name)
    (tmp_path / "tests" / "test_made_up.py").write_text(TESTS)
    env = {**os.environ, "CHROMIUM_PATH": "/bin/true"}

    def test_sh() -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(tmp_path / "scripts" / "test.sh"), "-p", "no:cacheprovider"], env=env,
                              capture_output=True, text=True, timeout=120)

    done = test_sh()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SKIPPED tests/test_made_up.py::test_skips: diffusers is missing" in done.stdout
    (tmp_path / "tests" / "test_made_up.py").write_text(TESTS.replace('pytest.skip("diffusers is missing")', "pass"))
    done = test_sh()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_a_folder_without_its_requirements_is_skipped_in_one_line_without_importing_it(tmp_path):
    folder = tmp_path / "needs_more"
    folder.mkdir()
    (folder / "conftest.py").write_text(
        "from tests.unrunnable import unrunnable_module\n\n"
        "def pytest_pycollect_makemodule(module_path, parent):\n"
        "    return unrunnable_module(parent, module_path, 'no such package here; run bash scripts/test.sh')\n")
    for name in ("test_one.py", "test_two.py"):  # importing either would fail
        (folder / name).write_text("import no_such_package_xyz\n\ndef test_x():\n    pass\n")
    plain = _pytest(tmp_path, "-rs")
    assert plain.returncode == 5, plain.stdout  # nothing ran, nothing failed
    assert "SKIPPED [2] " in plain.stdout and "no such package here; run bash scripts/test.sh" in plain.stdout
    assert "no_such_package_xyz" not in plain.stdout
    (tmp_path / "allowed.txt").write_text("")
    guarded = _pytest(tmp_path, "-p", "tests.skip_guard", "--allowed-skips", "allowed.txt")
    assert guarded.returncode != 0 and "2 skipped, which fails this run" in guarded.stdout, guarded.stdout
