"""``python -m framepack_service``: the local service (the same as ``framepack-video serve``)."""

import sys

from .cli import main

sys.exit(main())
