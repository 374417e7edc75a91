"""The documentation agrees with the code and stays inside the repository.

* docs/configuration.md lists every key of the schema with its default, every option of
  each choice, and every input limit with the value the code uses;
* every relative link in README.md and docs/*.md reaches an existing file (and heading);
* no file points outside the project, and every citation ``docs/model.md §N`` in the
  code names a section that exists;
* the note in a run's summary.json names a file of the repository.
"""

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from attnflow.dynamics.commands import sweep
from attnflow.dynamics.problem import config, features, function_classes

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Built from pieces so that this file does not contain what it looks for.
OUTSIDE = ("../" + "shared", "shared" + "/design")


def read(path):
    return (ROOT / path).read_text(encoding="utf-8")


def cells(line):
    """The cells of one Markdown table row."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def configuration_rows():
    """``{"section.key": (type, default, meaning)}`` from the key tables (before "Input limits")."""
    text = read("docs/configuration.md").split("## Input limits")[0]
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\| `(\w+)\.(\w+)` \|", line)
        if match:
            field = f"{match[1]}.{match[2]}"
            assert field not in rows, f"{field} is documented twice"
            rows[field] = cells(line)[1:]
    return rows


def documented_default(text):
    """The default cell as the schema would parse it: ``–`` is absent, else a TOML value."""
    if text == "–":
        return None
    match = re.fullmatch(r"`(.+)`", text)
    assert match, f"a default is a TOML value in backticks or –, got {text!r}"
    return tomllib.loads(f"value = {match[1]}")["value"]


def test_configuration_reference_has_every_key_and_default_of_the_schema():
    rows = configuration_rows()
    schema_fields = {f"{s}.{k}" for s, spec in config.SCHEMA.items() for k in spec}
    assert set(rows) == schema_fields
    for field, (kind, default_text, meaning) in rows.items():
        section, key = field.split(".")
        parse, default = config.SCHEMA[section][key]
        value = documented_default(default_text)
        parsed = None if value is None else parse(field, value)
        assert parsed == default, f"{field}: documented default {default_text}, the schema's is {default!r}"
        assert kind and meaning, f"{field} needs a type and a meaning"


@pytest.mark.parametrize("field, options", [
    ("features.kind", features.KINDS),
    ("task.kind", function_classes.KINDS),
    ("task.link", function_classes.LINKS),
    ("task.moment_method", function_classes.METHODS),
    ("training.method", config.METHODS),
])
def test_configuration_reference_names_every_option(field, options):
    meaning = configuration_rows()[field][2]
    for option in options:
        assert f'`"{option}"`' in meaning, f"{field}: option {option!r} is not documented"


def test_input_limits_in_the_reference_equal_the_code():
    text = read("docs/configuration.md").split("## Input limits")[1]
    named = dict(re.findall(r"`((?:sweep\.)?(?:MAX|MIN)_\w+) = ([0-9.e+-]+)`", text))
    constants = {name: value for name, value in vars(config).items() if re.fullmatch(r"(MAX|MIN)_\w+", name)}
    constants["sweep.MAX_POINTS"] = sweep.MAX_POINTS
    assert set(named) == set(constants), "every limit of dynamics/problem/config.py is named in docs/configuration.md"
    for name, text_value in named.items():
        value = int(text_value) if re.fullmatch(r"\d+", text_value) else float(text_value)
        assert value == constants[name], f"{name}: documented {text_value}, the code has {constants[name]}"


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {github_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def markdown_files():
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_docs_exist():
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"guide.md", "configuration.md", "model.md", "validation.md", "findings.md",
            "performance.md"} <= names


def test_relative_links_reach_existing_files_and_headings():
    checked = 0
    for page in markdown_files():
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):                 # https:, mailto: …
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.name}: link {target} points to a missing file"
            assert ROOT in resolved.parents or resolved == ROOT, f"{page.name}: {target} leaves the repository"
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {path or page.name}"
            checked += 1
    assert checked >= 10, "the README and docs link to each other"


def project_files():
    """The tracked files (git), or every file outside hidden folders when not in a checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=30, check=True)
        names = [n for n in listed.stdout.decode().split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = []
    if not names:
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
                 if p.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                            for part in p.relative_to(ROOT).parts)]
    return [ROOT / n for n in names if (ROOT / n).is_file()]


def test_no_file_points_outside_the_project():
    files = project_files()
    assert any(f.suffix == ".py" for f in files) and any(f.suffix == ".md" for f in files)
    offenders = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        offenders += [f"{path.relative_to(ROOT)}: {s}" for s in OUTSIDE if s in text]
    assert not offenders


def model_sections():
    return {int(n) for n in re.findall(r"^## (\d+)\. ", read("docs/model.md"), flags=re.M)}


def test_citations_of_the_model_name_existing_sections():
    sections = model_sections()
    assert len(sections) >= 8
    citations = 0
    for path in project_files():
        if path.suffix not in (".py", ".md"):
            continue
        text = path.read_text(encoding="utf-8")
        # A citation of the model is always by its path in the repository.
        for match in re.finditer(r"(\S*)model\.md`*\s*§\s*(\d+)", text):
            prefix, number = match[1], int(match[2])
            assert prefix.endswith("docs/") or path.parent == DOCS, \
                f"{path.relative_to(ROOT)}: cite docs/model.md, not {match[0]!r}"
            assert number in sections, f"{path.relative_to(ROOT)}: docs/model.md has no §{number}"
            citations += 1
    assert citations >= 5


def test_summary_note_names_a_file_of_the_repository(tmp_path):
    import attnflow
    cfg = attnflow.config_from_text("[features]\nK = 2\n[training]\nt_end = 1.0\nn_out = 5\n")
    attnflow.run(cfg, tmp_path / "out", progress=False, plots=False)
    note = json.loads((tmp_path / "out" / "summary.json").read_text())["reconstructed_note"]
    cited = re.findall(r"(docs/[\w./-]+\.md) §(\d+)", note)
    assert cited, note
    for path, number in cited:
        assert (ROOT / path).is_file()
        assert int(number) in model_sections()
