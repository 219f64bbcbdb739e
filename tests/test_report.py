import json
import math

import pandas as pd
import pytest
import torch

from frx import report

from conftest import load_script

LENET5 = [("conv1.weight", "conv", [20, 1, 5, 5]), ("conv2.weight", "conv", [50, 20, 5, 5]),
          ("fc1.weight", "linear", [500, 800]), ("fc2.weight", "linear", [10, 500])]
ALEXNET_DENSE = 57_035_456


def lenet5_tensors(kept):
    out = []
    for (name, kind, shape), k in zip(LENET5, kept):
        dense = math.prod(shape)
        out.append({"name": name, "kind": kind, "shape": shape, "view": None, "dense": dense,
                    "kept": dense if k is None else k})
    return out


def record(experiment, table, row, method, variant, scale, seed, metric, tensors, other, name="top1",
           fp16=None, model="lenet5", extra=None):
    dense = sum(t["dense"] for t in tensors)
    kept = sum(t["kept"] for t in tensors)
    return {
        "schema": 1, "experiment": experiment, "table": table, "row": row, "variant": variant, "method": method,
        "scale": scale, "model": model, "dataset": "mnist", "task": "classification", "seed": seed,
        "device": "cpu", "git_commit": "abc123", "versions": {"python": "3.11", "torch": "2.14.1", "frx": "0.1.0"},
        "config": {"seed": seed},
        "epochs": [{"epoch": 1, "train_loss": 0.3, "val_metric": metric, "kept": kept, "beta": 0.01, "time_s": 1.0}],
        "metric": {"name": name, "higher_is_better": name != "fid", "value": metric,
                   "value_fp16": metric if fp16 is None else fp16, "value_live": metric},
        "metric_extra": extra or {}, "tensors": tensors,
        "counts": {"dense_weights": dense, "kept_weights": kept, "other_params": other},
        "packed_bytes": {"float32": 4 * kept + 200, "float16": 2 * kept + 200},
        "wall_time_s": 10.0, "created": "2026-11-26T07:00:00Z",
    }


def write(root, rec):
    table = f"table{rec['table']}" if rec["table"] else "adhoc"
    path = root / table / f"{rec['experiment'].split('/')[-1]}__seed{rec['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.fixture
def results(tmp_path):
    runs = tmp_path / "runs"
    fr_kept = [128, 128, 256, 256]  # 768 kept weights
    write(runs, record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", "full", 0, 0.9707,
                       lenet5_tensors(fr_kept), 580, fp16=0.9705))
    write(runs, record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", "full", 1, 0.9683,
                       lenet5_tensors(fr_kept), 580, fp16=0.9684))
    write(runs, record("table1/lenet5_v2_auto", 1, "LeNet5-v2", "fr", "auto", "full", 0, 0.9819,
                       lenet5_tensors(fr_kept), 580))
    write(runs, record("table1/lenet5_ref", 1, "LeNet5-ref", "plain", "-", "full", 0, 0.9906,
                       lenet5_tensors([None] * 4), 580))
    write(runs, record("table1/lenet5_v2_prune", 1, "LeNet5-v2", "prune", "-", "full", 0, 0.9493,
                       lenet5_tensors(fr_kept), 580))
    alex = [{"name": "features.0.weight", "kind": "conv", "shape": [64, 3, 11, 11], "view": None,
             "dense": 23_232, "kept": 128},
            {"name": "rest", "kind": "linear", "shape": [ALEXNET_DENSE - 23_232], "view": None,
             "dense": ALEXNET_DENSE - 23_232, "kept": 1_280}]
    write(runs, record("table2/alexnet_v3", 2, "AlexNet-v3", "fr", "flat", "smoke", 0, 0.5922, alex, 9_354,
                       fp16=0.5855, model="alexnet"))
    vgg = record("table2/vgg16_v3", 2, "VGG16-v3", "fr", "flat", "smoke", 0, 0.6599,
                 [{"name": "features.0.weight", "kind": "conv", "shape": [64, 3, 3, 3], "view": None,
                   "dense": 1728, "kept": 128}], 100, model="vgg16")
    vgg["config"] = {"model": {"name": "vgg16", "variant": "vgg19-config"}}
    write(runs, vgg)
    gan = [{"name": "G.0.weight", "kind": "conv", "shape": [100, 512, 4, 4], "view": None, "dense": 819_200,
            "kept": 8_192}]
    write(runs, record("table4/gan_fr1", 4, "GAN-fr1", "fr", "flat", "smoke", 0, 251.5, gan, 3_000, name="fid",
                       model="dcgan", extra={"fid_feature_extractor": "frx-mnist-cnn"}))
    tagged = record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", "full", 0, 0.9601, lenet5_tensors(fr_kept), 580)
    (runs / "table1" / "lenet5_v2__fr.gamma=0.02__seed0.json").write_text(json.dumps(tagged))
    (runs / "notes.json").write_text(json.dumps({"not": "a record"}))
    out = tmp_path / "results"
    frames = report.generate(runs, out, figures=False)
    return out, frames


