"""The two episode samplers: learn2learn's and cfer's built-in one, chosen by
``EpisodeConfig.sampler``; and the coding of any labels as contiguous ids."""

import logging
import random
import sys

import numpy as np
import pytest

from cfer.fewshot import sampling
from cfer.fewshot.config import EpisodeConfig
from cfer.fewshot.episodes import evaluate_embeddings
from cfer.fewshot.sampling import encode_labels, resolve_sampler, sample_episodes

LABELS = np.repeat(np.arange(8), 12)


def _has_learn2learn():
    return sampling._learn2learn_error() is None


@pytest.fixture
def no_learn2learn(monkeypatch):
    """learn2learn made unimportable (as in an environment without it), the once-only notice reset."""
    for name in [m for m in sys.modules if m == "learn2learn" or m.startswith("learn2learn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "learn2learn", None)
    monkeypatch.setattr(sampling, "_said_builtin", False)


def _check_contract(episodes, labels, cfg):
    assert len(episodes) == cfg.episodes
    for support, query, classes in episodes:
        assert len(set(classes.tolist())) == cfg.ways
        assert len(support) == cfg.ways * cfg.shots and len(query) == cfg.ways * cfg.queries
        assert not set(support.tolist()) & set(query.tolist())
        for j, c in enumerate(classes):
            assert (labels[support[j * cfg.shots:(j + 1) * cfg.shots]] == c).all()
            assert (labels[query[j * cfg.queries:(j + 1) * cfg.queries]] == c).all()


def test_builtin_sampler_keeps_the_episode_contract_and_is_seeded():
    cfg = EpisodeConfig(ways=5, shots=3, queries=4, episodes=40, seed=1, sampler="builtin")
    random.seed(5)
    np.random.seed(5)
    state, np_state = random.getstate(), np.random.get_state()
    a = sample_episodes(LABELS, config=cfg)
    assert random.getstate() == state and np.random.get_state()[1].tolist() == np_state[1].tolist()
    _check_contract(a, LABELS, cfg)
    random.random()
    np.random.random()
    b = sample_episodes(LABELS, config=cfg)
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() and (x[2] == y[2]).all() for x, y in zip(a, b))
    c = sample_episodes(LABELS, config=EpisodeConfig(ways=5, shots=3, queries=4, episodes=40, seed=2, sampler="builtin"))
    assert any((x[0] != y[0]).any() for x, y in zip(a, c))
    # Every class is drawn over many episodes (the draw is not stuck on a few classes).
    assert set(np.concatenate([e[2] for e in a]).tolist()) == set(range(8))


def test_auto_without_learn2learn_uses_the_builtin_sampler_and_says_so_once(no_learn2learn, caplog):
    feats = np.repeat(np.eye(8), 12, axis=0).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="cfer.fewshot.sampling"):
        res = evaluate_embeddings(feats, LABELS, config=EpisodeConfig(ways=4, shots=1, queries=3, episodes=20))
        again = sample_episodes(LABELS, config=EpisodeConfig(ways=4, shots=1, queries=3, episodes=20))
    assert res.config["sampler"] == "builtin" and res.accuracy == 1.0
    _check_contract(again, LABELS, EpisodeConfig(ways=4, shots=1, queries=3, episodes=20))
    notes = [r for r in caplog.records if "built-in sampler" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
    assert "learn2learn==0.2.0" in notes[0].getMessage()


def test_asking_for_learn2learn_without_it_names_the_install_command(no_learn2learn):
    with pytest.raises(ImportError, match=r"sampler='learn2learn' needs learn2learn.*"
                                          r"pip install --no-deps -C--build-option=build_ext learn2learn==0.2.0"):
        sample_episodes(LABELS, config=EpisodeConfig(sampler="learn2learn", ways=3, shots=1, queries=1))
    assert resolve_sampler("builtin") == "builtin"
    with pytest.raises(ValueError, match=r"unknown sampler 'l2l'; choose one of \['auto', 'learn2learn', 'builtin'\]"):
        EpisodeConfig(sampler="l2l")


@pytest.mark.skipif(not _has_learn2learn(), reason="learn2learn is not installed")
def test_auto_uses_learn2learn_where_it_is_installed():
    cfg = EpisodeConfig(ways=4, shots=2, queries=2, episodes=15, seed=3)
    auto = sample_episodes(LABELS, config=cfg)
    l2l = sample_episodes(LABELS, config=EpisodeConfig(ways=4, shots=2, queries=2, episodes=15, seed=3,
                                                       sampler="learn2learn"))
    _check_contract(auto, LABELS, cfg)
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(auto, l2l))
    res = evaluate_embeddings(np.zeros((len(LABELS), 2)), LABELS, config=cfg)
    assert res.config["sampler"] == "learn2learn"
    assert EpisodeConfig(**res.config) == EpisodeConfig(ways=4, shots=2, queries=2, episodes=15, seed=3,
                                                        sampler="learn2learn")


@pytest.mark.parametrize("enabled", [True, False])
def test_learn2learn_sampling_pauses_the_garbage_collector_and_restores_its_state(enabled):
    import gc

    pytest.importorskip("learn2learn")
    cfg = EpisodeConfig(ways=4, shots=2, queries=2, episodes=15, seed=3, sampler="learn2learn")
    seen = []

    class Probe:  # learn2learn calls the sampler's random draws inside the loop; record the GC state there
        def __init__(self):
            self.draw = random.sample

        def __call__(self, *args, **kwargs):
            seen.append(gc.isenabled())
            return self.draw(*args, **kwargs)

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(random, "sample", Probe())
            paused = sample_episodes(LABELS, config=cfg)
        assert seen and not any(seen)  # off while learn2learn draws
        assert gc.isenabled() == enabled  # and as it was afterwards
    finally:
        (gc.enable if was else gc.disable)()
    again = sample_episodes(LABELS, config=cfg)  # pausing changes no draw
    assert all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(paused, again))


def test_labels_are_coded_as_contiguous_ids_keeping_their_names():
    ids, names, values = encode_labels(np.array([119, 100, 119, 105]))
    assert ids.tolist() == [2, 0, 2, 1] and names == ["100", "105", "119"] and values.tolist() == [100, 105, 119]
    ids, names, _ = encode_labels(["sad", "happy", "sad"])
    assert ids.tolist() == [1, 0, 1] and names == ["happy", "sad"]
    assert encode_labels([3, 1], {1: "one", 3: "three"})[1] == ["one", "three"]
    assert encode_labels(np.array([0.0, 2.0]), ["a", "b", "c"])[1] == ["a", "c"]
    with pytest.raises(ValueError, match=r"labels \[119\] do not index class_names \(3 names, for labels 0..2\); "
                                         r"pass class_names as a dict"):
        encode_labels([0, 119], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"labels \[7\] have no name in class_names"):
        encode_labels([1, 7], {1: "one"})
    with pytest.raises(TypeError, match=r"all integers or all strings, got a mix of \['int', 'str'\]"):
        encode_labels(np.array([1, "a"], dtype=object))
    with pytest.raises(TypeError, match="non-integer floats"):
        encode_labels([0.5, 1.0])
