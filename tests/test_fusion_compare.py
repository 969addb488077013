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
