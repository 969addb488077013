"""Weight-decay groups and layer-wise learning-rate decay."""

import pytest
import timm

import cfer.models  # noqa: F401 - registers the face ViTs
from cfer.continual.growing import build_model
from cfer.models.decay import decay_groups, layer_decay_groups
from cfer.models.freeze import freeze_stages


def test_layer_decay_scales_each_block_below_the_next_and_keeps_every_parameter_once():
    vit = timm.create_model("vit_face_micro", num_classes=3)  # stem, 2 blocks (the norm with the last), head
    groups = layer_decay_groups(vit, weight_decay=0.05, layer_decay=0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in vit.parameters()) and len(ids) == len(set(ids))
    scale = {n: g["lr_scale"] for n, p in vit.named_parameters() for g in groups if any(p is q for q in g["params"])}
    assert scale["head.weight"] == scale["norm.weight"] == scale["blocks.1.attn.qkv.weight"] == 1.0
    assert scale["blocks.0.attn.qkv.weight"] == 0.5
    assert scale["patch_embed.proj.weight"] == scale["pos_embed"] == 0.25
    decayed = {n for n, p in vit.named_parameters() for g in groups if g["weight_decay"] and any(p is q for q in g["params"])}
    plain = {n for g in decay_groups(vit, weight_decay=0.05)[1:] for n, p in vit.named_parameters()
             if any(p is q for q in g["params"])}
    assert decayed.isdisjoint(plain) and "pos_embed" in plain and "blocks.0.attn.qkv.weight" in decayed


def test_layer_decay_leaves_frozen_layers_out_and_refuses_a_bad_factor():
    model = build_model(arch="vit_face_micro", num_classes=6, in_chans=1, img_size=32)
    frozen = set(freeze_stages(model, stages=1))
    scale = {n: g["lr_scale"] for g in layer_decay_groups(model, weight_decay=0.0, layer_decay=0.7)
             for n, p in model.named_parameters() if any(p is q for q in g["params"])}
    assert frozen and set(scale) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(scale).isdisjoint(frozen)
    assert scale["head.classifier.weight"] == scale["backbone.norm.weight"] == 1.0  # the growing head: full rate
    assert scale["backbone.blocks.1.attn.qkv.weight"] == 1.0
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="layer_decay must lie in"):
            layer_decay_groups(model, weight_decay=0.0, layer_decay=bad)


def test_the_teacher_schedules_every_layer_at_its_scale():
    from cfer.continual.teacher import TeacherConfig
    from cfer.continual.teacher_fit import _optimizer, _set_lr

    model = build_model(arch="vit_face_micro", num_classes=6, in_chans=1, img_size=32)
    config = TeacherConfig(arch="vit_face_micro", optimizer="adamw", lr=1e-3, layer_decay=0.5, schedule="cosine",
                           warmup_epochs=1)
    opt = _optimizer(model, config)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([2.5e-4, 5e-4, 1e-3])
    _set_lr(opt, config, step=5, total=10, warmup=2)
    top = opt.param_groups[0]["lr"]
    assert 0 < top < 1e-3
    assert sorted({g["lr"] / top for g in opt.param_groups}) == pytest.approx([0.25, 0.5, 1.0])
    with pytest.raises(ValueError, match="needs optimizer='adamw'"):
        TeacherConfig(layer_decay=0.5)


def test_layer_decay_warns_when_the_model_has_no_layers_to_decay(caplog):
    flat = timm.create_model("temporal_slim", num_classes=3)  # no group_matcher: one group
    with caplog.at_level("WARNING", logger="cfer.models.decay"):
        groups = layer_decay_groups(flat, weight_decay=0.05, layer_decay=0.75)
    assert {g["lr_scale"] for g in groups} == {1.0}
    assert "changes nothing on" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="cfer.models.decay"):
        layer_decay_groups(timm.create_model("vit_face_micro", num_classes=3), weight_decay=0.05, layer_decay=0.75)
        layer_decay_groups(flat, weight_decay=0.05, layer_decay=1.0)
    assert caplog.text == ""
