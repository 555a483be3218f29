"""``python -m glimpse.cli``: the ``glimpse`` command."""

import sys

from glimpse.cli import program

sys.exit(program())
