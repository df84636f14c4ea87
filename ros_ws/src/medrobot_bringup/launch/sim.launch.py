"""The medrobot_llm graph on a PyBullet scene, for a full ROS 2 install:

    ros2 launch medrobot_bringup sim.launch.py domain:=ultrasound

Same nodes and the same parameters file as `medrobot bringup --domain ultrasound` (the wheels-only way).
DDS discovery stays on this machine unless ROS_AUTOMATIC_DISCOVERY_RANGE is already set.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("medrobot_bringup")
    domain = LaunchConfiguration("domain")
    params = LaunchConfiguration("params_file")
    gui = LaunchConfiguration("gui")
    actions = [
        DeclareLaunchArgument("domain", default_value="ultrasound", description="surgery, ultrasound or xray"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "medrobot.yaml"),
                              description="the parameters file (also read by `medrobot bringup`)"),
        DeclareLaunchArgument("gui", default_value="false", description="open the PyBullet window"),
    ]
    if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        actions.append(SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))
    for name, extra in (("medrobot_skill_server", {"gui": gui}), ("medrobot_supervisor", {}),
                        ("medrobot_planner", {})):
        actions.append(Node(package="medrobot_bringup", executable=name, name=name, output="screen",
                            parameters=[params, {"domain": domain, **extra}]))
    return LaunchDescription(actions)
