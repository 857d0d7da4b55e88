"""Each notebook's study module, and the IMP runs a parameter profile asks of them, without running them.

`STUDIES` maps a notebook name to its study module; `notebook_parameters(name, values)`
fills a profile's values with the notebook's declared defaults and checks them;
`profile_configs(profile)` lists every IMP config of every notebook of a profile (what
`make reproduce` will run), for estimates and for studies of the stored runs.
"""
from lth_core.config import IMPConfig
from lth_core.params.notebook import check_parameters, declared_parameters
from lth_core.params.profiles import load_profile, profile_notebooks
from lth_core.studies import faster_tickets, shufflenet, unseen

STUDIES = {study.NOTEBOOK: study for study in (unseen, faster_tickets, shufflenet)}


def notebook_parameters(name: str, profile_values: dict) -> dict:
    """Notebook `name`'s parameter values under a profile: its defaults, overridden by the profile."""
    declared = declared_parameters(name)
    values = {**{k: spec[2] for k, spec in declared.items()}, **{k: v for k, v in profile_values.items() if k in declared}}
    check_parameters(name, values)
    return values


def profile_configs(profile: str, notebooks=None) -> list[IMPConfig]:
    """The IMP configs of `notebooks` (default: the profile's own, else all) under `profile`, in notebook
    order, each once."""
    values = load_profile(profile)
    configs = []
    for name in notebooks or profile_notebooks(profile) or STUDIES:
        configs += STUDIES[name].configs_from_parameters(notebook_parameters(name, values))
    return list(dict.fromkeys(configs))
