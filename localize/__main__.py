"""``python -m localize`` is ``sensloc``."""
import sys

from .cli import main

sys.exit(main())
