"""The published contract: docs/asyncapi.yaml is generated from contracts/, and
every message type in it has a JSON Schema and a valid example."""

import functools
import json
from pathlib import Path

import pytest
import yaml

from contracts.channels import CHANNELS
from contracts.examples import EXAMPLES
from services.ops.asyncapi import render

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
MESSAGES = {message.__name__: message for channel in CHANNELS for message in channel.messages}


@functools.cache
def document() -> dict:
    return yaml.load(DOCUMENT.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_the_committed_asyncapi_document_matches_the_contract_models():
    assert DOCUMENT.read_text() == render(), "docs/asyncapi.yaml is stale: run `cartflow asyncapi`"


def test_the_document_is_asyncapi_3_with_a_channel_for_every_topic():
    assert document()["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document()["channels"].values()}
    assert addresses == {channel.topic for channel in CHANNELS}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_every_message_type_has_a_schema_and_an_example_its_model_accepts(name):
    schemas = document()["components"]["schemas"]

    (example,) = schemas[name]["examples"]
    assert example["type"] == name
    MESSAGES[name].model_validate_json(json.dumps(example))
    assert example == EXAMPLES[name]
