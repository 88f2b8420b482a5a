"""Tests of voxvec.apps.identity: which model made an embedding, and what a mismatch says."""

from __future__ import annotations

import pytest
import torch

from voxvec.apps.identity import ModelIdentity, ModelMismatchError
from voxvec.inference import Embedder
from voxvec.models import create_model
from voxvec.weights import DEFAULT_MODEL, load_model
from voxvec.weights.pretrained import ALIASES, bundled_with_fingerprint
from voxvec.weights.state import weights_fingerprint


def test_the_fingerprint_follows_the_weights_not_the_name() -> None:
    torch.manual_seed(0)
    model = create_model("ecapa", channels=32, mfa_channels=96)
    same = create_model("ecapa", channels=32, mfa_channels=96)
    same.load_state_dict(model.state_dict())
    assert weights_fingerprint(model) == weights_fingerprint(same)
    with torch.no_grad():
        next(same.parameters()).view(-1)[0] += 1e-6
    assert weights_fingerprint(model) != weights_fingerprint(same)
    named = ModelIdentity.of(Embedder(model, card={"name": "a"}))
    renamed = ModelIdentity.of(Embedder(model, card={"name": "b"}))
    assert named.fingerprint == renamed.fingerprint == weights_fingerprint(model)
    renamed.check(named, "a store")  # same weights under another name: accepted


def test_a_record_made_under_the_default_alias_names_its_versioned_model() -> None:
    """Stores made before the default had versions recorded ``voxvec-default``; once the alias
    moves on, the message must send the user to the versioned model with those weights."""
    model, _ = load_model(DEFAULT_MODEL)
    fingerprint = weights_fingerprint(model)
    assert bundled_with_fingerprint(fingerprint) == ALIASES[DEFAULT_MODEL]
    assert bundled_with_fingerprint("0" * 64) is None
    old_record = ModelIdentity(DEFAULT_MODEL, fingerprint, 256, 16000)
    other = ModelIdentity("other", "ab" * 32, 256, 16000)
    with pytest.raises(ModelMismatchError) as err:
        old_record.check(other, "speaker store S")
    message = str(err.value)
    assert "speaker store S was made with model 'voxvec-default'" in message
    assert f"use --model {ALIASES[DEFAULT_MODEL]} (the same weights)" in message
    # Weights no bundled model has: the recorded name is all there is to say.
    with pytest.raises(ModelMismatchError, match="use --model other "):
        other.check(old_record, "calibration C")
