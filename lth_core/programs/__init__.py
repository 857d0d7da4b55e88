"""Helpers of the main job (`lth_core/programs/reproduce.py`): its folder, its errors."""
