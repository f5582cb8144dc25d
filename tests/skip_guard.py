"""A pytest plugin that fails the run when any test was skipped (or xfailed), except those allowed, with reasons, in
tests/allowed_skips.txt.

scripts/test.sh loads it (`-p tests.skip_guard`): that run installs everything the tests need, so a skip there
means a check silently did not run, and CI must not go green on it. A plain `pytest` does not load it, and skips
what its interpreter cannot run (no ComfyUI, no diffusers, no chromium), each with a line saying how to run it.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

ALLOWED_SKIPS = Path(__file__).with_name("allowed_skips.txt")


def read_allowed(path: Path) -> dict[str, str]:
    """``{test id pattern: reason}`` from lines ``<pattern>  # <why it cannot run under scripts/test.sh>``."""
    allowed = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, reason = line.partition("#")
        if not pattern.strip() or not reason.strip():
            raise pytest.UsageError(f"{path}:{number}: write `<test id pattern>  # <why it cannot run here>`, "
                                    f"got {line!r}")
        allowed[pattern.strip()] = reason.strip()
    return allowed


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}" if report.wasxfail else "xfail"
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


class SkipGuard:
    def __init__(self, allowed_file: Path):
        self.allowed_file = allowed_file
        self.allowed = read_allowed(allowed_file)
        self.unexpected: list[tuple[str, str]] = []  # (test or folder id, skip reason)

    def _check(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if report.skipped and not any(fnmatch(report.nodeid, pattern) for pattern in self.allowed):
            self.unexpected.append((report.nodeid, _reason(report)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._check(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._check(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unexpected and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.unexpected:
            return
        terminalreporter.write_sep("=", f"{len(self.unexpected)} skipped, which fails this run", red=True)
        for nodeid, reason in self.unexpected:
            terminalreporter.write_line(f"SKIPPED {nodeid or '(session)'}: {reason}")
        terminalreporter.write_line(f"Everything is installed for this run, so every test must run. Fix what made it "
                                    f"skip, or, if it truly cannot run here, list it with the reason in "
                                    f"{self.allowed_file}.")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--allowed-skips", default=str(ALLOWED_SKIPS), metavar="FILE",
                     help="skip_guard: the test id patterns allowed to skip, each with its reason")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(Path(config.getoption("allowed_skips"))), "skip_guard")
