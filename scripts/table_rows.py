"""The order in which a table's rows are worth running: its main claims first (no imports, so that
scripts/gpu_run.py can read it on a bare machine). Experiments of a table not listed here come after
these, alphabetically; Table 2's v4 rows are not run (they are the v3 runs' float16 packs)."""

VALUE_ORDER = {
    2: ["resnet18_ref", "resnet18_v1", "resnet18_v2", "resnet18_v3", "resnet18_v1_prune",
        "vgg16_ref", "vgg16_v1", "vgg16_v2", "vgg16_v3",
        "alexnet_ref", "alexnet_v1", "alexnet_v2", "alexnet_v3"],
    # the DCGAN rows first: the paper's two, then the frx-tuned FR row
    4: ["gan_ref", "gan_fr1", "gan_fr1_tuned"],
}
