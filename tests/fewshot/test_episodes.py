import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from cfer.fewshot.episodes import (
    EpisodeConfig,
    confidence_interval,
    evaluate_embeddings,
    sample_episodes,
)

LABELS = np.repeat(np.arange(8), 12)
NAMES = [f"c{i}" for i in range(8)]


def test_ci_formula():
    a = [0.2, 0.4, 0.6, 0.8, 1.0]
    assert confidence_interval(a) == pytest.approx(1.96 * np.std(a, ddof=1) / np.sqrt(5))
    assert confidence_interval([0.5]) == 0.0


def test_episode_composition():
    cfg = EpisodeConfig(ways=5, shots=3, queries=4, episodes=40, seed=1)
    for support, query, classes in sample_episodes(labels=LABELS, config=cfg):
        assert len(set(classes.tolist())) == 5
        assert len(support) == 15 and len(query) == 20
        assert not set(support) & set(query)
        for j, c in enumerate(classes):
            assert (LABELS[support[j * 3:(j + 1) * 3]] == c).all()
            assert (LABELS[query[j * 4:(j + 1) * 4]] == c).all()


def test_same_seed_same_episodes_and_global_random_untouched():
    cfg = EpisodeConfig(ways=4, shots=1, queries=2, episodes=10, seed=7)
    random.seed(123)
    before = random.getstate()
    a = sample_episodes(labels=LABELS, config=cfg)
    assert random.getstate() == before
    random.random()  # a caller using the global RNG must not change the episodes
    b = sample_episodes(labels=LABELS, config=cfg)
    for (s1, q1, c1), (s2, q2, c2) in zip(a, b):
        assert (s1 == s2).all() and (q1 == q2).all() and (c1 == c2).all()
    c = sample_episodes(labels=LABELS, config=EpisodeConfig(ways=4, shots=1, queries=2, episodes=10, seed=8))
    assert any((x[0] != y[0]).any() for x, y in zip(a, c))


def test_prototype_classifiers_are_right_on_separable_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16)) * 10
    feats = torch.as_tensor(centres[LABELS] + rng.normal(size=(len(LABELS), 16)), dtype=torch.float32)
    for clf in ("prototype", "cosine", "logistic"):
        res = evaluate_embeddings(features=feats, labels=LABELS, class_names=NAMES,
                                  config=EpisodeConfig(ways=5, shots=1, queries=5, episodes=30, classifier=clf))
        assert res.accuracy > 0.97, clf
        assert set(res.per_class) <= set(NAMES) and len(res.per_class) >= 5
    d = json.loads(res.to_json())
    assert d["episodes"] == 30 and d["config"]["classifier"] == "logistic" and "episode_accuracies" not in d


def test_uninformative_embeddings_score_chance():
    feats = torch.zeros(len(LABELS), 4)  # a constant encoder
    res = evaluate_embeddings(features=feats, labels=LABELS, class_names=NAMES,
                              config=EpisodeConfig(ways=5, shots=5, queries=5, episodes=200))
    assert res.accuracy == pytest.approx(1 / 5)
    assert res.ci95 == 0.0


def test_too_few_items_names_the_class_and_counts():
    labels = np.concatenate([LABELS, [8, 8]])
    with pytest.raises(ValueError, match=r"shots \+ queries = 1 \+ 15 = 16 items; 'c0' has 12.*'x' has 2"):
        sample_episodes(labels=labels, config=EpisodeConfig(shots=1, queries=15), class_names=NAMES + ["x"])
    with pytest.raises(ValueError, match="10-way episodes need 10 classes, the pool has 8"):
        sample_episodes(labels=LABELS, config=EpisodeConfig(ways=10, shots=1, queries=2))
    with pytest.raises(ValueError, match="unknown classifier 'svm'"):
        EpisodeConfig(classifier="svm")