def read_csv(path):
    return pd.read_csv(path, na_values=[report.NOT_RUN, report.NA, "n/a (dense reference)", report.PIPELINE_CHECK,
                                        report.REDUCED_SCALE], keep_default_na=False)


def test_table1_numbers(results):
    out, _ = results
    df = read_csv(out / "table1.csv")
    flat = df[df.label == "LeNet5-v2"].iloc[0]
    assert flat.variant == "flat" and flat.scale == "full" and flat.n == 2 and flat.seeds == "0 1"
    assert flat.kept_weights == 768 and flat.dense_weights == 430_500 and flat.other_params == 580
    assert flat.rate_fp32 == pytest.approx(430_500 / 768)
    assert flat.rate_fp16 == pytest.approx(430_500 / (768 / 2))
    assert flat.rate_paper == 1110 and flat.rate_paper_convention == "fp16"
    assert flat.rate_diff == pytest.approx(430_500 / 384 - 1110)
    # the paper's Table 1 FR rows are float16: the metric comes from the float16 pack
    assert flat.metric_source == "fp16 pack"
    assert flat.metric_mean == pytest.approx((97.05 + 96.84) / 2)
    assert flat.metric_std == pytest.approx(pd.Series([97.05, 96.84]).std())
    assert flat.metric_paper == 97.52 and flat.metric_diff == pytest.approx((97.05 + 96.84) / 2 - 97.52)
    assert flat.params_paper == 776 and flat.params_diff == 768 - 776
    tagged = df[df.label == "LeNet5-v2 [fr.gamma=0.02]"].iloc[0]  # extra overrides: a line of its own
    assert tagged.n == 1 and tagged.tag == "fr.gamma=0.02" and tagged.metric_mean == pytest.approx(96.01)
    auto = df[df.label == "LeNet5-v2 (frx shape-aware)"].iloc[0]
    assert auto.variant == "auto" and auto.n == 1 and auto.metric_mean == pytest.approx(98.19)
    assert math.isnan(auto.metric_std)
    ref = df[df.label == "LeNet5-ref"].iloc[0]
    assert ref.scale == "full" and ref.rate_fp32 == 1 and ref.metric_source == "fp32 pack"
    assert ref.params_ours == 431_080 and ref.params_diff == 431_080 - 431_000  # paper's ref count: all params
    # rows without a record: "not run" in every measured column, no zeros
    raw = pd.read_csv(out / "table1.csv", dtype=str, keep_default_na=False)
    for label in ("LeNet300-ref", "LeNet300-v1", "LeNet300-v2", "LeNet5-v1"):
        line = raw[raw.label == label].iloc[0]
        assert line.status == "not run"
        for col in ("kept_weights", "metric_mean", "rate_fp32", "rate_fp16", "n", "other_params"):
            assert line[col] == "not run"
    assert list(df.row.unique()) == ["LeNet300-ref", "LeNet300-v1", "LeNet300-v2", "LeNet5-ref", "LeNet5-v1",
                                     "LeNet5-v2"]


