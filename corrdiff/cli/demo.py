"""``corrdiff demo``: a bundled photo (or another) compressed with a packaged model, beside AVIF, WebP and JPEG
at the same file size."""

from __future__ import annotations

import argparse


def demo_command(args: argparse.Namespace) -> None:
    from corrdiff.demo import run_demo

    run_demo(model=args.model, image=args.image, out=args.out, steps=args.steps, seed=args.seed,
             force=args.force)
