"""Finding recipes by name, and the suggestion for a mistyped one."""

from __future__ import annotations

from climb_cli.catalog import suggest
from tests.conftest import run_climb

NAMES = ["ptbxl", "mimic_cxr", "mimic_iv_ecg", "chexpert", "brats"]


def test_suggest_close_names_not_only_prefixes() -> None:
    assert suggest("ptbxll", NAMES) == ["ptbxl"]  # one letter too many
    assert suggest("PTBXL", NAMES) == ["ptbxl"]  # case
    assert suggest("ptb-xl", NAMES) == ["ptbxl"]  # PhysioNet's own project name
    assert suggest("chexpret", NAMES) == ["chexpert"]  # transposed letters
    assert suggest("mimic", NAMES)[:2] == ["mimic_cxr", "mimic_iv_ecg"]
    assert suggest("zzz", NAMES) == [] and suggest("--", NAMES) == []


def test_unknown_dataset_suggests_the_close_name() -> None:
    assert run_climb("info", "PTBXL").returncode == 0  # spellings the catalog normalises resolve at once
    # ptb-xl is close to both PTB-XL recipes: CLIMB's task (ptbxl) and PTB-XL's own benchmark
    for typo, close in (("ptbxll", "ptbxl"), ("ptb-xl", "ptbxl, ptbxl_superdiagnostic")):
        r = run_climb("info", typo)
        assert r.returncode == 2
        assert r.stderr == f"climb: error: no recipe named {typo!r} (did you mean {close}?)\n"
