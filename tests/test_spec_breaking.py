"""The breaking-change check (`scripts/spec.py breaking`, Redocly's diff under the policy in
tools/openapi/redocly.yaml): each kind of break is caught, additive changes pass, and a break
passes only when marked intentional (a major bump of info.version and its CHANGELOG.md entry)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from app.config import DEFAULT_SPEC
from tests.spec_tools import SCRIPT, redocly, spec_script  # noqa: F401  (redocly is a fixture)

# The checked-in spec's version, which the throwaway repos start from.
CURRENT_VERSION = yaml.safe_load(DEFAULT_SPEC.read_text())["info"]["version"]

BASE_TEXT = DEFAULT_SPEC.read_text()
SPEC = yaml.safe_load(BASE_TEXT)


def _schema(spec, name):
    return spec["components"]["schemas"][name]


def _operation(spec, path, method):
    return spec["paths"][path][method]


def _changed(mutate) -> str:
    spec = copy.deepcopy(SPEC)
    mutate(spec)
    return yaml.safe_dump(spec, sort_keys=False)


def _rename_path(spec, old, new):
    spec["paths"] = {(new if path == old else path): item for path, item in spec["paths"].items()}


def _rename_property(schema, old, new):
    schema["properties"] = {(new if name == old else name): value for name, value in schema["properties"].items()}


# name: (the change, the Redocly rule that must call it breaking, where it must be reported)
BREAKS = {
    "operation removed": (
        lambda s: s["paths"]["/connections"].pop("get"), "operation-removed", "GET /connections"),
    "operation renamed (operationId)": (
        lambda s: _operation(s, "/connections", "get").update(operationId="list_all_connections"),
        "operation-id-changed", "GET /connections"),
    "operation renamed (path)": (
        lambda s: _rename_path(s, "/connections/{connectionId}", "/sources/{connectionId}"),
        "path-removed", "/sources/{connectionId}"),
    "response field removed": (
        lambda s: _schema(s, "Connection")["properties"].pop("updatedAt"), "property-removed",
        "GET /connections responses/200"),
    "response field renamed": (
        lambda s: _rename_property(_schema(s, "Connection"), "mysqlHost", "host"), "property-removed",
        "GET /connections responses/200"),
    "request field removed": (
        lambda s: _schema(s, "ConnectionCreate")["properties"].pop("syncInterval"), "property-removed",
        "POST /connections requestBody"),
    "enum value removed": (
        lambda s: _schema(s, "LogLevel")["enum"].remove("debug"), "enum-values-removed", "enum"),
    "enum value added to a vocabulary answers carry": (
        lambda s: _schema(s, "InstanceSize")["enum"].append("4xlarge"), "enum-values-added", "enum"),
    "maxLength narrowed": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["mysqlHost"].update(maxLength=100),
        "schema-constraint-changed", "POST /connections requestBody/content/application/json/schema/"
                                     "properties/mysqlHost · maxLength"),
    "minLength raised": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["name"].update(minLength=3),
        "schema-constraint-changed", "properties/name · minLength"),
    "minimum raised": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["mysqlPort"].update(minimum=1024),
        "schema-constraint-changed", "properties/mysqlPort · minimum"),
    "maximum lowered": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["syncInterval"].update(maximum=600),
        "schema-constraint-changed", "properties/syncInterval · maximum"),
    "maxItems lowered": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["availableSchemas"].update(maxItems=10),
        "schema-constraint-changed", "properties/availableSchemas · maxItems"),
    "pattern added": (
        lambda s: _schema(s, "ConnectionCreate")["properties"]["mysqlUser"].update(pattern="^[a-z_]+$"),
        "schema-constraint-changed", "properties/mysqlUser · pattern"),
    "response bound widened": (
        lambda s: _schema(s, "Connection")["properties"]["name"].update(maxLength=500),
        "schema-constraint-changed", "GET /connections responses/200"),
    "new required request field": (
        lambda s: _schema(s, "ConnectionCreate")["required"].append("syncInterval"),
        "required-properties-added", "POST /connections requestBody"),
    "new required parameter": (
        lambda s: _operation(s, "/connections", "get").update(parameters=[{
            "name": "region", "in": "query", "required": True, "description": "Region.",
            "schema": {"type": "string", "maxLength": 64}}]),
        "parameter-became-required", "GET /connections parameters"),
    "response field no longer always present": (
        lambda s: _schema(s, "Connection")["required"].remove("name"), "required-properties-removed",
        "GET /connections responses/200"),
    "type changed": (
        lambda s: _schema(s, "ConnectionUpdate")["properties"]["mysqlPort"].update(type="string", maxLength=5),
        "schema-type-changed", "PATCH /connections/{connectionId} requestBody"),
    "response removed": (
        lambda s: _operation(s, "/connections", "post")["responses"].pop("409"), "response-removed",
        "POST /connections responses/409"),
    "media type removed": (
        lambda s: _operation(s, "/databases/{databaseId}/config", "put")["requestBody"]["content"]
        .pop("application/yaml"),
        "media-type-removed", "PUT /databases/{databaseId}/config requestBody/content/application/yaml"),
}

ADDITIVE = {
    "new optional request field": lambda s: _schema(s, "ConnectionCreate")["properties"].update(
        note={"type": "string", "maxLength": 200, "description": "A note."}),
    "new response field": lambda s: _schema(s, "Connection")["properties"].update(
        note={"type": "string", "maxLength": 200, "readOnly": True, "description": "A note."}),
    "new operation": lambda s: s["paths"].update({"/connections/{connectionId}/test": {
        "parameters": [{"$ref": "#/components/parameters/ConnectionId"}],
        "post": {"operationId": "test_connection", "summary": "Test a connection",
                 "responses": {"204": {"description": "Reachable."},
                               "500": {"$ref": "#/components/responses/InternalError"}}}}}),
    "new optional parameter": lambda s: _operation(s, "/connections", "get").setdefault("parameters", []).append({
        "name": "nameContains", "in": "query", "description": "Only connections whose name contains this.",
        "schema": {"type": "string", "maxLength": 100}}),
    "request bound widened": lambda s: _schema(s, "ConnectionCreate")["properties"]["mysqlHost"].update(
        maxLength=500),
    "new error response": lambda s: _operation(s, "/connections", "get")["responses"].update(
        {"403": {"$ref": "#/components/responses/Forbidden"}}),
    "descriptions reworded": lambda s: _schema(s, "ConnectionCreate")["properties"]["name"].update(
        description="Unique in the account; shown in the dashboard."),
}


@pytest.mark.parametrize("name", BREAKS)
def test_each_kind_of_break_is_caught(redocly, name):  # noqa: F811
    mutate, rule, where = BREAKS[name]
    found = spec_script.breaking(spec_script.diff(BASE_TEXT, _changed(mutate)))
    assert any(change.rule == rule and where in change.where for change in found), [str(c) for c in found]


@pytest.mark.parametrize("name", ADDITIVE)
def test_additive_changes_pass(redocly, name):  # noqa: F811
    changes = spec_script.diff(BASE_TEXT, _changed(ADDITIVE[name]))
    assert changes, "the change was not seen at all"
    assert spec_script.breaking(changes) == []


# -- what marks a break intentional ---------------------------------------------------------

CHANGELOG = """# Changelog

