"""lth_core: a small library for lottery-ticket experiments (see README.md)."""
import os

# cuBLAS is bit-for-bit reproducible only with a fixed workspace, which must be chosen before its first
# call in the process (see training.select_deterministic_kernels); a value the user set wins
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
