"""``benchmarks/continual_compare.py --merge``: a later file's run of a strategy and order
replaces the earlier one; other orders add up; paired differences pair by order."""

import json

import pytest


@pytest.fixture(scope="module")
def compare(load_benchmark):
    return load_benchmark("continual_compare")


def _run(order, acc):
    keys = ("average_accuracy", "final_accuracy", "final_basic_accuracy", "final_compound_accuracy",
            "mean_newest_accuracy", "forgetting", "final_macro_f1", "mean_step_time_s")
    return {**{k: acc for k in keys}, "mean_step_time_s": 1.0, "order": list(order),
            "final_macro_f1_basic": acc, "final_macro_f1_compound": acc}


def _file(tmp_path, name, results):
    args = {"per_step": 1, "arch": "a", "epochs": 4, "basic_epochs": 6, "subjects": [16, 4, 8], "per_class": 4,
            "memory_fraction": 0.3, "seed": 0, "evaluate_on": "test"}
    path = tmp_path / name
    path.write_text(json.dumps({"args": args, "results": [{"strategy": s, "runs": r} for s, r in results.items()]}))
    return path


def test_a_later_run_of_the_same_order_replaces_the_earlier_one(compare, tmp_path, capsys):
    old = _file(tmp_path, "old.json", {"icarl": [_run("ab", 0.5), _run("ba", 0.7)], "joint": [_run("ab", 0.9)]})
    new = _file(tmp_path, "new.json", {"icarl": [_run("ab", 0.6), _run("ba", 0.6)], "joint": [_run("ba", 0.8)],
                                       "cfer": [_run("ab", 0.8), _run("ba", 0.7)]})
    args = compare.parse_args(["--merge", str(old), str(new)])
    assert compare.report_merged(args) == 0
    out = capsys.readouterr().out
    assert "2 runs replaced by a later file's" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in out.splitlines()
            if line.startswith("| ") and "±" in line and line.count("|") > 8}
    assert rows["icarl"] == "0.600 ± 0.000"  # the re-run, not the mean of four runs
    assert rows["joint"] == "0.850 ± 0.050"  # orders from two files add up
    paired = [line for line in out.splitlines() if line.startswith("| icarl | 2 |")]
    assert paired and "+0.150 ± 0.050" in paired[0]  # cfer − icarl over the same two orders


