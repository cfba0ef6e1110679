"""The ``sensloc`` command line (:func:`main`)."""
from sensloc.cli.main import main

__all__ = ["main"]
