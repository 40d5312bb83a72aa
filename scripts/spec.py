"""The spec's tools: lint it, list its breaking changes against a git ref, build its HTML reference.

    .venv/bin/python scripts/spec.py lint [SPEC ...]
    .venv/bin/python scripts/spec.py breaking [--base REF] [--spec PATH]
    .venv/bin/python scripts/spec.py reference [--spec PATH] [--output PATH]

Each runs Redocly CLI, pinned in tools/openapi/package-lock.json and installed there with
`npm ci` on first use (needs node 20+ and npm). The lint rules are tools/openapi/redocly.yaml
(explained in tools/openapi/README.md); the breaking-change policy is in CONTRIBUTING.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools" / "openapi"
CONFIG = TOOLS / "redocly.yaml"
DEFAULT_SPEC = ROOT / "openapi" / "openapi.yaml"
REFERENCE_NAME = "reference.html"  # built beside the spec it describes; the app serves it from there
# Release tags are vX.Y.Z (or X.Y.Z); the check compares with the last one when there is one.
RELEASE_TAGS = ("v[0-9]*", "[0-9]*")
MAIN_BRANCHES = ("main", "origin/main")
SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ToolError(RuntimeError):
    """The tools could not run (no npm, a failed install, a git ref that does not exist)."""


# -- Redocly CLI, installed from the lock file -------------------------------------------------


def _pinned_version() -> str:
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    return lock["packages"]["node_modules/@redocly/cli"]["version"]


def _installed_version() -> str | None:
    manifest = TOOLS / "node_modules" / "@redocly" / "cli" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_redocly() -> Path:
    """The pinned Redocly CLI binary, installed with `npm ci` when missing or another version."""
    binary = TOOLS / "node_modules" / ".bin" / "redocly"
    # Test sessions and CI steps may start at once: one installs, the others wait for it.
    with open(TOOLS / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists() and _installed_version() == _pinned_version():
            return binary
        npm = shutil.which("npm")
        if npm is None:
            raise ToolError("npm is not installed: the spec tools need node 20+ and npm")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TOOLS,
                              capture_output=True, text=True)
        if done.returncode != 0 or not binary.exists():
            raise ToolError(f"`npm ci` in {TOOLS} failed:\n{done.stdout}{done.stderr}")
    return binary


def redocly(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run the pinned Redocly CLI with telemetry and update checks off."""
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    return subprocess.run([str(ensure_redocly()), *args], env=env, text=True,
                          capture_output=capture)


# -- lint ---------------------------------------------------------------------------------------


def lint_report(specs: list[Path]) -> dict:
    """Redocly's JSON lint report for `specs` under the project's rules: {"problems": [...]}, each
    problem naming its file in `location[0].source.ref`, as an absolute path (Redocly writes it
    relative to the working directory)."""
    done = redocly("lint", *map(str, specs), "--config", str(CONFIG), "--format", "json", capture=True)
    # One JSON document per file, one after the other.
    decoder, text, at, problems = json.JSONDecoder(), done.stdout, 0, []
    try:
        while text[at:].strip():
            at += len(text[at:]) - len(text[at:].lstrip())
            report, at = decoder.raw_decode(text, at)
            problems.extend(report["problems"])
    except (ValueError, KeyError):
        raise ToolError(f"redocly lint did not report:\n{done.stdout}{done.stderr}") from None
    if done.returncode != 0 and not problems:
        raise ToolError(f"redocly lint failed:\n{done.stdout}{done.stderr}")
    for problem in problems:
        for location in problem.get("location", []):
            source = location.get("source", {})
            if "ref" in source:
                source["ref"] = os.path.abspath(source["ref"])
    return {"problems": problems}


def lint(specs: list[Path]) -> int:
    """Lint `specs`, printing Redocly's readable report; the exit status (0 = clean)."""
    return redocly("lint", *map(str, specs), "--config", str(CONFIG)).returncode


# -- the HTML reference ---------------------------------------------------------------------


def build_reference(spec: Path, output: Path) -> None:
    """Build the static HTML reference of `spec` (Redoc, scripts inlined: no CDN at view time)."""
    done = redocly("build-docs", str(spec), "--inlineBundle", "--output", str(output),
                   "--config", str(CONFIG), capture=True)
    if done.returncode != 0:
        raise ToolError(f"redocly build-docs failed:\n{done.stdout}{done.stderr}")


