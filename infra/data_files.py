"""The files the ``tidings`` package carries beside its code, found with importlib.resources.

The template, the routes, the Lambda requirements, the price list and the OpenAPI document
(the HTTP API's description, the template's REST API body) live in the ``infra`` package and
ship in the wheel as package data, so ``tidings up`` and ``tidings deploy`` find them from any
working directory, installed or in a checkout. :func:`code_root` is the folder that holds the
``backend``, ``auth`` and ``infra`` packages: the local Lambda runtime runs its functions
there, as AWS Lambda runs them in ``/var/task``, so the template's relative
``TIDINGS_ROUTES_FILE`` (``infra/routes.yaml``) names the same file locally as in the
deployed package.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = [
    "LAMBDA_REQUIREMENTS",
    "OPENAPI",
    "PRICES",
    "ROUTES",
    "TEMPLATE",
    "code_root",
    "data_file",
    "package_dir",
]

TEMPLATE = "template.yaml"
"""The CloudFormation template: deployed by ``tidings deploy``, run by ``tidings up``."""
ROUTES = "routes.yaml"
"""Which table's changes go to which channels, and who may read them."""
LAMBDA_REQUIREMENTS = "lambda-requirements.txt"
"""What the functions need beyond the Lambda Python runtime (pinned: the package is
deterministic)."""
PRICES = "prices.yaml"
"""The AWS list prices ``tidings cost`` uses, with the date they were read and their sources."""
OPENAPI = "openapi.yaml"
"""The HTTP API's description (OpenAPI 3.0): the REST API's ``Body`` in the template
(``AWS::Include``), what the local API gateway routes by, and what the tests check answers
against."""


def package_dir(package: str) -> Path:
    """The folder an installed (or checked-out) top-level package lives in.

    The packages are installed as plain files (a wheel, an editable install or a checkout);
    a zipped install cannot serve the local stack, which runs them in other processes.
    """
    location = files(package)
    if not isinstance(location, Path):
        raise RuntimeError(
            f"the {package} package is not installed as plain files ({location}); "
            "install tidings with pip or pipx, not as a zip"
        )
    return location


def data_file(name: str) -> Path:
    """The path of one of the ``infra`` package's data files (``TEMPLATE``, ``ROUTES``, ...)."""
    return package_dir("infra") / name


def code_root() -> Path:
    """The folder holding the ``backend``, ``auth`` and ``infra`` packages (Lambda's
    ``/var/task``): site-packages for an installed wheel, the checkout otherwise."""
    return package_dir("infra").parent
