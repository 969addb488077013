"""Clips everywhere images go: a clip teacher, the basic -> compound stream of clips with the
cfer strategy (distillation from the clip teacher, PSMR replay of clips), few-shot episodes over
clip embeddings and per-frame Grad-CAM with region curves."""

import copy

import numpy as np
import pytest
import torch

from cfer import taxonomy
from cfer.continual.evaluation import LazyItems, evaluate
from cfer.continual.factory import make_strategy
from cfer.continual.plugins.psmr import PredictiveSortingBuffer
from cfer.continual.runner import run_stream
from cfer.continual.stream import make_stream
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.video import ClipDataset, ClipLayout, make_clip_splits
from cfer.explain.clips import explain_clips, region_curves
from cfer.fewshot.config import EpisodeConfig
from cfer.fewshot.episodes import evaluate_model

BASIC = ["happy", "sad"]
COMPOUND = ["happily_surprised", "sadly_angry"]
LAYOUT = ClipLayout(frames=4, image_size=32, channels=1, mel_bins=8, mel_steps=8, landmarks=16)
ARCH = dict(arch="temporal_tiny", arch_options={"dim": 16, "num_heads": 2})


@pytest.fixture(scope="module")
def clips():
    return make_clip_splits(classes=[*BASIC, *COMPOUND], subjects=(3, 1, 2), per_class=2, layout=LAYOUT,
                            decoded_frames=8, seed=0)


@pytest.fixture(scope="module")
def teacher(clips):
    return train_teacher(train=clips["train"], val=clips["val"], classes=tuple(BASIC),
                         config=TeacherConfig(max_epochs=2, batch_size=8, augment="none", **ARCH))


def test_the_teacher_trains_on_clips_and_refuses_image_augmentation(clips, teacher):
    assert teacher.classes == tuple(BASIC) and len(teacher.history) == 2
    x = clips["train"][0][0]
    assert teacher.model(x[None]).shape == (1, 2)
    with pytest.raises(ValueError, match="augment='none'"):
        train_teacher(train=clips["train"], val=clips["val"], classes=tuple(BASIC),
                      config=TeacherConfig(max_epochs=1, augment="shift", **ARCH))


def test_lazy_items_load_only_what_is_indexed(clips):
    ds = clips["test"]
    before = ds.cache_info()
    items = LazyItems(ds, np.arange(len(ds)))
    batch = items[torch.tensor([3, 1])]
    assert tuple(batch.shape) == (2, *LAYOUT.shape)
    assert torch.equal(batch[0], ds[3][0]) and torch.equal(batch[1], ds[1][0])
    assert ds.cache_info().misses - before.misses <= 2


def test_the_stream_of_clips_runs_the_cfer_strategy_with_psmr_replay(clips, teacher):
    stream = make_stream(train=clips["train"], test=clips["test"], val=clips["val"], basic=BASIC,
                         compound=COMPOUND, per_step=1, order=COMPOUND)
    first = stream.train_stream[0].dataset
    assert isinstance(stream.class_names, tuple) and stream.class_names[:2] == tuple(BASIC)
    assert first[0][0].shape == LAYOUT.shape  # the experiences hold packed clips
    student = copy.deepcopy(teacher.model)
    strategy = make_strategy("cfer", model=student, optimizer=torch.optim.Adam(student.parameters(), lr=2e-3),
                             train_epochs=1, train_mb_size=8, memory_size=8, total_classes=len(stream.class_names),
                             teacher=teacher.model)
    results = run_stream(strategy, stream.benchmark)
    assert student.num_classes == 4
    assert len(results.matrix) == 3 and all(0.0 <= a <= 1.0 for a in results.matrix[-1])
    buffers = [p.storage_policy for p in strategy.plugins if isinstance(getattr(p, "storage_policy", None),
                                                                        PredictiveSortingBuffer)]
    assert buffers, "the cfer preset keeps a PSMR buffer"
    kept = buffers[0].buffer
    assert 0 < len(kept) <= 8 and kept[0][0].shape == LAYOUT.shape


def test_few_shot_episodes_run_over_clip_embeddings(clips, teacher):
    res = evaluate_model(teacher.model, clips["test"], classes=COMPOUND,
                         config=EpisodeConfig(ways=2, shots=1, queries=1, episodes=5, seed=0))
    assert res.episodes == 5 and len(res.episode_accuracies) == 5 and 0.0 <= res.accuracy <= 1.0
    assert set(res.per_class) == set(COMPOUND)


def test_per_frame_grad_cam_and_region_curves(clips, teacher):
    ds: ClipDataset = clips["test"]
    x = torch.stack([ds[i][0] for i in range(2)])
    maps = explain_clips(teacher.model, x, targets=[0, 1])
    assert maps.shape == (2, LAYOUT.frames, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    frames, regions = ds.frames_at(0)
    assert frames.shape[0] == LAYOUT.frames and regions is not None
    curves = region_curves(maps[0], regions)
    assert curves.shape == (LAYOUT.frames, len(taxonomy.REGIONS))
    assert np.all(curves.sum(1) <= 1 + 1e-6)
    with pytest.raises(ValueError, match="ClipLayout"):
        explain_clips(teacher.model, torch.rand(1, 3, 1, 32, 32))


def test_accuracy_of_clips_matches_item_by_item(clips, teacher):
    ds = clips["test"].subset(np.flatnonzero(np.isin(clips["test"].labels, [0, 1])))
    acc = evaluate(teacher.model, ds)
    with torch.no_grad():
        want = np.mean([int(teacher.model(ds[i][0][None]).argmax(1)) == int(ds.labels[i]) for i in range(len(ds))])
    assert acc == pytest.approx(want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_per_frame_grad_cam_of_a_model_on_the_gpu(clips, teacher, monkeypatch):
    """Clips on the CPU, model on the GPU: the predicted targets and the maps are the CPU's."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the CPU's float32 convolutions
    ds: ClipDataset = clips["test"]
    x = torch.stack([ds[i][0] for i in range(2)])
    want = explain_clips(teacher.model, x)
    model = copy.deepcopy(teacher.model).to("cuda")
    got = explain_clips(model, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-3)
    with pytest.raises(ValueError, match="outside the model's 2 outputs"):
        explain_clips(model, x, targets=[0, 2])
