"""`smoe plan-resources` on the published config.json of each flagship in docs/scale/
against the parameter counts their publishers state (docs/scale/SOURCES.md).

Publishers round loosely and differ in what they count (GLM-4.6's "355B" lies between
the 352.8 B smoe loads and the 358.3 B with the MTP layer; ERNIE's "21B" is 21.8 B
truncated), so a count passes when it is within 4% of the stated figure; the
printed table shows how close each one is."""

import json
import os

import pytest

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "scale")
TOLERANCE = 0.04

# file: (stated total, stated active, what the stated active count includes beyond the layers:
# "both" the embedding and the output head, "head" the output head only, "none"), in billions.
# DeepSeek and Moonshot count both, OpenAI the head (its model card: 3.61 B and 5.13 B), Z.ai,
# MiniMax and Baidu neither.
STATED = {
    "deepseek-v3-config.json": (671, 37, "both"),
    "kimi-k2-config.json": (1040, 32, "both"),
    "glm-4.6-config.json": (355, 32, "none"),
    "glm-4.5-air-config.json": (106, 12, "none"),
    "minimax-m2-config.json": (230, 10, "none"),
    "ernie-4.5-21b-a3b-config.json": (21, 3, "none"),
    "ernie-4.5-300b-a47b-config.json": (300, 47, "none"),
    "gpt-oss-20b-config.json": (21, 3.6, "head"),
    "gpt-oss-120b-config.json": (117, 5.1, "head"),
}


@pytest.fixture(scope="module", params=sorted(STATED))
def counts(request, smoe_run):
    name = request.param
    plan = json.loads(smoe_run("plan-resources", "--model", os.path.join(DOCS, name), "--json").stdout)
    p = plan["parameters"]
    # Active per token: the routed, shared and attention weights a token passes through, and (as
    # some publishers count it) the embedding and output head.
    stated_total, stated_active, beyond = STATED[name]
    extra = {"both": p["embed"] + p["lm_head"], "head": p["lm_head"], "none": 0}[beyond]
    active = (p["active_per_token"] + extra) / 1e9
    total = p["total"] / 1e9
    print(f"\n{name:34s} total {total:8.2f} B (stated {stated_total}, MTP {p['mtp'] / 1e9:.2f} B more), "
          f"active {active:6.2f} B (stated {stated_active})")
    return dict(name=name, total=total, active=active, stated_total=stated_total, stated_active=stated_active)


def test_every_published_config_is_checked():
    supported = [f for f in os.listdir(DOCS) if f.endswith("-config.json")]
    assert sorted(supported) == sorted(STATED)


def test_total_parameters_are_the_stated_ones(counts):
    assert abs(counts["total"] - counts["stated_total"]) <= TOLERANCE * counts["stated_total"]


def test_active_parameters_are_the_stated_ones(counts):
    assert abs(counts["active"] - counts["stated_active"]) <= TOLERANCE * counts["stated_active"]


def test_gpt_oss_20b_counts_and_bytes_are_the_published_checkpoints(smoe_run):
    """The Hub's gpt-oss-20b: 20,914,757,184 parameters (its safetensors metadata) in
    13,761,264,768 bytes (model.safetensors.index.json's total_size): docs/scale/SOURCES.md and
    docs/research/gpt-oss.md."""
    plan = json.loads(smoe_run("plan-resources", "--model", os.path.join(DOCS, "gpt-oss-20b-config.json"),
                               "--json").stdout)
    assert (plan["parameters"]["total"], plan["checkpoint_bytes"]) == (20914757184, 13761264768)
