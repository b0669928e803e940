"""The filter language: grammar, meaning, every error path, canonical text, composition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from meshdcm import ALL, FilterError, FilterSyntaxError, attribute, codec, parse_filter
from meshdcm.dataview import element_index, view_of


def mr() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "MR"
    ds.SeriesDescription = "ep2d_perf DSC"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "PERFUSION"]
    ds.EchoTime = "30"
    ds.SliceThickness = "5.0"
    ds.Rows = 128
    ds.PatientName = "Müller^Jürgen"
    ds.BodyPartExamined = ""
    ds.add_new(0x00191010, "LO", "vendor")
    ds.add_new(0x00189087, "FD", 1000.0)
    return ds


def everywhere(text: str, ds: Dataset) -> bool:
    """The filter's answer, which must be the same on a Dataset, on the bytes walked, and with the index."""
    f = parse_filter(text)
    body = codec.encode(ds)
    answers = {f.matches(ds), f.matches(body), f.evaluate(view_of(body, element_index(body)).get)}
    assert len(answers) == 1, f"{text} means different things on different paths"
    return answers.pop()


@pytest.mark.parametrize("text, expected", [
    ('Modality == "MR"', True),
    ("Modality == 'MR'", True),
    ('Modality != "CT"', True),
    ('Modality == "mr"', False),
    ('(0008,0060) == "MR"', True),
    ('(0019,1010) == "vendor"', True),
    ('(0019,1011) exists', False),
    ('SeriesDescription ~ "(?i)PERF"', True),
    ('SeriesDescription ~ "^perf"', False),  # a search, anchored here
    (r'SeriesDescription ~ "\\d"', True),  # "\d" via an escaped backslash
    (r'SeriesDescription ~ "\d"', True),  # and a lone backslash stays literal
    ('ImageType contains "PERFUSION"', True),
    ('ImageType contains "DERIVED"', False),
    ('ImageType == "ORIGINAL\\\\PRIMARY\\\\PERFUSION"', True),  # whole value, joined by a backslash
    ('ImageType == "ORIGINAL"', False),
    ('ImageType ~ "PRIMARY"', True),
    ("EchoTime > 20", True),
    ("EchoTime >= 30 and EchoTime <= 30.0", True),
    ("EchoTime < 2e1", False),
    ("SliceThickness == 5", True),
    ('SliceThickness == "5.0"', True),
    ("Rows == 128 and Rows < 256.5", True),
    ('Rows == "128"', True),
    ("(0018,9087) > 999.5", True),
    ("EchoTime > -1", True),
    ('Modality in ["CT", "MR"]', True),
    ('Modality in ["CT"]', False),
    ("Rows in [64, 128]", True),
    ("PatientName == \"Müller^Jürgen\"", True),
    ("BodyPartExamined missing", True),  # present but empty counts as missing
    ("BodyPartExamined exists", False),
    ('BodyPartExamined != "HEAD"', False),  # every test on an empty element is false...
    ('not BodyPartExamined == "HEAD"', True),  # ...but its negation is true
    ("StudyDate missing and StudyDate != 1", False),  # != on an absent element is false too
    ("StudyDate missing and not StudyDate == 1", True),
    ('Modality == "CT" or Modality == "MR" and Rows == 128', True),  # and binds tighter than or
    ('(Modality == "CT" or Modality == "MR") and Rows == 64', False),
    ('not Modality == "CT" and not not Rows == 128', True),
    ("", True),
])
def test_meaning(text, expected):
    assert everywhere(text, mr()) is expected


