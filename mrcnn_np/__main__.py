"""``python -m mrcnn_np ...``: see ``mrcnn_np/cli.py``."""
import sys

from .cli import main

sys.exit(main())
