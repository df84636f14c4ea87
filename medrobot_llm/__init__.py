"""medrobot_llm: language to safe plans for medical robots.

A planner turns a command into a ``Plan`` drawn from the fixed command set in ``skills/``; the
validator checks every step; a safety supervisor releases steps to a ``SkillBackend``. Importing this
package needs neither rclpy nor pybullet.
"""

from __future__ import annotations

from medrobot_llm.backends.base import (
    BehaviourStatus,
    CancelToken,
    FailureKind,
    Feedback,
    LoopBackend,
    SkillBackend,
    SkillBehaviour,
    StepResult,
)
from medrobot_llm.safety.audit import AuditLog, AuditLogError, read_log
from medrobot_llm.backends.memory import ManualClock, MemoryBackend, Outcome
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.planning.base import Planner
from medrobot_llm.planning.rule.planner import RulePlanner
from medrobot_llm.session import RunOutcome, Session
from medrobot_llm.core.command_set import DOMAINS, CommandSet, Hazard, SkillFileError, load_command_set
from medrobot_llm.safety.supervisor import TRANSITIONS, InvalidTransition, Question, Reply, Supervisor, SupervisorError, SupervisorState
from medrobot_llm.core.validator import Issue, PlanValidationError, WorldState, check_steps, validate_plan

__version__ = "0.1.0"

__all__ = [
    "DOMAINS",
    "TRANSITIONS",
    "AuditLog",
    "AuditLogError",
    "BehaviourStatus",
    "CancelToken",
    "check_steps",
    "CommandSet",
    "Control",
    "FailureKind",
    "Feedback",
    "Hazard",
    "InvalidTransition",
    "Issue",
    "load_command_set",
    "LoopBackend",
    "ManualClock",
    "MemoryBackend",
    "Outcome",
    "Plan",
    "Planner",
    "PlanStatus",
    "PlanValidationError",
    "Question",
    "read_log",
    "Reason",
    "Reply",
    "RulePlanner",
    "RunOutcome",
    "Session",
    "SkillBackend",
    "SkillBehaviour",
    "SkillFileError",
    "Step",
    "StepResult",
    "Supervisor",
    "SupervisorError",
    "SupervisorState",
    "validate_plan",
    "WorldState",
    "__version__",
]
