"""The training recipes: fixed in epochs/steps (a budget is only a guard), and the Makefile's view of them."""
import subprocess
import sys

import pytest

from conftest import ROOT
from training import recipes


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_recipes_are_fixed_in_epochs_or_steps(name):
    for stage in ("train", "pretrain"):
        args = recipes.flags(name, stage)
        if args:
            assert "--epochs" in args or "--max_steps" in args, (name, stage)


def test_first_start_is_the_debt_scope_and_make_train_the_all_tags_model():
    serve, offline = recipes.flags("serve"), recipes.flags("offline")
    assert serve[serve.index("--scope") + 1] == "debt" and offline[offline.index("--scope") + 1] == "all"
    assert offline[offline.index("--model") + 1] == f"{recipes.DAPT_DIR}/model"
    assert recipes.flags("serve", epochs="1")[serve.index("--epochs") + 1] == "1"


def test_pending_pretrain_ends_once_the_adapted_encoder_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "DAPT_DIR", str(tmp_path / "dapt"))
    assert recipes.pending_pretrain("offline") == recipes.flags("offline", "pretrain")
    assert recipes.pending_pretrain("serve") == []
    (tmp_path / "dapt" / "model").mkdir(parents=True)
    (tmp_path / "dapt" / "model" / "config.json").write_text("{}")
    assert recipes.pending_pretrain("offline") == []


def test_cli_prints_flags_and_refuses_unknown_recipes():
    run = lambda *a: subprocess.run([sys.executable, "-m", "training.recipes", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    assert run("serve").stdout.split() == recipes.flags("serve")
    assert run("offline", "--pretrain").stdout.split() == recipes.flags("offline", "pretrain")
    bad = run("nope")
    assert bad.returncode != 0 and "usage" in bad.stderr
