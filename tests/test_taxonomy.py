import pytest

from cfer import taxonomy as tx


def test_class_sets_have_the_cfee_sizes_and_no_overlap():
    assert len(tx.BASIC) == 6
    assert len(tx.COMPOUND) == 15
    assert len(tx.ALL_CLASSES) == 22
    assert len(set(tx.ALL_CLASSES)) == 22
    assert tx.ALL_CLASSES[0] == tx.NEUTRAL


@pytest.mark.parametrize("spelling", ["Happily surprised", "happily_surprised", "HAPPILY-SURPRISED",
                                      "  happily  surprised ", "surprised_happily", "Happy surprised"])
def test_spellings_of_one_compound_are_one_class(spelling):
    assert tx.normalize(spelling) == "happily_surprised"


@pytest.mark.parametrize("alias,canonical", [("Happiness", "happy"), ("fear", "fearful"), ("Anger", "angry"),
                                             ("Disgust", "disgusted"), ("surprise", "surprised"),
                                             ("Sadness", "sad"), ("awe", "awed"), ("hate", "hatred")])
def test_noun_forms_map_to_their_class(alias, canonical):
    assert tx.normalize(alias) == canonical


def test_unknown_name_lists_the_closest_names():
    with pytest.raises(ValueError, match=r"unknown expression 'sadly happy'.*closest known names: \[.*'sadly_"):
        tx.normalize("sadly happy")
    with pytest.raises(ValueError, match="unknown expression 'zzz'; known names"):
        tx.normalize("zzz")
    with pytest.raises(TypeError, match="must be a string"):
        tx.normalize(3)


def test_normalize_many_refuses_duplicates():
    assert tx.normalize_many(["Happy", "sadly angry"]) == ("happy", "sadly_angry")
    with pytest.raises(ValueError, match="'happiness' and 'Happy' are the same class 'happy'"):
        tx.normalize_many(["Happy", "happiness"])


def test_every_compound_has_two_distinct_basic_constituents():
    assert set(tx.CONSTITUENTS) == set(tx.COMPOUND)
    for name, (a, b) in tx.CONSTITUENTS.items():
        assert a in tx.BASIC and b in tx.BASIC and a != b, name
    # The adverb names the first constituent.
    assert tx.CONSTITUENTS["sadly_angry"] == ("sad", "angry")
    assert tx.CONSTITUENTS["disgustedly_surprised"] == ("disgusted", "surprised")


def test_au_table_matches_du_et_al_rows():
    # Spot checks against Du, Tao & Martinez (2014), Table 1.
    assert tx.AU_PROFILES["happy"].prototypical == (12, 25)
    assert tx.AU_PROFILES["happy"].optional == {6: 0.51}
    assert tx.AU_PROFILES["happily_surprised"].prototypical == (1, 2, 12, 25)
    assert tx.AU_PROFILES["happily_surprised"].optional == {5: 0.64, 26: 0.67}
    assert tx.AU_PROFILES["awed"].prototypical == (1, 2, 5, 25)
    assert tx.AU_PROFILES["sadly_disgusted"].optional[15] == pytest.approx(0.54)
    assert tx.AU_PROFILES[tx.NEUTRAL].prototypical == ()
    for name, prof in tx.AU_PROFILES.items():
        assert not set(prof.prototypical) & set(prof.optional), name
        assert all(0 < f < 0.7 for f in prof.optional.values()), name  # optional means < 70%
        assert set(prof.all_aus) <= set(tx.AUS), name


def test_compounds_share_aus_with_their_constituents():
    # Du et al.'s finding: a compound's AUs are drawn from its constituents' AUs.
    shared = 0
    for name, (a, b) in tx.CONSTITUENTS.items():
        mine = set(tx.AU_PROFILES[name].prototypical)
        theirs = set(tx.AU_PROFILES[a].all_aus) | set(tx.AU_PROFILES[b].all_aus)
        shared += len(mine & theirs) / len(mine)
    assert shared / len(tx.CONSTITUENTS) > 0.8


def test_au_regions_cover_every_au_and_use_known_regions():
    assert set(tx.AU_REGIONS) == set(tx.AUS)
    for au, regions in tx.AU_REGIONS.items():
        assert regions and set(regions) <= set(tx.REGIONS), au
    assert tx.regions_of("happy") == ("cheeks", "mouth")
    assert tx.regions_of("surprised") == ("forehead", "brows", "mouth", "chin")
    assert "eyes" in tx.regions_of("surprised", include_optional=True)


def test_dataset_label_ids_map_onto_canonical_names():
    assert len(tx.RAFDB_COMPOUND_LABELS) == 11
    assert set(tx.RAFDB_COMPOUND_LABELS.values()) <= set(tx.COMPOUND)
    assert set(tx.RAFDB_BASIC_LABELS.values()) == {tx.NEUTRAL, *tx.BASIC}
    assert set(tx.FER2013_LABELS.values()) == {tx.NEUTRAL, *tx.BASIC}
    assert tx.FER2013_LABELS[3] == "happy" and tx.RAFDB_BASIC_LABELS[4] == "happy"


def test_helpers():
    assert tx.display_name("HAPPILY_SURPRISED") == "happily surprised"
    assert tx.is_basic("Anger") and not tx.is_basic("neutral")
    assert tx.is_compound("awe") and not tx.is_compound("happy")
    assert tx.class_index("neutral") == 0 and tx.class_index("awed") == 21