def test_table1_baselines_and_quoted_deepcompression(results):
    out, frames = results
    base = read_csv(out / "table1_baselines.csv")
    v2 = base[base.label == "LeNet5-v2"].iloc[0]
    assert v2.fr_kept_weights == v2.prune_kept_weights == 768
    assert v2.prune_metric_mean == pytest.approx(94.93)
    assert v2.fr_minus_prune == pytest.approx((97.05 + 96.84) / 2 - 94.93)
    v1 = base[base.label == "LeNet5-v1"].iloc[0]
    assert v1.dc_metric_quoted == 99.26 and v1.dc_rate_quoted == "2.56%(39×)" and v1.dc_params_quoted == "34K(float6)"
    raw = pd.read_csv(out / "table1_baselines.csv", dtype=str, keep_default_na=False)
    v1 = raw[raw.label == "LeNet5-v1"].iloc[0]
    assert v1.fr_status == v1.fr_metric_mean == v1.prune_kept_weights == v1.fr_minus_prune == "not run"
    ref = raw[raw.label == "LeNet300-ref"].iloc[0]
    assert float(ref.dc_metric_quoted) == 98.36 and ref.prune_metric_mean == "n/a (dense reference)"
    md = (out / "table1.md").read_text()
    assert "DeepCompression" in md and "(quoted)" in md and "not run" in md
    assert "half a parameter" in md and "81,016×" in md
    assert "LeNet5-v2 (frx shape-aware)" in md


def test_markdown_and_latex_are_well_formed(results):
    out, frames = results
    for n in (1, 2, 3, 4):
        df = frames[n]["main"]
        md = (out / f"table{n}.md").read_text()
        main_md = md.split("## ")[0]
        pipe = [ln for ln in main_md.splitlines() if ln.startswith("|")]
        assert len(pipe) == len(df) + 2  # header, separator, one line per row
        assert len({ln.count("|") for ln in pipe}) == 1
        tex = (out / f"table{n}.tex").read_text()
        assert tex.count(r"\begin{tabular}") == 1 and tex.count(r"\end{tabular}") == 1
        body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
        assert len([ln for ln in body.splitlines() if ln.strip().endswith(r"\\")]) == len(df)
        assert len(read_csv(out / f"table{n}.csv")) == len(df)
    assert len(frames[3]["main"]) == 4 and (frames[3]["main"].status == "not run").all()
    assert "not run" in (out / "table3.tex").read_text()
    assert "19-layer" in (out / "table2.md").read_text()


def test_table2_float16_row_and_table4_fid(results):
    out, _ = results
    t2 = read_csv(out / "table2.csv")
    v3 = t2[t2.label == "AlexNet-v3"].iloc[0]
    assert v3.kept_weights == 1408 and v3.metric_mean == pytest.approx(59.22) and v3.scale == "smoke"
    assert v3.rate_fp32 == pytest.approx(ALEXNET_DENSE / 1408) and v3.rate_paper_convention == "fp32"
    v4 = t2[t2.label == "AlexNet-v4"].iloc[0]  # AlexNet-v4 is AlexNet-v3 stored as float16
    assert v4.metric_mean == pytest.approx(58.55) and v4.metric_source == "fp16 pack"
    assert round(v4.rate_fp16) == 81_016 and v4.rate_ours_paper_convention == v4.rate_fp16
    assert "AlexNet-v3 runs" in v4.notes
    assert t2[t2.label == "VGG16-v3"].iloc[0].model == "vgg16 (vgg19-config)"
    t4 = read_csv(out / "table4.csv")
    gan = t4[t4.label == "GAN-fr1"].iloc[0]
    assert gan.metric_mean == pytest.approx(251.5) and math.isnan(gan.metric_diff)  # smoke: no comparison
    assert gan.fid_feature_extractor == "frx-mnist-cnn" and gan.rate_fp32 == pytest.approx(100)
    assert "frx-mnist-cnn" in (out / "table4.md").read_text()
    raw = pd.read_csv(out / "table4.csv", dtype=str, keep_default_na=False)
    assert (raw[raw.label != "GAN-fr1"].status == "not run").all()


