"""The Lambda package with its dependencies, installed by pip from the package index for the
Lambda platform: only what Lambda's runtime lacks goes in (an end-to-end test: it needs the
package index, and takes about 20 s)."""

from __future__ import annotations

import zipfile
from io import BytesIO

from infra.deploy import build_package


def test_package_with_dependencies_has_only_what_lambda_lacks(tmp_path) -> None:
    from infra.deploy import install_dependencies

    install_dependencies(tmp_path)
    package = build_package(dependencies_dir=tmp_path)
    names = zipfile.ZipFile(BytesIO(package.data)).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {"jwt", "yaml", "cryptography", "aws_lambda_powertools"} <= top
    assert "boto3" not in top and "botocore" not in top  # the runtime provides them
    assert any(n.endswith(".so") and "manylinux" not in n for n in names if "cryptography" in n)
    assert build_package(dependencies_dir=tmp_path).sha256 == package.sha256
