"""api/web.py's loading of the client: module imports rewritten to hashed URLs, the version.

Served over HTTP and loaded by Chromium in tests/browser/test_browser.py; these need no server.
"""

from __future__ import annotations

import importlib.resources
import re
import shutil
from pathlib import Path

import pytest

from vechat_rls.api.web import load_web_assets, web_assets

PACKAGE_WEB = Path(str(importlib.resources.files("vechat_rls") / "web"))
# Any relative specifier in a served module: each must be a module's hashed URL.
RELATIVE_SPECIFIER = re.compile(r"""["'](\.\.?/[^"']*)["']""")


@pytest.fixture
def web(tmp_path: Path) -> Path:
    """A copy of the package's web/ to change."""
    return Path(shutil.copytree(PACKAGE_WEB, tmp_path / "web"))


def test_every_import_of_every_module_names_the_shared_version() -> None:
    assets = web_assets()
    modules = {name: a for name, a in assets.static.items() if name.endswith(".js")}
    assert sorted(modules) == sorted(p.name for p in PACKAGE_WEB.glob("*.js"))
    (version,) = {a.version for a in modules.values()}
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    imported = set()
    for name, asset in modules.items():
        assert asset.media_type == "text/javascript"
        for specifier in RELATIVE_SPECIFIER.findall(asset.body.decode()):
            match = re.fullmatch(rf"\./([a-z-]+\.js)\?v={version}", specifier)
            assert match and match[1] in modules, (name, specifier)
            imported.add(match[1])
    # Every module but the entry is reached from it; the page names the entry by the version.
    assert imported == set(modules) - {"app.js"}
    assert f'<script type="module" src="/static/app.js?v={version}">' in assets.index.body.decode()


def test_changing_one_module_changes_every_module_url(web: Path) -> None:
    before = load_web_assets(web)
    with (web / "settings.js").open("a") as file:
        file.write("// changed\n")
    after = load_web_assets(web)
    for name in (p.name for p in web.glob("*.js")):
        assert after.static[name].version != before.static[name].version, name
    # The page names the new version (and so is new itself); the stylesheet keeps its own hash.
    assert f"/static/app.js?v={after.static['app.js'].version}" in after.index.body.decode()
    assert after.index.etag != before.index.etag
    assert after.static["app.css"].version == before.static["app.css"].version


@pytest.mark.parametrize(
    "statement",
    [
        'import { x } from "./nothing.js";',
        'import "/static/state.js";',
        "import { h } from '../helpers.js';",
        'export { h } from "./helpers.js?v=0000000000000000";',
        'import { h } from "helpers";',
    ],
)
def test_an_import_that_is_not_one_of_the_client_modules_fails_to_load(
    web: Path, statement: str
) -> None:
    """Left as it is, it would load a module a second time by an unhashed URL, or not at all."""
    source = (web / "settings.js").read_text()
    (web / "settings.js").write_text(statement + "\n" + source)
    with pytest.raises(ValueError, match=r"settings\.js imports .* may import only"):
        load_web_assets(web)
