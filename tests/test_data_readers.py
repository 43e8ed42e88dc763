"""Readers: exact counts on the real files, honest reports, and one clear error for each kind of bad input."""
from __future__ import annotations

import csv
import logging

import pytest

from mtkit.data import (
    DataFormatError,
    PairExample,
    SentenceExample,
    TaskSpec,
    default_tasks,
    load_split,
    read_pairs,
    read_sentences,
)
from mtkit.data.readers import cs224n_preprocess_string, load_examples

SST_HEADER = "\tid\tsentence\tsentiment\n"
PAIR_HEADER = "\tid\tsentence1\tsentence2\tis_duplicate\n"
STS_HEADER = "\tid\tsentence1\tsentence2\tsimilarity\n"


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def sst_rows(n: int, start: int = 0) -> str:
    return "".join(f"{i}\tid{i:03d}\t Sentence number {i} .\t{i % 5}\n" for i in range(start, start + n))


def accounted(report) -> bool:
    """Nothing silent: every row read is either kept or listed as rejected."""
    return report.rows_read == report.rows_kept + len(report.rejected)


# ------------------------------------------------------------------------------------------ real data
EXPECTED = {  # README of ../shared/data: (task, split) -> (rows read, rows kept, rejected line numbers)
    ("sst", "train"): (8544, 8544, []), ("sst", "dev"): (1101, 1101, []), ("sst", "test"): (2210, 2210, []),
    ("para", "train"): (16000, 15999, [15624]), ("para", "dev"): (4214, 4213, [3428]),
    ("sts", "train"): (6040, 6040, []), ("sts", "dev"): (863, 863, []), ("sts", "test"): (1725, 1725, []),
}


@pytest.mark.realdata
def test_real_data_counts_match_readme(real_data):
    tasks = {t.name: t for t in default_tasks()}
    for (task, split), (read, kept, lines) in EXPECTED.items():
        examples, report = load_split(tasks[task], real_data, split)
        assert (report.rows_read, report.rows_kept) == (read, kept), (task, split, str(report))
        assert len(examples) == kept
        assert [r.line for r in report.rejected] == lines, str(report)
        assert accounted(report)
        labeled = split != "test"
        assert all((ex.label is not None) == labeled for ex in examples)
    # The two malformed Quora rows, with the reasons the README gives.
    _, train = load_split(tasks["para"], real_data, "train")
    assert "'is_duplicate'" in train.rejected[0].reason and "sentence2" not in train.rejected[0].reason
    _, dev = load_split(tasks["para"], real_data, "dev")
    assert "'sentence2'" in dev.rejected[0].reason and "'is_duplicate'" in dev.rejected[0].reason
    assert "line 3,428" in str(dev)


@pytest.mark.realdata
def test_real_data_line_numbers_are_physical_lines(real_data):
    """Independent check: the rejected record is on that physical line of the file (header = line 1)."""
    path = real_data / "quora-train.csv"
    lines = path.read_text(encoding="utf-8").split("\n")
    _, report = read_pairs(path)
    line = lines[report.rejected[0].line - 1]
    assert line.rstrip("\r").endswith("\t"), line  # the empty label is the last field
    assert report.rejected[0].excerpt.startswith(line[:20])


@pytest.mark.realdata
def test_real_data_labels_and_preprocessing(real_data):
    sst, report = load_split(default_tasks()[0], real_data, "dev")
    assert report.num_labels == 5 and set(report.label_counts) == {0, 1, 2, 3, 4}
    assert all(ex.sentence == ex.sentence.lower().strip() for ex in sst)
    sts, _ = load_split(default_tasks()[2], real_data, "train")
    assert all(isinstance(ex.label, float) and 0.0 <= ex.label <= 5.0 for ex in sts)


