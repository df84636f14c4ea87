"""``medrobot render``: the README's pictures of the scenes and of what the imaging scenes produce."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.cli.options import add_seed_argument

    p = sub.add_parser(
        "render",
        help="render pictures of the PyBullet scenes (headless)",
        description="Render each registered scene with TinyRenderer (no display needed) into OUT as "
        "<domain>_scene.png, plus a sample ultrasound capture and a radiograph. A scene whose module "
        "cannot be imported is skipped with a message.",
    )
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs (default docs/img)")
    add_seed_argument(p, help="scene seed (default 0)")
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--height", type=int, default=600)
    p.add_argument("--json", action="store_true", help="print {\"images\": [...], \"skipped\": {...}} only")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        from medrobot_llm.backends.sim import REGISTRY
        from medrobot_llm.backends.sim.pictures import render_samples, render_scene_png
    except ImportError as exc:
        print(f"medrobot render needs pybullet: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    images: list[str] = []
    skipped: dict[str, str] = {}
    for scene_id in REGISTRY:
        domain = scene_id.split("Scene")[0].lower()
        try:
            path = render_scene_png(scene_id, out / f"{domain}_scene.png", seed=args.seed, width=args.width,
                                    height=args.height)
        except ImportError as exc:
            skipped[scene_id] = f"cannot import: {exc}"
            continue
        except Exception as exc:  # noqa: BLE001 - one broken scene must not stop the others' pictures
            skipped[scene_id] = f"{type(exc).__name__}: {exc}"
            continue
        images.append(str(path))
    try:
        images += [str(p) for p in render_samples(out, seed=args.seed)]
    except Exception as exc:  # noqa: BLE001 - report, keep the scene pictures already written
        skipped["samples"] = f"{type(exc).__name__}: {exc}"
    if args.json:
        print(json.dumps({"images": images, "skipped": skipped}))
    else:
        for image in images:
            print(f"wrote {image}")
        for scene_id, why in skipped.items():
            print(f"skipped {scene_id}: {why}", file=sys.stderr)
    return 0 if images else 1
