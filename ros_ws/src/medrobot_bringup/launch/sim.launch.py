"""The medrobot_llm graph on a PyBullet scene, for a full ROS 2 install:

    ros2 launch medrobot_bringup sim.launch.py domain:=ultrasound

Same nodes (medrobot_llm.backends.ros.nodes) and the same parameters file as `medrobot bringup --domain
ultrasound` (the wheels-only way).
DDS discovery stays on this machine unless ROS_AUTOMATIC_DISCOVERY_RANGE is already set. The nodes load their
keys from keys_dir (default: $MEDROBOT_KEYS, else ~/.config/medrobot/keys); run `medrobot keys init` first
(`medrobot bringup` does it itself), or every node exits saying which key is missing.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from medrobot_llm.backends.ros.nodes import NODES, SKILL_SERVER
from medrobot_llm.cli.options import domain_names


def generate_launch_description():
    share = get_package_share_directory("medrobot_bringup")
    domain = LaunchConfiguration("domain")
    params = LaunchConfiguration("params_file")
    gui = LaunchConfiguration("gui")
    keys_dir = LaunchConfiguration("keys_dir")
    actions = [
        DeclareLaunchArgument("domain", default_value="ultrasound", description=domain_names()),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "medrobot.yaml"),
                              description="the parameters file (also read by `medrobot bringup`)"),
        DeclareLaunchArgument("gui", default_value="false", description="open the PyBullet window"),
        DeclareLaunchArgument("keys_dir", default_value="", description="the keys folder (docs/trust.md); empty = "
                              "$MEDROBOT_KEYS, else ~/.config/medrobot/keys"),
    ]
    if not os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        actions.append(SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"))
    extra = {SKILL_SERVER.name: {"gui": gui}}
    for node in NODES:
        actions.append(Node(package="medrobot_bringup", executable=node.name, name=node.name, output="screen",
                            parameters=[params, {"domain": domain, "keys_dir": keys_dir,
                                                  **extra.get(node.name, {})}]))
    return LaunchDescription(actions)
