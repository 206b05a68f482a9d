"""onnxstudy.jobs: a job's failures end up in its own log, its records are written whole."""

import json

import pytest

from onnxstudy.errors import StudyError
from onnxstudy.jobs import job_log, write_json


def test_an_unexpected_failure_is_logged_with_its_traceback(tmp_path):
    with pytest.raises(KeyError), job_log(tmp_path / "job.log"):
        {}["missing"]  # noqa: B018
    text = (tmp_path / "job.log").read_text()
    assert "the job failed" in text and "KeyError: 'missing'" in text


def test_a_study_error_names_model_variant_and_cure_in_the_log(tmp_path, capsys):
    with pytest.raises(StudyError), job_log(tmp_path / "job.log"):
        raise StudyError("m", "fp16", "it broke", "do this")
    expected = "model 'm', variant 'fp16': it broke. Cure: do this"
    assert expected in (tmp_path / "job.log").read_text()
    assert expected in capsys.readouterr().err


def test_records_are_written_atomically(tmp_path):
    write_json(tmp_path / "r.json", {"b": 1, "a": [1.5]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1.5], "b": 1}
    assert not list(tmp_path.glob("*.partial"))
