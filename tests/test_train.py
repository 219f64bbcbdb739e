"""frx-train: configs compose, bad configs fail early and clearly, a run writes a complete record
whose metric is measured on the model unpacked from its packed file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

import frx
from frx import record as rec
from frx.train import CONF_DIR, UserError, compose, override_tag, run, run_stem, validate

from conftest import tmp_overrides

EXPERIMENTS = sorted(p.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
                     for p in (CONF_DIR / "experiment").rglob("*.yaml"))
REPO = Path(__file__).resolve().parent.parent


def test_experiment_list_is_complete():
    want = {f"table1/{m}_{v}" for m in ("lenet300", "lenet5") for v in ("ref", "v1", "v2")}
    want |= {"table1/lenet5_v1_auto", "table1/lenet5_v2_auto", "demo"}
    want |= {f"table2/{m}_{v}" for m in ("alexnet", "vgg16", "resnet18") for v in ("ref", "v1", "v2", "v3", "v4")}
    want |= {f"table3/unet_{v}" for v in ("ref", "v1", "v2", "v3")}
    want |= {"table4/gan_ref", "table4/gan_fr1", "table4/vae_ref", "table4/vae_fr1", "table4/vae_fr1_tuned",
             "table4/gan_fr1_tuned"}
    assert want <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    import frx.data

    cfg = validate(compose([f"experiment={name}", "scale=smoke"]))
    tag = f"__{cfg.run.tag}" if cfg.run.tag else ""  # an extra row of a paper row (e.g. frx-tuned)
    assert run_stem(cfg) == f"{name}{tag}__smoke__seed0"
    frx.tasks.check_compatible(cfg.model, cfg.dataset)  # each experiment pairs a model with fitting data
    assert cfg.scale.name == "smoke" and cfg.trainer.epochs <= 2 and cfg.trainer.max_steps_per_epoch <= 2
    assert cfg.dataset.limit_train <= 64
    if name.startswith("table"):
        assert cfg.run.table == int(name[5]) and cfg.run.row
    method = "fr" if cfg.fr.enabled else ("prune" if cfg.prune.enabled else "plain")
    assert method == ("plain" if name.endswith("_ref") else "prune" if name.endswith("_prune") else "fr")
    if cfg.fr.enabled:
        assert cfg.fr.linear_view == ("auto" if name.endswith("_auto") or name == "demo" else "flat")


def test_paper_budgets():
    """Experiment budgets: the paper's LeNet counts (Table 1), floors-only v3 rows, and Table 2's ResNet18 and
    AlexNet FR rows at or under the paper's counts."""
    from frx.fr import final_kept, kind_of
    from frx.models import build_from_config

    def budget(name):
        cfg = validate(compose([f"experiment={name}"]))
        model = build_from_config(cfg.model)
        return sum(final_kept(m.weight.numel(), cfg.fr.epsilon, cfg.fr.min_kept[kind_of(m)])
                   for m in model.modules() if kind_of(m) is not None)

    assert budget("table1/lenet5_v2") == 776
    assert budget("table1/lenet5_v1") == 7668
    assert budget("table1/lenet300_v1") == 4234
    assert budget("table2/alexnet_v3") == 1408
    assert budget("table2/resnet18_v3") == 2688
    # Table 2's ResNet18 and AlexNet FR rows keep at most the paper's counts (VGG16's, whose published counts
    # leave no room for its Linear at v3, are discussed in the README)
    from frx.report.paper import PAPER
    paper = {r.label: r.params for r in PAPER[2].rows}
    kept = {f"{label}-{v}": budget(f"table2/{name}_{v}")
            for name, label in (("resnet18", "ResNet18"), ("alexnet", "AlexNet")) for v in ("v1", "v2", "v3")}
    assert all(kept[row] <= paper[row] for row in kept), {row: (kept[row], paper[row]) for row in kept}
    assert kept["ResNet18-v1"] == 111_879 and kept["ResNet18-v2"] == 12_046


