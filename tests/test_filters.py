"""The filter language: grammar, meaning, every parser error, canonical text, composition, and that a filter
means the same on the wire bytes, an IndexedView, a Message and a pydicom Dataset."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from meshdcm import codec
from meshdcm.dataview import DataView, element_index, view_of
from meshdcm.errors import FilterError, FilterSyntaxError
from meshdcm.filters import ALL, Filter, attribute, parse
from meshdcm.message import Message

PRIVATE = 0x00291001  # (0029,1001) in the block of creator "MESHDCM TEST"


def sample() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.Modality = "MR"
    ds.SeriesDescription = "DSC_perfusion"
    ds.PatientName = "Müller^Jürgen"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = "12"
    ds.EchoTime = "25.0"
    ds.SliceThickness = "-1.5e1"
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.Rows = 512
    ds.AcquisitionMatrix = [0, 128, 128, 0]
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedStudySequence = Sequence([])
    ds.private_block(0x0029, "MESHDCM TEST", create=True).add_new(0x01, "LO", 'say "hi" it\'s\\me')
    return ds


def forms(ds: Dataset):
    """The same data four ways: body bytes (walk), IndexedView, a received Message, the pydicom Dataset."""
    body = codec.encode(ds)
    message = Message.from_bytes(Message("stored.instance", body).to_bytes())
    return [body, view_of(body, element_index(body)), message, ds]


def check(text: str, expected: bool, ds: Dataset | None = None) -> None:
    f = parse(text)
    for data in forms(ds if ds is not None else sample()):
        assert f.matches(data) is expected, (text, type(data).__name__)


# --- grammar and meaning ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ('Modality == "MR"', True), ("Modality == 'MR'", True), ('Modality != "MR"', False), ('Modality != "CT"', True),
    ('Modality < "MS"', True), ('Modality <= "MR"', True), ('Modality > "MR"', False), ('Modality >= "MR"', True),
    ("Rows == 512", True), ("Rows != 512", False), ("Rows < 512", False), ("Rows <= 512", True),
    ("Rows > 511.5", True), ("Rows >= 5.12e2", True), ("Rows > 1E3", False), ("Rows > -1", True),
    ("SliceThickness == -15", True), ("SliceThickness < -1.4e+1", True), ("EchoTime == 25", True),
    ("EchoTime == .25e2", True), ("EchoTime == +25", True),
    ("(0008,0060) == 'MR'", True), ("( 0008 , 0060 ) == 'MR'", True), ("(0008,0060)=='MR'", True),
    ("(0029,1001) exists", True), ("(0029,0010) == 'MESHDCM TEST'", True),
    ('(0029,1001) == "say \\"hi\\" it\'s\\\\me"', True), ("(0029,1001) == 'say \"hi\" it\\'s\\\\me'", True),
    ('(0029,1001) contains "hi"', False), (r'(0029,1001) ~ "\\\\me$"', True),
    ('Modality in ["CT", "MR"]', True), ('Modality in ["CT"]', False), ("SeriesNumber in [11, 12]", True),
    ("Modality in [1, 2]", False), ('SeriesNumber in ["12"]', True),
    ('ImageType contains "PRIMARY"', True), ('ImageType contains "PRIM"', False), ("PixelSpacing contains 0.5", True),
    ("AcquisitionMatrix contains 128", True), ("AcquisitionMatrix contains 64", False),
    ('Modality contains "MR"', True),
    ("Modality exists", True), ("Modality missing", False), ("StudyDescription missing", True),
    ("StudyDescription exists", False), ("ReferencedImageSequence exists", True),
    ("ReferencedStudySequence exists", False), ("ReferencedStudySequence missing", True),
    ('PatientName == "Müller^Jürgen"', True), ('PatientName ~ "Jürgen$"', True),
])
def test_operators(text, expected):
    check(text, expected)


@pytest.mark.parametrize("text,expected", [
    ('ImageType == "ORIGINAL\\\\PRIMARY\\\\M\\\\ND"', True),  # whole value, joined by backslash
    ('ImageType == "ORIGINAL"', False),
    (r'ImageType ~ "PRIMARY\\\\M"', True),  # a regex \\ (one backslash) is \\\\ in a string
    ('PixelSpacing == "0.5\\\\0.5"', True),
    ("PixelSpacing == 0.5", False),  # a number compares only with a single value
    ("PixelSpacing > 0", False),
    ('AcquisitionMatrix == "0\\\\128\\\\128\\\\0"', True),
])
def test_comparisons_look_at_the_whole_value(text, expected):
    check(text, expected)


@pytest.mark.parametrize("text,expected", [
    ('SeriesDescription ~ "perf"', True),  # search, not full match
    ('SeriesDescription ~ "^perf"', False),
    ('SeriesDescription ~ "(?i)^dsc"', True),
    ('SeriesDescription ~ "DSC_\\d?perf"', True),  # \d stays a regex class
    ('SeriesDescription ~ "^DSC_perfusion$"', True),
])
def test_regex_is_a_search(text, expected):
    check(text, expected)


@pytest.mark.parametrize("text,expected", [
    ("SeriesNumber > 9", True),  # number: 12 > 9
    ('SeriesNumber > "9"', False),  # string: "12" < "9"
    ('Rows == "512"', True),  # a number's text
    ("Modality == 0", False), ("Modality != 0", False),  # a string that is no number never compares with one
    ('EchoTime == "25.0"', True), ('EchoTime == "25"', False),  # DS text as sent
])
def test_numbers_versus_strings(text, expected):
    check(text, expected)


@pytest.mark.parametrize("op", ['== "x"', '!= "x"', '< "x"', '<= "x"', '> "x"', '>= "x"', "== 1", "!= 1", "< 1",
                                "> 1", '~ "."', '~ ""', 'in ["x", 1]', 'contains "x"', "exists"])
@pytest.mark.parametrize("keyword", ["StudyDescription", "ReferringPhysicianName"])  # absent / empty
def test_absent_and_empty_elements_are_false_except_missing(keyword, op):
    check(f"{keyword} {op}", False)
    check(f"{keyword} missing", True)
    check(f"not {keyword} {op}", True)


@pytest.mark.parametrize("text,expected", [
    ('Modality == "CT" or Rows == 512 and Modality == "MR"', True),
    ('Modality == "CT" or Rows == 1 and Modality == "MR"', False),
    ('(Modality == "CT" or Rows == 512) and Modality == "CT"', False),
    ('not Modality == "CT" and Rows == 1', False),  # (not a) and b
    ('not (Modality == "CT" and Rows == 1)', True),
    ('not not Modality == "MR"', True),
    ('Modality == "MR" and not Rows == 1 and ImageType contains "M"', True),
    ('((Modality == "MR"))', True),
    ('Modality == "CT" or Modality == "PT" or (Rows > 1 and (not Modality missing))', True),
])
def test_precedence_and_parentheses(text, expected):
    check(text, expected)


def test_canonical_text_shows_the_precedence():
    assert str(parse('Modality == "CT" or Rows == 1 and Columns == 2')) == \
        'Modality == "CT" or (Rows == 1 and Columns == 2)'  # 'and' binds tighter; the text says so
    assert str(parse('(Modality == "CT" or Rows == 1) and Columns == 2')) == \
        '(Modality == "CT" or Rows == 1) and Columns == 2'
    assert str(parse('not (Modality == "CT" or Rows == 1)')) == 'not (Modality == "CT" or Rows == 1)'
    assert str(parse("  Modality=='MR'  ")) == 'Modality == "MR"'
    assert str(parse("(0008,0060) exists")) == "Modality exists"
    assert str(parse("(0029,1001) exists")) == "(0029,1001) exists"
    assert str(parse("Rows == 512.0")) == "Rows == 512"
    assert str(parse("EchoTime < 2.5e-3")) == "EchoTime < 0.0025"
    assert str(parse('Modality in [ "CT" ,1,2.5 ]')) == 'Modality in ["CT", 1, 2.5]'
    assert str(parse(r"""SeriesDescription ~ '\d"\\\\'""")) == r'SeriesDescription ~ "\\d\"\\\\"'


def test_empty_filter_is_all():
    for text in ("", "   ", "\t\n", None):
        f = parse(text)
        assert f is ALL and f.is_all and str(f) == ""
        assert f.matches(codec.encode(sample())) and f.matches(b"") and f.matches(Dataset())
    assert not parse("Modality exists").is_all


# --- every parser error: column and expected text ----------------------------------------------------------

@pytest.mark.parametrize("text,column,expected,found", [
    ('Modality == "MR', 13, 'a closing " for the string that starts here', None),
    ("Modality == 'MR", 13, "a closing ' for the string that starts here", None),
    ('Modality == "MR\\"', 13, 'a closing " for the string that starts here', None),
    ("Modality @ 1", 10, "a keyword, a tag, an operator, a string or a number", "'@'"),
    ("Modality == 1 & Rows exists", 15, "a keyword, a tag, an operator, a string or a number", "'&'"),
    ("Modalty == 'MR'", 1, "a DICOM keyword; did you mean 'Modality'?", "'Modalty'"),
    ("Qzxqzx exists", 1, "a DICOM keyword", "'Qzxqzx'"),
    ("Modality", 9, "an operator (== != < <= > >= ~ in contains exists missing)", "the end of the filter"),
    ("Modality 'MR'", 10, "an operator (== != < <= > >= ~ in contains exists missing)", "\"'MR'\""),
    ("Modality = 'MR'", 10, "'==' or '!=' to compare", "'='"),
    ("Modality ==", 12, "a string or a number after '=='", "the end of the filter"),
    ("Modality == MR", 13, "a string or a number after '=='", "'MR'"),
    ("Rows >= and", 9, "a string or a number after '>='", "'and'"),
    ("Modality contains", 18, "a string or a number after 'contains'", "the end of the filter"),
    ("SeriesDescription ~ perf", 21, "a quoted regular expression after '~'", "'perf'"),
    ("SeriesDescription ~ 1", 21, "a quoted regular expression after '~'", "'1'"),
    ('(Modality == "MR"', 18, "')' to close the '(' at column 1", "the end of the filter"),
    ('Rows > 1 and (Modality == "MR" or (Rows exists)', 48, "')' to close the '(' at column 14",
     "the end of the filter"),
    ('Modality in ["MR"', 18, "',' or ']' to close the list", "the end of the filter"),
    ('Modality in ["MR" "CT"]', 19, "',' or ']' to close the list", "'\"CT\"'"),
    ('Modality in "MR"', 13, "'[' to start the list after 'in'", "'\"MR\"'"),
    ("Modality in []", 14, "a string or a number in the list", "']'"),
    ('Modality in ["MR",]', 19, "a string or a number after ','", "']'"),
    ("Modality exists Rows exists", 17, "'and', 'or', or the end of the filter", "'Rows'"),
    ("Modality exists)", 16, "'and', 'or', or the end of the filter", "')'"),
    ("Modality exists and", 20, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "the end of the filter"),
    ("and Modality exists", 1, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "'and'"),
    ("not", 4, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "the end of the filter"),
    ("()", 2, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "')'"),
    ("Rows == 1 or or Rows == 2", 14, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "'or'"),
    ('"MR" == Modality', 1, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "'\"MR\"'"),
    ("(0008,006) exists", 2, "a DICOM keyword or a tag like (0008,0060), 'not' or '('", "'0008'"),
])
def test_syntax_errors_name_the_column_and_what_was_expected(text, column, expected, found):
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    err = info.value
    assert (err.column, err.expected, err.found) == (column, expected, found)
    assert err.text == text
    assert isinstance(err, FilterError)
    lines = str(err).splitlines()
    assert lines[0].startswith(f"filter syntax error at column {column}: expected {expected}")
    assert lines[1] == "  " + text
    assert lines[2] == "  " + " " * (column - 1) + "^"


def test_bad_regex_points_at_the_pattern():
    text = 'Modality == "MR" and SeriesDescription ~ "(perf"'
    with pytest.raises(FilterSyntaxError) as info:
        parse(text)
    assert info.value.column == 42
    assert info.value.expected == "a valid regular expression (missing ): (perf)"  # RE2's own words


def test_python_api_errors():
    with pytest.raises(FilterError, match="cannot be negated"):
        ~ALL  # noqa: B018
    with pytest.raises(FilterError, match="cannot be negated"):
        ~parse("")  # noqa: B018
    with pytest.raises(FilterError, match="unknown DICOM keyword 'Modalty'; did you mean 'Modality'"):
        attribute("Modalty")
    with pytest.raises(FilterError, match="invalid regular expression"):
        attribute("SeriesDescription").search("[")
    with pytest.raises(FilterError, match="at least one value"):
        attribute("Modality").isin([])
    for bad in (True, None, [1], b"MR", float("inf"), float("nan")):
        with pytest.raises(FilterError):
            attribute("Rows") == bad  # noqa: B015
    with pytest.raises(FilterError):
        attribute("Rows").isin([1, None])


# --- the Python builder and composition ----------------------------------------------------------------------

def test_builder_gives_the_same_filters_as_the_text():
    assert (attribute("Modality") == "MR") == parse('Modality == "MR"')
    assert attribute("(0008,0060)").isin(["CT", 2]) == parse('Modality in ["CT", 2]')
    assert attribute(0x00291001).contains("x") == parse('(0029,1001) contains "x"')
    assert attribute("Rows").exists() == parse("Rows exists")
    assert attribute("Rows").missing() == parse("Rows missing")
    assert (attribute("Rows") != 3) == parse("Rows != 3")
    assert (attribute("Rows") < 3) == parse("Rows < 3")
    assert (attribute("Rows") <= 3) == parse("Rows <= 3")
    assert (attribute("Rows") > 3) == parse("Rows > 3")
    assert (attribute("Rows") >= 3.5) == parse("Rows >= 3.5")
    assert attribute("SeriesDescription").search("(?i)perf|dsc") == parse('SeriesDescription ~ "(?i)perf|dsc"')


def test_composition():
    mr, perf = attribute("Modality") == "MR", attribute("SeriesDescription").search("(?i)perf")
    ct = attribute("Modality") == "CT"
    assert str(mr & perf) == 'Modality == "MR" and SeriesDescription ~ "(?i)perf"'
    assert str(mr | ct) == 'Modality == "MR" or Modality == "CT"'
    assert str((mr | ct) & perf) == '(Modality == "MR" or Modality == "CT") and SeriesDescription ~ "(?i)perf"'
    assert str(mr | (ct & perf)) == 'Modality == "MR" or (Modality == "CT" and SeriesDescription ~ "(?i)perf")'
    assert str(~(mr | ct)) == 'not (Modality == "MR" or Modality == "CT")'
    assert str(~~mr) == 'not not Modality == "MR"'
    assert str((mr & perf) & ct) == str(mr & (perf & ct))  # flattened
    assert (ALL & mr) is mr and (mr & ALL) is mr
    assert (mr | ALL) is ALL and (ALL | mr) is ALL
    ds = sample()
    for data in forms(ds):
        assert (mr & perf).matches(data)
        assert not (ct & perf).matches(data)
        assert (ct | perf).matches(data)
        assert (~ct).matches(data) and not (~mr).matches(data)
    assert (mr & perf).tags == frozenset({0x00080060, 0x0008103E})
    assert ALL.tags == frozenset()


def test_filters_are_values():
    a, b = parse('Modality == "MR"'), parse("Modality=='MR'")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != parse('Modality == "CT"') and a != 'Modality == "MR"'
    assert repr(a) == "Filter('Modality == \"MR\"')"
    assert a.to_json() == '"Modality == \\"MR\\""'
    assert parse(a.to_json()[1:-1].replace('\\"', '"')) == a
    assert parse('Modality == "MR"') is parse('Modality == "MR"')  # cached
    assert isinstance(a, Filter)


def test_evaluate_with_a_getter():
    f = parse('Modality == "MR" and Rows > 100')
    assert f.evaluate({0x00080060: "MR", 0x00280010: 512}.get)
    assert not f.evaluate({0x00080060: "MR"}.get)


def test_private_tags_by_tag_number_on_every_form():
    check('(0029,1001) ~ "hi"', True)
    check("(0029,1002) missing", True)
    check('(0029,0010) == "MESHDCM TEST" and (0029,1001) exists', True)


# --- canonical round trip on generated filters and data sets ----------------------------------------------------

_POOL = {  # keyword -> values the generated data sets use (and the generated filters compare with)
    "Modality": ["MR", "CT", "PT"],
    "ImageType": [["ORIGINAL", "PRIMARY"], ["DERIVED", "SECONDARY", "ADC"], "ORIGINAL"],
    "SeriesDescription": ["DSC perf", "t1_mprage", 'quote"and\\slash', "Ünïcode"],
    "Rows": [64, 256, 512],
    "EchoTime": ["25", "2.5", "-1e3"],
    "SeriesNumber": ["1", "12", "-3"],
    "PixelSpacing": [["0.5", "0.5"], ["1", "2"]],
    "PatientName": ["Müller^Jürgen", ""],
    "AcquisitionMatrix": [[0, 128, 128, 0], 64],
}
_LITERALS = st.sampled_from(["MR", "CT", "ORIGINAL", "ORIGINAL\\PRIMARY", "DSC perf", 'quote"and\\slash', "Ünïcode",
                             "12", "0.5", "", "'"]) | st.sampled_from([64, 256, 512, 12, 2.5, -1000.0, 0.5, 128, 1e-3])
_PATTERNS = st.sampled_from(["perf", "^t1", "(?i)dsc", "\\d", "ORIGINAL\\\\P", '"', "Ü", "^$", "."])
_TAGS = st.sampled_from(sorted(_POOL) + ["(0029,1001)", "StudyDescription"])


@st.composite
def generated_datasets(draw):
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, values in _POOL.items():
        if draw(st.booleans()):
            setattr(ds, keyword, draw(st.sampled_from(values)))
    if draw(st.booleans()):
        ds.private_block(0x0029, "MESHDCM TEST", create=True).add_new(0x01, "LO", draw(st.sampled_from(["MR", "12"])))
    return ds


def _leaf(draw_tag, op, literal):
    a = attribute(draw_tag)
    return {"==": lambda: a == literal, "!=": lambda: a != literal, "<": lambda: a < literal,
            "<=": lambda: a <= literal, ">": lambda: a > literal, ">=": lambda: a >= literal,
            "contains": lambda: a.contains(literal), "exists": a.exists, "missing": a.missing}[op]()


_LEAVES = st.one_of(
    st.builds(_leaf, _TAGS, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "contains", "exists", "missing"]),
              _LITERALS),
    st.builds(lambda t, p: attribute(t).search(p), _TAGS, _PATTERNS),
    st.builds(lambda t, vs: attribute(t).isin(vs), _TAGS, st.lists(_LITERALS, min_size=1, max_size=3)),
)
FILTERS = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.builds(lambda a, b: a & b, inner, inner),
    st.builds(lambda a, b: a | b, inner, inner),
    st.builds(lambda a: ~a, inner),
), max_leaves=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FILTERS, generated_datasets())
def test_canonical_text_round_trips_and_means_the_same_everywhere(f, ds):
    text = str(f)
    again = parse(text)
    assert again == f and str(again) == text
    results = {parse(text).matches(data) for data in forms(ds)} | {f.matches(data) for data in forms(ds)}
    assert len(results) == 1, (text, ds)


@settings(max_examples=100, deadline=None)
@given(FILTERS)
def test_builder_and_operator_forms_agree(f):
    g = parse(str(f))
    ds = sample()
    body = codec.encode(ds)
    assert (f & g).matches(body) == f.matches(body)
    assert (f | ~g).matches(body) is True
    assert (f & ~g).matches(ds) is False


def test_a_walked_view_is_reused_by_several_filters():
    body = codec.encode(sample())
    view = DataView(body)
    assert parse('Modality == "MR"').matches(view)
    assert parse("Rows == 512").matches(view)
    assert parse('ImageType contains "M"').matches(view)


def test_repeating_group_tags_round_trip_as_numbers():
    for tag in (0x60003000, 0x60023000, 0x50000010):
        f = attribute(tag).exists()
        assert parse(str(f)) == f
        assert str(f) == f"({tag >> 16:04X},{tag & 0xFFFF:04X}) exists"


def test_sequences_and_binary_values_only_exist():
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from meshdcm import codec
    from meshdcm.dataview import element_index, view_of

    ds = Dataset()
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.add_new(0x00091010, "OB", b"\x01\x02")
    body = codec.encode(ds)
    for text, expected in [("ReferencedImageSequence exists", True), ('ReferencedImageSequence == "True"', False),
                           ('ReferencedImageSequence ~ "T"', False), ('ReferencedImageSequence in ["True"]', False),
                           ('ReferencedImageSequence contains "True"', False), ("(0009,1010) exists", True),
                           ('(0009,1010) != "x"', False)]:
        f = parse(text)
        assert {f.matches(ds), f.matches(body), f.evaluate(view_of(body, element_index(body)).get)} == {expected}, text


def test_a_backtracking_pattern_runs_in_linear_time():
    """`(a+)+$` froze a node on a 35-character value (Python's re: exponential); RE2 answers at once."""
    import time

    f = parse('SeriesDescription ~ "(a+)+$"')
    ds = Dataset()
    ds.SeriesDescription = "a" * 60 + "!"  # a DICOM LO holds 64; Python's re would need ~2^60 steps
    started = time.process_time()
    assert not f.matches(codec.encode(ds))
    assert time.process_time() - started < 1.0


def test_patterns_that_need_backtracking_are_refused_with_the_reason():
    for pattern in (r"(a)\\1", "(?=perf)", "(?<!x)y"):
        with pytest.raises(FilterSyntaxError, match="RE2 syntax: no backreferences or lookaround"):
            parse(f'SeriesDescription ~ "{pattern}"')


def test_deep_nesting_and_huge_filters_are_syntax_errors_not_recursion_errors():
    for text in ("not " * 5000 + 'Modality == "MR"', "(" * 5000 + 'Modality == "MR"' + ")" * 5000,
                 "not " * 65 + 'Modality == "MR"', "(" * 65 + 'Modality == "MR"' + ")" * 65):
        with pytest.raises(FilterSyntaxError):
            parse(text)
    assert parse("not " * 63 + 'Modality == "MR"').matches(codec.encode(Dataset()))  # 64 deep is allowed
    chain = " or ".join(f"SeriesNumber == {i}" for i in range(400))  # a long chain evaluates without deep calls
    ds = Dataset()
    ds.SeriesNumber = 399
    assert parse(chain).matches(codec.encode(ds))
