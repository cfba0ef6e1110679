"""Speed and memory benchmarks of sensloc against PyTorch + Captum (see README.md).

Importing this package must stay cheap and must not import NumPy: thread counts are fixed
through environment variables before NumPy, Numba or PyTorch are first imported.
"""
