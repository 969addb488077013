import pytest


def test_model_specs_carry_training_flags_and_members_follow_the_ensemble(load_benchmark):
    fc = load_benchmark("fusion_compare")
    assert fc.parse_spec("manet_pool_slim") == ("manet_pool_slim", set())
    arch, flags = fc.parse_spec("ensemble:resemotenet_slim+manet_pool_slim,learn_weights=true/one_by_one/precise_bn")
    assert arch == "ensemble:resemotenet_slim+manet_pool_slim,learn_weights=true"
    assert flags == {"one_by_one", "precise_bn"}
    # an ensemble trained with precise BatchNorm is compared with its members trained the same way
    assert fc.member_spec("manet_pool_slim", "ensemble:a+b/one_by_one/precise_bn") == "manet_pool_slim/precise_bn"
    assert fc.member_spec("manet_pool_slim", "ensemble:a+b/one_by_one") == "manet_pool_slim"
    with pytest.raises(ValueError, match="unknown flag.*'precise'"):
        fc.parse_spec("resemotenet_slim/precise")


def test_the_photo_flag_trains_with_the_photo_recipe_and_members_follow_it(load_benchmark, monkeypatch):
    fc = load_benchmark("fusion_compare")
    assert fc.parse_spec("resemotenet_slim/precise_bn/photo") == ("resemotenet_slim", {"precise_bn", "photo"})
    assert fc.member_spec("manet_pool_slim", "ensemble:a+b/one_by_one/precise_bn/photo") == \
        "manet_pool_slim/precise_bn/photo"
    assert fc.member_spec("manet_pool_slim", "ensemble:a+b/photo") == "manet_pool_slim/photo"
    seen = []

    def fake_train(*, train, val, classes, config):
        seen.append(config)
        raise RuntimeError("stop")

    monkeypatch.setattr(fc, "train_teacher", fake_train)
    for spec in ("cfer_tiny/photo", "cfer_tiny"):
        with pytest.raises(RuntimeError, match="stop"):
            fc.run_one(spec, "basic", 3, epochs=5, sp={"train": None, "val": None})
    photo, fast = seen
    # the photo recipe's own schedule and epochs; the fast defaults take --epochs
    assert (photo.augment, photo.optimizer, photo.schedule, photo.max_epochs, photo.seed) == \
        ("faces", "adamw", "cosine", 40, 3)
    assert (fast.augment, fast.optimizer, fast.max_epochs) == ("shift", "adam", 5)


def test_the_summary_compares_an_ensemble_with_its_better_member_seed_by_seed(load_benchmark, capsys):
    fc = load_benchmark("fusion_compare")
    ens = "ensemble:cfer_tiny+manet_tiny,learn_weights=true/one_by_one"
    runs = [{"task": "all22", "arch": ens, "seed": s, "macro_f1": f,
             "members": {"cfer_tiny": {"macro_f1": ma}, "manet_tiny": {"macro_f1": mb}}}
            for s, f, ma, mb in ((0, 0.60, 0.55, 0.50), (1, 0.58, 0.50, 0.60))]
    fc._paired(runs, [ens], ["all22"])
    out = capsys.readouterr().out
    # manet_tiny is the better member on average (0.55 against 0.525), so "inside it" is it
    assert "minus its own member manet_tiny (inside it), macro-F1 per seed: +0.100 -0.020" in out
    # seed by seed the better member is cfer_tiny (0.55) in seed 0 and manet_tiny (0.60) in seed 1
    assert "minus the better of its own members in each seed, macro-F1 per seed: +0.050 -0.020" in out
    assert "ahead in 1 of 2 seeds" in out