def test_run_names():
    assert override_tag(["seed=3", "run.dir=/x", "trainer.resume=true", "experiment=demo", "dataset.root=/d"]) == ""
    assert override_tag(["fr.gamma=0.02", "fr.epsilon=0.01"]) == "fr.epsilon=0.01,fr.gamma=0.02"
    long = override_tag([f"fr.include=[{'a' * 100}]"])
    assert len(long) <= 80 and "/" not in long
    cfg = validate(compose(["experiment=table1/lenet5_v2", "fr.epsilon=0.01", "seed=2"]))
    assert run_stem(cfg) == "table1/lenet5_v2__fr.epsilon=0.01__seed2"
    cfg = validate(compose(["model=lenet300", "run.tag=mine"]))
    assert run_stem(cfg) == "adhoc/lenet300-mnist5k__mine__seed0"
    assert cfg.run.dir == "outputs/adhoc/lenet300-mnist5k__mine__seed0"


def test_launcher_configs_compose():
    for launcher, target in (("parallel", "JoblibLauncher"), ("local", "LocalLauncher"),
                             ("slurm", "SlurmLauncher")):
        cfg = compose([f"hydra/launcher={launcher}"])
        assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.parametrize("override, message", [
    ("fr.epsilon=0", r"fr.epsilon must be in \(0, 1\]"),
    ("fr.epsilon=-0.1", r"fr.epsilon must be in \(0, 1\]"),
    ("fr.epsilon=1.5", r"fr.epsilon must be in \(0, 1\]"),
    ("fr.gamma=0", r"fr.gamma must be in \(0, 1\]"),
    ("fr.gamma=2", r"fr.gamma must be in \(0, 1\]"),
    ("fr.epsilon=abc", r"bad value for fr.epsilon"),
    ("fr.unit=batch", r"fr.unit: Invalid value .batch., expected one of \[step, epoch\]"),
    ("fr.init=zeros", r"fr.init: Invalid value .zeros., expected one of \[dct, normal\]"),
    ("fr.budget=layer", r"fr.budget: Invalid value .layer., expected one of \[tensor, global, radius\]"),
    ("+fr.foo=1", r"unknown config keys: fr.foo"),
    ("+trainer.optimizer.nme=sgd", r"unknown config keys: trainer.optimizer.nme"),
    ("+foo=1", r"unknown config keys: foo"),
    ("fr.min_kept={conv:0}", r"fr.min_kept values must be >= 1"),
    ("+fr.min_kept.attention=4", r"fr.min_kept keys must be conv and/or linear"),
    ("trainer.epochs=0", r"trainer.epochs must be >= 1"),
    ("prune=magnitude", r"fr.enabled and prune.enabled are both true"),
    ("trainer.device=tpu", r"trainer.device must be"),
    ("task=detection", r"task must be one of"),
])
def test_bad_config_fails_before_any_work(tmp_path, override, message):
    cfg = compose(tmp_overrides(tmp_path, override))
    with pytest.raises(UserError, match=message):
        run(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / "records").exists()


def test_unknown_key_without_plus_is_refused_by_hydra():
    with pytest.raises(ConfigCompositionException, match="fr.foo"):
        compose(["fr.foo=1"])


def test_model_data_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="needs inputs scaled to"):
        run(compose(tmp_overrides(tmp_path, "model=vae")))
    with pytest.raises(UserError, match="3 input channels"):
        run(compose(tmp_overrides(tmp_path, "model=resnet18")))


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="frx-data import mnist"):
        run(compose(tmp_overrides(tmp_path, "dataset=mnist", f"dataset.root={tmp_path / 'empty'}")))


def test_cli_error_is_one_message_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "frx.train", "fr.epsilon=0", *tmp_overrides(tmp_path)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2
    assert "frx-train: error: fr.epsilon must be in (0, 1], got 0.0" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


@pytest.fixture(scope="module")
def fr_run(tmp_path_factory):
    """LeNet-5 with FR on a few MNIST-5k images (auto view), one finished run shared by the tests below."""
    tmp = tmp_path_factory.mktemp("fr_run")
    cfg = compose(tmp_overrides(tmp, "experiment=demo", "scale=smoke", "trainer.epochs=3",
                                "trainer.max_steps_per_epoch=4", "fr.gamma=0.5", "run.table=1", "run.row=LeNet5-v2",
                                "run.keep_all=true"))
    return tmp, cfg, run(cfg)