# ------------------------------------------------------------------------------------------ good files
def test_sst_like_file_and_preprocessing(tmp_path):
    path = write(tmp_path, "s.csv", SST_HEADER + "0\tab1\t It 's A Lovely Film .  \t3\n1\tab2\t Dull , dull .\t0\n")
    examples, report = read_sentences(path)
    assert examples == [SentenceExample("ab1", "it 's a lovely film .", 3), SentenceExample("ab2", "dull , dull .", 0)]
    assert (report.rows_read, report.rows_kept, report.rejected) == (2, 2, [])
    assert report.num_labels == 4  # nothing declared: inferred as max label + 1
    raw, _ = read_sentences(path, preprocess="none")
    assert raw[0].sentence == " It 's A Lovely Film .  "


def test_num_labels_inferred_from_data(tmp_path):
    """CFIMDB-style binary set: two labels -> num_labels 2; SST-style labels 0..4 -> 5."""
    binary = write(tmp_path, "b.csv", SST_HEADER + "0\ta\tgood\t1\n1\tb\tbad\t0\n2\tc\tfine\t1\n")
    _, report = read_sentences(binary)
    assert report.num_labels == 2 and report.label_counts == {0: 1, 1: 2}
    five = write(tmp_path, "f.csv", SST_HEADER + sst_rows(10))
    _, report = read_sentences(five)
    assert report.num_labels == 5


def test_named_labels_through_spec(tmp_path):
    write(tmp_path, "n.csv", "id\ttext\tlabel\na\tgreat\tpos\nb\tawful\tneg\n")
    spec = TaskSpec.from_dict({"name": "mine", "kind": "classification", "train": "n.csv",
                               "labels": ["neg", "pos"], "columns": {"sentence": "text", "label": "label"}})
    examples, report = load_split(spec, tmp_path, "train")
    assert [ex.label for ex in examples] == [1, 0] and report.num_labels == 2


def test_cs224n_pair_preprocessing_matches_starter_rule():
    # The starter's rule written out by hand: lower, then ' .', ' ?', ' ,', " '" and whitespace collapse.
    s = "Nobody answers my questions, why? It's Quora.  "
    assert cs224n_preprocess_string(s) == "nobody answers my questions , why ? it 's quora ."


def test_pairs_and_regression(tmp_path):
    para = write(tmp_path, "q.csv", PAIR_HEADER + "7\tq1\tHow old?\tWhat age?\t1.0\n8\tq2\tA\tB\t0.0\n")
    examples, _ = read_pairs(para, labeled=True, num_labels=2)
    assert examples[0] == PairExample("q1", "how old ?", "what age ?", 1)
    assert isinstance(examples[0].label, int)
    sts = write(tmp_path, "s.csv", STS_HEADER + "1\ts1\tA cat.\tA dog.\t1.6\n2\ts2\tX\tY\t5.0\n")
    examples, report = read_pairs(sts, kind="pair_regression", label_range=(0, 5))
    assert [ex.label for ex in examples] == [1.6, 5.0]


def test_test_student_file_with_two_unnamed_leading_columns(tmp_path):
    write(tmp_path, "ids-sst-test-student.csv",
                 "0\t\tid\tsentence\n1\t0.0\tb75\t Effective but too-tepid biopic\n2\t1.0\td17\t Fun .\n")
    spec = default_tasks()[0]
    examples, report = load_split(spec, tmp_path, "test")
    assert [ex.id for ex in examples] == ["b75", "d17"]
    assert all(ex.label is None for ex in examples)
    assert "unlabeled" in " ".join(report.notes)


def test_multiline_record_reports_its_starting_line(tmp_path):
    """A quoted field with a line break is one CSV record over two lines; later line numbers stay right."""
    content = (SST_HEADER                                   # line 1
               + "0\ta\tfine\t1\n"                          # line 2
               + '1\tb\t"broken\nacross lines"\t2\n'        # lines 3-4
               + "2\tc\tok\t3\n"                            # line 5
               + "3\td\tno label here\n"                    # line 6: 3 fields
               + "4\te\tlast\t4\n")                         # line 7
    path = write(tmp_path, "m.csv", content)
    examples, report = read_sentences(path)
    assert [r.line for r in report.rejected] == [3, 6]
    assert "spans lines 3-4" in report.rejected[0].reason
    assert [ex.id for ex in examples] == ["a", "c", "e"]
    assert accounted(report)
    # Independent cross-check with the csv module: it sees 5 records, one of them the 2-line one.
    with open(path, newline="", encoding="utf-8") as f:
        assert len(list(csv.reader(f, delimiter="\t"))) - 1 == report.rows_read == 5


