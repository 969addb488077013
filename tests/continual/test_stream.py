import numpy as np
import pytest

from cfer import taxonomy
from cfer.continual.stream import compound_orders, make_stream, synthetic_stream
from cfer.data.synthetic import make_synthetic_splits


@pytest.fixture(scope="module")
def splits():
    return make_synthetic_splits(classes=[*taxonomy.BASIC, "awed", "hatred", "appalled", "sadly_angry", "happily_surprised"],
                                 subjects=(2, 1, 1), per_class=1, image_size=16, seed=0)


def test_first_experience_is_basic_then_k_compound_classes_per_step(splits):
    s = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], per_step=2,
                    order=["hatred", "awed", "appalled", "sadly_angry", "happily_surprised"])
    assert s.step_classes == [(0, 1, 2, 3, 4, 5), (6, 7), (8, 9), (10,)]
    assert s.class_names == (*taxonomy.BASIC, "hatred", "awed", "appalled", "sadly_angry", "happily_surprised")
    trained = [sorted(e.classes_in_this_experience) for e in s.train_stream]
    assert trained == [list(c) for c in s.step_classes]
    assert [sorted(e.classes_in_this_experience) for e in s.val_stream] == trained
    # Output unit ids map back to names: the items of unit 6 are the 'hatred' faces.
    x, y, _ = s.train_stream[1].dataset[0]
    assert s.class_names[y] in ("hatred", "awed")
    assert len(s.train_stream[0].dataset) == 6 * 2 and len(s.test_stream[0].dataset) == 6


def test_compound_classes_are_spread_evenly_over_the_steps():
    from cfer.continual.stream import step_sizes

    assert step_sizes(10, 3) == [4, 3, 3]  # not 3, 3, 3, 1: no lone last class (the example)
    assert step_sizes(10, 4) == [4, 3, 3]
    assert step_sizes(9, 3) == [3, 3, 3] and step_sizes(15, 1) == [1] * 15 and step_sizes(2, 5) == [2]
    for n in range(1, 20):
        for k in range(1, 7):
            sizes = step_sizes(n, k)
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            assert len(sizes) == max(1, int(n / k + 0.5))  # n / k steps, rounded half up


def test_an_uneven_stream_has_no_lone_last_class(splits):
    s = make_stream(train=splits["train"], test=splits["test"], per_step=4,
                    order=["hatred", "awed", "appalled", "sadly_angry", "happily_surprised"])
    assert [len(c) for c in s.step_classes] == [6, 5]  # 5 at 4 per step: one step of 5, not 4 + 1
    assert s.benchmark.n_classes_per_exp == [6, 5]


def test_per_step_one_is_the_published_protocol(splits):
    s = make_stream(train=splits["train"], test=splits["test"], per_step=1, seed=3)
    assert s.n_steps == 1 + 5 and all(len(c) == 1 for c in s.step_classes[1:])
    assert s.val_stream is None


def test_orders_are_seeded_and_leave_the_global_rng_alone():
    state = np.random.get_state()[1].copy()
    a, b = compound_orders(n_orders=3, seed=5), compound_orders(n_orders=3, seed=5)
    assert a == b and len(set(a)) == 3 and all(sorted(o) == sorted(taxonomy.COMPOUND) for o in a)
    assert np.array_equal(np.random.get_state()[1], state)


def test_bad_streams_are_refused(splits):
    tr, te = splits["train"], splits["test"]
    with pytest.raises(ValueError, match="subjects appear in both train and test"):
        make_stream(train=tr, test=tr)
    with pytest.raises(ValueError, match="order must be a permutation"):
        make_stream(train=tr, test=te, order=["awed"])
    with pytest.raises(ValueError, match="per_step must be a positive int"):
        make_stream(train=tr, test=te, per_step=0)
    with pytest.raises(ValueError, match=r"classes \['fearfully_angry'\] have no items"):
        make_stream(train=tr, test=te, compound=["fearfully_angry", "awed"])
    with pytest.raises(ValueError, match="both basic and compound"):
        make_stream(train=tr, test=te, basic=["happy", "awed"], compound=["awed"])


def test_synthetic_stream_records_its_data():
    s = synthetic_stream(subjects=(2, 1, 1), per_class=1, compound=["awed", "hatred"], image_size=16)
    assert s.meta["data"]["subjects"] == [2, 1, 1]
    assert s.compound_order in (("awed", "hatred"), ("hatred", "awed"))


def test_the_validation_faces_are_a_real_stream_of_the_benchmark(splits):
    """Train, test and valid are three streams of one benchmark, split by the same order."""
    s = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], per_step=2, seed=1)
    assert set(s.benchmark.streams) == {"train", "test", "valid"}
    assert s.val_stream is s.benchmark.valid_stream and s.val_stream.name == "valid"
    assert [e.current_experience for e in s.val_stream] == list(range(s.n_steps))
    val_subjects = set(splits["val"].subjects)
    assert len(s.val_stream[0].dataset) == sum(np.isin(splits["val"].class_names, taxonomy.BASIC))
    assert val_subjects.isdisjoint(splits["train"].subjects)
    # Avalanche's class-order attributes, which its iCaRL reads, are there.
    assert s.benchmark.n_classes_per_exp == [len(c) for c in s.step_classes]
    assert s.train_stream[1].benchmark is s.benchmark


def test_run_stream_can_evaluate_on_the_valid_stream(splits):
    import torch

    from cfer.continual.factory import make_strategy
    from cfer.continual.growing import build_model
    from cfer.continual.runner import run_stream

    s = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], per_step=5, seed=0)
    model = build_model(arch="cfer_tiny", num_classes=6, img_size=16)
    strategy = make_strategy("naive", model=model, optimizer=torch.optim.Adam(model.parameters()), train_mb_size=8)
    res = run_stream(strategy, s, evaluate_on="val")
    assert res.n_test == [len(e.dataset) for e in s.val_stream] and len(res.matrix) == 2
    assert [len(r) for r in res.matrix] == [1, 2]
