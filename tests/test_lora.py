import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gptclf.errors import GptclfError
from gptclf.lora import LoRALinear, apply_lora, lora_parameters, merge_lora
from gptclf.models import GPTConfig, GPTModel, LlamaConfig, LlamaModel

VOCAB = 50
N_LAYERS = 3


def tiny_model(family: str) -> nn.Module:
    """The same random tiny model every call."""
    torch.manual_seed(0)
    if family == "gpt2":
        cfg = GPTConfig(
            vocab_size=VOCAB, context_length=16, emb_dim=32, n_heads=4, n_layers=N_LAYERS
        )
        return GPTModel(cfg).eval()
    cfg = LlamaConfig(
        vocab_size=VOCAB,
        context_length=16,
        emb_dim=48,
        hidden_dim=64,
        n_heads=6,
        n_kv_groups=2,
        n_layers=N_LAYERS,
    )
    return LlamaModel(cfg).eval()


@pytest.fixture(params=["gpt2", "llama"])
def family(request) -> str:
    return request.param


def token_ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(seed))


def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


def randomize_lora(model: nn.Module, seed: int = 2) -> None:
    """Give every adapter a non-zero update, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in lora_parameters(model):
            param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def test_fresh_lora_leaves_the_logits_unchanged(family):
    model, ids = tiny_model(family), token_ids()
    before = logits_of(model, ids)
    apply_lora(model, rank=4, alpha=8, targets=("all",))
    assert torch.equal(logits_of(model, ids), before)


def test_training_only_lora_changes_the_output_but_not_a_single_base_weight(family):
    model, ids = tiny_model(family), token_ids()
    model.requires_grad_(False)
    apply_lora(model, rank=4, alpha=8, targets=("all",))
    base_weights = {k: v.clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    before = logits_of(model, ids)
    optimizer = torch.optim.AdamW([p for _, p in lora_parameters(model)], lr=1e-2)
    for _ in range(3):
        loss = F.cross_entropy(model(ids).flatten(0, 1), token_ids(seed=3).flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after_state = model.state_dict()
    assert all(torch.equal(after_state[k], v) for k, v in base_weights.items())
    assert not torch.allclose(logits_of(model, ids), before)


def test_merged_model_gives_the_same_logits_with_plain_linear_layers_only(family):
    model, ids = tiny_model(family), token_ids()
    apply_lora(model, rank=4, alpha=8, targets=("all",))
    randomize_lora(model)
    unmerged = logits_of(model, ids)
    merged_count = merge_lora(model)
    assert merged_count == (6 if family == "gpt2" else 7) * N_LAYERS
    assert not lora_layers(model)
    # rtol covers float32 rounding of the tied Llama head's large (~50) logits.
    torch.testing.assert_close(logits_of(model, ids), unmerged, atol=1e-5, rtol=1.3e-6)
    assert model.state_dict().keys() == tiny_model(family).state_dict().keys()


def test_last_block_range_touches_only_the_last_block(family):
    model = tiny_model(family)
    names = apply_lora(model, rank=2, alpha=4, targets=("all",), blocks=range(-1, 0))
    assert names and all(name.startswith("trf_blocks.2.") for name in names)
    assert set(lora_layers(model)) == set(names)


def test_negative_and_repeated_block_indices_name_each_block_once():
    names = apply_lora(tiny_model("gpt2"), rank=2, alpha=4, blocks=[0, -3, 2])
    assert names == [
        "trf_blocks.0.att.W_query",
        "trf_blocks.0.att.W_value",
        "trf_blocks.2.att.W_query",
        "trf_blocks.2.att.W_value",
    ]


@pytest.mark.parametrize(
    ("family", "target", "suffixes"),
    [
        ("gpt2", "qv", {"att.W_query", "att.W_value"}),
        ("llama", "qv", {"att.W_query", "att.W_value"}),
        ("gpt2", "attention", {"att.W_query", "att.W_key", "att.W_value", "att.out_proj"}),
        ("gpt2", "mlp", {"ff.layers.0", "ff.layers.2"}),
        ("llama", "mlp", {"ff.fc1", "ff.fc2", "ff.fc3"}),
        (
            "llama",
            "all",
            {"att.W_query", "att.W_key", "att.W_value", "att.out_proj"}
            | {"ff.fc1", "ff.fc2", "ff.fc3"},
        ),
        ("gpt2", "W_key", {"att.W_key"}),
        ("llama", "ff.fc3", {"ff.fc3"}),
    ],
)
def test_targets_resolve_per_family(family, target, suffixes):
    names = apply_lora(tiny_model(family), rank=2, alpha=4, targets=(target,), blocks=[0])
    assert names == sorted(f"trf_blocks.0.{suffix}" for suffix in suffixes)


def test_default_target_is_query_and_value_in_every_block():
    names = apply_lora(tiny_model("llama"), rank=2, alpha=4)
    assert len(names) == 2 * N_LAYERS
    assert all(name.endswith(("att.W_query", "att.W_value")) for name in names)


def test_unknown_target_raises_listing_the_friendly_names_and_changes_nothing():
    model = tiny_model("gpt2")
    with pytest.raises(GptclfError, match="qv, attention, mlp, all"):
        apply_lora(model, rank=2, alpha=4, targets=("qv", "attn"))
    assert not lora_layers(model)


def test_target_matching_nothing_in_this_family_raises():
    with pytest.raises(GptclfError, match=r"ff\.fc1"):
        apply_lora(tiny_model("gpt2"), rank=2, alpha=4, targets=("ff.fc1",))


@pytest.mark.parametrize(
    "settings",
    [
        dict(rank=0, alpha=4),
        dict(rank=2, alpha=0),
        dict(rank=2, alpha=-1),
        dict(rank=2, alpha=4, dropout=1.0),
        dict(rank=2, alpha=4, blocks=[3]),
        dict(rank=2, alpha=4, blocks=[-4]),
    ],
)
def test_bad_settings_raise_gptclf_error(settings):
    with pytest.raises(GptclfError):
        apply_lora(tiny_model("gpt2"), **settings)


def test_trainable_parameter_count_is_rank_times_in_plus_out_per_wrapped_layer(family):
    model, rank = tiny_model(family), 4
    model.requires_grad_(False)
    shapes = {}
    for name in apply_lora(model, rank=rank, alpha=8, targets=("all",)):
        base = model.get_submodule(name).base
        shapes[name] = (base.in_features, base.out_features)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(rank * (n_in + n_out) for n_in, n_out in shapes.values())


def test_apply_lora_freezes_only_the_wrapped_base_layers():
    model = tiny_model("gpt2")
    apply_lora(model, rank=2, alpha=4)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        f"trf_blocks.{i}.att.{layer}.base.{p}"
        for i in range(N_LAYERS)
        for layer in ("W_query", "W_value")
        for p in ("weight", "bias")
    }


def test_parameter_names_are_readable_state_dict_keys():
    model = tiny_model("gpt2")
    apply_lora(model, rank=2, alpha=4, blocks=[2])
    keys = set(model.state_dict())
    assert {"trf_blocks.2.att.W_query.lora_A", "trf_blocks.2.att.W_query.lora_B"} <= keys
    assert "trf_blocks.2.att.W_query.base.weight" in keys
    assert [name for name, _ in lora_parameters(model)] == [
        "trf_blocks.2.att.W_query.lora_A",
        "trf_blocks.2.att.W_query.lora_B",
        "trf_blocks.2.att.W_value.lora_A",
        "trf_blocks.2.att.W_value.lora_B",
    ]


def test_init_is_deterministic_under_manual_seed(family):
    def adapted(seed: int) -> dict[str, torch.Tensor]:
        model = tiny_model(family)
        torch.manual_seed(seed)
        apply_lora(model, rank=4, alpha=8, targets=("all",))
        return {name: p.detach() for name, p in lora_parameters(model)}

    first, again, other = adapted(5), adapted(5), adapted(6)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_lora_a_is_initialised_like_a_linear_weight_and_b_is_zero():
    base = nn.Linear(32, 24)
    torch.manual_seed(9)
    layer = LoRALinear(base, rank=4, alpha=8)
    torch.manual_seed(9)
    reference = nn.Linear(32, 4)
    assert torch.equal(layer.lora_A, reference.weight)
    assert torch.equal(layer.lora_B, torch.zeros(24, 4))
    assert layer.scaling == 2.0


def test_state_dict_round_trip_of_only_the_lora_tensors_reproduces_the_outputs(family):
    trained, ids = tiny_model(family), token_ids()
    apply_lora(trained, rank=4, alpha=8, targets=("all",))
    randomize_lora(trained)
    adapter = {name: p.detach().clone() for name, p in lora_parameters(trained)}

    fresh = tiny_model(family)
    torch.manual_seed(123)
    apply_lora(fresh, rank=4, alpha=8, targets=("all",))
    result = fresh.load_state_dict(adapter, strict=False)
    assert not result.unexpected_keys
    assert not any(".lora_" in key for key in result.missing_keys)
    assert torch.equal(logits_of(fresh, ids), logits_of(trained, ids))


def test_lora_works_under_bfloat16_autocast(family):
    model, ids = tiny_model(family), token_ids()
    model.requires_grad_(False)
    apply_lora(model, rank=4, alpha=8, targets=("all",))
    randomize_lora(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(logits).all()
    logits.float().sum().backward()
    for _, param in lora_parameters(model):
        assert param.grad.dtype == torch.float32
        assert torch.isfinite(param.grad).all()


def test_lora_linear_takes_float32_inputs_in_and_out_of_autocast():
    layer = LoRALinear(nn.Linear(8, 6), rank=2, alpha=4)
    x = torch.randn(3, 8)
    assert layer(x).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16


def test_lora_dropout_acts_only_in_training_mode():
    layer = LoRALinear(nn.Linear(8, 6), rank=2, alpha=4, dropout=0.5)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 8)
    expected = layer.base(x) + x @ layer.lora_A.T @ layer.lora_B.T * layer.scaling
    torch.testing.assert_close(layer.eval()(x), expected)
    torch.manual_seed(0)
    assert not torch.allclose(layer.train()(x), expected)
