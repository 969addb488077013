"""``python -m cfer``: the ``cfer`` command."""

import sys

from cfer.app.cli import main

sys.exit(main())