def test_record_is_complete(fr_run):
    tmp, cfg, r = fr_run
    path = tmp / "records" / "demo__fr.gamma=0.5,trainer.epochs=3,trainer.max_steps_per_epoch=4__smoke__seed0.json"
    assert path.exists() and rec.read(path).to_dict() == json.loads(json.dumps(r.to_dict()))
    for key in rec.METRIC_FIELDS:
        assert key in r.metric
    assert (r.schema, r.experiment, r.tag, r.method, r.linear_view, r.scale) == (
        2, "demo", "fr.gamma=0.5,trainer.epochs=3,trainer.max_steps_per_epoch=4", "fr", "auto", "smoke")
    assert (r.model, r.dataset, r.task, r.seed, r.device) == ("lenet5", "mnist5k", "classification",
                                                                              0, "cpu")
    assert r.metric["name"] == "top1" and r.metric["higher_is_better"] is True
    assert all(0.0 <= r.metric[k] <= 1.0 for k in ("value", "value_fp16", "value_live"))
    assert [e["epoch"] for e in r.epochs] == [1, 2, 3]
    for e in r.epochs:
        assert {"epoch", "train_loss", "val_metric", "kept", "beta", "time_s"} <= set(e)
    assert r.epochs[0]["beta"] > r.epochs[-1]["beta"] > cfg.fr.epsilon  # tail-dropout moved
    # LeNet-5: 430,500 conv/linear weights + 580 biases; kept per tensor follows the schedule
    assert r.counts["dense_weights"] == 430500 and r.counts["other_params"] == 580
    assert r.counts["kept_weights"] == sum(t["kept"] for t in r.tensors) == r.epochs[-1]["kept"]
    assert [t["name"] for t in r.tensors] == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    fc1 = r.tensors[2]
    assert fc1["view"] == [500, 50, 4, 4] and fc1["kind"] == "linear" and fc1["kept"] < fc1["dense"]
    assert r.config["fr"]["epsilon"] == cfg.fr.epsilon and r.config["run"]["dir"] == str(tmp / "run")
    assert 0 < r.packed_bytes["float16"] < r.packed_bytes["float32"]
    # FR runs also pack the kept coefficients as int8 and measure that file
    assert 0 < r.packed_bytes["int8"] < r.packed_bytes["float16"] and 0.0 <= r.metric["value_int8"] <= 1.0
    assert (tmp / "run" / "model.int8.frx").stat().st_size == r.packed_bytes["int8"]
    assert r.wall_time_s > 0 and r.created.endswith("Z") and r.versions["torch"] == torch.__version__


def test_smoke_record_goes_through_the_report(fr_run, tmp_path):
    """The record a real run wrote is what the report reads: its line in Table 1 and its layer table."""
    from frx import report

    tmp, cfg, r = fr_run
    frames = report.generate(tmp / "records", tmp_path, figures=False)
    df = frames[1]["main"]
    line = df[df.status == "ok"].iloc[0]
    assert (line.row, line.method, line.variant, line.scale, line.tag) == ("LeNet5-v2", "fr", "auto", "smoke", r.tag)
    assert line.label == f"LeNet5-v2 (frx shape-aware) [{r.tag}]"
    assert line.kept_weights == r.counts["kept_weights"] and line.model == "lenet5"
    assert line.metric_mean == pytest.approx(100 * r.metric["value_fp16"])  # the paper lists LeNet5-v2 in float16
    layers = (tmp_path / "layers" / f"demo__{r.tag}__smoke__seed0.md").read_text()
    assert "variant auto; scale smoke; model lenet5" in layers and "| fc1.weight" in layers