def test_variant_names_build_the_configuration_they_name(compare):
    """``cfer+la+ncm+cat+prev3+herd+mirror+wa+flip+bw0.5`` is the ``cfer`` preset, and ``prevs3``
    in its place differs from it by the square-root scaling alone (the docs relabel runs by this)."""
    import dataclasses

    from cfer.continual.factory import CferConfig

    args = compare.parse_args(["--strategies", "cfer"])
    preset = "cfer+la+ncm+cat+prev3+herd+mirror+wa+flip+bw0.5"
    assert compare.cfer_options(compare._strategy_name(preset), args) == CferConfig()
    moved = dataclasses.replace(CferConfig(), shift_training=2)  # the preset of 2026-12-06, later
    assert compare.cfer_options(compare._strategy_name(preset + "+shift2"), args) == moved
    assert compare.cfer_options(compare._strategy_name("cfer+shift2"), args) == moved
    assert compare.cfer_options("cfer+flip", args) == CferConfig()  # the preset already has it
    mixed = dataclasses.replace(CferConfig(), replay_batches="mixed")  # random replay's mini-batches
    assert compare.cfer_options(compare._strategy_name("cfer+mixed"), args) == mixed
    assert compare.cfer_options(preset.replace("+cat", ""), args) == mixed  # the spelt-out name without cat
    alike = dataclasses.replace(CferConfig(), psmr_first_step_weight=1.0)  # the preset before the memory share
    assert compare.cfer_options(compare._strategy_name("cfer+bw1"), args) == alike
    unmoved = dataclasses.replace(alike, shift_training=0)  # a spelt-out name: w = 1 and no shifts
    assert compare.cfer_options("cfer+la+ncm+cat+prev3+herd+mirror+wa+flip", args) == unmoved
    assert compare.cfer_options(compare._strategy_name("cfer+noshift+bw1"), args) == unmoved
    scaled = compare.cfer_options("cfer+la+ncm+cat+prevs3+herd+mirror+wa+flip+bw0.5", args)
    assert scaled == dataclasses.replace(CferConfig(), previous_weight_scale="sqrt_ratio")
    assert compare.cfer_options(compare._strategy_name("cfer+noshift"), args) == CferConfig()
    assert compare.cfer_options(compare._strategy_name("cfer+shift4"), args) == dataclasses.replace(
        CferConfig(), shift_training=4)
    both = compare.cfer_options(compare._strategy_name(preset + "+margin"), args)
    assert both == dataclasses.replace(CferConfig(), psmr_score="margin")
    for opt, samples in (("fmem", "memory"), ("fnew", "new")):
        got = compare.cfer_options(compare._strategy_name(f"{preset}+{opt}"), args)
        assert got == dataclasses.replace(CferConfig(), feature_samples=samples)
    before = dataclasses.replace(unmoved, mirror_training=False)  # the preset before the mirror images
    assert compare.cfer_options("cfer+la+ncm+cat+prev3+herd+mirror+wa", args) == before
    assert compare.cfer_options(compare._strategy_name("cfer+noflip+noshift+bw1"), args) == before
    assert compare.cfer_options("cfer+noflip", args) == dataclasses.replace(CferConfig(), mirror_training=False)
    assert compare.cfer_options("cfer+la+ncm+cat+prev3+herd+mirror", args) == dataclasses.replace(
        before, weight_aligning=False)  # the preset before weight aligning joined it
    # a baseline takes the mirror images as a plugin, cfer as its option
    assert [type(p).__name__ for p in compare.mirror("joint+flip")] == ["MirrorAugmentPlugin"]
    assert compare.mirror("cfer+flip") == [] and compare.mirror("joint") == []
    assert [type(p).__name__ for p in compare.shift(compare._strategy_name("joint+flip+shift2"))] == [
        "ShiftAugmentPlugin"]  # and cfer takes its shifts as the option
    assert compare.shift("cfer+shift2") == [] and compare.shift("icarl+flip") == []
    # supW adds a plugin: the preset's configuration stays as it is
    assert compare.cfer_options(compare._strategy_name("cfer+sup0.1"), args) == CferConfig()
    # lrcos and hws add plugins to any strategy, cfer's preset included
    for name in ("cfer+lrcos", "cfer+hws"):
        assert compare.cfer_options(compare._strategy_name(name), args) == CferConfig()
    assert [type(p).__name__ for p in compare.schedule(compare._strategy_name("icarl+lrcos"))] == ["StepCosinePlugin"]
    assert compare.schedule("cfer+hws") == []
    cfer_start = compare.warm_start(compare._strategy_name("cfer+hws"), CferConfig())
    assert [p.logit_adjustment for p in cfer_start] == [CferConfig().logit_adjustment]  # cfer's training prior
    assert [p.logit_adjustment for p in compare.warm_start(compare._strategy_name("replay+hws"), CferConfig())] == [0.0]
    assert compare.warm_start("cfer+lrcos", CferConfig()) == []
    for bad in ("cfer+prevsx", "cfer+prevs0", "replay+prevs3", "joint+flip+la", "cfer+bw0", "cfer+bwx",
                "joint+shift", "joint+shift0", "cfer+shiftx", "icarl+noshift", "cfer+sup0", "cfer+supx",
                "joint+sup0.1", "joint+lrcos+la"):
        with pytest.raises(Exception, match="use one of"):
            compare._strategy_name(bad)


def test_a_run_does_not_depend_on_the_random_state_it_starts_from(compare):
    """iCaRL's classifier is drawn when its strategy is built: a run must not depend on what
    drew from torch's generator before it (a fresh process seeds it at random)."""
    import torch

    from cfer.continual.growing import build_model
    from cfer.continual.stream import make_stream

    args = compare.parse_args(["--quick", "--strategies", "icarl", "--orders", "1", "--threads", "1",
                               "--subjects", "3", "2", "2", "--epochs", "1", "--basic-epochs", "1"])
    splits, first, later = compare.load_splits(args)
    stream = make_stream(train=splits["train"], test=splits["test"], val=splits["val"], per_step=5, basic=first,
                         compound=later[:5], order=tuple(later[:5]))
    init = build_model(arch=args.arch, num_classes=len(first), img_size=args.image_size, seed=0).state_dict()
    runs = []
    for state in (1, 2):
        torch.manual_seed(state)  # whatever ran before
        runs.append(compare.run_one("icarl", stream, args, init, 40, splits["test"]))
    assert runs[0]["matrix"] == runs[1]["matrix"]