def test_report_is_logged_at_warning_when_rows_are_rejected(tmp_path, caplog):
    path = write(tmp_path, "w.csv", SST_HEADER + sst_rows(3) + "9\tbad\tno label\t\n")
    with caplog.at_level(logging.WARNING, logger="mtkit.data"):
        _, report = read_sentences(path)
    assert "line 5" in caplog.text and "w.csv" in caplog.text
    assert "rejected 1" in str(report)


# ------------------------------------------------------------------------------------------ bad inputs
def test_truncated_last_row_is_rejected_with_its_line(tmp_path):
    path = write(tmp_path, "t.csv", SST_HEADER + sst_rows(4) + "4\tid004\t Sentence num")
    examples, report = read_sentences(path)
    assert len(examples) == 4 and [r.line for r in report.rejected] == [6]
    assert "found 3" in report.rejected[0].reason and "truncated" in report.rejected[0].reason


def test_truncated_inside_a_multibyte_character(tmp_path):
    content = (SST_HEADER + "0\ta\tcafé\t3\n1\tb\tcafé").encode("utf-8")[:-1]  # cut inside the 'é'
    with pytest.raises(DataFormatError, match=r"t\.csv, line 3: the file ends in the middle of a character"):
        read_sentences(write(tmp_path, "t.csv", content))


def test_truncated_inside_a_quote_is_rejected_not_swallowed(tmp_path):
    path = write(tmp_path, "tq.csv", SST_HEADER + sst_rows(3) + '3\tid3\t"cut in the middle\n4\tid4\tmore\t1\n')
    examples, report = read_sentences(path)
    assert len(examples) == 3 and report.rejected[0].line == 5
    assert "spans lines 5-6" in report.rejected[0].reason and accounted(report)


def test_wrong_delimiter_gets_one_clear_error(tmp_path):
    path = write(tmp_path, "comma.csv", ",id,sentence,sentiment\n0,a,good,3\n")
    with pytest.raises(DataFormatError) as err:
        read_sentences(path)
    message = str(err.value)
    assert "comma.csv" in message and "comma-separated" in message and "tab" in message
    # ... and declaring the delimiter reads it.
    examples, _ = read_sentences(path, delimiter=",")
    assert examples[0].label == 3


def test_missing_column_names_file_and_column(tmp_path):
    path = write(tmp_path, "nocol.csv", "\tid\tsentence\tlabel\n0\ta\tgood\t3\n")
    with pytest.raises(DataFormatError) as err:
        read_sentences(path)
    assert "nocol.csv" in str(err.value) and "'sentiment'" in str(err.value) and "columns" in str(err.value)


def test_non_numeric_label_is_rejected_with_reason(tmp_path):
    path = write(tmp_path, "nn.csv", SST_HEADER + sst_rows(2) + "2\tc\tgreat\tpositive\n")
    examples, report = read_sentences(path)
    assert len(examples) == 2 and report.rejected[0].line == 4
    assert "'positive'" in report.rejected[0].reason and "not a number" in report.rejected[0].reason


