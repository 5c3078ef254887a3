"""Label views of one served model: `tag(labels=...)`, the LABELS input, and its refusal of unknown names."""
from __future__ import annotations

import numpy as np
import pytest

from client import FinerClient, InvalidInput
from test_client import PROTOCOLS, SENTENCES, url

@pytest.fixture(scope="module", params=PROTOCOLS)
def client(request, served):
    with FinerClient(url(served, request.param), request.param) as c:
        yield c


def test_labels_narrow_the_answer_to_scopes_and_types(client, served):
    texts = SENTENCES * 3
    everything = client.tag(texts)
    kinds = sorted({e.label for doc in everything for e in doc})
    assert len(kinds) >= 2, "the tiny model should predict several types"
    assert client.tag(texts, labels="debt") == everything, "the tiny model's labels are all debt types"
    one = kinds[0]
    assert client.tag(texts, labels=[one]) == [[e for e in doc if e.label == one] for doc in everything]
    assert client.tag(texts, labels=["debt", one]) == everything, "specs are united"
    assert client.tag(texts, labels=["DebtInstrumentFaceAmount"]) == [[] for _ in texts], "a type the model lacks"
    with pytest.raises(InvalidInput, match="NoSuchConcept"):
        client.tag(texts, labels=["NoSuchConcept"])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_refuses_unknown_labels(served, protocol):
    """A raw request (no client-side check) with a bad LABELS gets INVALID_ARGUMENT naming it."""
    module = __import__(f"tritonclient.{protocol}", fromlist=["InferInput"])
    raw = module.InferenceServerClient(url(served, protocol).removeprefix("http://"))
    inputs = [module.InferInput("TEXT", [1], "BYTES"), module.InferInput("LABELS", [1], "BYTES")]
    inputs[0].set_data_from_numpy(np.array([SENTENCES[0].encode()], dtype=np.object_))
    inputs[1].set_data_from_numpy(np.array([b"Bogus"], dtype=np.object_))
    with pytest.raises(Exception, match="LABELS: unknown FiNER type.*Bogus") as info:
        raw.infer("finer", inputs)
    status = info.value.status()
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), status
    raw.close()