def test_float16_row_takes_its_source_row_at_each_scale_it_lacks(tmp_path):
    # AlexNet-v4 has its own smoke record, and AlexNet-v3 a cpu one: the v4 line at cpu is v3's float16 pack
    runs, out = tmp_path / "runs", tmp_path / "out"
    alex = [{"name": "rest", "kind": "linear", "shape": [ALEXNET_DENSE], "view": None, "dense": ALEXNET_DENSE,
             "kept": 1_408}]
    write(runs, record("table2/alexnet_v4", 2, "AlexNet-v4", "fr", "flat", "smoke", 0, 0.1, alex, 9_354,
                       fp16=0.11, model="alexnet"))
    v3 = record("table2/alexnet_v3", 2, "AlexNet-v3", "fr", "flat", "cpu", 0, 0.4594, alex, 9_354, fp16=0.4601,
                model="alexnet")
    (runs / "table2" / "alexnet_v3__cpu__seed0.json").write_text(json.dumps(v3))
    assert report.main(["--records", str(runs), "--out", str(out), "--no-figures"]) == 0
    t2 = read_csv(out / "table2.csv")
    v4 = t2[t2.label == "AlexNet-v4"]
    assert sorted(v4.scale) == ["cpu", "smoke"]
    cpu, smoke = v4[v4.scale == "cpu"].iloc[0], v4[v4.scale == "smoke"].iloc[0]
    assert cpu.metric_mean == pytest.approx(46.01) and cpu.metric_source == "fp16 pack"
    assert "AlexNet-v3 runs" in cpu.notes
    assert smoke.metric_mean == pytest.approx(11.0) and "AlexNet-v3" not in str(smoke.notes)


def test_layer_tables(results):
    out, _ = results
    path = out / "layers" / "table1" / "lenet5_v2__seed0.md"
    text = path.read_text()
    assert "fc1.weight" in text and "400,000" in text and "1,562×" in text  # 400000 / 256
    assert "| total" in text and "430,500" in text and "580 other parameters" in text
    assert len(list((out / "layers").rglob("*.md"))) == len(list((out.parent / "runs").rglob("*__*.json")))


def test_main_cli_and_figure(tmp_path, results):
    out, _ = results
    fig_out = tmp_path / "again"
    assert report.main(["--records", str(out.parent / "runs"), "--out", str(fig_out)]) == 0
    png = fig_out / "figures" / "table1_metric_vs_kept.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (fig_out / "table3.md").exists() and not (fig_out / "figures" / "table3_metric_vs_kept.png").exists()


def test_sample_and_overlay_figures(tmp_path):
    from frx import figures

    imgs = torch.rand(6, 1, 16, 16) * 2 - 1
    p = figures.save_sample_comparison({"reference": imgs, "FR": imgs.flip(0)}, tmp_path / "gan.png", nrow=3)
    assert p.read_bytes()[:4] == b"\x89PNG"
    grid = figures.image_grid(imgs, nrow=3, pad=2)
    assert grid.shape == (2 * 18 + 2, 3 * 18 + 2, 1) and grid.min() >= 0 and grid.max() <= 1
    seg = figures.save_segmentation_overlay(torch.rand(2, 3, 16, 16), torch.randn(2, 2, 16, 16),
                                            tmp_path / "seg.png", target=torch.randint(0, 2, (2, 16, 16)))
    assert seg.stat().st_size > 0


def _run_missing():
    return load_script("run_missing")


