"""Few-shot evaluation beyond cfer's own objects: positional arrays, any labels, any
labelled torch dataset, any model through ``embed_fn``, learn2learn's MetaDataset and
TaskDataset, and clear errors for classes the pool lacks."""

import numpy as np
import pytest
import torch
from torch import nn

from cfer.data import FaceDataset
from cfer.fewshot import (
    EpisodeConfig,
    evaluate_dataset,
    evaluate_embeddings,
    evaluate_model,
    finetune_episodes,
    sample_episodes,
)

RNG = np.random.default_rng(0)
LABELS = np.repeat(np.arange(100, 120), 8)          # 20 classes labelled 100..119
CENTRES = RNG.normal(size=(20, 6)) * 10
FEATS = torch.as_tensor(CENTRES[LABELS - 100] + RNG.normal(size=(len(LABELS), 6)), dtype=torch.float32)
CFG = EpisodeConfig(ways=5, shots=1, queries=3, episodes=25, seed=4)


def test_features_and_labels_may_be_given_positionally():
    by_position = evaluate_embeddings(FEATS, LABELS, config=CFG)
    by_name = evaluate_embeddings(features=FEATS, labels=LABELS, config=CFG)
    assert by_position.episode_accuracies == by_name.episode_accuracies
    assert len(sample_episodes(LABELS, config=CFG)) == 25
    with pytest.raises(TypeError):
        evaluate_embeddings(FEATS, LABELS, None, CFG)  # the rest stays keyword-only


def test_any_integer_labels_and_string_labels():
    res = evaluate_embeddings(FEATS, LABELS, config=CFG)
    assert res.accuracy > 0.95 and set(res.per_class) <= {str(v) for v in range(100, 120)}
    for _, _, classes in sample_episodes(torch.as_tensor(LABELS), config=CFG):
        assert set(classes.tolist()) <= set(range(100, 120))     # episodes name the original labels
    words = np.asarray([f"class {v}" for v in LABELS])
    named = evaluate_embeddings(FEATS, words, config=CFG)
    assert set(named.per_class) <= set(words.tolist()) and named.accuracy > 0.95
    mapped = evaluate_embeddings(FEATS, LABELS, class_names={v: f"c{v}" for v in range(100, 120)}, config=CFG)
    assert set(mapped.per_class) <= {f"c{v}" for v in range(100, 120)}
    assert mapped.episode_accuracies == res.episode_accuracies


class Points(torch.utils.data.Dataset):
    """A torchvision-style dataset: ``targets``, ``classes``, items ``(x, y)``."""

    def __init__(self, feats, targets, classes=None):
        self.feats, self.targets = feats, list(targets)
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.feats[i], self.targets[i]


def test_any_dataset_with_targets_and_any_model_through_embed_fn():
    data = Points(FEATS, LABELS - 100, classes=[f"kind{i}" for i in range(20)])
    net = nn.Sequential(nn.Linear(6, 6))           # no timm feature API
    net.train()
    res = evaluate_model(net, data, config=CFG, embed_fn=lambda m, x: m(x))
    assert net.training and res.accuracy > 0.9 and set(res.per_class) <= set(data.classes)
    chosen = evaluate_model(net, data, config=CFG, embed_fn=lambda m, x: m(x),
                            classes=["kind0", "kind1", 2, "kind3", "kind4"])   # names or labels
    assert set(chosen.per_class) == {"kind0", "kind1", "kind2", "kind3", "kind4"}
    # Items that are features need no model; a callable that is no nn.Module works with embed_fn.
    assert evaluate_dataset(data, config=CFG).episode_accuracies == evaluate_embeddings(
        FEATS, LABELS - 100, class_names=data.classes, config=CFG).episode_accuracies
    assert evaluate_model(torch.tanh, data, config=CFG, embed_fn=lambda f, x: f(x)).accuracy > 0.9
    # Without embed_fn, any nn.Module gives the input of its classifier (its last nn.Linear):
    # here the points themselves.
    assert evaluate_model(net, data, config=CFG).episode_accuracies == evaluate_embeddings(
        FEATS, LABELS - 100, class_names=data.classes, config=CFG).episode_accuracies
    with pytest.raises(ValueError, match="cannot find the classifier of Tanh.*pass feature_layer=.*embed_fn="):
        evaluate_model(nn.Tanh(), data, config=CFG)
    with pytest.raises(TypeError, match="cannot draw episodes from a list: give a cfer FaceDataset, a torch Dataset "
                                        "with a `targets` attribute"):
        evaluate_dataset([1, 2, 3], config=CFG)
    # finetune: positional images and labels, any labels.
    ft = finetune_episodes(net, FEATS, LABELS, config=EpisodeConfig(ways=3, shots=1, queries=2, episodes=2,
                                                                    classifier="finetune", finetune_steps=2),
                           embed_fn=lambda m, x: m(x))
    assert ft.episodes == 2 and set(ft.per_class) <= {str(v) for v in range(100, 120)}


