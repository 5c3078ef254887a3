"""Domain-adaptive pretraining: masked-LM steps on corpus text, MLflow run, resume, and an encoder
that fine-tuning loads."""
import json

import mlflow
import pytest

from finer_samples import write_dataset
from tiny_model import build_tiny_model
from training import pretrain


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dapt")
    data = write_dataset(root / "data", sizes=(("train", 200), ("validation", 40), ("test", 10)))
    base = build_tiny_model(root / "base", arch="bert")
    return root, data, base


def argv(root, data, base, steps, *extra):
    return ["--data", str(data), "--model", str(base), "--output_dir", str(root / "run"), "--max_steps", str(steps),
            "--max_length", "32", "--batch_size", "4", "--save_steps", "2", "--eval_blocks", "8",
            "--tracking_uri", f"sqlite:///{root / 'mlruns.db'}", "--artifact_root", str(root / "art"), *extra]


def test_pretrain_resume_and_fine_tune_loading(setup):
    from transformers import AutoModelForTokenClassification

    root, data, base = setup
    assert pretrain.main(argv(root, data, base, 4)) == 0
    model_dir = root / "run" / "model"
    run_id = json.loads((model_dir / "mlflow.json").read_text())["run_id"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns.db'}")
    run = client.get_run(run_id)
    assert run.data.metrics["pretrain_steps"] == 4 and run.data.metrics["final_perplexity"] > 1
    assert run.data.params["dapt.max_steps"] == "4"
    assert client.get_experiment(run.info.experiment_id).name == pretrain.EXPERIMENT

    # a second call without --resume refuses to mix runs; with it, it continues the same MLflow run
    assert pretrain.main(argv(root, data, base, 6)) == 1
    assert pretrain.main(argv(root, data, base, 6, "--resume")) == 0
    assert client.get_run(run_id).data.metrics["pretrain_steps"] == 6
    assert json.loads((model_dir / "mlflow.json").read_text())["run_id"] == run_id

    # the adapted encoder is a base for fine-tuning: its encoder weights load, only the head is new
    tuned = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=3, ignore_mismatched_sizes=True)
    adapted = AutoModelForTokenClassification.from_pretrained(base, num_labels=3, ignore_mismatched_sizes=True)
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not tuned.state_dict()[name].equal(adapted.state_dict()[name]), "pretraining changed the encoder"


def test_packing_keeps_sentence_order_and_block_shape(setup):
    from transformers import AutoTokenizer

    _, _, base = setup
    tokenizer = AutoTokenizer.from_pretrained(base)
    blocks = pretrain.pack(tokenizer, [["the", "rate", "was", "7.00", "%"]] * 20, max_length=16, blocks=3)
    assert blocks.shape == (3, 16)
    assert (blocks[:, 0] == tokenizer.cls_token_id).all() and (blocks[:, -1] == tokenizer.sep_token_id).all()


def test_empty_corpus_is_a_one_line_error(tmp_path, setup, capsys):
    _, _, base = setup
    data = tmp_path / "empty"
    data.mkdir()
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text("")
    assert pretrain.main(argv(tmp_path, data, base, 2)) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "no training sentences" in err
