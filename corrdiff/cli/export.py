"""``corrdiff export``: a training checkpoint to a slim model file for compress and decompress."""

from __future__ import annotations

import argparse


def export_command(args: argparse.Namespace) -> None:
    from corrdiff.image_io import check_output
    from corrdiff.model_io import export_checkpoint

    check_output(args.output, [args.checkpoint], args.force)
    codec = export_checkpoint(args.checkpoint, args.output, half=args.half, overwrite=args.force, steps=args.steps)
    size = args.output.stat().st_size
    print(f"{args.checkpoint} -> {args.output}: {size / 1e6:.2f} MB, fingerprint {codec.fingerprint().hex()}")
