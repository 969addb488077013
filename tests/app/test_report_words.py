"""The report's sentence on how the student learnt names the preset's mechanisms."""

import dataclasses

from cfer.app.report_words import strategy_words
from cfer.continual.presets import describe_preset, preset_config


def test_the_strategy_sentence_names_weight_aligning_and_the_prediction_rule():
    cfer = strategy_words(describe_preset("cfer", preset_config("cfer")))
    assert "<b>cfer</b>" in cfer
    assert "weight aligning, mirror images in training, prediction by nearest class mean" in cfer
    moved = describe_preset("cfer", dataclasses.replace(preset_config("cfer"), shift_training=2))
    assert ("mirror images in training, shifts of up to 2 pixels in training, prediction by nearest "
            "class mean") in strategy_words(moved)
    published = strategy_words(describe_preset("published", preset_config("published")))
    assert "weight aligning" not in published and published.endswith("prediction by the head")
    assert "mirror images" not in published
    assert "shifts" not in published
    no_flips = describe_preset("cfer", dataclasses.replace(preset_config("cfer"), mirror_training=False,
                                                           shift_training=0))
    assert "weight aligning, prediction by" in strategy_words(no_flips)
    one = describe_preset("cfer", dataclasses.replace(preset_config("cfer"), shift_training=1))
    assert "shifts of up to 1 pixel in" in strategy_words(one)
    off = describe_preset("cfer", dataclasses.replace(preset_config("cfer"), weight_aligning=False))
    assert "weight aligning" not in strategy_words(off)
    old = {"preset": "cfer", "options": {k: v for k, v in off["options"].items() if k != "weight_aligning"}}
    assert "weight aligning" not in strategy_words(old)  # a run written before the option existed
    assert strategy_words(None).startswith("distillation from the frozen teacher")
    assert "a basic class keeps 0.5× the memory items of a compound class" in cfer
    assert "memory items" not in published
    older = {"preset": "cfer", "options": {k: v for k, v in old["options"].items() if k != "psmr_first_step_weight"}}
    assert "memory items" not in strategy_words(older)  # a run written before the option existed
    oldest = {"preset": "cfer", "options": {k: v for k, v in moved["options"].items() if k != "shift_training"}}
    assert "shifts" not in strategy_words(oldest)  # a run written before the option existed
