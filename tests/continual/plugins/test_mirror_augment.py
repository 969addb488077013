"""Mirror images in the training mini-batches: what the student sees, and what it leaves alone."""

from types import SimpleNamespace

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cfer.continual.factory import CferConfig, make_strategy
from cfer.continual.growing import build_model
from cfer.continual.plugins.epochs import BasicEpochsPlugin
from cfer.continual.plugins.mirror_augment import MirrorAugmentPlugin
from cfer.continual.runner import run_stream


def _batch(n=64):
    x = torch.rand(n, 1, 4, 5)
    return SimpleNamespace(mbatch=[x.clone(), torch.zeros(n), torch.zeros(n)], is_training=True), x


def test_a_share_p_of_the_faces_is_mirrored_and_the_global_stream_is_untouched():
    s, x = _batch()
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    MirrorAugmentPlugin(p=0.5, seed=3).before_forward(s)
    assert torch.rand(1) == expected_next  # the plugin drew from its own generator
    out = s.mbatch[0]
    flipped = [bool(torch.equal(out[i], x[i].flip(-1))) for i in range(len(x))]
    kept = [bool(torch.equal(out[i], x[i])) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 <= sum(flipped) <= 48  # about half of 64
    s1, x1 = _batch()
    MirrorAugmentPlugin(p=1.0).before_forward(s1)
    assert torch.equal(s1.mbatch[0], x1.flip(-1))
    s0, x0 = _batch()
    MirrorAugmentPlugin(p=0.0).before_forward(s0)
    assert torch.equal(s0.mbatch[0], x0)


def test_the_same_seed_gives_the_same_flips_and_evaluation_is_left_alone():
    a, _ = _batch()
    b = SimpleNamespace(mbatch=[a.mbatch[0].clone(), *a.mbatch[1:]], is_training=True)
    MirrorAugmentPlugin(seed=5).before_forward(a)
    MirrorAugmentPlugin(seed=5).before_forward(b)
    assert torch.equal(a.mbatch[0], b.mbatch[0])
    e, x = _batch()
    e.is_training = False
    MirrorAugmentPlugin(p=1.0).before_forward(e)
    assert torch.equal(e.mbatch[0], x)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MirrorAugmentPlugin(p=1.5)


def test_processes_of_a_ddp_job_flip_independently_with_generators_in_step(monkeypatch):
    """Each of 2 processes takes its share of one global draw (not the same draw as the
    other): their masks differ, together they are the global batch's draw, and the
    generators stay equal (rank 0's state is the one a checkpoint keeps)."""
    import cfer.continual.plugins.mirror_augment as mod

    x = torch.rand(32, 1, 4, 5)
    monkeypatch.setattr(mod, "world_size", lambda: 2)
    plugins, masks = [], []
    for r in (0, 1):
        monkeypatch.setattr(mod, "rank", lambda r=r: r)
        s = SimpleNamespace(mbatch=[x.clone(), torch.zeros(32), torch.zeros(32)], is_training=True)
        plugin = MirrorAugmentPlugin(p=0.5, seed=4)
        plugin.before_forward(s)
        plugins.append(plugin)
        masks.append(torch.tensor([bool(torch.equal(s.mbatch[0][i], x[i].flip(-1))) for i in range(32)]))
    assert not torch.equal(masks[0], masks[1])
    expected = torch.rand(64, generator=torch.Generator().manual_seed(4)) < 0.5
    assert torch.equal(torch.cat(masks), expected)
    assert torch.equal(plugins[0].generator.get_state(), plugins[1].generator.get_state())


def test_inputs_that_are_not_face_images_are_left_alone():
    packed = torch.rand(4, 3, 10)  # e.g. clips: frames, voice and landmarks in one tensor a clip
    s = SimpleNamespace(mbatch=[packed.clone(), torch.zeros(4), torch.zeros(4)], is_training=True)
    plugin = MirrorAugmentPlugin(p=1.0)
    state = plugin.state_dict()["generator"].clone()
    plugin.before_forward(s)
    assert torch.equal(s.mbatch[0], packed) and torch.equal(plugin.state_dict()["generator"], state)


def test_a_restored_state_draws_the_flips_the_plugin_would_have_drawn_next():
    plugin = MirrorAugmentPlugin(seed=2)
    plugin.before_forward(_batch()[0])  # some flips drawn: the state has moved
    saved = plugin.state_dict()
    first, x = _batch()
    plugin.before_forward(first)
    resumed = MirrorAugmentPlugin(seed=99)
    resumed.load_state_dict(saved)
    second = SimpleNamespace(mbatch=[x.clone(), *first.mbatch[1:]], is_training=True)
    resumed.before_forward(second)
    assert torch.equal(first.mbatch[0], second.mbatch[0])
    fresh = SimpleNamespace(mbatch=[x.clone(), *first.mbatch[1:]], is_training=True)
    MirrorAugmentPlugin(seed=99).before_forward(fresh)
    assert not torch.equal(fresh.mbatch[0], first.mbatch[0])  # without the state the flips differ


class _Seen(SupervisedPlugin):
    """The inputs of every training forward and of every evaluation forward."""

    def __init__(self):
        super().__init__()
        self.train, self.eval = [], []

    def after_forward(self, strategy, **kwargs):
        self.train.append(strategy.mb_x.detach().clone())

    def after_eval_forward(self, strategy, **kwargs):
        self.eval.append(strategy.mb_x.detach().clone())


def test_in_a_run_the_student_trains_on_mirror_images_and_is_scored_on_the_faces(tiny_stream):
    model = build_model(arch="cfer_tiny", num_classes=tiny_stream.n_basic, img_size=24, seed=0)
    seen = _Seen()
    strategy = make_strategy("cfer", model=model, optimizer=torch.optim.Adam(model.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=32, memory_size=30,
                             total_classes=len(tiny_stream.class_names),
                             plugins=[BasicEpochsPlugin(basic_epochs=1, later_epochs=1),
                                      MirrorAugmentPlugin(p=1.0), seen],
                             cfer=CferConfig(mirror_training=False, shift_training=0))
    run_stream(strategy, tiny_stream)
    def images(stream):
        return torch.cat([torch.stack([exp.dataset[i][0] for i in range(len(exp.dataset))]) for exp in stream])

    def matched(rows, pool):  # per row: is it one of the pool's images?
        d = torch.cdist(rows.flatten(1), pool.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
        return d.min(1).values < 1e-4

    stored = images(tiny_stream.train_stream)
    assert not bool(matched(stored, stored.flip(-1)).any())  # no face is its own mirror image
    trained = torch.cat(seen.train)
    assert bool(matched(trained, stored.flip(-1)).all()) and not bool(matched(trained, stored).any())
    scored, test = torch.cat(seen.eval), images(tiny_stream.test_stream)
    assert bool(matched(scored, test).all())  # evaluation sees the faces as they are