def test_early_stopping_variants_stop_on_one_half_of_the_validation_subjects_and_score_on_the_other(compare):
    """``esP`` adds the early-stopping plugin to the preset (patience P, scoring what the
    strategy predicts with); scored on validation, the validation subjects are halved so no
    variant is scored on the faces it stopped on, and every strategy of the run is scored on
    the same half."""
    import numpy as np

    from cfer.continual.factory import CferConfig
    from cfer.data.base import FaceDataset

    args = compare.parse_args(["--strategies", "cfer+e8+es2"])
    assert compare.cfer_options("cfer+e8+es2", args) == CferConfig()
    (plugin,) = compare.early_stopping("cfer+e8+es2", ["val"], CferConfig())
    assert (plugin.patience, plugin.predictor) == (2, "class_means")
    (head,) = compare.early_stopping("cfer+la+es3", ["val"], compare.cfer_options("cfer+la+es3", args))
    assert (head.patience, head.predictor) == (3, "model")  # no class means in that variant: its head is scored
    assert compare.early_stopping("cfer+e8", ["val"], CferConfig()) == []
    with pytest.raises(Exception, match="use one of"):
        compare._strategy_name("cfer+es0")

    val = FaceDataset(images=np.zeros((8, 4, 4, 1), np.uint8), labels=np.zeros(8, int), classes=["happy"],
                      subjects=["d", "a", "c", "b", "a", "d", "b", "c"])
    stop, score = compare.stop_and_score(val, evaluate_on="val", early=True)
    assert sorted(set(stop.subjects)) == ["a", "b"] and sorted(set(score.subjects)) == ["c", "d"]
    assert len(stop) + len(score) == 8
    assert compare.stop_and_score(val, evaluate_on="test", early=True) == (val, val)  # tested on test: all of val
    assert compare.stop_and_score(val, evaluate_on="val", early=False) == (None, val)


def test_merge_refuses_validation_runs_scored_on_different_subjects(compare, tmp_path):
    plain = _file(tmp_path, "plain.json", {"cfer": [_run("ab", 0.5)]})
    data = json.loads(plain.read_text())
    data["args"]["scored_subjects"] = ["c", "d"]
    halved = tmp_path / "halved.json"
    halved.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="different settings"):
        compare.report_merged(compare.parse_args(["--merge", str(plain), str(halved)]))


def test_init_per_order_gives_each_order_its_own_start(compare, tmp_path):
    """Without the flag every class order starts from the same weights and so learns the same
    basic step; with it order k starts from seed + 1000 k, and order 0 is the run without it."""
    common = ["--quick", "--strategies", "replay", "--orders", "2", "--threads", "1", "--subjects", "3", "2", "2",
              "--epochs", "1", "--basic-epochs", "2", "--seed", "3"]
    compare.main([*common, "--json", str(tmp_path / "shared.json")])
    compare.main([*common, "--init-per-order", "--json", str(tmp_path / "own.json")])
    shared = json.loads((tmp_path / "shared.json").read_text())["results"][0]["runs"]
    own = json.loads((tmp_path / "own.json").read_text())["results"][0]["runs"]
    assert [r["seed"] for r in shared] == [3, 3] and [r["seed"] for r in own] == [3, 1003]
    from cfer.machine import describe

    assert json.loads((tmp_path / "own.json").read_text())["machine"] == describe()  # what it ran on
    assert own[0]["matrix"] == shared[0]["matrix"]  # order 0: the run without the flag
    assert shared[0]["matrix"][0] == shared[1]["matrix"][0]  # one basic step for both orders
    assert own[1]["matrix"] != shared[1]["matrix"]  # order 1 started elsewhere
    assert compare.order_seed(compare.parse_args(["--seed", "2", "--init-per-order"]), 4) == 4002
    # runs with and without the flag are different settings: --merge refuses to mix them
    with pytest.raises(SystemExit, match="different settings"):
        compare.main(["--merge", str(tmp_path / "shared.json"), str(tmp_path / "own.json")])