# -- breaking changes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One difference between two specs, as Redocly rates it."""

    impact: str      # major (breaks clients), minor (additive) or patch
    rule: str        # Redocly's rule id, e.g. property-removed; empty for additions
    where: str       # "GET /connections responses/200/…/updatedAt"
    message: str

    def __str__(self) -> str:
        rule = f" ({self.rule})" if self.rule else ""
        return f"{self.where}: {self.message}{rule}"


def _readable(pointer: str) -> str:
    """`#/paths/~1connections/get/responses/200` -> `GET /connections responses/200`."""
    parts = [unquote(p).replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("#/").split("/")]
    if len(parts) >= 2 and parts[0] == "paths":
        path, rest = parts[1], parts[2:]
        if rest and rest[0] in HTTP_METHODS:
            return " ".join(filter(None, [rest[0].upper(), path, "/".join(rest[1:])]))
        return " ".join(filter(None, [path, "/".join(rest)]))
    return "/".join(parts)


def diff(base_text: str, head_text: str) -> list[Change]:
    """Every change from `base_text` to `head_text` (two specs), one Change per verdict."""
    with tempfile.TemporaryDirectory(prefix="spec-diff-") as tmp:
        base, head, report = Path(tmp, "base.yaml"), Path(tmp, "head.yaml"), Path(tmp, "report.json")
        base.write_text(base_text)
        head.write_text(head_text)
        done = redocly("diff", str(base), str(head), "--format", "json", "--output", str(report),
                       "--fail-on", "none", "--config", str(CONFIG), capture=True)
        if done.returncode != 0 or not report.exists():
            raise ToolError(f"redocly diff failed:\n{done.stdout}{done.stderr}")
        data = json.loads(report.read_text())
    changes = []
    for change in data["changes"]:
        where = _readable(change["path"])
        if change.get("property"):
            where += f" · {change['property']}"
        verdicts = change.get("verdicts") or [{"impact": change["impact"], "ruleId": "",
                                               "message": f"{change['kind']}"}]
        for verdict in verdicts:
            changes.append(Change(verdict["impact"], verdict.get("ruleId", ""), where, verdict["message"]))
    return changes


def breaking(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.impact == "major"]


def _major(version: str) -> int | None:
    match = SEMVER.match(str(version))
    return int(match.group(1)) if match else None


def changelog_entry(changelog: str, version: str) -> str | None:
    """The text of CHANGELOG.md's `## [version]` section, or None when there is none (or it is empty)."""
    heading = re.compile(rf"^##\s+\[?v?{re.escape(version)}\]?(\s.*)?$")
    lines = changelog.splitlines()
    for i, line in enumerate(lines):
        if heading.match(line):
            body = []
            for following in lines[i + 1:]:
                if following.startswith("## "):
                    break
                body.append(following)
            text = "\n".join(body).strip()
            return text or None
    return None


def intentional(base_version: str, head_version: str, changelog: str | None) -> str | None:
    """None when breaking changes are marked intentional, else what is missing."""
    base_major, head_major = _major(base_version), _major(head_version)
    if head_major is None:
        return f"info.version {head_version!r} is not a semantic version (MAJOR.MINOR.PATCH)"
    next_major = f"{(base_major or 0) + 1}.0.0"
    if base_major is not None and head_major <= base_major:
        return (f"info.version must take a major bump (it is {head_version}, was {base_version}; "
                f"e.g. {next_major}) and CHANGELOG.md must have a `## [{next_major}]` section saying what breaks")
    if changelog is None or changelog_entry(changelog, head_version) is None:
        return f"CHANGELOG.md needs a `## [{head_version}]` section saying what breaks and how clients adapt"
    return None


def _git(repo: Path, *args: str) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def spec_at(repo: Path, ref: str, spec_rel: str) -> str | None:
    """The spec's text at `ref`, or None when it did not exist there."""
    if _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}") is None:
        raise ToolError(f"git ref {ref!r} does not exist here")
    done = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{spec_rel}"], capture_output=True)
    return done.stdout.decode() if done.returncode == 0 else None