def test_metric_is_measured_on_the_unpacked_model(fr_run):
    """Re-load the packed float32 file into a fresh plain LeNet-5: same accuracy as the record."""
    from frx import data, models
    from frx.tasks import build

    tmp, cfg, r = fr_run
    packed = tmp / "run" / "model.float32.frx"
    assert packed.stat().st_size == r.packed_bytes["float32"]
    model = models.build_from_config(cfg.model)
    model.load_state_dict(frx.unpack(packed))
    vcfg = validate(cfg)
    splits = data.load(vcfg.dataset)
    task = build("classification", vcfg, splits, torch.device("cpu"), data.batches)
    assert task.evaluate(model, splits.val) == r.metric["value"]
    # the small float16 pack is kept beside the record and is the same file as in the run dir
    small = tmp / "records" / r.metric_extra["packed_float16_file"]
    assert small.read_bytes() == (tmp / "run" / "model.float16.frx").read_bytes()


def test_finished_run_is_not_overwritten(fr_run):
    tmp, cfg, r = fr_run
    with pytest.raises(UserError, match="run.overwrite=true"):
        run(cfg)
    cfg2 = compose(tmp_overrides(tmp, "experiment=demo", "scale=smoke", "trainer.epochs=3",
                                 "trainer.max_steps_per_epoch=4", "fr.gamma=0.5", "run.overwrite=true"))
    again = run(cfg2)
    assert again.metric == r.metric and again.epochs[-1]["kept"] == r.epochs[-1]["kept"]
    assert [e["train_loss"] for e in again.epochs] == [e["train_loss"] for e in r.epochs]  # deterministic


def test_the_loop_evaluates_fr_models_inside_the_methods_evaluation(tmp_path, monkeypatch):
    from frx import method as methods

    entered = []

    def evaluation(self):
        entered.append(self.model)
        return frx.fr.factored_inference(self.model)

    monkeypatch.setattr(methods.FrequencyRegularized, "evaluation", evaluation)
    run(compose(tmp_overrides(tmp_path, "experiment=demo", "scale=smoke", "trainer.epochs=2",
                              "trainer.max_steps_per_epoch=2")))
    assert len(entered) == 2  # each epoch's evaluation; value_live after training is measured outside it


def test_plain_reference_run(tmp_path):
    r = run(compose(tmp_overrides(tmp_path, "model=lenet300", "fr=none", "scale=smoke")))
    assert r.method == "plain" and r.linear_view is None
    assert r.counts == {"dense_weights": 266200, "kept_weights": 266200, "other_params": 410}
    assert all(t["kept"] == t["dense"] and not t["regularized"] for t in r.tensors)
    assert r.epochs[-1]["beta"] is None
    # a plain float32 pack holds every weight: 4 bytes each plus a small header
    assert r.packed_bytes["float32"] > 4 * 266610


@pytest.mark.slow
def test_multirun_sweep_in_parallel(tmp_path):
    """frx-train -m with the joblib launcher: one record per point of the sweep, distinct names and run dirs."""
    p = subprocess.run([sys.executable, "-m", "frx.train", "-m", "fr.epsilon=0.01,0.001", "scale=smoke",
                        "hydra/launcher=parallel", "trainer.threads=1", f"run.records_dir={tmp_path / 'records'}"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for eps in ("0.01", "0.001"):
        stem = f"adhoc/lenet5-mnist5k__fr.epsilon={eps}__smoke__seed0"
        r = rec.read(tmp_path / "records" / f"{stem}.json")
        assert r.config["fr"]["epsilon"] == float(eps)
        assert (tmp_path / "outputs" / stem / "model.float16.frx").exists()


@pytest.mark.slow
def test_compiled_training_gives_the_same_run(tmp_path):
    """trainer.compile=true (torch.compile; FR's mask bookkeeping stays eager) trains the same network."""
    eager = run(compose(tmp_overrides(tmp_path / "eager", "scale=smoke")))
    compiled = run(compose(tmp_overrides(tmp_path / "compiled", "scale=smoke", "trainer.compile=true")))
    assert compiled.counts == eager.counts
    assert compiled.metric["value"] == pytest.approx(eager.metric["value"], abs=0.07)
