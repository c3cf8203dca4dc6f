"""The report's protocol section: which training recipe produced the numbers (and its caveat),
the study's known differences from the paper, and the paper's numbers beside the measured ones.

Read from the study's parent run (its ``study.json``); ``section`` puts it in the summary under
``"paper"``, and ``markdown``, ``html`` and ``rich_tables`` render it for ``summary.md``,
``report.html`` and the terminal (``benchmark`` and ``report``). Runs without a study have none.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from unlearnbench.study.expected import WITHIN, compare

log = logging.getLogger(__name__)


def _study_json(runset) -> dict[str, Any] | None:
    parent = runset.parent or {}
    if not parent.get("run_id"):
        return None
    from mlflow import MlflowClient

    from unlearnbench.reports.runs import _no_download_bars

    try:
        with tempfile.TemporaryDirectory() as tmp, _no_download_bars():
            path = MlflowClient(tracking_uri=runset.tracking_uri).download_artifacts(parent["run_id"], "study.json", tmp)
            return json.loads(Path(path).read_text())
    except Exception as exc:  # an old or partial parent run: the report goes on without this section
        log.warning("No study.json on study run %s (%s); the report has no protocol section.", parent["run_id"], exc)
        return None


def section(runset, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``paper`` part of a report summary (None when the runs are not a study's)."""
    study = _study_json(runset)
    if study is None:
        return None
    return protocol(study, rows, hardware=_hardware(runset))


def _hardware(runset) -> list[dict[str, Any]]:
    """Where the runs actually ran: each distinct (device, bf16-capable CPU) of their report.json
    provenance, or, for runs read without artifacts (the CLI's table), of their tags."""
    pairs = [((report.get("provenance") or {}).get("device"), (report.get("provenance") or {}).get("cpu_bf16", False))
             for report in (runset.artifacts or {}).values()]
    if not runset.artifacts and "device" in runset.runs:
        pairs = list(zip(runset.runs["device"], runset.runs["cpu_bf16"], strict=True))
    keys = sorted({(str(d), bool(b)) for d, b in pairs if d})
    return [{"device": d, "cpu_bf16": b} for d, b in keys]


