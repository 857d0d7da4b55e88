"""Helpers of the main job (`lth_core/reproduce.py`): its folder, its errors."""
