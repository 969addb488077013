import numpy as np
import pytest
import torch

from cfer import taxonomy as tx
from cfer.data.synthetic import FaceRenderer, SynthConfig, SyntheticFaces, make_synthetic_splits, render_faces
from cfer.data.synthetic.sampling import _AU_INDEX, _IDENTITY_KEYS, _sample_identity, _sample_nuisance


@pytest.fixture(scope="module")
def faces() -> SyntheticFaces:
    return render_faces(n_subjects=3, per_class=2, seed=7)


def test_shapes_labels_and_ground_truth(faces):
    n = 3 * 22 * 2
    assert len(faces) == n
    assert faces.images.shape == (n, 64, 64, 3) and faces.images.dtype == np.uint8
    assert faces.aus.shape == (n, len(tx.AUS)) and faces.aus.dtype == np.float32
    assert faces.region_map.shape == (n, 64, 64)
    assert set(np.unique(faces.region_map)) == set(range(len(tx.REGIONS) + 1))
    assert faces.masks.shape == (n, 7, 64, 64) and faces.masks.dtype == bool
    assert faces.masks.sum(1).max() == 1  # regions never overlap
    assert faces.classes == tx.ALL_CLASSES
    assert faces.counts() == {c: 6 for c in tx.ALL_CLASSES}
    assert sorted(set(faces.subjects)) == ["s0000", "s0001", "s0002"]
    assert isinstance(faces.targets, torch.Tensor) and faces.targets.tolist() == faces.labels.tolist()
    x, y = faces[5]
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y == faces.labels[5]


def test_every_face_shows_its_prototypical_aus(faces):
    for i in range(len(faces)):
        cls = faces.classes[faces.labels[i]]
        for au in tx.AU_PROFILES[cls].prototypical:
            assert faces.aus[i, _AU_INDEX[au]] > 0.1, (cls, au)


def test_optional_aus_follow_reported_frequencies():
    f = render_faces(classes=["sad"], n_subjects=40, per_class=25, difficulty=0.0, seed=1)
    for au, freq in tx.AU_PROFILES["sad"].optional.items():
        share = (f.aus[:, _AU_INDEX[au]] > 0).mean()
        assert abs(share - freq) < 0.06, (au, share, freq)
    # At difficulty 0 nothing outside the profile moves.
    others = [_AU_INDEX[a] for a in tx.AUS if a not in tx.AU_PROFILES["sad"].all_aus]
    assert f.aus[:, others].max() == 0


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = render_faces(classes="basic", n_subjects=2, per_class=2, seed=3)
    b = render_faces(classes="basic", n_subjects=2, per_class=2, seed=3)
    c = render_faces(classes="basic", n_subjects=2, per_class=2, seed=4)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.region_map, b.region_map)
    assert np.array_equal(a.aus, b.aus)
    assert np.abs(a.images.astype(int) - c.images.astype(int)).mean() > 5


def test_a_subject_is_the_same_person_whatever_the_call_and_batch():
    whole = render_faces(classes="basic", n_subjects=4, per_class=2, seed=9, batch_size=7)
    alone = render_faces(classes="basic", n_subjects=1, per_class=2, seed=9, first_subject=3, batch_size=64)
    part = whole.subset(np.flatnonzero(whole.subjects == "s0003"))
    assert np.array_equal(part.aus, alone.aus)
    assert np.abs(part.images.astype(int) - alone.images.astype(int)).max() <= 1
    assert (part.region_map != alone.region_map).mean() < 0.001


def test_splits_have_disjoint_subjects():
    sp = make_synthetic_splits(classes="basic", subjects=(3, 2, 2), per_class=1, seed=0)
    sets = {k: set(v.subjects) for k, v in sp.items()}
    assert [len(sets[k]) for k in ("train", "val", "test")] == [3, 2, 2]
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert set(sp["val"].splits) == {"val"}
    with pytest.raises(ValueError, match="three positive ints"):
        make_synthetic_splits(subjects=(3, 0, 2))


