"""lth_core: a small library for lottery-ticket experiments (see README.md)."""
