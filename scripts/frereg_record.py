"""Run record (Table 3) of the FR authors' released UNet, evaluated by frx.

    frx-convert frereg ../shared/data/frereg-unet/unet_fr.tar.xz results/runs/table3/unet_frereg__release.frx
    frx-eval results/runs/table3/unet_frereg__release.frx --images ../shared/data/frereg-unet/testimgs/input \\
        --masks ../shared/data/frereg-unet/testimgs/mask --json dice.json
    python scripts/frereg_record.py ../shared/data/frereg-unet/unet_fr.tar.xz \\
        results/runs/table3/unet_frereg__release.frx dice.json

writes results/runs/table3/unet_frereg__release.json next to the packed file.
"""

import argparse
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import frx
from frx import record
from frx.convert import main as convert_main

AUTHORS_DICE = 0.97177  # their own evaluation code on the same 16 images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="unet_fr.tar.xz (or unet_fr.pt)")
    ap.add_argument("packed", type=Path, help="the float16 file frx-convert wrote")
    ap.add_argument("dice", type=Path, help="frx-eval --json output for the packed file on the 16 images")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    out = args.packed.with_suffix(".json")
    if out.exists() and not args.overwrite:
        print(f"frereg_record: error: {out} exists; pass --overwrite", file=sys.stderr)
        return 2
    result = json.loads(args.dice.read_text())
    header = frx.unpack_meta(args.packed)
    if Path(result["file"]).resolve() != args.packed.resolve() or result["model"] != "unet_frereg":
        print(f"frereg_record: error: {args.dice} scores {result['file']} ({result['model']}), not {args.packed}",
              file=sys.stderr)
        return 2
    dtypes = {e["dtype"] for e in header["tensors"]}
    if dtypes != {"float16"}:
        print(f"frereg_record: error: {args.packed} stores {sorted(dtypes)}, expected float16", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:  # the float32 file's size, for the record's packed_bytes
        u32 = Path(tmp) / "u32.frx"
        if convert_main(["frereg", str(args.source), str(u32), "--dtype", "float32"]) != 0:
            return 2
        bytes32 = u32.stat().st_size
    tensors = [{"name": e["name"], "kind": e["layer"], "shape": e["shape"], "view": None,
                "dense": math.prod(e["shape"]), "kept": e["k"], "regularized": True}
               for e in header["tensors"] if e["kind"] == "fr"]
    dice = float(result["value"])
    size = result["size"] if isinstance(result["size"], str) else "x".join(map(str, result["size"]))
    rec = record.Record(
        experiment="table3/unet_frereg_release", tag="", table=3, row="UNet (authors' release)",
        method="converted", linear_view=None, scale="release", model="unet_frereg", arch=None,
        dataset="frereg-unet/testimgs",
        data={"source": "frereg-unet/testimgs", "val_size": result["images"], "size": size,
              "data_note": f"the authors' {result['images']} Carvana test images (their release's testimgs, "
                           f"{size})"},
        task="segmentation", seed=None, device="cpu",
        # only the float16 file (the release's own precision) was evaluated: no float32 or live value
        metric={"name": "dice", "higher_is_better": True, "value": None, "value_fp16": dice, "value_int8": None,
                "value_live": None},
        metric_extra={"per_image": result["per_image"], "authors_value": AUTHORS_DICE,
                      "origin": "the paper authors' trained FR UNet (their release, unet_fr.pt), converted by "
                                "frx-convert and evaluated by frx-eval; not an frx training run",
                      "evaluated": "the model unpacked from the float16 packed file (value_fp16); no float32 "
                                   "file or live model was evaluated"},
        tensors=tensors,
        counts={"dense_weights": sum(t["dense"] for t in tensors), "kept_weights": sum(t["kept"] for t in tensors),
                "other_params": 0},
        packed_bytes={"float16": args.packed.stat().st_size, "float32": bytes32}, epochs=[],
        config={"source": args.source.name, "source_md5": hashlib.md5(args.source.read_bytes()).hexdigest(),
                "images": result["images"], "size": result["size"], "batch_size": 1,
                "commands": [f"frx-convert frereg {args.source.name} {args.packed.name}",
                             f"frx-eval {args.packed.name} --images testimgs/input --masks testimgs/mask"]},
        git_commit=record.git_commit(), versions=record.versions(), wall_time_s=result.get("seconds"),
        created=record.now_utc())
    record.write(out, rec)
    print(f"{out}: dice {dice:.4f} ({dice:.6f}; the authors' code: {AUTHORS_DICE}), "
          f"{rec.kept_weights} of {rec.dense_weights:,} weights kept, {rec.packed_bytes['float16']:,} bytes (float16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