def default_base(repo: Path, spec_rel: str, spec_text: str) -> tuple[str, str] | None:
    """The ref to compare with, and why: the last release tag, else where this branch left main;
    on main itself, the spec before its last change (or HEAD while edits are uncommitted)."""
    tag = _git(repo, "describe", "--tags", "--abbrev=0", *[f"--match={p}" for p in RELEASE_TAGS], "HEAD")
    if tag:
        return tag, "the last release tag"
    main = next((b for b in MAIN_BRANCHES if _git(repo, "rev-parse", "--verify", "--quiet", b)), None)
    head = _git(repo, "rev-parse", "HEAD")
    if main is None or head is None:
        return None
    merge_base = _git(repo, "merge-base", "HEAD", main)
    if merge_base and merge_base != head:
        return merge_base, f"where this branch left {main}"
    if spec_at(repo, "HEAD", spec_rel) != spec_text:
        return "HEAD", "the last commit: the spec has uncommitted changes"
    # Along main's own history: after a merge, the commit that changed the spec is the merge,
    # and its first parent is main before the whole branch came in.
    last = _git(repo, "log", "-n", "1", "--first-parent", "--format=%H", "HEAD", "--", spec_rel)
    parent = last and _git(repo, "rev-parse", "--verify", "--quiet", f"{last}^1")
    if not parent:
        return None
    return parent, f"the spec before {last[:10]}, the last commit that changed it"


def check_breaking(spec: Path, base_ref: str | None) -> int:
    """Print the spec's breaking changes against `base_ref` (default: see default_base); exit status."""
    spec = spec.resolve()
    repo_root = _git(spec.parent, "rev-parse", "--show-toplevel")
    if repo_root is None:
        raise ToolError(f"{spec} is not in a git repository")
    repo = Path(repo_root)
    spec_rel = spec.relative_to(repo).as_posix()
    head_text = spec.read_text()
    if base_ref is None:
        found = default_base(repo, spec_rel, head_text)
        if found is None:
            print(f"spec breaking-change check: no release tag, no main branch and no earlier version of "
                  f"{spec_rel}: nothing to compare with")
            return 0
        base_ref, why = found
    else:
        why = "given with --base"
    print(f"spec breaking-change check: {spec_rel} against {base_ref} ({why})")
    base_text = spec_at(repo, base_ref, spec_rel)
    if base_text is None:
        print(f"{spec_rel} does not exist at {base_ref}: nothing to compare with")
        return 0
    changes = diff(base_text, head_text)
    found = breaking(changes)
    others = [c for c in changes if c.impact != "major"]
    if others:
        print(f"{len(others)} compatible change(s) (additions and widenings): OK")
    if not found:
        print("no breaking change")
        return 0
    print(f"{len(found)} breaking change(s):")
    for change in found:
        print(f"  {change}")
    base_version = (yaml.safe_load(base_text).get("info") or {}).get("version", "")
    head_version = (yaml.safe_load(head_text).get("info") or {}).get("version", "")
    changelog_path = repo / "CHANGELOG.md"
    changelog = changelog_path.read_text() if changelog_path.exists() else None
    missing = intentional(str(base_version), str(head_version), changelog)
    if missing is None:
        print(f"marked intentional: info.version {base_version} -> {head_version}, with its CHANGELOG.md entry")
        return 0
    print(f"FAIL: clients written against {base_ref} would break. If that is intended, {missing}; "
          "otherwise make the change compatible (see CONTRIBUTING.md, 'Breaking changes').")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/spec.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lint_cmd = commands.add_parser("lint", help="lint the spec with the project's rules (tools/openapi/redocly.yaml)")
    lint_cmd.add_argument("specs", nargs="*", type=Path, default=[DEFAULT_SPEC])
    breaking_cmd = commands.add_parser("breaking", help="list breaking changes against a git ref; fail unless "
                                                        "marked intentional (major info.version bump + CHANGELOG.md)")
    breaking_cmd.add_argument("--base", help="git ref to compare with (default: the last release tag, else the "
                                             "merge base with main; on main, the spec before its last change)")
    breaking_cmd.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    reference_cmd = commands.add_parser("reference", help="build the static HTML reference beside the spec")
    reference_cmd.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    reference_cmd.add_argument("--output", type=Path, help=f"default: {REFERENCE_NAME} beside the spec")
    args = parser.parse_args(argv)
    try:
        if args.command == "lint":
            return lint(args.specs)
        if args.command == "breaking":
            return check_breaking(args.spec, args.base)
        output = args.output or args.spec.with_name(REFERENCE_NAME)
        build_reference(args.spec, output)
        print(f"wrote {output}")
        return 0
    except ToolError as exc:
        print(f"spec.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
