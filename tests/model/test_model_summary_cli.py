"""``model summary`` and ``checkpoint inspect``: the numbers users read, and clean errors."""

from __future__ import annotations

import pytest

from spaghettinet.cli import main
from spaghettinet.model.summary import summarize_variant


def test_summary_macs_at_320_are_near_the_reference():
    summary = summarize_variant("s", (320, 320))
    # The reference config quotes "1 billion MACs" for S (spec §3); convolutions of backbone and head.
    assert summary.total_macs == pytest.approx(1.0e9, rel=0.05)
    assert summary.trainable_params == 3_478_933
    assert summary.total_params == 3_536_463  # reference total incl. batch-norm statistics and concat ranges
    assert summary.num_anchors == 2058
    by_name = {row.name: row for row in summary.rows}
    assert by_name["c0n3"].output_shape == (5, 5, 136)
    assert by_name["s0"].macs == 160 * 160 * 5 * 5 * 3 * 24
    assert sum(row.params for row in summary.rows) == summary.total_params


def test_model_summary_command_prints_the_node_table(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["model", "summary", "--variant", "s", "--input-size", "96x128", "--num-classes", "3"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "spaghettinet_edgetpu_s at 96x128" in out
    assert "c0n5" in out and "BoxPredictor_4" in out and "trainable parameters" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "summary", "--variant", "xl"], "valid variants"),
        (["model", "summary", "--input-size", "20"], "at least 33"),
        (["model", "summary", "--input-size", "big"], "N or HxW"),
    ],
)
def test_model_summary_bad_arguments_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_checkpoint_inspect_command(reference_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["checkpoint", "inspect", str(reference_dir / "spaghettinet_edgetpu_m_ckpt")])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "variant: spaghettinet_edgetpu_m" in out and "classes: 90" in out
    assert "edge n5→c0n3" in out and "4,237,489" in out


def test_checkpoint_inspect_missing_prefix_exits_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["checkpoint", "inspect", str(tmp_path / "model.ckpt")])
    assert exit_info.value.code == 1
    assert "model.ckpt.index not found" in capsys.readouterr().err
