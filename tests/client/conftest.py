"""The client's tests need its one dependency; without it the folder is skipped with one line saying how to run it
(scripts/test.sh installs it and fails on any skip)."""

import pytest

pytest.importorskip("websocket", reason="websocket-client, the API client's dependency, is not installed here: "
                                        "pip install websocket-client, or run `bash scripts/test.sh`")