def _one(renderer, aus_on, angle=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ident = _sample_identity(rng, 0.0)
    nuis = _sample_nuisance(rng, 1, SynthConfig(difficulty=0.0))
    nuis["angle"] = np.array([np.deg2rad(angle)])
    aus = np.zeros((1, len(tx.AUS)), np.float32)
    for au in aus_on:
        aus[0, _AU_INDEX[au]] = 1.0
    img, reg = renderer.render(identity={k: np.array([ident[k]]) for k in _IDENTITY_KEYS}, aus=aus, nuisance=nuis)
    return img[0].astype(float), reg[0]


@pytest.mark.parametrize("au", tx.AUS)
def test_each_au_changes_the_face_inside_its_own_regions(au):
    # The masks are the ground truth that Grad-CAM is scored against: an AU's visible
    # change must fall in the regions taxonomy.AU_REGIONS gives it, also under rotation.
    r = FaceRenderer(config=SynthConfig(image_size=64, difficulty=0.0))
    for angle in (0.0, 8.0):
        base, reg = _one(r, [], angle=angle)
        moved, _ = _one(r, [au], angle=angle)
        diff = np.abs(moved - base).sum(-1)
        assert diff.sum() > 50, f"AU{au} changes nothing visible"
        inside = np.isin(reg, [tx.REGIONS.index(n) + 1 for n in tx.AU_REGIONS[au]])
        share = diff[inside].sum() / diff.sum()
        assert share > 0.6, f"AU{au}: only {share:.2f} of its change lies in {tx.AU_REGIONS[au]}"


def test_regions_sit_where_a_face_has_them(faces):
    rows = np.arange(64)[None, :, None]
    centre = {n: (faces.region_mask(n) * rows).sum() / faces.region_mask(n).sum() for n in tx.REGIONS}
    order = ["forehead", "brows", "eyes", "nose", "mouth", "chin"]
    assert [centre[n] for n in order] == sorted(centre[n] for n in order)
    with pytest.raises(ValueError, match="unknown region 'lips'"):
        faces.region_mask("lips")


def test_difficulty_scales_the_nuisances():
    def spread(d):
        f = render_faces(classes=["neutral"], n_subjects=1, per_class=30, difficulty=d, seed=2)
        return f.images.astype(float).std(0).mean()

    assert spread(0.0) < 1.0  # one identity, one expression, no nuisance: identical images
    assert spread(0.5) < spread(1.0) < spread(2.0)


def test_grey_and_size_options():
    f = render_faces(classes=["happy", "sad"], n_subjects=1, per_class=1, channels=1, image_size=32)
    assert f.images.shape == (2, 32, 32, 1) and f.region_map.shape == (2, 32, 32)
    assert f[0][0].shape == (1, 32, 32)


def test_occlusion_hides_regions():
    clear = render_faces(classes="basic", n_subjects=2, per_class=2, seed=4)
    hidden = render_faces(classes="basic", n_subjects=2, per_class=2, seed=4, occlusion=1.0)
    lost = (clear.region_map > 0).sum((1, 2)) - (hidden.region_map > 0).sum((1, 2))
    assert (lost > 0).mean() > 0.7  # the patch usually lands on the face
    assert (lost >= 0).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(image_size=8), "image_size must be an int in"),
    (dict(channels=2), "channels must be 1"),
    (dict(difficulty=-1), "difficulty must lie in"),
    (dict(occlusion=1.5), "occlusion is a probability"),
    (dict(n_subjects=0), "n_subjects must be a positive int"),
    (dict(classes=["happy", "sadly happy"]), "unknown expression 'sadly happy'"),
    (dict(classes=[]), "classes is empty"),
])
def test_bad_arguments_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_faces(**kwargs)


def test_subset_keeps_ground_truth(faces):
    sub = faces.subset([0, 5, 9])
    assert isinstance(sub, SyntheticFaces)
    assert np.array_equal(sub.aus, faces.aus[[0, 5, 9]])
    assert np.array_equal(sub.region_map, faces.region_map[[0, 5, 9]])


def test_torch_and_avalanche_take_the_dataset_as_it_is(faces):
    loader = torch.utils.data.DataLoader(faces, batch_size=16, shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (16, 3, 64, 64) and y.dtype == torch.int64

    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    basic = faces.subset(np.flatnonzero(np.isin(faces.labels, range(1, 7))))
    bench = nc_benchmark(basic, basic, n_experiences=3, task_labels=False, seed=0)
    assert bench.n_classes == 6
    assert sum(len(e.dataset) for e in bench.train_stream) == len(basic)
