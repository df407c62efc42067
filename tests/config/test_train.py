import pytest

from aekit.config.train import TrainConfig, make_config
from aekit.core.errors import AekitError


def test_precedence_defaults_file_flags():
    cfg = make_config({"epochs": 7, "lr": 0.01}, lr=0.5, batch_size=None)
    assert cfg.epochs == 7 and cfg.lr == 0.5 and cfg.batch_size == TrainConfig().batch_size


@pytest.mark.parametrize(
    "values,match",
    [
        ({"lr": -1.0}, "lr"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"arch": ""}, "arch must be a model name"),  # a name is checked against the registry when training
        ({"channels": 0}, "channels"),
        ({"image_size": [0]}, "image_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"bogus": 1}, "unknown option"),
        ({"device": "tpu"}, "device"),
        ({"epochs": 2.5}, "epochs"),
    ],
)
def test_invalid_values_rejected(values, match):
    with pytest.raises(AekitError, match=match):
        make_config(values)


def test_image_size_one_number_means_square():
    assert make_config(image_size=[32]).image_size == [32, 32]
    assert make_config(image_size=[20, 30]).image_size == [20, 30]


@pytest.mark.parametrize(
    "value,parsed",
    [("500", ("steps", 500)), (500, ("steps", 500)), ("90s", ("seconds", 90.0)), ("10m", ("seconds", 600.0))]
    + [("1.5h", ("seconds", 5400.0)), (" 20 ", ("steps", 20)), ("2M", ("seconds", 120.0))],
)
def test_checkpoint_every_takes_steps_or_a_time(value, parsed):
    from aekit.config.train import parse_every

    assert parse_every(value) == parsed
    assert make_config(checkpoint_every=value).checkpoint_every == value


@pytest.mark.parametrize("value", ["0", "-5", "abc", "10x", "m", "1e3", "", "infs", "nanm", "0.5", True, 2.5])
def test_checkpoint_every_rejects_anything_else_in_one_line(value):
    with pytest.raises(AekitError, match="checkpoint_every must be a number of steps"):
        make_config(checkpoint_every=value)


def test_the_cache_is_one_option_and_older_runs_config_still_reads():
    assert make_config().cache_dir == "default"
    assert make_config({"cache_dir": None}).cache_dir is None  # YAML `cache_dir: null`: no cache
    assert make_config(cache_dir=None).cache_dir is None  # aekit.train(..., cache_dir=None)
    assert make_config({"cache_dir": "/c"}, cache_dir=None).cache_dir is None  # --no-cache over a config file
    assert make_config({"no_cache": True, "cache_dir": "/c"}).cache_dir is None  # config.yaml of an older run
    assert make_config({"no_cache": False, "cache_dir": "/c"}).cache_dir == "/c"
    assert not hasattr(make_config(), "no_cache")