def test_label_outside_declared_set_is_an_error_naming_it(tmp_path):
    write(tmp_path, "oos.csv", SST_HEADER + sst_rows(5) + "5\tz\tway too good\t7\n")
    spec = TaskSpec("sst", "classification", train_file="oos.csv", num_labels=5)
    with pytest.raises(DataFormatError) as err:
        load_split(spec, tmp_path, "train")
    message = str(err.value)
    assert "oos.csv" in message and "'7'" in message and "line 7" in message and "num_labels" in message
    sts = write(tmp_path, "sts.csv", STS_HEADER + "0\ta\tx\ty\t6.5\n1\tb\tx\tz\t1\n")
    with pytest.raises(DataFormatError, match=r"range 0 to 5.*'6\.5'.*line 2"):
        read_pairs(sts, kind="pair_regression", label_range=(0, 5))
    para = write(tmp_path, "p.csv", PAIR_HEADER + "0\ta\tx\ty\t2.0\n")
    with pytest.raises(DataFormatError, match="'2.0'"):
        read_pairs(para, num_labels=2)


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.csv", b"")
    with pytest.raises(DataFormatError, match=r"empty\.csv is empty \(0 bytes\)"):
        read_sentences(path)
    blank = write(tmp_path, "blank.csv", "\n \n")
    with pytest.raises(DataFormatError, match="blank.csv"):
        read_sentences(blank)


def test_header_only_file(tmp_path):
    path = write(tmp_path, "head.csv", SST_HEADER)
    with pytest.raises(DataFormatError, match=r"head\.csv has a header but no data rows"):
        read_sentences(path)


def test_bom_is_read_and_noted(tmp_path):
    plain = write(tmp_path, "plain.csv", "id\tsentence\tsentiment\na\tgood\t3\n")
    bom = write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + plain.read_bytes())
    (ex_plain, _), (ex_bom, report) = read_sentences(plain), read_sentences(bom)
    assert ex_plain == ex_bom  # the BOM did not glue itself to the 'id' column name
    assert any("BOM" in note for note in report.notes)
    utf16 = write(tmp_path, "u16.csv", "id\tsentence\tsentiment\na\tgood\t3\n".encode("utf-16"))
    with pytest.raises(DataFormatError, match="UTF-16"):
        read_sentences(utf16)


def test_windows_line_endings_read_like_unix(tmp_path):
    content = PAIR_HEADER + "7\tq1\tHow old?\tWhat age?\t1.0\n8\tq2\tA\tB\t0.0\n"
    unix = write(tmp_path, "unix.csv", content)
    windows = write(tmp_path, "win.csv", content.replace("\n", "\r\n"))
    a, ra = read_pairs(unix, preprocess="none")
    b, rb = read_pairs(windows, preprocess="none")
    assert a == b and not any("\r" in ex.sentence2 for ex in b)
    assert (ra.rows_read, ra.rows_kept) == (rb.rows_read, rb.rows_kept) == (2, 2)


def test_old_mac_and_mixed_line_endings(tmp_path):
    mac = write(tmp_path, "mac.csv", (SST_HEADER + "0\ta\tgood\t3\n").replace("\n", "\r"))
    examples, report = read_sentences(mac)
    assert examples == [SentenceExample("a", "good", 3)] and "CR only" in " ".join(report.notes)
    mixed = write(tmp_path, "mixed.csv", SST_HEADER + "0\ta\tgood\t3\n1\tb\tsplit\rrow\t2\n")
    with pytest.raises(DataFormatError, match=r"mixed\.csv, line 3: a carriage return"):
        read_sentences(mixed)


def test_non_utf8_bytes_error_names_line(tmp_path):
    content = (SST_HEADER + "0\ta\tcaf\xe9 au lait\t3\n").encode("latin-1")
    path = write(tmp_path, "latin.csv", content)
    with pytest.raises(DataFormatError) as err:
        read_sentences(path)
    assert "latin.csv, line 2" in str(err.value) and "UTF-8" in str(err.value)
    examples, _ = read_sentences(path, encoding="latin-1")
    assert examples[0].sentence == "café au lait"


def test_other_row_problems_are_reported(tmp_path):
    content = (SST_HEADER + "0\ta\tgood\t3\n"
               + "1\ta\tduplicate id\t2\n"       # line 3
               + "2\tb\textra\ttab\t1\n"        # line 4: 5 fields
               + "3\tc\t   \t1\n"               # line 5: empty sentence
               + "4\td\thalf\t2.5\n")           # line 6: not a whole number
    examples, report = read_sentences(write(tmp_path, "o.csv", content))
    assert [ex.id for ex in examples] == ["a"]
    reasons = {r.line: r.reason for r in report.rejected}
    assert set(reasons) == {3, 4, 5, 6}
    assert "duplicate id 'a' (first seen at line 2)" in reasons[3]
    assert "found 5" in reasons[4] and "empty 'sentence'" in reasons[5] and "whole number" in reasons[6]
    assert accounted(report)


