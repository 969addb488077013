import pytest
import timm
import torch

import cfer.models  # noqa: F401 - registers the models
from cfer.continual.growing import build_model
from cfer.models import freeze_stages
from cfer.models.freeze import stage_groups


def test_a_vit_freezes_its_stem_and_first_blocks_and_nothing_else():
    vit = timm.create_model("vit_face_tiny", num_classes=0)
    groups = stage_groups(vit)
    assert groups[0][:3] == ["cls_token", "pos_embed", "patch_embed.proj.weight"] and len(groups) >= 13
    frozen = set(freeze_stages(vit, stages=4))
    assert frozen == {n for g in groups[:5] for n in g}
    assert all(not p.requires_grad for n, p in vit.named_parameters() if n.startswith(("blocks.3.", "patch_embed")))
    assert all(p.requires_grad for n, p in vit.named_parameters() if n.startswith(("blocks.4.", "norm.")))
    assert freeze_stages(timm.create_model("vit_face_micro"), stages=0) == []


def test_cnns_and_the_growing_classifier_freeze_from_the_input_and_keep_the_head():
    net = build_model(arch="resnet18", num_classes=3)
    frozen = freeze_stages(net, stages=1)
    assert frozen[0] == "backbone.conv1.weight" and all(n.startswith(("backbone.conv1", "backbone.bn1",
                                                                       "backbone.layer1.")) for n in frozen)
    assert all(p.requires_grad for p in net.head.parameters())
    slim = build_model(arch="resemotenet_slim", num_classes=3)  # no group_matcher: its top-level children
    assert {n.split(".")[1] for n in freeze_stages(slim, stages=1)} == {"stem", "se"}


def test_impossible_counts_are_refused_naming_the_limit():
    with pytest.raises(ValueError, match="nothing of the 3 groups of VisionTransformer .* at most 1"):
        freeze_stages(timm.create_model("vit_face_micro"), stages=2)
    with pytest.raises(ValueError, match="stages must be >= 0"):
        freeze_stages(timm.create_model("vit_face_micro"), stages=-1)


def test_the_teacher_trains_only_the_unfrozen_layers_and_the_student_keeps_them_frozen():
    from cfer.continual.resume import _student
    from cfer.continual.teacher import TeacherConfig, train_teacher
    from cfer.data.synthetic import make_synthetic_splits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sp = make_synthetic_splits(classes="basic", subjects=(3, 1, 1), per_class=2, image_size=32, channels=1)
    config = TeacherConfig(arch="vit_face_micro", max_epochs=1, freeze_stages=1, seed=0)
    torch.manual_seed(0)
    init = build_model(arch="vit_face_micro", num_classes=6, in_chans=1, img_size=32, seed=0).state_dict()
    teacher = train_teacher(train=sp["train"], val=sp["val"], config=config).model
    after = teacher.state_dict()
    assert torch.equal(after["backbone.blocks.0.attn.qkv.weight"], init["backbone.blocks.0.attn.qkv.weight"])
    assert torch.equal(after["backbone.pos_embed"], init["backbone.pos_embed"])
    assert not torch.equal(after["backbone.blocks.1.attn.qkv.weight"], init["backbone.blocks.1.attn.qkv.weight"])
    student = _student(teacher, freeze=1)
    assert not student.backbone.blocks[0].attn.qkv.weight.requires_grad
    assert student.backbone.blocks[1].attn.qkv.weight.requires_grad
    assert all(p.requires_grad for p in student.head.parameters())
    with pytest.raises(ValueError, match="freeze_stages must be >= 0"):
        TeacherConfig(freeze_stages=-1)
    torch.set_num_threads(threads)
