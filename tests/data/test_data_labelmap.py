"""Label maps: the seed's hand-written file, the OD API's format, and the mistakes people make by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spaghettinet.data.labelmap import (
    LabelMap,
    labelmap,
    parse_label_map_text,
    read_label_map,
    write_label_map,
)
from spaghettinet.data.voc import VocObject, voc_xml_text
from spaghettinet.errors import DataError

SEED_EXAMPLE = """item{
        name:"frodo"
        id:1
}
item{
        name:"baggins"
        id:2
}
"""


def test_reads_the_seeds_hand_written_label_map(tmp_path):
    path = tmp_path / "label_map.txt"
    path.write_text(SEED_EXAMPLE)
    label_map = read_label_map(path)
    assert label_map.names == ["frodo", "baggins"]
    assert (label_map.id_of("baggins"), label_map.name_of(1), label_map.num_classes) == (2, "frodo", 2)


def test_reads_od_api_style_with_comments_display_names_and_extra_fields():
    text = """# COCO style
    item { name: "/m/01g317" id: 1 display_name: "person" }
    item {
      name: 'background'  # allowed at id 0
      id: 0
    }
    item { name: "/m/0199g" id: 3 display_name: "bicycle" keypoints { id: 0 label: "nose" } ancestor_ids: [1, 2] }
    """
    label_map = parse_label_map_text(text)
    assert label_map.names == ["/m/01g317", "class_2", "/m/0199g"]  # gap filled, as the OD API does
    assert label_map.id_of("bicycle") == 3 and label_map.num_classes == 3


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('item { name: "a" id: 1 } item { name: "a" id: 2 }', "used twice"),
        ('item { name: "a" id: 1 } item { name: "b" id: 1 }', "used twice"),
        ('item { name: "cat" id: 0 }', "reserved for the background"),
        ('item { name: "cat" id: -1 }', "negative"),
        ('item { name: "cat" }', "without an id"),
        ('item { name: "cat" id: 1 ', "missing"),
        ("", "no items"),
        ('item { name: "cat" id: one }', "not an integer"),
    ],
)
def test_hand_written_mistakes_are_clear_errors(tmp_path, text, words):
    path = tmp_path / "lm.pbtxt"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_label_map(path)
    assert words in str(caught.value) and str(path) in str(caught.value)


@given(
    st.sets(
        # Control characters included: a name with a carriage return once wrote a map that could not be read.
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1),
        min_size=1,
        max_size=8,
    )
)
def test_written_maps_read_back_identical(names):
    names = {n for n in names if n.strip() == n and n != "background"}
    if not names:
        return
    label_map = LabelMap.from_names(names)
    assert parse_label_map_text(label_map.to_text()) == label_map
    assert label_map.names == sorted(names)


def test_labelmap_command_numbers_classes_in_sorted_order(tmp_path):
    for split_name, names in (("train", ["zebra", "ant"]), ("test", ["moth"])):
        folder = tmp_path / "images" / split_name
        folder.mkdir(parents=True)
        (folder / "a.jpg").write_bytes(b"")  # labelmap reads only the xml files
        (folder / "a.xml").write_text(
            voc_xml_text("a.jpg", 10, 10, [VocObject(n, 0, 0, 5, 5) for n in names])
        )
    written = labelmap(tmp_path / "images", tmp_path / "training" / "label_map.pbtxt")
    assert written.names == ["ant", "moth", "zebra"]
    assert read_label_map(tmp_path / "training" / "label_map.pbtxt") == written
    write_label_map(written, tmp_path / "again.pbtxt")
    assert (tmp_path / "again.pbtxt").read_text() == (tmp_path / "training" / "label_map.pbtxt").read_text()


@pytest.mark.parametrize(
    "written",
    [
        r'item { name: "caf\303\251" id: 1 }',  # octal, as protobuf's C++ writer escapes non-ASCII bytes
        r'item { name: "caf\xc3\xa9" id: 1 }',  # hex
        r'item { name: "caf\u00e9" id: 1 }',  # unicode
        r"item { name: 'caf\303\251' id: 1 }",
        'item { name: "café" id: 1 }',
    ],
)
def test_escaped_non_ascii_names_are_decoded(tmp_path, written):
    path = tmp_path / "lm.pbtxt"
    path.write_text(written, encoding="utf-8")
    label_map = read_label_map(path)
    assert label_map.names == ["café"] and label_map.id_of("café") == 1


def test_name_with_a_carriage_return_reads_back(tmp_path):
    written = LabelMap.from_names(["line\rbreak", "tab\tand\nnewline", "bell\x07", 'quote"s'])
    write_label_map(written, tmp_path / "lm.pbtxt")
    assert "\r" not in (tmp_path / "lm.pbtxt").read_bytes().decode("utf-8")
    assert read_label_map(tmp_path / "lm.pbtxt") == written


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('item { name: "cat" id: 2147483648 }', "too large: label map ids are 32-bit"),
        ('item { name: "cat" id: 99999999999999999999999 }', "too large"),
        ("item { " * 5000 + "}" * 5000, "nested more than 100 deep"),
        ('item { name: "caf\\q" id: 1 }', "unknown escape"),
        ('item { name: "\\377" id: 1 }', "not valid UTF-8"),
    ],
)
def test_hostile_label_maps_are_one_clear_error(tmp_path, capsys, text, words):
    path = tmp_path / "lm.pbtxt"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_label_map(path)
    assert words in str(caught.value) and str(path) in str(caught.value)
