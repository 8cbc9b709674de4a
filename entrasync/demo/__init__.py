"""`entrasync demo`: a simulated Entra tenant and a throw-away store, end to end."""

from entrasync.demo.runner import Demo, DemoResult, Reporter, demo_world, run_demo
from entrasync.demo.scenario import Shape

__all__ = ["Demo", "DemoResult", "Reporter", "Shape", "demo_world", "run_demo"]
