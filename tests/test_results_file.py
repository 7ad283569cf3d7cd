"""backend.analysis.results: the JSON-lines results file of an evaluation, on real files — never
overwritten without resume, resumed past a half-written line, refused when it is damaged or of
other results, and finished sorted by sample index."""

from __future__ import annotations

import json

import pytest

from backend.analysis.results import FORMAT, ResultsFile, check_resumed
from backend.errors import DatasetError, EvaluationError

HEADER = {"config": "abc", "dataset": "d1", "output_layer": 1}


def _record(index: int, sample: str = "s") -> dict:
    return {"index": index, "name": f"n{index}", "sample": f"{sample}{index}"}


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_new_file_in_a_new_folder_starts_with_its_header_and_finishes_sorted(tmp_path):
    path = tmp_path / "deep" / "er" / "r.jsonl"
    results = ResultsFile(path, HEADER)
    for index in (2, 0, 1):
        results.append(_record(index))
    assert [row.get("index") for row in _lines(path)] == [None, 2, 0, 1]  # as they arrive
    results.finish([_record(i) for i in (2, 0, 1)])
    assert _lines(path) == [{"format": FORMAT, **HEADER}, _record(0), _record(1), _record(2)]
    assert [p.name for p in path.parent.iterdir()] == ["r.jsonl"]  # no temporary file left
    assert results.file.closed


def test_lines_are_compact_json_with_sorted_keys_so_runs_give_the_same_bytes(tmp_path):
    results = ResultsFile(tmp_path / "r.jsonl", {"output_layer": 1, "config": "abc"})
    results.append({"sample": "s0", "index": 0, "name": "n0"})
    results.close()
    assert results.file.closed
    assert (tmp_path / "r.jsonl").read_text() == (
        '{"config":"abc","format":"spikeflash-evaluate/1","output_layer":1}\n'
        '{"index":0,"name":"n0","sample":"s0"}\n')


def test_an_existing_file_is_refused_without_resume_and_left_as_it_is(tmp_path):
    path = tmp_path / "r.jsonl"
    ResultsFile(path, HEADER).close()
    before = path.read_bytes()
    with pytest.raises(EvaluationError, match="exists already"):
        ResultsFile(path, HEADER)
    assert path.read_bytes() == before
    (tmp_path / "one.jsonl").write_text("{")  # even one byte is something to lose
    with pytest.raises(EvaluationError, match="exists already"):
        ResultsFile(tmp_path / "one.jsonl", HEADER)
    (tmp_path / "empty.jsonl").touch()  # an empty file holds nothing to lose
    ResultsFile(tmp_path / "empty.jsonl", HEADER).close()
    assert _lines(tmp_path / "empty.jsonl") == [{"format": FORMAT, **HEADER}]


def test_resume_keeps_the_records_and_drops_a_half_written_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    first = ResultsFile(path, HEADER)
    first.append(_record(0))
    first.append(_record(3))
    first.close()
    with open(path, "a") as f:
        f.write('{"index": 4, "na')  # the driver died mid-line
    resumed = ResultsFile(path, HEADER, resume=True)
    assert resumed.done == {0: _record(0), 3: _record(3)}
    resumed.append(_record(4))
    resumed.close()
    assert _lines(path)[1:] == [_record(0), _record(3), _record(4)]


def test_resume_of_a_file_with_only_half_a_header_starts_it_afresh(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"format": "spikef')
    resumed = ResultsFile(path, HEADER, resume=True)
    resumed.close()
    assert resumed.done == {} and _lines(path) == [{"format": FORMAT, **HEADER}]


def test_resume_refuses_other_results_and_a_damaged_line_by_its_number(tmp_path):
    path = tmp_path / "r.jsonl"
    results = ResultsFile(path, HEADER)
    results.append(_record(0))
    results.close()
    with pytest.raises(DatasetError, match="written for output_layer = 1, this run has 2"):
        ResultsFile(path, {**HEADER, "output_layer": 2}, resume=True)
    with open(path, "a") as f:
        f.write("not json\n")
    with pytest.raises(DatasetError, match=r"line 3: not JSON"):
        ResultsFile(path, HEADER, resume=True)


def test_a_resumed_sample_must_be_the_same_sample(tmp_path):
    done = {0: _record(0), 1: _record(1)}
    assert check_resumed(done, 1, "s1", tmp_path) == _record(1)
    assert check_resumed(done, 2, "s2", tmp_path) is None
    with pytest.raises(DatasetError, match=r"sample 1 \(n1\) differs"):
        check_resumed(done, 1, "changed", tmp_path)