def test_all_rows_rejected_is_an_error(tmp_path):
    path = write(tmp_path, "allbad.csv", SST_HEADER + "0\ta\tx\tpos\n1\tb\ty\tneg\n")
    with pytest.raises(DataFormatError, match=r"all 2 rows were rejected"):
        read_sentences(path)


def test_strict_raises_on_first_bad_row(tmp_path):
    path = write(tmp_path, "strict.csv", SST_HEADER + sst_rows(2) + "2\tc\tno label\n3\td\tx\t\n")
    with pytest.raises(DataFormatError) as err:
        read_sentences(path, strict=True)
    assert err.value.line == 4 and "strict.csv, line 4" in str(err.value)
    assert err.value.path.endswith("strict.csv")


def test_missing_file_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="mtkit data fetch"):
        load_split(default_tasks()[0], tmp_path, "train")


def test_bad_inputs_never_leak_library_exceptions(tmp_path):
    """Whatever the bytes, the reader answers with DataFormatError / FileNotFoundError or a report."""
    samples = [b"\x00\x01\x02", b"id\n", b'"', b"\tid\tsentence\tsentiment\n\x00\ta\tb\t1\n",
               b"\xff\xfe\x00", b"\tid\tsentence\tsentiment\n0\ta\tb\t1"]
    for i, data in enumerate(samples):
        path = write(tmp_path, f"x{i}.csv", data)
        try:
            _, report = load_examples(path, "classification")
        except (DataFormatError, FileNotFoundError):
            continue
        assert accounted(report)


# ------------------------------------------------------------------------------------------ task specs
def test_custom_task_from_config_loads_like_a_default(tmp_path):
    write(tmp_path, "ids-cfimdb-train.csv", SST_HEADER + "0\ta\tGreat film\t1\n1\tb\tBad film\t0\n")
    spec = TaskSpec.from_dict({"name": "cfimdb", "kind": "classification", "train": "ids-cfimdb-train.csv",
                               "dev": "ids-cfimdb-dev.csv"})
    assert spec.metric == "accuracy" and spec.train_file == "ids-cfimdb-train.csv"
    examples, report = load_split(spec, tmp_path, "train")
    assert report.num_labels == 2 and examples[0].sentence == "great film"
    assert TaskSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("values, match", [
    ({"name": "x", "kind": "classification", "trian": "a.csv"}, r"unknown key.*'trian' \(did you mean 'train'\?\)"),
    ({"name": "x", "kind": "regression"}, r"kind 'regression' is not known.*did you mean 'pair_regression'"),
    ({"name": "x", "kind": "pair_regression", "metric": "accuracy"}, "scored by 'pearson' or 'spearman'"),
    ({"name": "x", "kind": "classification", "num_labels": 1}, "num_labels must be"),
    ({"name": "x", "kind": "pair_regression", "label_range": [5, 0]}, "low < high"),
    ({"name": "x", "kind": "classification", "columns": {"text": "t"}}, "unknown role"),
    ({"kind": "classification"}, "missing 'name'"),
])
def test_invalid_task_specs_are_named(values, match):
    with pytest.raises(ValueError, match=match):
        TaskSpec.from_dict(values)


def test_default_tasks_file_names():
    names = {t.name: (t.train_file, t.dev_file, t.test_file, t.metric) for t in default_tasks()}
    assert names == {
        "sst": ("ids-sst-train.csv", "ids-sst-dev.csv", "ids-sst-test-student.csv", "accuracy"),
        "para": ("quora-train.csv", "quora-dev.csv", "quora-test-student.csv", "accuracy"),
        "sts": ("sts-train.csv", "sts-dev.csv", "sts-test-student.csv", "pearson"),
    }
