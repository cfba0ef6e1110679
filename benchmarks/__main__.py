"""``python -m benchmarks [options]``: the same as ``python benchmarks/run.py [options]``."""
from benchmarks.run import main

if __name__ == "__main__":
    main()
