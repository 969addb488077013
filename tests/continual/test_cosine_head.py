"""The cosine-normalised growing head: its logits, its growth, the preset that uses it, saving and loading."""

from types import SimpleNamespace

import pytest
import torch

from cfer.continual.cosine_head import (
    INITIAL_SCALE,
    CosineIncrementalClassifier,
    CosineLinear,
    has_cosine_head,
    use_cosine_head,
)
from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import GrowingEnsemble, build_model, load_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.runner import run_stream
from cfer.models.io import save_model


def test_logits_are_the_scale_times_the_cosine_whatever_the_norms():
    head = CosineLinear(4, 3)
    x = torch.randn(5, 4)
    cos = torch.nn.functional.cosine_similarity(x[:, None, :], head.weight[None], dim=-1)
    assert torch.allclose(head(x), INITIAL_SCALE * cos, atol=1e-5)
    with torch.no_grad():
        head.weight[1] *= 100.0  # a class with a large weight norm gains nothing from it
    assert torch.allclose(head(10 * x), INITIAL_SCALE * cos, atol=1e-5)
    # the bias is a zero buffer: in the state dict (as a linear head's), never trained
    assert "bias" in dict(head.named_buffers()) and "bias" not in dict(head.named_parameters())
    assert set(dict(head.named_parameters())) == {"weight", "scale"}
    with pytest.raises(ValueError, match="scale must be > 0"):
        CosineLinear(4, 3, scale=0.0)


def test_a_model_keeps_its_class_weights_and_grows_as_a_cosine_head():
    model = build_model(arch="cfer_tiny", num_classes=3, img_size=24, seed=0)
    before = model.head.classifier.weight.detach().clone()
    assert use_cosine_head(model) is model
    head = model.head
    assert isinstance(head, CosineIncrementalClassifier) and isinstance(head.classifier, CosineLinear)
    assert torch.equal(head.classifier.weight, before)
    use_cosine_head(model)  # a second call changes nothing
    assert torch.equal(head.classifier.weight, before)
    with torch.no_grad():
        head.classifier.scale.fill_(7.0)
    model.grow(5)  # by hand, as a checkpointed student grows back
    assert isinstance(head.classifier, CosineLinear) and head.classifier.out_features == 5
    assert torch.equal(head.classifier.weight[:3], before) and float(head.classifier.scale) == 7.0
    head.train()
    head.adaptation(SimpleNamespace(classes_in_this_experience=[5, 6]))  # as an Avalanche strategy grows it
    assert isinstance(head.classifier, CosineLinear) and head.classifier.out_features == 7
    assert torch.equal(head.classifier.weight[:3], before) and float(head.classifier.scale) == 7.0
    assert head.active_units.tolist() == [1, 1, 1, 1, 1, 1, 1]
    out = model(torch.rand(2, 3, 24, 24))
    assert out.shape == (2, 7) and out.abs().max() <= 7.0 + 1e-4


def test_every_member_head_of_an_ensemble_becomes_cosine_and_a_plain_model_is_refused():
    ens = GrowingEnsemble(members=["cfer_tiny", "cfer_tiny"], img_sizes=[None, 24], initial_classes=4)
    use_cosine_head(ens)
    assert all(isinstance(m.head.classifier, CosineLinear) for m in ens.members)
    assert ens(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(TypeError, match="no growing head"):
        use_cosine_head(torch.nn.Linear(3, 2))


def test_the_cfer_strategy_trains_a_cosine_head_when_asked_and_the_presets_keep_the_linear_one(tiny_stream):
    names = len(tiny_stream.class_names)
    assert CferConfig().head == "linear"
    for name, cfer, cosine in (("cfer", CferConfig(head="cosine"), True), ("published", CferConfig(), False),
                               ("cfer", CferConfig(), False)):
        model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
        strategy = make_strategy(name, model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                                 train_epochs=1, train_mb_size=16, memory_size=30, total_classes=names,
                                 plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=1)], cfer=cfer)
        scale = float(model.head.classifier.scale) if cosine else None
        run_stream(strategy, tiny_stream)
        assert isinstance(model.head.classifier, CosineLinear) is cosine
        assert model.num_classes == names
        if cosine:
            assert float(model.head.classifier.scale) != scale  # the scale is learnt
    with pytest.raises(ValueError, match="head must be 'linear' or 'cosine'"):
        CferConfig(head="cos")
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 24 * 24, 6))
    with pytest.raises(ValueError, match=r"no growing head.*CferConfig\(head='linear'\)"):
        make_strategy("cfer", model=plain, optimizer=torch.optim.Adam(plain.parameters()), total_classes=names,
                      cfer=CferConfig(head="cosine"))


def test_a_saved_cosine_student_loads_back_and_predicts_the_same(tmp_path):
    model = use_cosine_head(build_model(arch="cfer_tiny", num_classes=4, img_size=24, seed=0)).eval()
    with torch.no_grad():
        model.head.classifier.scale.fill_(9.5)
    assert has_cosine_head(model.state_dict()) and not has_cosine_head(build_model(
        arch="cfer_tiny", num_classes=4, img_size=24).state_dict())
    path = save_model(model, tmp_path / "student.pt", arch="cfer_tiny", classes=("happy", "sad", "awed", "hatred"))
    again, classes = load_model(path, img_size=24)
    assert isinstance(again.head.classifier, CosineLinear) and float(again.head.classifier.scale) == 9.5
    x = torch.rand(3, 3, 24, 24)
    assert torch.allclose(again(x), model(x)) and classes == ("happy", "sad", "awed", "hatred")