## [2.0.0] - 2026-01-01
### Breaking
- `GET /connections` is gone: use `GET /sources`.

## [1.4.0]

## [1.3.0]
- Added `note`.
"""


@pytest.mark.parametrize("base,head,changelog,missing", [
    ("1.3.0", "2.0.0", CHANGELOG, None),
    ("0.1.0", "1.0.0", CHANGELOG.replace("2.0.0", "1.0.0"), None),
    ("1.3.0", "1.4.0", CHANGELOG, "info.version must take a major bump (it is 1.4.0, was 1.3.0; e.g. 2.0.0)"),
    ("1.3.0", "1.3.0", CHANGELOG, "info.version must take a major bump"),
    ("1.3.0", "3.0.0", CHANGELOG, "CHANGELOG.md needs a `## [3.0.0]` section"),
    ("0.9.0", "1.0.0", None, "CHANGELOG.md needs a `## [1.0.0]` section"),
    ("1.3.0", "two", CHANGELOG, "info.version 'two' is not a semantic version"),
])
def test_intentional_needs_a_major_bump_and_its_changelog_entry(base, head, changelog, missing):
    answer = spec_script.intentional(base, head, changelog)
    assert answer is None if missing is None else missing in answer, answer


def test_an_empty_changelog_section_does_not_count():
    assert spec_script.changelog_entry(CHANGELOG, "1.4.0") is None
    assert spec_script.changelog_entry(CHANGELOG, "2.0.0").startswith("### Breaking")
    assert spec_script.changelog_entry("## v2.0.0\n- gone\n", "2.0.0") == "- gone"


# -- the command, in a git repository --------------------------------------------------------


class Repo:
    """A throwaway git repository holding a copy of the spec and a CHANGELOG.md."""

    def __init__(self, root):
        self.root = root
        self.spec = root / "openapi" / "openapi.yaml"
        self.spec.parent.mkdir()
        shutil.copy(DEFAULT_SPEC, self.spec)
        (root / "CHANGELOG.md").write_text("# Changelog\n\n## [0.1.0]\n- First version.\n")
        self.git("init", "-q", "-b", "main")
        self.commit("first version")

    def git(self, *args) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        return subprocess.run(["git", "-C", str(self.root), *args], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def change(self, mutate):
        spec = yaml.safe_load(self.spec.read_text())
        mutate(spec)
        self.spec.write_text(yaml.safe_dump(spec, sort_keys=False))

    def release(self, version, notes):
        self.change(lambda s: s["info"].update(version=version))
        changelog = self.root / "CHANGELOG.md"
        section = f"# Changelog\n\n## [{version}]\n{notes}\n"
        changelog.write_text(changelog.read_text().replace("# Changelog\n", section))

    def check(self, *args):
        done = subprocess.run([sys.executable, str(SCRIPT), "breaking", "--spec", str(self.spec), *args],
                              capture_output=True, text=True)
        return done.returncode, done.stdout + done.stderr


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path)


def _remove_list(spec):
    spec["paths"]["/connections"].pop("get")


def test_a_branch_that_breaks_the_api_fails_until_marked_intentional(redocly, repo):  # noqa: F811
    left_main = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "feature")
    repo.change(_remove_list)
    repo.commit("drop the list")
    status, output = repo.check()
    assert status == 1, output
    assert f"openapi/openapi.yaml against {left_main} (where this branch left main)" in output
    assert "1 breaking change(s):\n  GET /connections: Operation `GET /connections` was removed. " \
           "(operation-removed)\n" in output
    major = int(CURRENT_VERSION.split(".")[0])
    assert (f"If that is intended, info.version must take a major bump (it is {CURRENT_VERSION}, "
            f"was {CURRENT_VERSION}; e.g. {major + 1}.0.0)") in output

    repo.change(lambda s: s["info"].update(version=f"{major + 1}.0.0"))
    status, output = repo.check()
    assert status == 1 and f"CHANGELOG.md needs a `## [{major + 1}.0.0]` section" in output, output

    repo.release(f"{major + 1}.0.0", "- `GET /connections` is removed.")
    status, output = repo.check()
    assert status == 0, output
    assert (f"marked intentional: info.version {CURRENT_VERSION} -> {major + 1}.0.0, "
            "with its CHANGELOG.md entry") in output


def test_additive_changes_on_a_branch_pass(redocly, repo):  # noqa: F811
    repo.git("checkout", "-q", "-b", "feature")
    repo.change(ADDITIVE["new response field"])
    repo.commit("add a field")
    status, output = repo.check()
    assert status == 0, output
    assert "compatible change(s) (additions and widenings): OK\nno breaking change" in output


def test_the_last_release_tag_is_the_default_base(redocly, repo):  # noqa: F811
    repo.git("tag", "v0.1.0")
    repo.change(ADDITIVE["new response field"])
    repo.commit("add a field on main")
    repo.git("checkout", "-q", "-b", "feature")
    repo.change(lambda s: _schema(s, "Connection")["properties"].pop("note"))
    repo.commit("drop it again before any release")
    status, output = repo.check()
    # Against the release, the field never existed: nothing a client saw has broken.
    assert status == 0 and "against v0.1.0 (the last release tag)" in output, output


def test_on_main_the_base_is_the_spec_before_its_last_change(redocly, repo):  # noqa: F811
    repo.change(_remove_list)
    breaking_commit = repo.commit("drop the list, straight on main")
    before = repo.git("rev-parse", f"{breaking_commit}^")
    (repo.root / "README.md").write_text("later work that leaves the spec alone\n")
    repo.commit("docs")
    status, output = repo.check()
    assert status == 1, output
    assert f"against {before} (the spec before {breaking_commit[:10]}, the last commit that changed it)" in output


def test_on_main_after_a_merge_the_base_is_main_before_the_branch(redocly, repo):  # noqa: F811
    before = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "feature")
    repo.change(_remove_list)
    repo.commit("drop the list")
    repo.change(ADDITIVE["new response field"])
    repo.commit("then add a field")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "Merge branch 'feature'", "feature")
    merge = repo.git("rev-parse", "HEAD")
    status, output = repo.check()
    # The branch's last commit alone is additive; the merge as a whole removes an operation.
    assert status == 1, output
    assert f"against {before} (the spec before {merge[:10]}, the last commit that changed it)" in output
    assert "GET /connections: Operation `GET /connections` was removed." in output


def test_on_main_uncommitted_edits_are_compared_with_head(redocly, repo):  # noqa: F811
    repo.change(_remove_list)
    status, output = repo.check()
    assert status == 1 and "against HEAD (the last commit: the spec has uncommitted changes)" in output, output


def test_an_explicit_base_and_one_that_does_not_exist(redocly, repo):  # noqa: F811
    first = repo.git("rev-parse", "HEAD")
    repo.change(_remove_list)
    repo.commit("drop the list")
    status, output = repo.check("--base", first)
    assert status == 1 and f"against {first} (given with --base)" in output, output
    status, output = repo.check("--base", "no-such-ref")
    assert status == 2 and "git ref 'no-such-ref' does not exist here" in output, output
