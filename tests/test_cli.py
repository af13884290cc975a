"""The ``tunnypy`` command itself: its version, its help, what it imports."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

from tunnypy.probe import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=50, check=False
    )


class TestVersion:
    """``tunnypy --version``."""

    def test_prints_the_package_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the installed version and exits 0, without a command."""
        with pytest.raises(SystemExit) as info:
            main(["--version"])
        assert info.value.code == 0
        assert f"tunnypy {version('tunnypy')}\n" == capsys.readouterr().out

    def test_python_dash_m(self) -> None:
        """python -m tunnypy --version says the same."""
        completed = _run("-m", "tunnypy", "--version")
        assert completed.returncode == 0, completed.stderr
        assert f"tunnypy {version('tunnypy')}\n" == completed.stdout


class TestHelp:
    """The help is plain text."""

    @pytest.mark.parametrize("args", [["--help"], ["probe", "--help"]])
    def test_no_markup(self, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """No reST or Markdown backticks reach the terminal."""
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "usage: tunnypy" in text
        assert "`" not in text

    def test_top_level_help_names_probe(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The top-level description says what the command is for."""
        with pytest.raises(SystemExit):
            main(["--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "'tunnypy probe' (also 'python -m tunnypy probe') measures" in text


class TestImports:
    """The command needs none of its optional extras."""

    def test_runs_without_rich_and_matplotlib(self) -> None:
        """With rich and matplotlib unimportable, the command imports and runs."""
        code = (
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('rich', 'matplotlib'):\n"
            "            raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from tunnypy.probe import main\n"
            "try:\n"
            "    main(['probe', '--help'])\n"
            "except SystemExit as exit:\n"
            "    print('exit', exit.code)\n"
        )
        completed = _run("-c", code)
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.startswith("usage: tunnypy probe")
        assert completed.stdout.endswith("exit 0\n")

    def test_the_library_does_not_load_the_command(self) -> None:
        """import tunnypy loads nothing of tunnypy.probe."""
        code = "import sys, tunnypy\nprint([m for m in sys.modules if 'probe' in m])"
        completed = _run("-c", code)
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout == "[]\n"

    def test_a_measurement_child_does_not_load_the_cli(self) -> None:
        """Importing tunnypy.probe, as each measurement subprocess does, leaves the CLI out."""
        code = "import sys, tunnypy.probe._child\nprint('tunnypy.probe._cli' in sys.modules)"
        completed = _run("-c", code)
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout == "False\n"
