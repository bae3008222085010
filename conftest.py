"""Collection settings for the whole repository (tests/ and the doctests of src/adamem)."""

import importlib.util

# The CUDA kernels' module imports Triton; without it there is nothing of it to collect (its
# tests in tests/test_triton.py skip themselves).
collect_ignore = [] if importlib.util.find_spec("triton") else ["src/adamem/_kernels/cuda.py"]
