"""``python -m framepack_client``: the FramePack API client's command line (see framepack_client.cli)."""

import sys

from .cli import main

sys.exit(main())
