"""frx-train's command line as a newcomer meets it: typos answered with the closest choice, --help
that explains frx, finished runs skipped with a note (in sweeps too), and the paper's records kept
apart from a user's own runs."""

import subprocess
import sys
from pathlib import Path

import pytest

from frx.cli import EXAMPLES, check_command_line, group_options, help_text
from frx.config import UserError
from frx.naming import PAPER_RECORDS
from frx.train import compose

from conftest import load_script

REPO = Path(__file__).resolve().parent.parent


def frx_train(*args, cwd):
    return subprocess.run([sys.executable, "-m", "frx.train", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("argv, message", [
    (["experiment=table1/lenet5_v3"], r"unknown experiment 'table1/lenet5_v3'; did you mean table1/lenet5_v2\? "
                                      r"\(choices: demo, table1/lenet300_ref, .*table4/vae_ref\)"),
    (["fr.epsilom=0.001"], r"^unknown key fr.epsilom; did you mean fr.epsilon\?$"),
    (["model=resnet18", "trainer.optimizer.lr=1", "trainer.optimiser.lr=1"],
     r"^unknown key trainer.optimiser.lr; did you mean trainer.optimizer.lr\?$"),
    (["-m", "hydra/launcher=paralel", "fr.epsilon=0.1,0.01"],
     r"unknown hydra/launcher 'paralel'; did you mean parallel"),
    (["-m", "dataset=mnist5k,mnist_5k"], r"unknown dataset 'mnist_5k'; did you mean mnist5k"),
    (["modle=lenet5"], r"^unknown key modle; did you mean model\?$"),
    (["zzz.qqq=1"], r"^unknown key zzz.qqq \(frx-train --cfg job lists every key"),
])
def test_typos_name_the_closest_choice(argv, message):
    with pytest.raises(UserError, match=message):
        check_command_line(argv)


@pytest.mark.parametrize("argv", [
    ["experiment=table2/alexnet_v1", "fr.epsilon=0.01", "scale=smoke"],
    ["-m", "experiment=table1/lenet5_v1,table1/lenet5_v2", "hydra/launcher=parallel", "trainer.threads=1"],
    ["+fr.foo=1"],  # additions are validate's to judge
    ["model=alexnet", "dataset=cifar10", "fr=none", "model.kwargs.num_classes=10"],
    ["hydra.launcher.n_jobs=1", "hydra/launcher=parallel"],
    ["--help"], ["--cfg", "job", "seed=3"], ["experiment=null"],
])
def test_valid_command_lines_pass(argv):
    check_command_line(argv)


def test_cli_typo_is_one_line_exit_2(tmp_path):
    p = frx_train("experiment=table1/lenet5_v3", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("frx-train: error: unknown experiment 'table1/lenet5_v3'; did you mean")
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "outputs").exists()


def test_help_explains_frx_groups_and_examples(tmp_path):
    text = help_text().replace("$$", "$")
    assert "Frequency Regularization" in text
    opts = group_options()
    assert "table1/lenet5_v2" in opts["experiment"] and {"parallel", "slurm", "local"} <= set(opts["hydra/launcher"])
    for group in ("model", "dataset", "fr", "prune", "scale"):
        for option in opts[group]:
            assert option in text, (group, option)
    for line in EXAMPLES.splitlines():
        assert line in text
    p = frx_train("--help", cwd=tmp_path)
    assert p.returncode == 0 and "powered by Hydra" not in p.stdout
    assert p.stdout.strip() == text.strip()


def test_help_examples_are_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    for line in EXAMPLES.splitlines():
        assert line in readme, line


def test_finished_runs_are_skipped_with_a_note_also_in_a_sweep(tmp_path):
    args = ["scale=smoke", "trainer.threads=1", f"run.records_dir={tmp_path / 'records'}"]
    first = frx_train(*args, "fr.epsilon=0.01", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    again = frx_train(*args, "fr.epsilon=0.01", cwd=tmp_path)
    assert again.returncode == 0 and "Traceback" not in again.stderr
    assert "frx-train: this run is finished:" in again.stdout and "skipped (run.overwrite=true" in again.stdout
    sweep = frx_train("-m", *args, "fr.epsilon=0.01,0.001", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert sweep.stdout.count("this run is finished") == 1 and sweep.stdout.count("record ") == 1
    assert (tmp_path / "records" / "adhoc" / "lenet5-mnist5k__fr.epsilon=0.001__smoke__seed0.json").exists()


def test_own_runs_and_paper_records_go_to_different_places(capsys):
    assert not compose([]).run.records_dir.startswith(PAPER_RECORDS)
    rm = load_script("run_missing")
    assert rm.main(["--table", "1", "--scale", "full", "--dry-run"]) == 0  # what `make table1 SCALE=full` does
    lines = [line for line in capsys.readouterr().out.splitlines() if " seed 0: " in line]
    assert len(lines) == len(rm.experiments(1, REPO / "frx" / "conf"))
    assert all(f" {PAPER_RECORDS}/table1/" in line for line in lines)
