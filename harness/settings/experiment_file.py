"""Experiment files, flags and `--set`: finding an experiment by name or path, reading its TOML,
merging tuned parameters, applying the command line's overrides, and handing the resulting table
to `config.from_table`, which checks every value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomllib

from harness.base.errors import UsageError
from harness.settings.config import DEFAULT_EXPERIMENT, ExperimentConfig, from_table, parse_seeds
from harness.settings.designs import bases


def parse_seed_flag(text: str, auto: bool = False) -> tuple[int, ...] | str:
    """`--seeds 3` is always a count (seeds 2021, 2022, 2023); with a comma it is a list of seeds:
    `--seeds 2021,2022`, or one seed as `--seeds 7,`; with `auto` (run only), "auto": seeds on
    demand. Empty items are refused."""
    if auto and text.strip() == "auto":
        return "auto"
    if "auto" in text:
        raise UsageError(
            f"--seeds: {text!r} is not allowed; "
            + (
                "auto stands alone (--seeds auto), never in a list"
                if auto
                else "seeds on demand (auto) are for `run`; give a count or a list"
            )
        )
    parts = [p.strip() for p in text.split(",")]
    lone = len(parts) == 1
    if not lone and parts[-1] == "":
        parts = parts[:-1]  # the trailing comma that makes `7,` a list
    if any(p == "" for p in parts):
        raise UsageError(
            f"--seeds: {text!r} has an empty item; expected a count (e.g. 3) or a comma-separated list of integers"
        )
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(
            f"--seeds: {text!r} is not allowed; expected a count (e.g. 3) or a comma-separated list of integers"
        ) from None
    return parse_seeds(values[0] if lone else values, "--seeds")


def experiments_dir() -> Path:
    """The shipped experiments (default, quick, tutorial): package data in `harness/experiments/`, so an
    installed wheel finds them as a checkout does; a folder `experiments/` in the working directory comes first."""
    return Path(__file__).resolve().parents[1] / "experiments"


def find_experiment(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or "/" in name_or_path:
        return regular_file(path, "--experiment")
    for folder in (Path("experiments"), experiments_dir()):
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted(
        {
            p.stem
            for folder in (Path("experiments"), experiments_dir())
            if folder.is_dir()
            for p in folder.glob("*.toml")
        }
    )
    raise UsageError(
        f"--experiment: no experiment named {name_or_path!r}; known: {', '.join(known) or 'none'} (or give a .toml path)"
    )


def regular_file(path: Path, flag: str) -> Path:
    """`path` if it is a regular file; a missing path, a folder or a FIFO (reading it would block) is refused."""
    if not path.exists():
        raise UsageError(f"{flag}: file {str(path)!r} does not exist")
    if not path.is_file():
        raise UsageError(
            f"{flag}: {str(path)!r} is not a regular file (a folder, FIFO or device); expected a TOML file"
        )
    return path


def read_toml(path: Path, flag: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some Windows editors write one) is not TOML
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{flag}: cannot read {str(path)!r}: {e}") from None
    if not text.strip():
        raise UsageError(f"{flag}: {str(path)!r} is empty; expected TOML settings")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{flag}: {str(path)!r} is not valid TOML: {e}") from None


def merge_params(table: dict[str, Any], path: Path) -> set[str]:
    """Merge the `[params.<variant>]` tables of a parameters file (as `tune` writes) into `table`;
    returns the names it sets parameters for."""
    extra = read_toml(regular_file(path, "--params-from"), "--params-from")
    unknown = sorted(set(extra) - {"params", "tuning"})
    if unknown or not isinstance(extra.get("params"), dict):
        raise UsageError(
            f"--params-from: {str(path)!r} must hold [params.<variant>] tables (and optionally [tuning]), found {unknown or 'no params'}"
        )
    for variant, values in extra["params"].items():
        if not isinstance(values, dict):
            raise UsageError(
                f"--params-from: {str(path)!r}: params.{variant} must be a table of parameters, got {type(values).__name__} {values!r}"
            )
        table.setdefault("params", {}).setdefault(variant, {}).update(values)
    return set(extra["params"])


def apply_set(table: dict[str, Any], assignment: str) -> None:
    """Apply one `--set dotted.key=value` to a raw settings table; the value is read as TOML."""
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set: {assignment!r} is not allowed; expected key=value, e.g. train.lr=0.01")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: --set train.device=cpu
    *parents, last = key.split(".")
    node = table
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set: {key!r} goes through a setting that is not a table")
    node[last] = value


def absolute_entries(written: Any, folder: Path) -> Any:
    """`components = [...]` with each file made absolute (relative ones are read from `folder`);
    module names, and anything that is not a list of strings (from_table refuses it), as written."""
    from harness.variants.plugins import is_file_entry

    if not isinstance(written, list) or not all(isinstance(c, str) for c in written):
        return written
    return [str((folder / c.strip()).resolve()) if is_file_entry(c.strip()) else c.strip() for c in written]


def load_experiment(
    experiment: str | None, sets: list[str] = (), params_files: list[str] = (), components: list[str] = (), **flags: Any
) -> ExperimentConfig:
    """The experiment file (`harness/experiments/default.toml` when none is named), then `[params.*]`
    tables from `params_files` (tuned parameters), then the CLI flags, then `--set` overrides.
    `components` (`--components`, files relative to the working directory) join the file's own
    (relative to the file's folder); from_table imports them before it reads any variant."""
    path = find_experiment(experiment or DEFAULT_EXPERIMENT)
    table = read_toml(path, "--experiment")
    table.setdefault("name", path.stem)
    if "components" in table:
        table["components"] = absolute_entries(table["components"], path.resolve().parent)
    if components:
        from harness.variants import plugins

        plugins.load(list(components), "--components")  # first, so an error names the entry as the user wrote it
        written = table.get("components", [])
        table["components"] = [
            *(written if isinstance(written, list) else [written]),
            *absolute_entries(list(components), Path.cwd()),
        ]
    named = {file: merge_params(table, Path(file)) for file in params_files}
    if isinstance(flags.get("seeds"), tuple):  # seeds named on the command line replace the file's seeds on demand
        table.pop("min_seeds", None), table.pop("max_seeds", None)
    for key, value in flags.items():
        if value is None:
            continue
        if key == "seeds" and isinstance(table.get("seeds"), dict):
            key = "seeds.runs"  # --seeds sets the runs' seeds of a [seeds] table, and keeps its sources
        *parents, last = key.split(".")
        node = table
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"{part}: expected a table of settings ([{part}]), got {type(node).__name__} {node!r}")
        node[last] = list(value) if isinstance(value, tuple) else value
    if any(a.strip().startswith("seeds.") for a in sets) and "seeds" in table and not isinstance(table["seeds"], dict):
        table["seeds"] = {"runs": table["seeds"]}  # `--set seeds.order=5` beside `seeds = 3`: the [seeds] table's form
    for assignment in sets:
        apply_set(table, assignment)
    cfg = from_table(table)
    named_variants = bases(cfg.variants)  # a variance design's v@SOURCE runs are v's
    used = set(named_variants) | {c for v in named_variants for c in v.split("+")}
    for file, names in named.items():
        if not names & used:
            raise UsageError(
                f"--params-from: {file!r} sets parameters for {', '.join(sorted(names)) or 'nothing'}, "
                f"which none of the variants run ({', '.join(cfg.variants)}) uses"
            )
    return cfg


def named(text: str) -> tuple[str, ExperimentConfig | None]:
    """(name, its ExperimentConfig or None) of an experiment the store holds, as `report`, `export`,
    `plan`, `promote` and `harness.load` name it: a .toml path is read for its name; a name is
    checked by the rule of `run` (it names folders)."""
    from harness.settings import checks

    if text.endswith(".toml") or "/" in text:
        cfg = load_experiment(text)
        return cfg.name, cfg
    return checks.checked("", "name", text, str, "--experiment"), None