def test_classes_absent_from_the_pool_are_named_with_the_counts():
    data = Points(FEATS[:40], LABELS[:40])             # labels 100..104, 8 items each
    with pytest.raises(ValueError, match=r"classes 'zebra', 7 have no items in the data \(0 each\); it holds "
                                         r"100 \(8\), 101 \(8\), 102 \(8\), 103 \(8\), 104 \(8\)"):
        evaluate_dataset(data, config=CFG, classes=[100, "zebra", 7])
    with pytest.raises(ValueError, match=r"6-way episodes need 6 classes, the pool has 5: '100' \(8\), '101' \(8\), "
                                         r"'102' \(8\), '103' \(8\), '104' \(8\)"):
        evaluate_dataset(data, config=EpisodeConfig(ways=6, shots=1, queries=3))
    short = np.concatenate([LABELS[:40], [200, 200]])
    with pytest.raises(ValueError, match=r"'200' has 2 \(5 of 6 classes have enough; 5-way episodes need 5\)"):
        sample_episodes(short, config=CFG)
    faces = FaceDataset(images=np.zeros((12, 4, 4, 1), np.uint8), labels=np.repeat([0, 1, 2], 4),
                        classes=["awed", "hatred", "appalled"])
    with pytest.raises(ValueError, match=r"classes 'sadly_angry' have no items in the data \(0 each\); it holds "
                                         r"'awed' \(4\), 'hatred' \(4\), 'appalled' \(4\)"):
        evaluate_model(nn.Identity(), faces, classes=["awed", "sadly angry"], embed_fn=lambda m, x: m(x))
    res = evaluate_model(nn.Identity(), faces, embed_fn=lambda m, x: m(x),
                         config=EpisodeConfig(ways=3, shots=1, queries=2, episodes=4))
    assert set(res.per_class) == {"awed", "hatred", "appalled"} and res.accuracy == pytest.approx(1 / 3)


def test_learn2learn_metadataset_and_taskdataset():
    l2l = pytest.importorskip("learn2learn")
    from learn2learn.data.transforms import KShots, LoadData, NWays

    meta = l2l.data.MetaDataset(torch.utils.data.TensorDataset(FEATS, torch.as_tensor(LABELS)))
    cfg = EpisodeConfig(ways=5, shots=1, queries=3, episodes=25, seed=4, sampler="learn2learn")
    from_meta = evaluate_dataset(meta, config=cfg)
    assert from_meta.episode_accuracies == evaluate_embeddings(FEATS, LABELS, config=cfg).episode_accuracies
    assert evaluate_model(nn.Identity(), meta, config=cfg, embed_fn=lambda m, x: m(x)).accuracy == from_meta.accuracy
    tasks = l2l.data.Taskset(meta, task_transforms=[NWays(meta, 5), KShots(meta, 4), LoadData(meta)], num_tasks=10)
    res = evaluate_dataset(tasks, config=cfg)
    assert res.episodes == 25 and res.accuracy > 0.95 and res.config["sampler"] == "learn2learn"
    assert evaluate_dataset(tasks, config=cfg).episode_accuracies == res.episode_accuracies   # seeded
    assert set(res.per_class) <= {str(v) for v in range(100, 120)}
    with pytest.raises(ValueError, match=r"drew a task of 5 classes with \[4\] items per class; config asks for "
                                         r"3-way tasks .* build it with NWays\(meta, 3\) and KShots\(meta, 4\)"):
        evaluate_dataset(tasks, config=EpisodeConfig(ways=3, shots=1, queries=3, episodes=2))
    with pytest.raises(ValueError, match="FilterLabels"):
        evaluate_dataset(tasks, config=cfg, classes=[100])
