import numpy as np
import pytest

from finer.windows import bucket_length, decision, make_windows, pad_windows, word_best


def owners(windows):
    seen = {}
    for k, w in enumerate(windows):
        for word, own in zip(w.token_words, w.owned):
            if own:
                assert word not in seen, "a word is predicted twice"
                seen[word] = k
    return seen


def test_short_document_is_one_window_with_specials():
    ws = make_windows([5, 6, 7], [0, 0, 1], cls_id=1, sep_id=2, max_length=8, stride=2)
    assert len(ws) == 1
    assert ws[0].input_ids == [1, 5, 6, 7, 2]
    assert ws[0].owned == [False, True, False, True, False]


def test_long_document_every_word_predicted_once_with_context():
    n_words = 100
    token_words = [w for w in range(n_words) for _ in range(2)]  # two sub-tokens per word
    ids = list(range(10, 10 + len(token_words)))
    ws = make_windows(ids, token_words, cls_id=1, sep_id=2, max_length=18, stride=6)
    assert len(ws) > 1 and all(len(w.input_ids) <= 18 for w in ws)
    own = owners(ws)
    assert sorted(own) == list(range(n_words))
    # a word owned by window k sits away from that window's cut edges (except at the document ends)
    for k, w in enumerate(ws):
        positions = [i for i, o in enumerate(w.owned) if o]
        if 0 < k < len(ws) - 1:
            assert min(positions) >= 2 and max(positions) <= len(w.input_ids) - 3


def test_invalid_geometry():
    with pytest.raises(ValueError):
        make_windows([1], [0], cls_id=1, sep_id=2, max_length=10, stride=8)


def test_buckets_and_padding():
    assert bucket_length(5, [32, 64]) == 32 and bucket_length(40, [32, 64]) == 64 and bucket_length(70, [32, 64]) == 70
    ws = make_windows([5, 6], [0, 1], cls_id=1, sep_id=2, max_length=8, stride=1)
    arr = pad_windows(ws, 6, pad_id=0)
    assert arr["input_ids"].tolist() == [[1, 5, 6, 2, 0, 0]]
    assert arr["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0]]
    assert arr["word_ids"].tolist() == [[-1, 0, 1, -1, -1, -1]]


def test_decision_reads_owned_positions_only_and_words_take_their_own():
    logits = np.zeros((1, 4, 3), dtype=np.float32)
    logits[0, 1] = [0.0, 1.0, 3.0]
    logits[0, 2, 1] = 50.0  # a position no word owns (a later sub-token, or padding): never read
    word_ids = np.array([[-1, 0, -1, -1]], dtype=np.int32)
    ids, scores = decision(logits, word_ids >= 0)
    softmax = np.exp(logits[0, 1]) / np.exp(logits[0, 1]).sum()
    assert ids.tolist() == [[0, 2, 0, 0]] and np.isclose(scores[0, 1], softmax.max()) and scores[0, 2] == 1.0
    full_ids, full_scores = decision(logits)  # every position, as the exported graph computes them
    assert full_ids[0, 2] == 1 and full_scores[0, 2] > 0.99 and full_ids[0, 1] == 2
    best, prob = word_best(full_ids, full_scores, word_ids, n_words=2)
    assert best.tolist() == [2, 0] and np.isclose(prob[0], softmax.max()) and prob[1] == 1.0  # word 1: no sub-token


def test_encode_leaves_out_the_windows_that_predict_no_candidate_word():
    """Decoding gives every word that cannot be an entity O, so a window owning none of the others
    is not sent to the model; every candidate word keeps its window."""
    from tokenizers import Tokenizer, models

    from finer.pipeline import TaggerConfig, encode
    from finer.windows import window_count
    from finer.words import may_be_entity

    vocab = {w: i for i, w in enumerate(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "the", "notes", "bear", "7.00", "%"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    config = TaggerConfig(labels=["O"], cls_id=1, sep_id=2, pad_id=3, max_length=16, stride=4, buckets=[16])
    prose = ["the", "notes", "bear"] * 20
    doc = prose + ["7.00", "%"] + prose + ["7.00"]
    enc = encode(tokenizer, [doc], config)
    assert 2 <= len(enc.input_ids) < window_count(len(doc), max_length=16, stride=4)
    owned = enc.word_ids[enc.word_ids >= 0]
    assert {60, len(doc) - 1} <= set(owned.tolist())
    assert all(any(may_be_entity(doc[w]) for w in row[row >= 0]) for row in enc.word_ids)
    nothing = encode(tokenizer, [prose, prose], config)  # no candidate anywhere: one empty window
    assert nothing.input_ids.shape[0] == 1 and (nothing.word_ids < 0).all() and nothing.n_words == 120
