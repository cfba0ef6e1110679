"""``python -m sensloc`` is the ``sensloc`` command."""
import sys

from sensloc.cli import main

sys.exit(main())
