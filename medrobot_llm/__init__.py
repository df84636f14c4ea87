"""medrobot_llm: language to safe plans for medical robots.

A planner turns a command into a ``Plan`` drawn from the fixed command set in ``skills/``; the
validator checks every step; a safety supervisor releases steps to a ``SkillBackend``. Importing this
package needs neither rclpy nor pybullet.
"""

from __future__ import annotations

from ._backend import (
    BehaviourStatus,
    CancelToken,
    FailureKind,
    Feedback,
    LoopBackend,
    SkillBackend,
    SkillBehaviour,
    StepResult,
)
from ._plan import Control, Plan, PlanStatus, Step
from ._planner import Planner
from ._skillset import DOMAINS, CommandSet, Hazard, SkillFileError, load_command_set
from ._validator import Issue, PlanValidationError, WorldState, check_steps, validate_plan

__version__ = "0.1.0"

__all__ = [
    "DOMAINS",
    "BehaviourStatus",
    "CancelToken",
    "CommandSet",
    "Control",
    "FailureKind",
    "Feedback",
    "Hazard",
    "Issue",
    "LoopBackend",
    "Plan",
    "PlanStatus",
    "PlanValidationError",
    "Planner",
    "SkillBackend",
    "SkillBehaviour",
    "SkillFileError",
    "Step",
    "StepResult",
    "WorldState",
    "__version__",
    "check_steps",
    "load_command_set",
    "validate_plan",
]
