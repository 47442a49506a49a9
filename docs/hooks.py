"""MkDocs hooks: pages generated from the code so they cannot drift from it.

- ``<!-- cli: medseg -->`` / ``<!-- cli: action -->``: the command's argparse parser rendered as
  one section per sub-command (usage + option table), read from ``build_parser()``.
- ``<!-- bundle-metadata: vnet_seg -->``: a bundle's ``metadata.json`` as tables (labels, inputs,
  outputs, versions).
- ``{{ 0.92 ± 0.05 from runs/eval/summary.json#mean_dice }}``: a number a tutorial quotes; rendered
  as ``0.92`` with its tolerance in a tooltip. ``tests/docs/test_tutorials*.py`` run the tutorials and
  compare the JSON value at that key with the quoted number (see :data:`QUOTE`).
- ``{{ >= 0.85 from runs/eval/summary.json#mean_dice }}``: a floor the tutorial's run must clear, for
  numbers that training produces (another CPU sums floats in another order, so a trained model's
  score is a spread, quoted from ``benchmarks/``, not one value); rendered as ``≥ 0.85``.

Referenced from ``mkdocs.yml`` (``hooks:``); excluded from the site itself.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# {{ VALUE ± TOL from FILE#KEY.PATH }} or {{ >= FLOOR from FILE#KEY.PATH }}: how a tutorial quotes a checked number.
QUOTE = re.compile(
    r"\{\{\s*(?:(?P<value>-?[\d.]+)\s*±\s*(?P<tol>[\d.]+)|>=\s*(?P<floor>-?[\d.]+))\s+from\s+(?P<file>[^#\s]+)#(?P<key>[^\s}]+)\s*\}\}"
)
# ![alt](img/... "from SOURCE"): a figure the tutorial's own code wrote at SOURCE (in its work folder).
FIGURE = re.compile(r"!\[[^\]]*\]\((?P<image>img/[^\s)]+)\s+\"from (?P<source>[^\"]+)\"\)")
CLI = re.compile(r"<!--\s*cli:\s*(?P<module>\w+)\s*-->")
BUNDLE = re.compile(r"<!--\s*bundle-metadata:\s*(?P<name>\w+)\s*-->")


def _parser(module: str) -> argparse.ArgumentParser:
    import importlib

    return importlib.import_module(f"{module}.cli").build_parser()


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{action.dest}`"
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        names += " {" + ", ".join(str(c) for c in action.choices) + "}"
    required = "required" if action.required or not action.option_strings else ""
    text = (action.help or "").replace("|", "\\|")
    return f"| {names} | {required} | {html.escape(text, quote=False)} |"


def cli_markdown(module: str) -> str:
    """One ``##`` section per sub-command of ``python -m MODULE``: usage block and option table."""
    parser = _parser(module)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subparsers._choices_actions}
    lines = [parser.description or "", "", "Every command also takes `-h`, `--help` (print its usage and options, then exit).", ""]
    for name, sub in subparsers.choices.items():
        lines += [f"## `{parser.prog} {name}`", "", helps.get(name) or "", "", "```text", sub.format_usage().strip(), "```", ""]
        lines += ["| argument | | meaning |", "|---|---|---|"]
        lines += [_option_row(a) for a in sub._actions if not isinstance(a, argparse._HelpAction)]
        lines.append("")
    return "\n".join(lines)


def bundle_markdown(name: str) -> str:
    """A bundle's metadata.json as tables: version history, labels (channel_def), inputs and outputs."""
    meta = json.loads((ROOT / "bundles" / name / "configs" / "metadata.json").read_text(encoding="utf-8"))
    lines = [f"**{meta.get('name', name)}** version {meta['version']}: {meta.get('description', '')}", ""]
    lines += ["| version | change |", "|---|---|"] + [f"| {v} | {c} |" for v, c in meta.get("changelog", {}).items()] + [""]
    fmt = meta["network_data_format"]
    for kind in ("inputs", "outputs"):
        for key, spec in fmt[kind].items():
            shape = " x ".join(str(s) for s in spec.get("spatial_shape", []))
            lines += [
                f"**{kind[:-1]} `{key}`**: {spec.get('type')} ({spec.get('format')}), {spec.get('num_channels')} channel(s), spatial shape {shape}, {spec.get('dtype')}",
                "",
            ]
            if spec.get("channel_def"):
                lines += ["| channel | meaning |", "|---|---|"] + [f"| {c} | {m} |" for c, m in spec["channel_def"].items()] + [""]
    return "\n".join(lines)


def render_quote(match: re.Match) -> str:
    if match["floor"] is not None:
        tip = f"checked by the tests: the tutorial's run gives at least {match['floor']} ({match['file']}, {match['key']})"
        return f'<abbr title="{html.escape(tip)}">≥ {match["floor"]}</abbr>'
    tip = f"checked by the tests: the tutorial's run gives {match['value']} ± {match['tol']} ({match['file']}, {match['key']})"
    return f'<abbr title="{html.escape(tip)}">{match["value"]}</abbr>'


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = CLI.sub(lambda m: cli_markdown(m["module"]), markdown)
    markdown = BUNDLE.sub(lambda m: bundle_markdown(m["name"]), markdown)
    markdown = QUOTE.sub(render_quote, markdown)
    return markdown  # figures (FIGURE) are plain Markdown images; their "from ..." title shows the source