def protocol(study: dict[str, Any], rows: list[dict[str, Any]],
             hardware: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Recipe, differences and expected-vs-measured comparisons of a study (``to_dict`` form).
    ``hardware``: the devices the runs used (``_hardware``); the recipe line then states the
    device and precision actually used instead of the recipe's rule."""
    from unlearnbench.core.errors import ConfigError, UnknownNameError
    from unlearnbench.core.recipes import RECIPES, default_recipe, describe, precision_used

    name = study.get("recipe") or default_recipe(str(study.get("dataset", "")))
    recipe = {"name": name, "settings": "", "caveat": ""}
    def ran_on(r, overrides: dict[str, Any]) -> str:
        """Each device the runs used, with the precision recipe ``r`` computes in there."""
        try:
            cfg = r.config(**overrides)
        except (ConfigError, TypeError):
            cfg = r.config()
        return "; ".join(f"{h['device']} in {precision_used(cfg, h['device'], h['cpu_bf16'])}" for h in hardware)

    try:
        r = RECIPES.get(name)
        recipe.update(settings=describe(r, precision=not hardware), caveat=r.caveat)
        if hardware:
            recipe["ran_on"] = ran_on(r, dict(study.get("train") or {}))
    except UnknownNameError:
        pass
    if study.get("train"):
        recipe["overrides"] = ", ".join(f"{k}={v}" for k, v in sorted(study["train"].items()))
    if study.get("retrain_recipe"):  # the Retrain references' own recipe (paper-retrain for the papers')
        rname = study["retrain_recipe"]
        recipe["retrain"] = {"name": rname, "settings": ""}
        try:
            ret = RECIPES.get(rname)
            recipe["retrain"]["settings"] = describe(ret, precision=not hardware)
            if hardware:
                recipe["retrain"]["ran_on"] = ran_on(ret, dict(study.get("train") or {}))
        except UnknownNameError:
            pass
    return {
        "study": study.get("name", ""),
        "recipe": recipe,
        "differences": list(study.get("differences") or []),
        "comparisons": [compare(b, rows) for b in study.get("expected") or []],
    }


# ----------------------------------------------------------------------------- rendering


def _num(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _measured(cell: dict[str, Any]) -> str:
    m = cell["measured"]
    if not m or m.get("mean") is None:
        return "–"
    text = f"{m['mean']:.2f}"
    if m.get("std") is not None:
        text += f" ± {m['std']:.2f}"
    return text + f" (n={m['n']})"


def _paper(cell: dict[str, Any]) -> str:
    if cell["paper_std"] is None:
        return f"{cell['paper_mean']:.2f}"
    return f"{cell['paper_mean']:.2f} ± {cell['paper_std']:.2f}"


def _z(cell: dict[str, Any]) -> str:
    return "–" if cell["z"] is None else f"{cell['z']:+.1f}"


def recipe_line(paper: dict[str, Any]) -> str:
    r = paper["recipe"]
    ret = r.get("retrain")
    text = f"{'Original' if ret else 'Original and Retrain'} trained with recipe `{r['name']}`"
    text += f" ({r['settings']})" if r.get("settings") else ""
    if ret:
        text += f"; Retrain references with recipe `{ret['name']}`" + (f" ({ret['settings']})" if ret.get("settings") else "")
        text += f", ran on {ret['ran_on']}" if ret.get("ran_on") else ""
    text += f", study overrides: {r['overrides']}" if r.get("overrides") else ""
    text += f"; ran on {r['ran_on']}" if r.get("ran_on") else ""
    text += "."
    if r.get("caveat"):
        text += f" **Note:** {r['caveat']}."
    return text


HEADER = ["Method", "Column", "Measured (mean ± std, n seeds)", "Paper (mean ± std)", "Measured − paper",
          "In paper std", "Verdict"]


def markdown(summary: dict[str, Any]) -> list[str]:
    """Lines for summary.md: the protocol paragraph and one table per expected block."""
    paper = summary.get("paper")
    if not paper:
        return []
    lines = ["## Protocol", "", recipe_line(paper), ""]
    if paper["differences"]:
        lines += ["Known differences from the paper's code:", ""]
        lines += [f"- {d}" for d in paper["differences"]] + [""]
    for comp in paper["comparisons"]:
        where = f"`{comp['forget']}`" + (f" [{comp['variant']}]" if comp["variant"] else "")
        lines += [f"## Measured vs paper: forget {where}", "",
                  f"Paper: {comp['citation']}." + (f" Protocol assumed: {comp['protocol']}." if comp["protocol"] else ""),
                  f"{comp['within']} of {comp['judged']} measured values lie within {WITHIN:g} paper std of the "
                  "paper's mean (a printed ±0.00 counts as 0.005).", "",
                  "| " + " | ".join(HEADER) + " |", "|---|---|---:|---:|---:|---:|---|"]
        for row in comp["rows"]:
            for cell in row["cells"]:
                lines.append("| " + " | ".join([
                    f"{row['label']} ({row['name']})" if row["name"] != row["label"] else row["label"],
                    cell["column"], _measured(cell), _paper(cell), _num(cell["diff"]), _z(cell), cell["verdict"],
                ]) + " |")
        sources = [(row["label"], row["source"]) for row in comp["rows"] if row.get("source")]
        if sources:
            # one line per row: each source names the paper, table, image or URL and the check done
            lines += ["", "Sources of the paper's rows:", ""] + [f"- {lab}: {src}" for lab, src in sources]
        lines.append("")
    return lines


_HTML = """
<h2 id="protocol">Protocol</h2>
<p>{{ recipe_line }}</p>
{% if paper.differences %}<p>Known differences from the paper's code:</p>
<ul>{% for d in paper.differences %}<li>{{ d }}</li>{% endfor %}</ul>{% endif %}
{% for comp in paper.comparisons %}
<h2>Measured vs paper: forget <code>{{ comp.forget }}</code>{% if comp.variant %} [{{ comp.variant }}]{% endif %}</h2>
<p class="legend">Paper: {{ comp.citation }}.{% if comp.protocol %} Protocol assumed: {{ comp.protocol }}.{% endif %}
{{ comp.within }} of {{ comp.judged }} measured values lie within {{ within }} paper std of the paper's mean
(a printed ±0.00 counts as 0.005).</p>
<div class="scroll"><table class="expected">
<tr>{% for h in header %}<th{% if 2 < loop.index < 7 %} class="num"{% endif %}>{{ h }}</th>{% endfor %}</tr>
{% for row in comp.rows %}{% for cell in row.cells %}
<tr{% if not row.run %} class="reference"{% endif %}><td>{{ row.label }}{% if row.name != row.label %} ({{ row.name }}){% endif %}</td>
<td>{{ cell.column }}</td><td class="num">{{ measured(cell) }}</td><td class="num">{{ paper_cell(cell) }}</td>
<td class="num">{{ num(cell.diff) }}</td><td class="num">{{ z(cell) }}</td>
<td class="{{ 'improvement' if cell.verdict == 'within 2 std' else ('regression' if cell.verdict == 'outside' else '') }}">{{ cell.verdict }}</td></tr>
{% endfor %}{% endfor %}
</table></div>
{% set sourced = comp.rows | selectattr("source", "defined") | list %}{% if sourced %}<p class="legend">Sources of the paper's rows:</p>
<ul class="legend">{% for row in sourced %}<li>{{ row.label }}: {{ row.source }}</li>{% endfor %}</ul>{% endif %}
{% endfor %}
"""


def html(summary: dict[str, Any]):
    """The protocol section as safe HTML for report.html (empty when there is none)."""
    import jinja2
    import markupsafe

    paper = summary.get("paper")
    if not paper:
        return markupsafe.Markup("")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    text = env.from_string(_HTML).render(
        paper=paper, recipe_line=markupsafe.Markup(_md_inline(recipe_line(paper))), header=HEADER, within=f"{WITHIN:g}",
        measured=_measured, paper_cell=_paper, num=_num, z=_z,
    )
    return markupsafe.Markup(text)


def _md_inline(text: str) -> str:
    """`code` and **bold** of recipe_line as HTML, everything else escaped."""
    import re

    import markupsafe

    out = str(markupsafe.escape(text))
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def rich_tables(summary: dict[str, Any]) -> list[Any]:
    """Terminal renderables: the recipe line and one table per expected block."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    paper = summary.get("paper")
    if not paper:
        return []
    out: list[Any] = [Text(recipe_line(paper).replace("`", "").replace("**", ""))]
    for comp in paper["comparisons"]:
        where = comp["forget"] + (f" [{comp['variant']}]" if comp["variant"] else "")
        table = Table(title=escape(f"measured vs paper, forget {where}: {comp['citation']} "
                                   f"({comp['within']}/{comp['judged']} within {WITHIN:g} std)"),
                      title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for h, short in zip(HEADER, ["method", "col", "measured", "paper", "diff", "z", "verdict"], strict=True):
            table.add_column(short, justify="right" if h not in ("Method", "Column", "Verdict") else "left",
                             no_wrap=h == "Method")
        for row in comp["rows"]:
            for cell in row["cells"]:
                table.add_row(escape(row["label"]), cell["column"], _measured(cell), _paper(cell), _num(cell["diff"]),
                              _z(cell), cell["verdict"], style=None if row["run"] else "dim")
        out.append(table)
    return out
