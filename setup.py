"""ament_python packaging of the textseg runtime (the part that goes on the vehicle)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "textseg"

setup(
    name=PACKAGE,
    version="0.4.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        # A trained default model placed in models/ before building is installed with the
        # package; the node's default `model` parameter points there.
        (f"share/{PACKAGE}/models", glob("models/*.onnx")),
    ],
    install_requires=["numpy", "opencv-python-headless", "onnxruntime", "PyYAML", "rosbags"],
    # colcon test runs pytest only when the package declares it as its test extra.
    extras_require={"test": ["pytest", "hypothesis"]},
    zip_safe=True,
    maintainer="textseg maintainers",
    maintainer_email="maintainers@textseg.invalid",
    description="Real-time semantic segmentation ROS 2 node (ONNX Runtime / TensorRT).",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "segmentation_node = textseg.node.segmentation_node:main",
            "segmentation_lifecycle_node = textseg.node.lifecycle_segmentation_node:main",
            "textseg = textseg.cli:main",
        ],
    },
)