@pytest.mark.parametrize("text, column, expected", [
    ('Modality = "MR"', 10, "'==' or '!=' to compare"),
    ("Modality == ", 13, "a string or a number after '=='"),
    ('Modaliti == "MR"', 1, "did you mean 'Modality'"),
    ('Modality "MR"', 10, "an operator (== != < <= > >= ~ in contains exists missing)"),
    ('Modality == "MR', 13, 'a closing " for the string'),
    ("Modality == 'MR", 13, "a closing ' for the string"),
    ('Modality == "MR" Rows', 18, "'and', 'or', or the end of the filter"),
    ('(Modality == "MR"', 18, "')' to close the '(' at column 1"),
    ('Modality in "MR"', 13, "'[' to start the list after 'in'"),
    ('Modality in ["MR" "CT"]', 19, "',' or ']' to close the list"),
    ("Modality in []", 14, "a string or a number in the list"),
    ('Modality in ["MR",]', 19, "a string or a number after ','"),
    ("SeriesDescription ~ 5", 21, "a quoted regular expression after '~'"),
    ('SeriesDescription ~ "(unclosed"', 21, "a valid regular expression"),
    ("ImageType contains", 19, "a string or a number after 'contains'"),
    ("and Modality exists", 1, "a DICOM keyword or a tag like (0008,0060), 'not' or '('"),
    ("Modality exists and", 20, "a DICOM keyword or a tag like (0008,0060), 'not' or '('"),
    ("Modality == $", 13, "a keyword, a tag, an operator, a string or a number"),
    ("(0008,006G) exists", 2, "a DICOM keyword or a tag like (0008,0060), 'not' or '('"),
    ("   ", None, None),
])
def test_every_error_path_names_the_column_and_what_was_expected(text, column, expected):
    if column is None:
        assert parse_filter(text) is ALL  # blank = match everything
        return
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(text)
    err = info.value
    assert err.column == column, str(err)
    assert expected in err.expected or expected in str(err), str(err)
    assert f"column {column}" in str(err) and "^" in str(err)


def test_python_builder_errors():
    with pytest.raises(FilterError, match="unknown DICOM keyword 'Modaliti'; did you mean 'Modality'"):
        attribute("Modaliti")
    with pytest.raises(FilterError, match="string or a number"):
        attribute("Rows") == [1]  # noqa: B015
    with pytest.raises(FilterError, match="invalid regular expression"):
        attribute("SeriesDescription").search("(")
    with pytest.raises(FilterError, match="at least one value"):
        attribute("Modality").isin([])
    with pytest.raises(FilterError, match="cannot be negated"):
        ~ALL  # noqa: B018


def test_composition_and_canonical_text():
    perf = (attribute("Modality") == "MR") & attribute("SeriesDescription").search("(?i)perf|dsc")
    not_derived = ~attribute("ImageType").contains("DERIVED")
    f = (perf & not_derived) | (attribute("(0008,0060)") == "CT")
    assert str(f) == ('(Modality == "MR" and SeriesDescription ~ "(?i)perf|dsc" and not ImageType contains '
                      '"DERIVED") or Modality == "CT"')
    assert parse_filter(str(f)) == f
    assert f.matches(mr()) and f.tags == {0x00080060, 0x0008103E, 0x00080008}
    assert (ALL & perf) is perf and (perf | ALL) is ALL
    assert str(attribute(0x00191010).exists()) == "(0019,1010) exists"


LEAVES = st.one_of(
    st.builds(lambda v: attribute("Modality") == v, st.sampled_from(["MR", "CT", 'a"b\\c'])),
    st.builds(lambda v: attribute("Rows") > v, st.integers(-5, 300)),
    st.builds(lambda v: attribute("EchoTime") <= v, st.floats(-10, 100, allow_nan=False)),
    st.builds(lambda v: attribute("SeriesDescription").search(v), st.sampled_from(["perf", "(?i)DSC", r"\d+", "^$"])),
    st.builds(lambda v: attribute("ImageType").contains(v), st.sampled_from(["PRIMARY", "DERIVED"])),
    st.builds(lambda vs: attribute("Modality").isin(vs), st.lists(st.sampled_from(["MR", "CT", "PT"]), min_size=1)),
    st.sampled_from([attribute("BodyPartExamined").missing(), attribute("PatientName").exists()]),
)
TREES = st.recursive(LEAVES, lambda kids: st.one_of(
    st.builds(lambda a, b: a & b, kids, kids), st.builds(lambda a, b: a | b, kids, kids), kids.map(lambda a: ~a)),
    max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(TREES, st.sampled_from(["MR", "CT", "PT"]), st.integers(0, 300))
def test_canonical_text_means_the_same(f, modality, rows):
    ds = mr()
    ds.Modality = modality
    ds.Rows = rows
    again = parse_filter(str(f))
    assert again == f
    body = codec.encode(ds)
    assert again.matches(body) == f.matches(body) == f.matches(ds)
