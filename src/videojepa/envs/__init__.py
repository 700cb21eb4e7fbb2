"""Embedded simulators for world-model training and planning (numpy only)."""
from .two_rooms import TwoRoomsConfig, TwoRoomsEnv, eval_episodes, move, render

__all__ = ["TwoRoomsConfig", "TwoRoomsEnv", "eval_episodes", "move", "render"]