def test_run_missing_staleness(tmp_path):
    import os
    import subprocess

    rm = _run_missing()
    assert rm.config_diff({"fr": {"gamma": 0.01, "min_kept": {"conv": 128}}, "run": {"dir": "a"}},
                          {"fr": {"gamma": 0.02, "min_kept": {"conv": 128}}, "run": {"dir": "b"}}) == ["fr.gamma"]
    assert rm.config_diff({"trainer": {"betas": [0.9, 0.999]}}, {"trainer": {"betas": (0.9, 0.999)}}) == []
    # a key added to the schema after the record: at its default it keeps the record's behaviour
    old = {"trainer": {"epochs": 3}}
    assert rm.config_diff(old, {"trainer": {"epochs": 3, "label_smoothing": 0.0, "channels_last": False}}) == []
    assert rm.config_diff(old, {"trainer": {"epochs": 3, "label_smoothing": 0.1}}) == ["trainer.label_smoothing"]
    assert rm.config_diff(old, {"trainer": {"epochs": 3, "no_such_key": 0}}) == ["trainer.no_such_key"]
    assert rm.config_diff({"trainer": {"epochs": 3, "gone": 1}}, old) == ["trainer.gone"]

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    (tmp_path / "frx").mkdir()
    (tmp_path / "frx" / "model.py").write_text("a = 1\n")
    (tmp_path / "frx" / "report").mkdir()
    (tmp_path / "frx" / "report" / "cli.py").write_text("r = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    sha = git("rev-parse", "HEAD")
    assert rm.code_changed(sha, root=tmp_path) is None
    assert rm.code_changed(None, root=tmp_path) is None
    assert "not in this repository" in rm.code_changed("0" * 40, root=tmp_path)
    (tmp_path / "frx" / "report" / "cli.py").write_text("r = 2\n")  # the report does not change results
    assert rm.code_changed(sha, root=tmp_path) is None
    (tmp_path / "frx" / "model.py").write_text("a = 2\n")
    os.utime(tmp_path / "frx" / "model.py", (1e9, 1e9))  # modified in 2001
    assert "frx/model.py" in rm.code_changed(sha, root=tmp_path)
    # a record written from a dirty tree after that change: the same code
    assert rm.code_changed(sha + "+dirty", "2020-01-01T00:00:00Z", root=tmp_path) is None
    assert "frx/model.py" in rm.code_changed(sha + "+dirty", "2000-01-01T00:00:00Z", root=tmp_path)
    (tmp_path / "frx" / "new.py").write_text("b = 1\n")  # untracked, modified now
    assert "frx/new.py" in rm.code_changed(sha + "+dirty", "2020-01-01T00:00:00Z", root=tmp_path)


# ------------------------------------------------------------------ smoke lines, converted rows, int8, JPEG data
def schema2(raw, **changes):
    """A fixture record as schema 2 (what frx-train writes now)."""
    from frx import record as rec

    return {**rec.upgrade(raw, "x__seed0"), **changes}


def write_as(root, rel, rec):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def md_line(md, label):
    [line] = [ln for ln in md.split("## ")[0].splitlines() if ln.startswith(f"| {label} ")]
    return [c.strip() for c in line.strip("|").split("|")]


def md_header(md):
    return [c.strip() for c in next(ln for ln in md.splitlines() if ln.startswith("| Row")).strip("|").split("|")]


def test_smoke_line_shows_its_metric_but_no_comparison(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = lenet5_tensors([128, 128, 256, 256])
    write(runs, record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", "smoke", 0, 0.5, tensors, 580, fp16=0.4))
    write(runs, record("table1/lenet5_v2_prune", 1, "LeNet5-v2", "prune", "-", "smoke", 0, 0.3, tensors, 580))
    write(runs, record("table1/lenet5_v1", 1, "LeNet5-v1", "fr", "flat", "full", 0, 0.98, tensors, 580))
    assert report.main(["--records", str(runs), "--out", str(out)]) == 0
    md = (out / "table1.md").read_text()
    head, smoke, full = md_header(md), md_line(md, "LeNet5-v2"), md_line(md, "LeNet5-v1")
    assert smoke[head.index("Top-1 Accuracy (%) ours")] == "40.00"  # the metric is shown (fp16 pack)
    for col in ("Δ Top-1 Accuracy", "Δ params", "Δ rate (paper's convention)"):
        assert smoke[head.index(col)] == "pipeline check"
        assert full[head.index(col)] not in ("pipeline check", "n/a", "not run")
    raw = pd.read_csv(out / "table1.csv", dtype=str, keep_default_na=False)
    line = raw[raw.label == "LeNet5-v2"].iloc[0]
    assert line.metric_diff == line.rate_diff == line.params_diff == "pipeline check"
    assert float(line.metric_mean) == pytest.approx(40.0)
    base = pd.read_csv(out / "table1_baselines.csv", dtype=str, keep_default_na=False)
    assert base[base.label == "LeNet5-v2"].iloc[0].fr_minus_prune == "pipeline check"
    assert "pipeline check" in md.split("## ")[1]  # the baselines' FR − pruning column too
    # figures: smoke runs left out unless asked; a table with only smoke runs has no figure
    fig = out / "figures" / "table1_metric_vs_kept.png"
    from frx.report.figures import figure_points

    records = report.load_records(runs)
    assert list(figure_points(1, records).row) == ["LeNet5-v1"]
    assert sorted(figure_points(1, records, smoke=True).row) == ["LeNet5-v1", "LeNet5-v2", "LeNet5-v2"]
    assert fig.exists()
    (runs / "table1" / "lenet5_v1__seed0.json").unlink()
    report.main(["--records", str(runs), "--out", str(out)])
    assert not fig.exists()  # only smoke runs left: the old figure is gone
    report.main(["--records", str(runs), "--out", str(out), "--smoke-figures"])
    assert fig.exists()


def test_converted_release_row_in_table3(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = [{"name": f"c{i}.weight", "kind": "conv", "shape": [64, 64, 3, 3], "view": None, "dense": 36_864,
                "kept": 253, "regularized": True} for i in range(3)]
    raw = record("table3/unet_frereg_release", 3, "UNet (authors' release)", "converted", "-", "release", None,
                 0.9718, tensors, 0, name="dice", model="unet_frereg",
                 extra={"origin": "the paper authors' trained FR UNet, converted; not an frx training run"})
    raw = schema2(raw, data={"data_note": "the authors' 16 Carvana test images"},
                  packed_bytes={"float16": 2023, "float32": 3541})
    raw["metric"].update(value=None, value_live=None)  # only the float16 file was evaluated
    write_as(runs, "table3/unet_frereg__release.json", raw)
    frames = report.generate(runs, out, figures=False)
    df = frames[3]["main"]
    line = df[df.method == "converted"].iloc[0]
    assert line.label == "UNet (authors' release), evaluated by frx" and line.scale == "release"
    assert line.kept_weights == 759 and line.packed_bytes_fp16 == 2023
    assert line.metric_mean == pytest.approx(97.18) and math.isnan(line.metric_diff)  # not a paper row
    md = (out / "table3.md").read_text()
    head, cells = md_header(md), md_line(md, "UNet (authors' release), evaluated by frx")
    assert cells[head.index("Dice Score (%) ours")] == "97.18"
    assert cells[head.index("Kept weights ours")] == "759"
    assert cells[head.index("Packed bytes ours (fp16 file)")] == "2,023"
    assert "not an frx training run" in cells[head.index("Notes")] and "fp16 pack" in cells[head.index("Notes")]
    assert "16 Carvana test images" in cells[head.index("Notes")]
    assert len(df[df.status == "not run"]) == 4  # the paper's four UNet rows are still not run


def test_committed_release_record_loads_as_schema_2():
    from pathlib import Path

    from frx import record as rec

    r = rec.read(Path(__file__).resolve().parent.parent / "results/runs/table3/unet_frereg__release.json")
    assert (r.schema, r.method, r.scale, r.table, r.tag) == (2, "converted", "release", 3, "")
    assert r.kept_weights == 759 and r.packed_bytes["float16"] == 2023 and r.metric["value_fp16"] > 0.97
    assert "not an frx training run" in r.metric_extra["origin"] and "16" in r.data["data_note"]


def test_int8_column_beside_float16(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = lenet5_tensors([128, 128, 256, 256])
    for seed, v8 in ((0, 0.9690), (1, 0.9670)):
        raw = record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", "full", seed, 0.9707, tensors, 580,
                     fp16=0.9705, extra={"value_int8_quantized_from": "float16 packed file"})
        raw["metric"]["value_int8"] = v8
        write(runs, raw)
    write(runs, record("table1/lenet5_ref", 1, "LeNet5-ref", "plain", "-", "full", 0, 0.99, lenet5_tensors([None] * 4),
                       580))
    frames = report.generate(runs, out, figures=False)
    line = frames[1]["main"].set_index("label").loc["LeNet5-v2"]
    assert line.metric_int8_mean == pytest.approx(96.80) and line.metric_int8_std == pytest.approx(0.1414, abs=1e-4)
    md = (out / "table1.md").read_text()
    head = md_header(md)
    i8 = head.index("Top-1 Accuracy (%) ours, int8 pack")
    assert i8 == head.index("Top-1 Accuracy (%) ours") + 1  # beside the float16 number
    v2, ref = md_line(md, "LeNet5-v2"), md_line(md, "LeNet5-ref")
    assert v2[i8] == "96.80 ± 0.14" and v2[i8 - 1] == "97.05 ± 0.00" and ref[i8] == "n/a"
    assert "int8 quantized from the float16 packed file" in v2[head.index("Notes")]
    assert "int8 file was made from the committed float16 file" in md
    assert "int8" not in (out / "table2.md").read_text()  # no record there carries it: no column


def test_jpeg_cifar_note_and_lossless_column(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = [{"name": "conv1.weight", "kind": "conv", "shape": [64, 3, 3, 3], "view": None, "dense": 1728,
                "kept": 128}]
    note = "CIFAR-10 (JPEG copies): 50000 training and 10000 test images decoded from cifar10-jpeg.npz"
    for row, scale, lossless in (("ResNet18-v1", "gpu", 0.851), ("ResNet18-ref", "gpu", 0.872)):
        raw = record(f"table2/{row.lower()}", 2, row, "fr" if row.endswith("v1") else "plain", "flat", scale, 0,
                     0.845, tensors, 10, model="resnet18", extra={"top1_lossless1k": lossless})
        write_as(runs, f"table2/{row.lower()}__gpu__seed0.json", schema2(raw, data={"data_note": note}))
    write(runs, record("table2/vgg16_v1", 2, "VGG16-v1", "fr", "flat", "full", 0, 0.8, tensors, 10, model="vgg16"))
    report.generate(runs, out, figures=False)
    md = (out / "table2.md").read_text()
    head = md_header(md)
    col = head.index("Top-1 Accuracy (%) ours, lossless first 1k")
    v1, vgg = md_line(md, "ResNet18-v1"), md_line(md, "VGG16-v1")
    assert v1[col] == "85.10" and v1[head.index("Top-1 Accuracy (%) ours")] == "84.50"
    assert "CIFAR-10 (JPEG copies)" in v1[head.index("Notes")]
    assert "CIFAR-10 (JPEG copies)" in md_line(md, "ResNet18-ref")[head.index("Notes")]
    assert "JPEG" not in vgg[head.index("Notes")] and vgg[col] == "n/a"  # a record without the note or metric
    csv = read_csv(out / "table2.csv").set_index("label")
    assert csv.loc["ResNet18-v1", "data_note"] == "CIFAR-10 (JPEG copies)"
    assert csv.loc["ResNet18-v1", "top1_lossless1k_mean"] == pytest.approx(85.1)
    assert "lossless" not in (out / "table1.md").read_text()  # no record there carries it: no column


def test_table2_lossless_wall_time_and_device_columns(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = [{"name": "conv1.weight", "kind": "conv", "shape": [64, 3, 3, 3], "view": None, "dense": 1728,
                "kept": 128}]
    for seed, lossless, hours in ((0, 0.851, 1.5), (1, 0.861, 2.16)):
        raw = record("table2/resnet18_v1", 2, "ResNet18-v1", "fr", "flat", "gpu", seed, 0.845, tensors, 10,
                     model="resnet18", extra={"top1_lossless1k": lossless})
        raw.update(device="cuda:0", wall_time_s=hours * 3600)
        raw["versions"]["gpu"] = "NVIDIA H200"
        write(runs, raw)
    vgg = record("table2/vgg16_v1", 2, "VGG16-v1", "fr", "flat", "full", 0, 0.8, tensors, 10, model="vgg16")
    vgg["versions"].update(cpu="Some CPU", threads=2)
    vgg["wall_time_s"] = 9.0
    write(runs, vgg)
    # a seed without the lossless measurement: no mean over the others
    for seed, extra in ((0, {"top1_lossless1k": 0.7}), (1, {})):
        write(runs, record("table2/alexnet_v1", 2, "AlexNet-v1", "fr", "flat", "full", seed, 0.7, tensors, 10,
                           model="alexnet", extra=extra))
    write(runs, record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", "full", 0, 0.97,
                       lenet5_tensors([128, 128, 256, 256]), 580))
    frames = report.generate(runs, out, figures=False)
    line = frames[2]["main"].set_index("label").loc["ResNet18-v1"]
    assert line.top1_lossless1k_mean == pytest.approx(85.6) and line.top1_lossless1k_std == pytest.approx(0.7071, 1e-3)
    assert line.wall_time_h_mean == pytest.approx(1.83) and line.ran_on == "cuda (NVIDIA H200)"
    md = (out / "table2.md").read_text()
    head = md_header(md)
    lossless, wall, ran = (head.index(h) for h in ("Top-1 Accuracy (%) ours, lossless first 1k",
                                                   "Wall time (h)", "Ran on"))
    assert lossless == head.index("Top-1 Accuracy (%) ours") + 1 and ran == wall + 1 == head.index("Notes") - 1
    v1, vgg_line, alex = md_line(md, "ResNet18-v1"), md_line(md, "VGG16-v1"), md_line(md, "AlexNet-v1")
    assert v1[lossless] == "85.60 ± 0.71" and v1[wall] == "1.83 h" and v1[ran] == "cuda (NVIDIA H200)"
    assert vgg_line[lossless] == "n/a" and vgg_line[wall] == "0.0025 h" and vgg_line[ran] == "cpu, 2 threads"
    assert alex[lossless] == "n/a" and alex[ran] == "cpu"  # a record without versions.threads
    assert md_line(md, "VGG16-v2")[wall] == "not run"
    notes = [ln for ln in md.split("\n\n| Row")[0].splitlines() if ln.startswith("- ")]
    for start in ("- Lossless first 1k:", "- Wall time (h):", "- Ran on:"):
        assert sum(ln.startswith(start) for ln in notes) == 1
    raw = pd.read_csv(out / "table2.csv", dtype=str, keep_default_na=False).set_index("label")
    assert raw.loc["VGG16-v2", "wall_time_h_mean"] == raw.loc["VGG16-v2", "ran_on"] == "not run"
    assert raw.loc["AlexNet-v1", "top1_lossless1k_mean"] == "n/a"
    assert len({ln.count("|") for ln in md.split("## ")[0].splitlines() if ln.startswith("|")}) == 1
    for n in (1, 3, 4):  # the CIFAR-10 table's columns only
        text = (out / f"table{n}.md").read_text() + (out / f"table{n}.csv").read_text()
        assert "lossless" not in text and "Wall time" not in text and "wall_time" not in text and "Ran on" not in text


def test_schema1_record_upgrades_with_its_data_notes_moved():
    from frx import record as rec

    raw = record("table2/resnet18_v1", 2, "ResNet18-v1", "fr", "flat", "smoke", 0, 0.1, lenet5_tensors([128] * 4), 9,
                 extra={"data": {"data_note": "CIFAR-10 (JPEG copies): 50000 training"}, "top1_lossless1k": 0.2})
    r = rec.from_dict(raw, "table2/resnet18_v1__fr.gamma=0.5__smoke__seed0.json")
    assert (r.schema, r.tag, r.linear_view) == (2, "fr.gamma=0.5", "flat")
    assert r.data == {"data_note": "CIFAR-10 (JPEG copies): 50000 training"}
    assert r.metric_extra == {"top1_lossless1k": 0.2}  # one home for the data notes: `data`


@pytest.mark.parametrize("scale,shown", [("full", None), ("gpu", None), ("smoke", "pipeline check"),
                                         ("gan-cpu-1-epoch", "reduced scale")])
def test_only_result_scales_are_compared_with_the_paper(tmp_path, scale, shown):
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = lenet5_tensors([128, 128, 256, 256])
    write(runs, record("table1/lenet5_v2", 1, "LeNet5-v2", "fr", "flat", scale, 0, 0.97, tensors, 580))
    assert report.main(["--records", str(runs), "--out", str(out), "--no-figures"]) == 0
    md = (out / "table1.md").read_text()
    line = md_line(md, "LeNet5-v2")
    diff = line[md_header(md).index("Δ Top-1 Accuracy")]
    if shown is None:
        assert diff not in ("pipeline check", "reduced scale", "n/a", "not run")
    else:
        assert diff == shown and f"'{shown}':" in md  # and a note says what it means


def test_fid_is_not_compared_with_the_papers_values(tmp_path):
    # frx's FID uses its own feature network; the paper's values are on another scale
    runs, out = tmp_path / "runs", tmp_path / "out"
    tensors = lenet5_tensors([128, 128, 256, 256])
    write(runs, record("table4/vae_ref", 4, "VAE-ref", "plain", "-", "full", 0, 300.0, tensors, 580,
                       name="fid", model="vae"))
    assert report.main(["--records", str(runs), "--out", str(out), "--no-figures"]) == 0
    md = (out / "table4.md").read_text()
    line = md_line(md, "VAE-ref")
    assert line[md_header(md).index("Δ Fid value")] == "n/a"
    assert line[md_header(md).index("Fid value ours")] == "300.0"
