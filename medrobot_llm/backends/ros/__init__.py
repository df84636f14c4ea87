"""The ROS 2 bridge: thin rclpy nodes over the pure-Python core.

Nothing here imports rclpy at module level except the node modules themselves (``skill_server``,
``supervisor_node``, ``planner_node``, ``remote``, ``backend``); the decisions those nodes take
(may this goal run? what does this message mean?) live in ``safety.gate`` and ``env``, which need no ROS and
are tested without it.
"""
