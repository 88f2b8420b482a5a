"""Tests of the ``voxvec`` entry point: every command's help, and help without importing torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from voxvec import __version__
from voxvec.cli import COMMANDS, build_parser, main

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs the command line in a fresh interpreter, then reports which heavy modules it imported.
PROBE = """
import sys
from voxvec.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit_info:
    code = exit_info.code
print("exit", code, "imported", ",".join(m for m in ("torch", "numpy") if m in sys.modules))
"""

# Commands whose options come from modules that import torch at module level today: the
# precision and VAD vocabularies (voxvec.inference, voxvec.audio.vad) and the training config
# (voxvec.train.config -> voxvec.data.augment). Strict: the marker fails once they no longer do.
TORCH_AT_HELP = {"train"}


def probe(*argv: str) -> tuple[str, list[str]]:
    """Run ``voxvec ARGV`` in a subprocess: its output and the heavy modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *output, last = result.stdout.rstrip("\n").split("\n")
    words = last.split()
    assert words[:3] == ["exit", "0", "imported"], result.stdout + result.stderr
    return "\n".join(output), words[3].split(",") if len(words) > 3 else []


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_top_level_help_and_version_import_neither_torch_nor_numpy(argv: list[str]) -> None:
    output, imported = probe(*argv)
    assert imported == []
    if argv == ["--version"]:
        assert output == f"voxvec {__version__}"
    else:
        assert all(name in output for name in COMMANDS)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(
                strict=True, reason="its option choices come from a module that imports torch"
            ),
        )
        if name in TORCH_AT_HELP
        else name
        for name in COMMANDS
    ],
)
def test_command_help_does_not_import_torch(command: str) -> None:
    output, imported = probe(command, "--help")
    assert output.startswith(f"usage: voxvec {command}")
    assert "torch" not in imported


@pytest.mark.parametrize("command", COMMANDS)
def test_help_on_every_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: voxvec {command}" in capsys.readouterr().out


def test_only_the_command_run_gets_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("models")
    assert parser.parse_args(["models"])._run.__module__ == "voxvec.cli.models"
    with pytest.raises(SystemExit):  # embed's options are not attached to this parser
        parser.parse_args(["embed", "a.wav", "--out", "e.npy"])
    assert "unrecognized arguments: a.wav --out e.npy" in capsys.readouterr().err
    args = build_parser("embed").parse_args(["-v", "embed", "a.wav", "--out", "e.npy"])
    assert args.verbose and args.inputs == ["a.wav"] and args.device == "auto"
    assert args.vad == "off"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["embedd", "a.wav"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'embedd'" in capsys.readouterr().err


def test_python_m_voxvec_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxvec", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout
