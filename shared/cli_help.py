"""What ``emgpose ... --help`` shows: defaults after each option, an example per command, no reST markup.

:func:`polish` walks the finished parser once (``emgpose.cli.build_parser``), so each module that
registers commands keeps its own arguments, and the rules hold for all of them in one place:

* every option shows its default (``(default: 200)``), unless it has none (``None``, a flag's ``False``)
  or its help already says what the default is;
* every command shows an example (its own ``epilog``, else the one in :data:`EXAMPLES`);
* docstrings used as descriptions lose their reST double backticks.
"""

from __future__ import annotations

import argparse
import re
import textwrap

# Examples for commands registered without an epilog, by their path below `emgpose`.
EXAMPLES: dict[str, str] = {
    "synth": "emgpose synth --out data/synth --users 4 --stages 3 --sessions 2 --duration 60",
    "preprocess": "emgpose preprocess --data data/synth --out file://$PWD/processed/synth --csv",
    "import uci": "emgpose import uci ../shared/data/uci_lower_limb/*.txt --out data/uci --test-users 5",
    "import myo": "emgpose import myo ../shared/data/myo_wrist/10000-1 --out data/myo",
    "import ninapro": "emgpose import ninapro ../shared/data/ninapro_db1/S1_A1_E1.mat --out data/ninapro",
    "import table": "emgpose import table rec.csv --out data/lab --sample-rate 2000 --channels 'emg_*' "
    "--targets knee --target-units deg",
    "import": "emgpose import uci ../shared/data/uci_lower_limb/*.txt --out data/uci --test-users 5",
    "train": "emgpose train --dataset processed/synth --name hand --num-rounds 300",
    "evaluate": "emgpose evaluate --model hand@latest --dataset processed/other",
    "models": "emgpose models list            # the local registry (--store / STORE_URI)\n"
    "  emgpose models show hand --url http://127.0.0.1:8000   # the server's registry",
    "predict": "emgpose predict --model hand session.hdf5 --out angles.csv            # local model\n"
    "  emgpose predict session.hdf5 --url http://127.0.0.1:8000 --out angles.csv   # the server's model",
    "db": "emgpose db current --url sqlite:///runs/local/emgpose.db",
    "up": "emgpose up --workdir runs/local --gateway-port 8000",
    "run": "emgpose run --workdir runs/demo --duration 20",
    "keys": "emgpose keys create --scope submit --name ci",
    "keys create": "export EMGPOSE_API_KEY=$(emgpose keys create --scope submit --name ci)",
    "keys list": "emgpose keys list --url sqlite:///runs/local/emgpose.db",
    "keys revoke": "emgpose keys revoke 3f2a9c0e5b7d4e1f",
    "export": "emgpose export --model hand --out export/hand",
}
_BACKTICKS = re.compile(r"``([^`]+)``")


class Formatter(argparse.HelpFormatter):
    """Examples keep their lines; descriptions are wrapped paragraph by paragraph; ``(default: X)`` is added
    where it tells something."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        return "\n\n".join(textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent) for p in paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, argparse.SUPPRESS, [])
            and "default" not in text
            and "%(default)" not in text
        ):
            text += " (default: %(default)s)"
        return text


def plain(text: str | None) -> str | None:
    """``emgpose`` rather than ````emgpose````: descriptions are docstrings written for Sphinx."""
    return _BACKTICKS.sub(r"\1", text) if text else text


def commands(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command below ``parser`` with its path (``"keys create"``), parents before children."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                here = f"{path} {name}".strip()
                found.append((here, child))
                found.extend(commands(child, here))
    return found


def polish(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.formatter_class = Formatter
    parser.description = plain(parser.description)
    for path, command in commands(parser):
        command.formatter_class = Formatter
        command.description = plain(command.description or _help_of(parser, path))
        if not command.epilog and path in EXAMPLES:
            command.epilog = f"example:\n  {EXAMPLES[path]}"
        elif command.epilog and command.epilog.startswith("example: "):
            command.epilog = "example:\n  " + command.epilog.removeprefix("example: ")
        for action in command._actions:
            action.help = plain(action.help)
    return parser


def _help_of(root: argparse.ArgumentParser, path: str) -> str | None:
    """A command's one-line help (from its parent's listing) as its description when it has none."""
    parent_path, _, name = path.rpartition(" ")
    parent = dict(commands(root)).get(parent_path, root) if parent_path else root
    for action in parent._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help
    return None
