"""pipeline.config values that cannot work and text that attacks the parser (issue 10, items 8 and 10 and the config
risks): each refused at read time with the field and its line, never a traceback."""

from __future__ import annotations

import pytest

from cli_helpers import run_cli
from spaghettinet.errors import DataError
from spaghettinet.pipeline_config import parse_config_text
from spaghettinet.textformat import parse_text

MODEL = """model {{ ssd {{
  num_classes: {num_classes}
  feature_extractor {{ type: 'ssd_spaghettinet' spaghettinet_arch_name: 'spaghettinet_edgetpu_s' }}
  image_resizer {{ fixed_shape_resizer {{ height: {height} width: 320 }} }}
  loss {{ localization_weight: {weight} }}
}} }}
train_config {{
  num_steps: {steps}
  optimizer {{ momentum_optimizer {{ learning_rate {{ cosine_decay_learning_rate {{
    learning_rate_base: {rate}
  }} }} }} }}
}}
"""
GOOD = {"num_classes": 3, "height": 320, "weight": 1.0, "steps": 1000, "rate": 0.04}


def _config(**values) -> str:
    return MODEL.format(**(GOOD | values))


@pytest.mark.parametrize("spelling", ["inf", "-inf", "+inf", "infinity", "-Infinity", "nan", "-nan", "1e999"])
def test_every_spelling_of_infinity_reads_alike_and_is_refused_at_its_line(spelling):
    """-inf and +inf were "not a number" while inf and -infinity were accepted: now all read as numbers, and no
    setting works with a non-finite one."""
    assert parse_text(f"a: {spelling}").first("a").value.kind in ("number", "identifier")
    with pytest.raises(DataError) as caught:
        parse_config_text(_config(weight=spelling))
    assert str(caught.value) == (
        f"pipeline.config:5:31: model.ssd.loss.localization_weight must be a finite number, got {spelling}"
    )


@pytest.mark.parametrize(
    ("values", "where", "words"),
    [
        ({"rate": "nan"}, ":10:", "learning_rate_base must be a finite number, got nan"),
        ({"rate": "inf"}, ":10:", "learning_rate_base must be a finite number, got inf"),
        ({"num_classes": 2**63}, ":2:", "num_classes is out of range"),
        ({"num_classes": 10**30}, ":2:", "num_classes is out of range"),
        ({"steps": "1e30"}, ":8:", "num_steps is out of range: 1e30 does not fit the 32-bit field"),
        ({"steps": 2**32}, ":8:", "num_steps is out of range"),
        ({"height": 100_000}, ":4:", "height must be in [32, 4096] pixels, got 100000"),
        ({"height": "5e3"}, ":4:", "height must be in [32, 4096] pixels, got 5000"),
    ],
)
def test_values_that_cannot_work_are_refused_with_the_field_and_line(values, where, words):
    with pytest.raises(DataError) as caught:
        parse_config_text(_config(**values))
    message = str(caught.value)
    assert message.startswith("pipeline.config" + where) and words in message, message


def test_good_values_still_read():
    cfg = parse_config_text(_config(steps="2e3", rate="4e-2", weight="1.5f"))
    assert (cfg.train.num_steps, cfg.train.learning_rate_base, cfg.model.localization_weight) == (
        2000,
        0.04,
        1.5,
    )


def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path, capsys):
    path = tmp_path / "pipeline.config"
    path.write_text("model " + "{ a " * 3000 + "}" * 3001 + "\n")
    with pytest.raises(DataError, match=r"pipeline.config:1:\d+: blocks nested more than 100 deep"):
        parse_config_text(path.read_text())
    code, out, err = run_cli(capsys, "train", "--config", str(path), "--model-dir", str(tmp_path / "m"))
    assert code == 1 and "nested more than 100 deep" in err and "Traceback" not in out + err
    assert not (tmp_path / "m").exists()


def test_nesting_up_to_the_limit_still_parses():
    text = "a " + "{ a " * 99 + "{ }" + "}" * 99
    tree = parse_text(text)
    depth = 0
    while tree.fields:
        tree = tree.fields[0].value
        depth += 1
    assert depth == 100
