"""The frozen models' output cache (cfer.continual.output_cache) and its use by the distillation plugin."""

import logging

import pytest
import torch
from torch import nn

from cfer.continual.factory import make_strategy
from cfer.continual.growing import build_model
from cfer.continual.output_cache import OutputCache
from cfer.continual.plugins import BasicDistillationPlugin
from cfer.continual.runner import run_stream
from cfer.models.features import FeatureTap


class Counting(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body, self.fc = nn.Sequential(nn.Linear(6, 5), nn.ReLU()), nn.Linear(5, 3)
        self.rows = 0

    def forward(self, x):
        self.rows += len(x)
        return self.fc(self.body(x))


def test_outputs_equal_the_model_s_and_each_row_is_computed_once():
    model = Counting().eval()
    tap = FeatureTap(model, layer="fc")
    cache = OutputCache(model, tap=tap)
    x = torch.randn(10, 6)
    with torch.no_grad():
        want_logits, want_feats = model(x), model.body(x)
    model.rows = 0
    for idx in ([0, 1, 2, 3], [2, 3, 4, 5, 5], [9, 8, 0, 7, 6], list(range(10))):
        logits, feats = cache(x[idx])
        assert torch.allclose(logits, want_logits[idx], atol=1e-6) and torch.allclose(feats, want_feats[idx], atol=1e-6)
        assert not logits.requires_grad
    assert model.rows == 11  # 10 rows, one of them (5) twice in the batch that first saw it
    assert (cache.hits, cache.misses, cache.forwards, len(cache)) == (13, 11, 3, 10)
    other = x.clone()
    other[0, 0] += 1e-3  # another input, however close: computed, not served
    assert not torch.allclose(cache(other[:1])[0], want_logits[:1])


def test_inputs_that_never_repeat_switch_it_off_and_max_items_bounds_it(caplog):
    model = Counting().eval()
    cache = OutputCache(model)
    with caplog.at_level(logging.INFO, logger="cfer.continual.output_cache"):
        for _ in range(2):  # two "epochs" of augmented inputs
            for _ in range(3):
                cache(torch.randn(4, 6))
            cache.end_epoch()
    assert not cache.active and len(cache) == 0 and "output cache off for this step" in caplog.text
    x = torch.randn(4, 6)
    assert torch.allclose(cache(x)[0], model(x)) and len(cache) == 0  # off: the model every time
    cache.clear()
    assert cache.active
    small = OutputCache(model, max_items=3)
    x = torch.randn(5, 6)
    first = small(x)[0]
    assert len(small) == 3 and torch.allclose(small(x)[0], first)  # rows past the cap are computed, not stored
    with pytest.raises(ValueError, match="max_items"):
        OutputCache(model, max_items=-1)


def _trained(stream, cache: bool) -> tuple[nn.Module, BasicDistillationPlugin]:
    model = build_model(arch="cfer_tiny", num_classes=stream.n_basic, img_size=24, seed=0)
    plugin = BasicDistillationPlugin(feature_weight=1.0, previous_weight=1.0, cache_outputs=cache)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    strategy = make_strategy("naive", model=model, optimizer=opt, train_epochs=3, train_mb_size=16, plugins=[plugin])
    run_stream(strategy, stream)
    return model, plugin


def test_the_cache_changes_the_cost_not_the_training(tiny_stream):
    """Three epochs a step: the cached run trains the same student with
    the teacher and the previous student run on the first epoch's inputs only."""
    cached, plugin = _trained(tiny_stream, True)
    plain, _ = _trained(tiny_stream, False)
    for (name, a), b in zip(cached.state_dict().items(), plain.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name
    stats = plugin.cache_stats  # the last step's
    assert stats["teacher"]["active"] and stats["teacher"]["hits"] == 2 * stats["teacher"]["misses"]
    assert stats["previous"]["hits"] == 2 * stats["previous"]["misses"] > 0


def test_mirror_images_keep_the_cache_on_and_serve_about_half_the_lookups(tiny_stream):
    """With each face mirrored at random the teacher sees every face in two forms: the cache keeps
    both, so over four epochs about half the lookups are served, and it stays on for the whole step."""
    from cfer.continual.plugins.mirror_augment import MirrorAugmentPlugin

    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    plugin = BasicDistillationPlugin(feature_weight=1.0, cache_outputs=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.manual_seed(0)
    strategy = make_strategy("naive", model=model, optimizer=opt, train_epochs=4, train_mb_size=16,
                             plugins=[MirrorAugmentPlugin(seed=0), plugin])
    run_stream(strategy, tiny_stream)
    stats = plugin.cache_stats["teacher"]  # the last step's
    lookups = stats["hits"] + stats["misses"]
    assert stats["active"]
    assert stats["misses"] < 0.55 * lookups  # at most two forms a face over 4 epochs: about 47%
    assert stats["misses"] > 0.3 * lookups  # and the mirrored forms were new inputs (more than 1 in 4)


def test_a_second_epoch_that_sees_under_half_its_faces_again_keeps_the_cache_on():
    """Mirror images at random: the second epoch meets a face in the form the first saw with
    probability 0.5, and by chance less often (here 2 of 5); the cache must not give up then."""
    model = Counting().eval()
    cache = OutputCache(model)
    x = torch.randn(5, 6)
    mirrored = x.flip(-1)
    cache(x)
    cache.end_epoch()
    cache(torch.cat([x[:2], mirrored[2:]]))
    cache.end_epoch()
    assert cache.active and len(cache) == 8
    rows = model.rows
    cache(torch.cat([mirrored[:2], x[2:]]))  # third epoch: every form seen before
    assert model.rows == rows + 2  # only the two forms never seen: mirrored[0], mirrored[1]
