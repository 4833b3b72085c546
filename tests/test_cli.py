"""The CLI turns only the project's UserError into a one-line message; any other exception keeps its traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protalign import cli
from protalign.corpus import split
from protalign.errors import InputError, MissingArtifactError, ParamsError, UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tmp_path(tmp_path):
    """An empty project folder with the repository's params.yaml (a missing params file is itself an error)."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_user_error_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no prepared/ here: split reports the missing artifact
    assert cli.main(["split"]) == 2
    err = capsys.readouterr().err
    assert "protalign split: error: no " in err and "run the prepare stage first" in err
    assert "Traceback" not in err


def test_verbose_shows_the_traceback_of_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["-v", "split"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "MissingArtifactError" in err
    assert "protalign split: error:" in err


def test_other_exceptions_propagate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def broken(params, paths):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(split, "run", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["split"])
    monkeypatch.setattr(split, "run", lambda params, paths: {}["missing"])
    with pytest.raises(KeyError):
        cli.main(["split"])


def test_bad_params_are_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("no_such_section: {x: 1}\n")
    assert cli.main(["split"]) == 2
    err = capsys.readouterr().err
    assert "no_such_section" in err and "Traceback" not in err


def test_error_types_keep_their_builtin_bases():
    assert issubclass(InputError, ValueError) and issubclass(MissingArtifactError, FileNotFoundError)
    assert issubclass(ParamsError, UserError) and not issubclass(UserError, ValueError)


def test_subprocess_exit_codes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = "import sys; from protalign import cli; sys.exit(cli.main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "folds"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert res.returncode == 2 and "Traceback" not in res.stderr and "protalign folds: error:" in res.stderr
    res = subprocess.run([sys.executable, "-c", code, "-v", "folds"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)  # fmt: skip
    assert res.returncode == 2 and "Traceback" in res.stderr
