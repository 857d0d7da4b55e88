"""Parameter profiles: `notebooks/params/<profile>.yaml`, one set of notebook parameter values for every notebook.

`load_profile(name)` reads a profile and checks its values against every notebook's declarations
and ranges (`params.notebook`), so the main job stops before its first notebook;
`profile_notebooks(name)` names the notebooks a profile is made for (its `notebooks:` list);
`profile_names()` lists the shipped profiles; `check_profile_name(name)` refuses a name that is a path.
A profile file is read as UTF-8 YAML in which no key appears twice (the last would silently win).
"""
from pathlib import Path

import yaml

from lth_core import paths
from lth_core.params.notebook import ParameterError, all_declared, check_parameters


def profile_names() -> list[str]:
    """Every profile shipped in `notebooks/params/`, by name."""
    return [p.stem for p in sorted(paths.PARAMS_DIR.glob("*.yaml"))]


def check_profile_name(profile: str) -> None:
    """Refuse a profile name that is a path: `notebooks/params/<name>.yaml` and `outputs/<name>/` must stay
    inside their folders (`/abs/x` or `../x` would read and write anywhere)."""
    if not profile or Path(profile).name != profile or profile.startswith("."):
        raise ParameterError(f"profile {profile!r} is not a profile name (a name, not a path: no '/', no leading "
                             f"'.'); valid profiles: {', '.join(profile_names())}")


def profile_path(profile: str) -> Path:
    check_profile_name(profile)
    path = paths.PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        raise ParameterError(f"unknown profile {profile!r}; valid profiles: {', '.join(profile_names())}")
    return path


# a profile's own key, not a parameter: the notebooks it is made for (default: every notebook)
PROFILE_NOTEBOOKS = "notebooks"


def profile_notebooks(profile: str) -> list[str] | None:
    """The notebooks `profile` is made for (its `notebooks:` list), or None for every notebook."""
    return _read_profile(profile).get(PROFILE_NOTEBOOKS)


class _DuplicateKey(yaml.YAMLError):
    """A mapping that sets one key twice; its message names the key and both lines."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a mapping that sets one key twice (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(f"`{key}` twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def _read_profile(profile: str) -> dict:
    path = profile_path(profile)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ParameterError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}): "
                             "save it as UTF-8") from None
    try:
        values = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as e:
        raise ParameterError(f"{path} sets {e}: keep one (YAML would silently use the last)") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        raise ParameterError(f"{path} is not valid YAML ({getattr(e, 'problem', None) or e}"
                             f"{f' at line {where.line + 1}' if where else ''}): fix it, e.g. `name: value` "
                             "per line") from None
    if not isinstance(values, dict):
        raise ParameterError(f"{path} must hold `name: value` lines, not a {type(values).__name__}")
    names = values.get(PROFILE_NOTEBOOKS)
    valid = sorted(all_declared())
    if names is not None and not (isinstance(names, list) and names and set(names) <= set(valid)
                                  and len(set(names)) == len(names)):
        raise ParameterError(f"{path}: `{PROFILE_NOTEBOOKS}` must be a list of distinct notebooks from {valid}, "
                             f"got {names!r}")
    return values


def load_profile(profile: str) -> dict:
    """The parameter values `profile` sets, checked against every notebook's declarations and ranges."""
    values = {k: v for k, v in _read_profile(profile).items() if k != PROFILE_NOTEBOOKS}
    known = {n for decl in all_declared().values() for n in decl}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParameterError(f"profile {profile!r} sets unknown parameters {unknown}; "
                             f"valid parameters: {', '.join(sorted(known))}")
    for notebook, declared in all_declared().items():  # each notebook's defaults, overridden by the profile
        try:
            check_parameters(notebook, {**{n: spec[2] for n, spec in declared.items()},
                                        **{n: v for n, v in values.items() if n in declared}})
        except ParameterError as err:
            raise ParameterError(f"profile {profile!r}: {err}") from None
    return values
