"""package.xml / setup.py / data files: what colcon and the ament index need."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from glob import glob
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXEC_DEPENDS = ("rclpy", "sensor_msgs", "diagnostic_msgs", "rosgraph_msgs", "vision_msgs",
                "python3-numpy", "python3-opencv", "python3-onnxruntime-pip",
                "python3-rosbags-pip")
# Python module -> rosdep key, for the non-ROS imports of the runtime.
ROSDEP_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
               "onnxruntime": "python3-onnxruntime-pip", "rosbags": "python3-rosbags-pip"}
DATA_GLOBS = ("launch/*.launch.py", "config/*.yaml", "config/*.xml")


@pytest.fixture(scope="module")
def package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


@pytest.fixture(scope="module")
def setup_call() -> ast.Call:
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name) and node.func.id == "setup"]
    assert len(calls) == 1
    return calls[0]


def _keyword(call: ast.Call, name: str) -> ast.expr:
    (value,) = [kw.value for kw in call.keywords if kw.arg == name]
    return value


def test_package_xml_header(package_xml):
    assert package_xml.tag == "package"
    assert package_xml.get("format") == "3"
    assert package_xml.findtext("name") == "textseg"
    assert package_xml.findtext("version")
    assert package_xml.findtext("license")
    assert package_xml.find("maintainer").get("email")


def test_package_xml_build_type(package_xml):
    assert package_xml.findtext("export/build_type") == "ament_python"


@pytest.mark.parametrize("dependency", EXEC_DEPENDS)
def test_package_xml_exec_depends(package_xml, dependency):
    depends = {element.text.strip() for element in package_xml.iter("exec_depend")}
    depends |= {element.text.strip() for element in package_xml.iter("depend")}
    assert dependency in depends


def _imported_top_modules(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def test_package_xml_declares_exactly_the_ros_packages_the_runtime_imports(package_xml):
    """rosdep installs what package.xml lists: every import must be there, nothing unused."""
    declared = {e.text.strip() for tag in ("exec_depend", "depend")
                for e in package_xml.iter(tag)}
    imported = _imported_top_modules(ROOT / "src" / "textseg")
    ros_imported = {m for m in imported if m.endswith("_msgs") or m.endswith("_interfaces")
                    or m in ("rclpy", "ament_index_python")}
    assert ros_imported - declared == set()
    assert {m for m in declared if m.endswith("_msgs")} - ros_imported == set()  # none unused
    for module, key in ROSDEP_KEYS.items():
        assert module in imported and key in declared, (module, key)
    tests = _imported_top_modules(ROOT / "test")
    test_keys = {e.text.strip() for e in package_xml.iter("test_depend")}
    assert {"pytest", "hypothesis"} <= tests
    assert {"python3-pytest", "python3-hypothesis"} <= test_keys


def test_setup_declares_the_test_extra_colcon_needs(setup_call):
    extras = ast.literal_eval(_keyword(setup_call, "extras_require"))
    assert {"pytest", "hypothesis"} <= set(extras["test"])


def test_package_xml_version_matches_setup(package_xml, setup_call):
    import textseg

    version = ast.literal_eval(_keyword(setup_call, "version"))
    # One version everywhere: package.xml (ROS), setup.py (pip) and textseg.__version__ (written
    # into engine sidecars and shown by the CLI).
    assert version == package_xml.findtext("version") == textseg.__version__


def test_console_script_segmentation_node(setup_call):
    scripts = ast.literal_eval(_keyword(setup_call, "entry_points"))["console_scripts"]
    targets = dict(entry.replace(" ", "").split("=", 1) for entry in scripts)
    assert targets["segmentation_node"] == "textseg.node.segmentation_node:main"
    assert (ROOT / "src" / "textseg" / "node" / "segmentation_node.py").is_file()


def test_ament_resource_marker():
    assert (ROOT / "resource" / "textseg").is_file()
    assert "resource/{PACKAGE}" in (ROOT / "setup.py").read_text(encoding="utf-8")


def _folder_files(name: str) -> list[Path]:
    folder = ROOT / name
    files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if not files:
        pytest.skip(f"{name}/ has no files")
    return files


@pytest.mark.parametrize("folder", ["launch", "config"])
def test_data_files_are_installed_by_setup_globs(folder):
    """Every file in launch/ and config/ is matched by a setup.py data_files glob."""
    setup_text = (ROOT / "setup.py").read_text(encoding="utf-8")
    patterns = [p for p in DATA_GLOBS if p.startswith(folder + "/")]
    assert all(p in setup_text for p in patterns)
    installed = {Path(name).resolve() for p in patterns for name in glob(str(ROOT / p))}
    missed = [f.name for f in _folder_files(folder) if f.resolve() not in installed]
    assert missed == [], f"{folder}/ files no setup.py glob installs: {missed}"


def test_launch_files_reference_existing_config():
    """share/<pkg>/config/<name> paths in launch files name files that exist in config/."""
    references = set()
    for launch_file in _folder_files("launch"):
        tree = ast.parse(launch_file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and len(node.args) >= 3:
                args = [a.value for a in node.args[1:] if isinstance(a, ast.Constant)]
                if len(args) == 2 and args[0] == "config" and isinstance(args[1], str):
                    references.add(args[1])
    for name in sorted(references):
        assert (ROOT / "config" / name).is_file(), name


def test_config_xml_files_parse():
    for path in _folder_files("config"):
        if path.suffix == ".xml":
            ET.parse(path)


def test_segmentation_config_parses():
    yaml = pytest.importorskip("yaml")
    path = ROOT / "config" / "segmentation.yaml"
    if not path.is_file():
        pytest.skip("config/segmentation.yaml not written yet")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and document
    for node, section in document.items():
        assert isinstance(node, str)
        assert isinstance(section, dict), node
        assert isinstance(section.get("ros__parameters"), dict), node


NODE_SOURCE = ROOT / "src" / "textseg" / "node" / "segmentation_node.py"


def test_segmentation_config_names_every_parameter():
    """docs/node.md says config/segmentation.yaml documents every parameter: each one the node
    declares (textseg.node.parameters, which needs no rclpy) is set there, or shown commented
    out."""
    from textseg.node.parameters import parameter_specs

    declared = [spec.name for spec in parameter_specs()]
    assert "points" in declared and "model" in declared
    config = (ROOT / "config" / "segmentation.yaml").read_text(encoding="utf-8")
    missing = [name for name in declared
               if not re.search(rf"^\s*(# )?{name}:", config, re.MULTILINE)]
    assert missing == [], f"parameters missing from config/segmentation.yaml: {missing}"


def test_segmentation_config_sets_the_nodes_own_defaults():
    """The launch file loads config/segmentation.yaml: a value set there that differs from
    the node's declared default (textseg.node.parameters, e.g. the health thresholds drawn by
    scripts/calibrate_health.py) would silently override it. Commented lines are examples."""
    yaml = pytest.importorskip("yaml")
    from textseg.node.parameters import parameter_specs

    defaults = {spec.name: spec.default for spec in parameter_specs()}
    document = yaml.safe_load((ROOT / "config" / "segmentation.yaml").read_text("utf-8"))
    differs = {name: (value, defaults[name])
               for section in document.values()
               for name, value in section["ros__parameters"].items()
               if name in defaults and value != defaults[name]}
    assert differs == {}, f"config/segmentation.yaml (value, default): {differs}"


def test_node_docstring_lists_every_topic_of_the_reference():
    """The node module's docstring, its topic summary, names every topic docs/node.md's topic
    table lists."""
    reference = (ROOT / "docs" / "node.md").read_text(encoding="utf-8")
    table = reference[reference.index("| topic | type |"):]
    table = table[:table.index("\n\n")]
    names = [line.split("|")[1].split("(")[0] for line in table.splitlines()[2:]]
    topics = {name for cell in names for name in re.findall(r"`(/?[a-z_]+(?:/[a-z_]+)*)`", cell)}
    assert {"image", "labels/image", "labels/points", "depth/camera_info"} <= topics
    docstring = ast.get_docstring(ast.parse(NODE_SOURCE.read_text(encoding="utf-8")))
    missing = sorted(topic for topic in topics if f"``{topic}``" not in docstring)
    assert missing == [], f"topics missing from segmentation_node's docstring: {missing}"


def test_launch_file_declares_the_documented_arguments():
    """Without launch_ros (test/ros/test_launch_file.py runs it where it exists): the launch
    file declares exactly the arguments the node reference (docs/node.md) documents."""
    tree = ast.parse((ROOT / "launch" / "segmentation.launch.py").read_text(encoding="utf-8"))
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", "")
                == "DeclareLaunchArgument" and node.args and isinstance(node.args[0],
                                                                         ast.Constant)}
    assert declared == {"model", "backend", "precision", "image", "transport", "params_file",
                        "namespace", "use_sim_time", "dds_profile", "lifecycle"}
    reference = (ROOT / "docs" / "node.md").read_text(encoding="utf-8")
    for name in declared:
        assert f"`{name}`" in reference, f"launch argument {name} is not documented"


_MACHINE_PATH = re.compile(r"""["'=](/(?:root|home|Users|work|tmp|mnt)/[^"'\s]*)""")


def test_committed_results_and_models_carry_no_machine_paths():
    """Results JSON and the models' metadata are shared: no one machine's absolute paths."""
    onnx = pytest.importorskip("onnx", reason="onnx not installed")
    found = []
    for path in sorted((ROOT / "training" / "results").glob("*.json")):
        found += [f"{path.name}: {m}" for m in _MACHINE_PATH.findall(path.read_text())]
    for path in sorted((ROOT / "models").glob("*.onnx")):
        model = onnx.load(str(path), load_external_data=False)
        for prop in model.metadata_props:
            found += [f"{path.name} {prop.key}: {m}" for m in _MACHINE_PATH.findall(prop.value)]
    assert not found, f"absolute machine paths in committed files: {found[:5]}"


def test_portable_writes_home_paths_as_tilde():
    pytest.importorskip("torch", reason="training package needs torch")
    from textseg_training.results import portable

    home = str(Path.home())
    assert portable({"a": [f"output_dir={home}/runs/x", f"{home}/y.pt", "runs/z"], "b": 3}) == \
        {"a": ["output_dir=~/runs/x", "~/y.pt", "runs/z"], "b": 3}
