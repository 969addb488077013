import logging

import pytest
import timm
import torch
from torch import nn

import cfer.models  # noqa: F401 - registers the models
from cfer.cliplayout import ClipLayout
from cfer.models import FeatureTap, create_backbone, find_feature_layer
from cfer.models.temporal import STREAMS, TemporalFusionNet, resolve_layout
from cfer.models.temporal_parts import TEMPORAL_MODES

LAYOUT = ClipLayout(frames=4, image_size=32, channels=1, mel_bins=8, mel_steps=8, landmarks=4)


def clips(n: int, layout: ClipLayout = LAYOUT, *, seed: int = 0, audio: bool = True, landmarks: bool = True,
          frames: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    T, C, S = layout.frames, layout.channels, layout.image_size
    return torch.stack([layout.pack(
        frames=torch.rand(T, C, S, S, generator=g) if frames else None,
        mel=torch.randn(layout.mel_bins, layout.mel_steps, generator=g) if audio else None,
        landmarks=torch.rand(T, layout.landmarks, 2, generator=g) * 2 - 1 if landmarks else None) for _ in range(n)])


def set_flag(x: torch.Tensor, stream: int, value: float, layout: ClipLayout = LAYOUT) -> torch.Tensor:
    """Presence flag ``stream`` (0 frames, 1 audio, 2 landmarks) of every clip of ``x`` set to ``value``."""
    x = x.clone()
    side = x[:, layout.frames:].reshape(len(x), -1)
    side[:, stream] = value
    x[:, layout.frames:] = side.reshape(x[:, layout.frames:].shape)
    return x


def test_the_model_reads_what_clip_layout_packs():
    """The model's clip_layout is the shared ClipLayout: clips packed by the data side unpack in the model."""
    net = tiny(layout=LAYOUT.as_dict())
    assert isinstance(net.clip_layout, ClipLayout) and net.clip_layout == LAYOUT
    with pytest.raises(ValueError, match="ClipLayout.channels must be 1"):
        ClipLayout(channels=2)


def tiny(**kw) -> TemporalFusionNet:
    torch.manual_seed(0)
    return TemporalFusionNet(**{**dict(frame_encoder="cfer_tiny", layout=LAYOUT, num_classes=5, dim=16,
                                       num_heads=2, stream_width=4), **kw}).eval()


@pytest.mark.parametrize("temporal", TEMPORAL_MODES)
def test_shapes_for_every_aggregation_and_fusion(temporal):
    x = clips(3)
    for fusion in ("late", "attention"):
        net = tiny(temporal=temporal, fusion=fusion)
        assert net(x).shape == (3, 5)
        assert net.forward_features(x).shape == (3, net.num_features) == (3, 16)
        assert torch.equal(net.forward_head(net.forward_features(x), pre_logits=True), net.forward_features(x))
        assert {k: tuple(v.shape) for k, v in net.stream_logits(x).items()} == {s: (3, 5) for s in STREAMS}


def test_late_fusion_is_the_mean_of_the_present_streams_logits_and_dropping_streams():
    net = tiny(fusion="late")
    x = set_flag(clips(4), 1, 0.0)  # audio flagged absent everywhere
    per = net.stream_logits(x)
    assert torch.allclose(net(x), (per["frames"] + per["motion"]) / 2, atol=1e-6)
    with net.dropping({"motion"}):
        assert torch.allclose(net(x), per["frames"], atol=1e-6)
    assert torch.allclose(net(x), (per["frames"] + per["motion"]) / 2, atol=1e-6)  # restored on exit
    with pytest.raises(ValueError, match=r"unknown streams \['video'\]; streams are \['frames', 'motion', 'audio'\]"):
        with net.dropping({"video"}):
            pass


def test_an_absent_stream_never_matters():
    for fusion in ("late", "attention"):
        net = tiny(fusion=fusion)
        a, b = clips(3, seed=1), clips(3, seed=2)
        b[:, :LAYOUT.frames] = a[:, :LAYOUT.frames]  # same frames...
        b_side = b[:, LAYOUT.frames:].reshape(3, -1)
        a_side = a[:, LAYOUT.frames:].reshape(3, -1)
        n_mel = LAYOUT.mel_bins * LAYOUT.mel_steps
        b_side[:, 3 + n_mel:] = a_side[:, 3 + n_mel:]  # ...and landmarks; only the audio differs
        b[:, LAYOUT.frames:] = b_side.reshape(b[:, LAYOUT.frames:].shape)
        assert not torch.allclose(net(a), net(b))  # audio present: it counts
        a0, b0 = set_flag(a, 1, 0.0), set_flag(b, 1, 0.0)
        b0[:, LAYOUT.frames:].reshape(3, -1)[:, 3:3 + n_mel] = float("nan")  # even NaN audio is ignored
        assert torch.equal(net(a0), net(b0))


def test_modality_dropout_only_in_training_and_never_all_streams(caplog):
    net = tiny(modality_dropout=0.6)
    x = clips(64)
    flags = torch.ones(64, 3, dtype=torch.bool)
    assert torch.equal(net.presence(x), flags) and torch.equal(net(x), net(x))  # eval: no dropout
    net.train()
    draws = torch.stack([net.presence(x) for _ in range(20)])
    assert draws.any(-1).all()  # every clip keeps a stream
    assert 0.3 < 1 - draws.float().mean() < 0.6  # streams are dropped (0.6 each, minus the rescues)
    only_frames = set_flag(set_flag(x, 1, 0.0), 2, 0.0)
    assert torch.equal(net.presence(only_frames), torch.tensor([[True, False, False]]).expand(64, 3))
    # no present stream at all: the frames stream is used, with one warning
    net.eval()
    with caplog.at_level(logging.WARNING, logger="cfer.models.temporal"):
        none = set_flag(only_frames, 0, 0.0)
        assert torch.equal(net.presence(none), torch.tensor([[True, False, False]]).expand(64, 3))
        assert torch.isfinite(net(none)).all()
    assert sum("no present stream" in r.message for r in caplog.records) == 1


def test_apex_reads_only_the_middle_frame():
    net = tiny(temporal="apex")
    x = clips(2)
    y = x.clone()
    mid = LAYOUT.frames // 2
    y[:, [t for t in range(LAYOUT.frames) if t != mid]] = torch.rand(2, LAYOUT.frames - 1, 1, 32, 32)
    assert torch.equal(net(x), net(y))
    y[:, mid] = torch.rand(2, 1, 32, 32)
    assert not torch.allclose(net(x), net(y))
    mean = tiny(temporal="mean")
    z = x.clone()
    z[:, 0] = torch.rand(2, 1, 32, 32)
    assert not torch.allclose(mean(x), mean(z))


@pytest.mark.parametrize("fusion", ["late", "attention"])
def test_gradients_reach_every_stream(fusion):
    net = tiny(fusion=fusion).train()
    net(clips(4)).logsumexp(1).sum().backward()
    for s in STREAMS:
        grads = [p.grad for p in net.encoders[s].parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, s


def test_classifier_reset_and_growing_keeps_old_logits():
    from cfer.continual.growing import GrowingClassifier

    net = tiny()
    assert net.get_classifier() is net.head and isinstance(net.head, nn.Linear)
    assert find_feature_layer(net) == ("head", "input")
    x = clips(3)
    with FeatureTap(net, layer="head") as tap:
        net(x)
    assert torch.allclose(tap.features, net.forward_features(x))
    net.reset_classifier(9)
    assert net(x).shape == (3, 9) and net.num_classes == 9 and net.pretrained_cfg["num_classes"] == 9
    torch.manual_seed(0)
    backbone = create_backbone("temporal_tiny", layout=LAYOUT, in_chans=1, fusion="late")  # in_chans: default 3
    grow = GrowingClassifier(backbone=backbone, initial_classes=3).eval()
    grow.grow(3)  # all units active, as cfer.continual.growing.build_model leaves them
    before = grow(x)
    grow.grow(5)
    after = grow(x)
    # the old classes' logits stay (to float rounding: a wider matmul may take another kernel)
    assert after.shape == (3, 5) and torch.allclose(after[:, :3], before, rtol=0, atol=1e-6)
    # late fusion through the growing head: still the mean of each stream's logits under that head
    tokens = {s: backbone.forward_head(backbone._fuse(backbone._encode(LAYOUT.unpack(x)),
                                                      torch.eye(3, dtype=torch.bool)[i].expand(3, 3)), pre_logits=True)
              for i, s in enumerate(STREAMS)}
    assert torch.allclose(after, sum(grow.head(t) for t in tokens.values()) / 3, atol=1e-5)


def test_save_and_load_round_trip(tmp_path):
    from cfer.continual.growing import build_model, load_model
    from cfer.models import save_model

    model = build_model(arch="temporal_tiny", num_classes=3, in_chans=1, img_size=32).eval()
    layout = ClipLayout(**model.backbone.clip_layout.as_dict())
    assert layout == ClipLayout(channels=1, image_size=32)
    save_model(model, tmp_path / "m.pt", arch="temporal_tiny", classes=("a", "b", "c"), extra={"image_size": 32})
    back, classes = load_model(tmp_path / "m.pt")
    x = clips(2, layout)
    assert classes == ("a", "b", "c") and torch.equal(back(x), model(x))
    # a file saved when attention fusion was the registered default (no "fusion" in its options)
    old = build_model(arch="temporal_tiny", num_classes=3, in_chans=1, img_size=32,
                      options={"fusion": "attention"}).eval()
    save_model(old, tmp_path / "old.pt", arch="temporal_tiny", classes=("a", "b", "c"), extra={"image_size": 32})
    back, _ = load_model(tmp_path / "old.pt")
    assert back.backbone.fusion == "attention" and torch.equal(back(x), old(x))
    # a plain model with its own layout: rebuilt from pretrained_cfg["clip_layout"]
    net = timm.create_model("temporal_tiny", num_classes=4, layout=LAYOUT.as_dict(), temporal="gru").eval()
    torch.save(net.state_dict(), tmp_path / "w.pt")
    again = timm.create_model("temporal_tiny", num_classes=4, layout=net.pretrained_cfg["clip_layout"],
                              temporal="gru").eval()
    again.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert again.clip_layout.as_dict() == LAYOUT.as_dict() and torch.equal(again(clips(2)), net(clips(2)))


def test_created_by_name_with_the_layout_from_timm_arguments():
    net = create_backbone("temporal_tiny", in_chans=1, img_size=32)
    assert net.num_classes == 0 and net.clip_layout == ClipLayout(channels=1, image_size=32)
    assert net.pretrained_cfg["input_size"] == (1, 32, 32) and net.pretrained_cfg["clip_shape"] == (10, 1, 32, 32)
    assert net(clips(2, ClipLayout(**net.clip_layout.as_dict()))).shape == (2, 16)
    clf = timm.create_model("temporal_tiny", num_classes=7, in_chans=1, img_size=32, frames=4)
    assert clf.clip_layout.frames == 4 and clf(torch.rand(2, *clf.clip_layout.shape)).shape == (2, 7)
    assert timm.create_model("temporal_slim").clip_layout.as_dict() == ClipLayout().as_dict()
    assert resolve_layout(LAYOUT).as_dict() == LAYOUT.as_dict()
    with pytest.raises(ValueError, match=r"channels=3 but layout.channels=1: give the size in the layout"):
        timm.create_model("temporal_tiny", layout=LAYOUT, in_chans=3)
    with pytest.raises(ValueError, match=r"unknown ClipLayout fields \['fps'\]"):
        resolve_layout({"fps": 25})
    with pytest.raises(ValueError, match="no hub weights"):
        timm.create_model("temporal_tiny", pretrained=True)


def test_wrong_inputs_name_the_fix():
    net = tiny()
    with pytest.raises(ValueError, match=r"takes packed clips \(B, 5, 1, 32, 32\) built with ClipLayout.pack"):
        net(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"ClipLayout\(frames=4, .*\); build clips with the same ClipLayout"):
        net(torch.rand(2, 6, 1, 32, 32))
    with pytest.raises(ValueError, match=r"temporal must be one of \['attention', 'transformer', 'gru'"):
        tiny(temporal="lstm")
    with pytest.raises(ValueError, match="streams must be distinct names from"):
        tiny(streams=("frames", "video"))
    with pytest.raises(ValueError, match=r"modality_dropout must lie in \[0, 1\)"):
        tiny(modality_dropout=1.0)
    with pytest.raises(TypeError, match=r"lacks \['forward_features', 'forward_head', 'num_features'\]"):
        tiny(frame_encoder=nn.Linear(3, 3))
    no_frames = tiny(streams=("audio", "motion"))
    assert no_frames.streams == ("motion", "audio") and no_frames(clips(2)).shape == (2, 5)
    with pytest.raises(ValueError, match="has no frames stream"):
        _ = no_frames.cam_layer


def test_gradcam_reads_the_frame_encoder_one_map_per_frame():
    from pytorch_grad_cam import GradCAM

    from cfer.explain.gradcam import find_target_layer

    class ClipGradCAM(GradCAM):  # pytorch-grad-cam reads a 5-D input as a 3-D volume: maps are frame-sized
        def get_target_width_height(self, x: torch.Tensor) -> tuple[int, int]:
            return x.size(-1), x.size(-2)

    net = tiny()
    assert find_target_layer(net) == (net.frame_encoder.cam_layer, None) and net.gradcam_target_layer is net.cam_layer
    cam = ClipGradCAM(model=net, target_layers=[net.cam_layer])
    try:
        maps = cam(input_tensor=clips(2), targets=None)
    finally:
        cam.activations_and_grads.release()
    assert maps.shape == (2 * LAYOUT.frames, 32, 32)
    vit = tiny(frame_encoder="vit_face_micro")
    seen = []
    vit.cam_layer.register_forward_hook(lambda _m, _i, o: seen.append(tuple(o.shape)))
    vit(clips(2))
    assert vit.cam_layer is vit.encoders["frames"].cam_grid and seen == [(2 * LAYOUT.frames, 32, 4, 4)]


class PixelEncoder(nn.Module):
    """A per-frame MLP with the timm feature API: sees where a blob is, not when."""

    def __init__(self, side: int, width: int = 16) -> None:
        super().__init__()
        self.fc, self.num_features = nn.Linear(side * side, width), width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x.flatten(1)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x


def order_task(n: int, layout: ClipLayout, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright top half at one time and a bright bottom half later (label 0), or the reverse (1)."""
    T, S = layout.frames, layout.image_size
    y = torch.randint(0, 2, (n,), generator=g)
    out = []
    for label in y.tolist():
        frames = torch.rand(T, 1, S, S, generator=g) * 0.2
        t1, t2 = sorted(torch.randperm(T, generator=g)[:2].tolist())
        top, bottom = (t1, t2) if label == 0 else (t2, t1)
        frames[top, :, :S // 2] += 0.8
        frames[bottom, :, S // 2:] += 0.8
        out.append(layout.pack(frames=frames))
    return torch.stack(out), y


@pytest.mark.parametrize("temporal, learns",
                         [("transformer", True), ("gru", True), ("mean", False), ("attention", False)])
def test_only_an_order_aware_aggregation_learns_the_order_of_events(temporal, learns):
    """Mean and attention pooling are blind to order (chance); the transformer and the GRU learn it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is fastest, and the machine is shared
    try:
        acc = _order_accuracy(temporal)
    finally:
        torch.set_num_threads(threads)
    assert acc > 0.9 if learns else acc < 0.62, acc


def _order_accuracy(temporal: str) -> float:
    layout = ClipLayout(frames=6, image_size=8, channels=1, mel_bins=2, mel_steps=2, landmarks=1)
    torch.manual_seed(0)
    net = TemporalFusionNet(frame_encoder=PixelEncoder(8), layout=layout, num_classes=2, temporal=temporal,
                            streams=("frames",), fusion="late", dim=16, num_heads=2)
    g = torch.Generator().manual_seed(0)
    test_x, test_y = order_task(512, layout, g)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(200):
        x, y = order_task(32, layout, g)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        return float((net.eval()(test_x).argmax(1) == test_y).float().mean())