class _AlwaysLast(nn.Module):
    """A 'model' that answers the last unit whatever the input."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(len(x), self.n)
        out[:, -1] = 1.0
        return out + 0 * self.bias


def test_validating_on_the_new_class_only_rewards_a_constant_predictor():
    # The published flaw: after adding one class, validation used that class's images only.
    new_only_targets = np.full(50, 6)            # every validation item is the new class (unit 6)
    constant = _AlwaysLast(7)
    pred = constant(torch.zeros(50, 1)).argmax(1).numpy()
    assert (pred == new_only_targets).mean() == 1.0   # "100% one-shot"
    # Honest alternative: N-way episodes with queries from every class. A constant encoder
    # cannot tell the classes apart and scores chance.
    feats = torch.zeros(len(LABELS), 3)
    res = evaluate_embeddings(features=feats, labels=LABELS, class_names=NAMES,
                              config=EpisodeConfig(ways=5, shots=1, queries=5, episodes=100))
    assert res.accuracy == pytest.approx(0.2)


def test_finetune_classifier_and_one_new_class_protocol():
    from cfer.continual.teacher import TeacherConfig, train_teacher
    from cfer.data.synthetic import make_synthetic_splits
    from cfer.fewshot.episodes import evaluate_model
    from cfer.fewshot.protocols import one_new_class_protocol

    sp = make_synthetic_splits(classes=["happy", "sad", "surprised", "angry", "disgusted", "fearful", "awed",
                                        "hatred", "appalled", "sadly_angry", "happily_surprised"],
                               subjects=(3, 1, 2), per_class=3, image_size=24, seed=2)
    basic = ("happy", "sad", "fearful", "angry", "surprised", "disgusted")
    res = train_teacher(train=sp["train"], val=sp["val"], config=TeacherConfig(arch="cfer_tiny", max_epochs=1),
                        classes=basic)
    before = {k: v.clone() for k, v in res.model.state_dict().items()}
    ft = evaluate_model(res.model, sp["test"], config=EpisodeConfig(ways=5, shots=1, queries=2, episodes=3,
                                                                   classifier="finetune", finetune_steps=2))
    assert ft.episodes == 3 and 0 <= ft.accuracy <= 1
    assert set(ft.per_class) <= {"awed", "hatred", "appalled", "sadly_angry", "happily_surprised"}
    one = one_new_class_protocol(res.model, support=sp["train"], queries=sp["test"], basic_classes=basic,
                                 new_class="awed", shots=1, steps=5)
    assert one.new_only_validation == one.new_class_accuracy
    assert one.balanced_accuracy == pytest.approx((one.new_class_accuracy + one.basic_accuracy) / 2)
    # The caller's model is never modified.
    assert all(torch.equal(v, res.model.state_dict()[k]) for k, v in before.items())
    assert res.model.num_classes == 6
    with pytest.raises(ValueError, match="'happily_surprised' has 9 training images; 50 shots need 50"):
        one_new_class_protocol(res.model, support=sp["train"], queries=sp["test"],
                               basic_classes=basic, new_class="happily_surprised", shots=50)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_embed_and_finetune_take_an_encoder_on_the_gpu():
    """Images on the CPU, encoder on the GPU: the features and the fine-tuned episodes are the CPU's."""
    from cfer.fewshot.episodes import embed, finetune_episodes

    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(8, 6))[LABELS] * 10 + rng.normal(size=(len(LABELS), 6)), dtype=torch.float32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))
    config = EpisodeConfig(ways=4, shots=2, queries=3, episodes=4, classifier="finetune", finetune_steps=3, seed=1)
    feats = embed(net, x, batch_size=32)
    torch.manual_seed(1)
    want = finetune_episodes(net, x, LABELS, config=config)
    net.to("cuda")
    on_gpu = embed(net, x, batch_size=32)
    assert on_gpu.device == next(net.parameters()).device
    torch.testing.assert_close(on_gpu.cpu(), feats)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(1)
    got = finetune_episodes(net, x, LABELS, config=config)
    # the same episodes; the GPU rounds otherwise, so an accuracy may move by a query or two
    assert len(got.episode_accuracies) == len(want.episode_accuracies) == 4
    assert np.allclose(got.episode_accuracies, want.episode_accuracies, atol=2 / 12)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the caller's model is untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_new_class_protocol_takes_a_model_on_the_gpu(monkeypatch):
    from cfer.continual.growing import build_model
    from cfer.data.synthetic import make_synthetic_splits
    from cfer.fewshot.protocols import one_new_class_protocol

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the CPU's float32 convolutions
    basic = ("happy", "sad", "surprised")
    sp = make_synthetic_splits(classes=[*basic, "awed"], subjects=(3, 1, 2), per_class=3, image_size=24, seed=2)
    model = build_model(arch="cfer_tiny", num_classes=len(basic), in_chans=sp["train"].channels, img_size=24)
    for m in model.modules():  # dropout would draw from the CPU's or the GPU's generator
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    run = dict(support=sp["train"], queries=sp["test"], basic_classes=basic, new_class="awed", shots=2, steps=3)
    want = one_new_class_protocol(model, **run).to_dict()
    model.to("cuda")
    got = one_new_class_protocol(model, **run).to_dict()
    assert got.keys() == want.keys()  # the GPU rounds otherwise: the figures agree to a few queries
    assert all(abs(got[k] - want[k]) <= 0.15 for k in want if isinstance(want[k], float))
    assert next(model.parameters()).device.type == "cuda" and model.num_classes == len(basic)
