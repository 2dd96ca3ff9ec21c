"""``python -m escape_portal.vo_publish --instance NAME --port PORT --state-dir DIR``."""

import sys

from escape_portal.vo_publish.server import main

sys.exit(main())
