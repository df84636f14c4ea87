"""Recordings robotics tools open: a run or an audit log as one MCAP file of ROS 2 messages (``export``).

Nothing here is imported by ``import medrobot_llm``: ``export`` needs the ``mcap`` extra, and the CLI imports
it only for ``--mcap``.
"""
