"""climb_cli.safe_pickle: numpy arrays, dicts and lists come back; anything that names other code is
refused before it is imported or called."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from climb_cli import safe_pickle


@pytest.mark.parametrize("protocol", [3, 4, 5])  # np.save writes 3; 5 is Python 3.14's default
def test_arrays_dicts_and_lists_in_every_protocol(protocol: int) -> None:
    obj = {"corr": np.arange(12.0).reshape(2, 2, 3), "label": np.array([0, 1]), "site": ["NYU", "UM"],
           "x": np.float32(1.5), "names": np.array(["a", "bc"])}  # fmt: skip
    got = safe_pickle.loads(pickle.dumps(obj, protocol=protocol))
    assert isinstance(got, dict) and got["site"] == ["NYU", "UM"] and got["x"] == np.float32(1.5)
    for k in ("corr", "label", "names"):
        assert np.array_equal(got[k], obj[k]) and got[k].dtype == obj[k].dtype


def test_an_npy_holding_a_dict_and_a_plain_npy() -> None:
    buf = io.BytesIO()
    np.save(buf, {"label": np.array([1, 0])})
    assert np.array_equal(safe_pickle.loads(buf.getvalue())["label"], [1, 0])
    buf = io.BytesIO()
    np.save(buf, np.eye(3))
    assert np.array_equal(safe_pickle.loads(buf.getvalue()), np.eye(3))


class _System:
    def __reduce__(self):  # noqa: ANN204 - what a malicious pickle does
        return (os.system, ("touch PWNED",))


class _Eval:
    def __reduce__(self):  # noqa: ANN204
        return (eval, ("__import__('os').system('touch PWNED')",))


@pytest.mark.parametrize("evil", [_System(), _Eval(), {"corr": np.zeros(2), "x": [_System()]}])
def test_code_in_a_pickle_is_refused_and_never_runs(
    evil: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(safe_pickle.UnsafePickle, match=r"refusing (posix\.system|nt\.system|builtins\.eval)"):
        safe_pickle.loads(pickle.dumps(evil))
    assert not (tmp_path / "PWNED").exists()


def test_not_a_pickle_is_a_clear_error() -> None:
    with pytest.raises(safe_pickle.UnsafePickle, match="not a readable pickle"):
        safe_pickle.loads(b"hello")
