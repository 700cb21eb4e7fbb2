"""Planning with world models: CEM / MPPI over action sequences, agents, and the episode runner."""
from .planners import PlannerConfig, cem, mppi, plan

__all__ = ["PlannerConfig", "plan", "cem", "mppi"]
