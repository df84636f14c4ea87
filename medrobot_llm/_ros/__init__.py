"""The ROS 2 bridge: thin rclpy nodes over the pure-Python core.

Nothing here imports rclpy at module level except the node modules themselves (``_skill_server``,
``_supervisor_node``, ``_planner_node``, ``_remote``, ``_runtime``); the decisions those nodes take
(may this goal run? what does this message mean?) live in ``_gate`` and ``_env``, which need no ROS and
are tested without it.
"""
