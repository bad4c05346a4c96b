"""Which tensor an export takes from a library's output container, and what it says about it."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import pytest
import torch

from segexport.errors import UserError
from segexport.models.contract import OutputAdapter, choose_output

X = torch.zeros(1, 3, 16, 16)
LOGITS = torch.randn(1, 4, 16, 16)


@dataclass
class HFOutput:
    logits: torch.Tensor
    hidden_states: tuple | None = None


class ModelOutput(OrderedDict):  # what transformers' ModelOutput is: an OrderedDict with attributes
    pass


@pytest.mark.parametrize("output, key, how", [
    ({"out": LOGITS, "aux": LOGITS * 2}, "out", "['out'] (dropping aux)"),
    (OrderedDict(out=LOGITS), "out", "an OrderedDict; exporting its ['out']"),
    (HFOutput(LOGITS), "logits", "a HFOutput; exporting its .logits (dropping hidden_states)"),
    (ModelOutput(logits=LOGITS), "logits", "a ModelOutput; exporting its ['logits']"),
])
def test_known_containers_are_taken_with_a_note(output, key, how):
    choice = choose_output("net", X, output)
    assert choice.key == key and choice.output is LOGITS
    assert how in choice.note and "--output KEY" in choice.note


def test_a_tensor_needs_no_adapter():
    choice = choose_output("net", X, LOGITS)
    assert (choice.key, choice.note) == (None, None)


def test_tuple_needs_an_index():
    with pytest.raises(UserError, match=r"returned a tuple with entries 0, 1.*(--output |output_key= ?)0"):
        choose_output("net", X, (LOGITS, LOGITS))
    assert choose_output("net", X, (LOGITS, LOGITS * 2), key="1").output is not LOGITS


def test_missing_key_names_what_there_is():
    with pytest.raises(UserError, match=r"(--output |output_key= ?)aux: net returned a HFOutput without 'aux' \(it has: logits, hidden_states\)"):
        choose_output("net", X, HFOutput(LOGITS), key="aux")


def test_upsample_resizes_like_hugging_face_post_processing():
    low = torch.randn(1, 4, 4, 4)
    choice = choose_output("net", X, HFOutput(low), upsample=True)
    expected = torch.nn.functional.interpolate(low, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(choice.output, expected)
    assert "resized to the input size" in choice.note

    class Net(torch.nn.Module):
        def forward(self, x):
            return HFOutput(low)

    torch.testing.assert_close(OutputAdapter(Net(), "logits", True)(X), expected)


def test_upsample_on_full_resolution_logits_is_a_noop_and_says_so():
    choice = choose_output("net", X, LOGITS, upsample=True)
    assert choice.output is LOGITS and choice.upsample is False  # nothing recorded as appended
    assert "already at the input size" in choice.note
