"""Where a bisection's commits come from, and how a commit becomes something a cell can run.

The commit list is the first-parent history from good to bad of a local vLLM clone (merges into main
are what per-commit images and wheels exist for), or a file of SHAs oldest first, or a rehearsal
scenario. Every way a person can get the range wrong (an unknown SHA, good == bad, good not an
ancestor of bad, an empty range) is one ConfigError, raised before anything runs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from fleet.errors import ConfigError, InfrastructureError
from fleet.model import Cell
from fleet.plan.images import COMMIT_IMAGE_TEMPLATE

#: Placeholders a cell's model, draft model and image may carry, filled per commit.
CHECKOUT_PLACEHOLDER = "{checkout}"
SHA_PLACEHOLDER = "{sha}"


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False,
                              timeout=120)
    except FileNotFoundError as err:
        raise ConfigError("git is not installed", where="--repo", fix="install git") from err


def _resolve(repo: Path, sha: str, option: str) -> str:
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise ConfigError(f"unknown commit {sha!r} in {repo}", where=option,
                          fix="pass a SHA of that repository (git log --oneline shows them); fetch it first "
                              "if it is new")
    return done.stdout.strip()


def commits_from_git(repo: Path, good: str, bad: str) -> list[str]:
    """good, then every first-parent commit after it up to and including bad, oldest first."""
    if not (repo / ".git").exists() and _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise ConfigError(f"{repo} is not a git repository", where="--repo",
                          fix="pass a local clone of vLLM, or --commits FILE")
    good_sha, bad_sha = _resolve(repo, good, "--good"), _resolve(repo, bad, "--bad")
    _distinct(good_sha, bad_sha)
    if _git(repo, "merge-base", "--is-ancestor", good_sha, bad_sha).returncode != 0:
        raise ConfigError(f"--good {good} is not an ancestor of --bad {bad}", where="--good",
                          cause="the two are swapped, or on different branches",
                          fix="pass an older commit of bad's history as --good")
    listed = _git(repo, "rev-list", "--first-parent", "--reverse", f"{good_sha}..{bad_sha}")
    if listed.returncode != 0:
        raise InfrastructureError(f"git rev-list failed: {listed.stderr.strip()}", where=str(repo))
    between = listed.stdout.split()
    parents = _git(repo, "rev-parse", f"{between[0]}^1").stdout.strip() if between else ""
    if not between or parents != good_sha:
        raise ConfigError(f"--good {good} is not on --bad {bad}'s first-parent history", where="--good",
                          cause="it was merged in from a side branch",
                          fix="pass the main-line commit the side branch was merged by, or its parent")
    return [good_sha, *between]


def commits_from_file(path: Path, good: str, bad: str) -> list[str]:
    """The lines of `path` (SHAs oldest first; `#` comments) from good to bad; unique prefixes accepted."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ConfigError(f"cannot read the commit list: {err.strerror}", where=str(path)) from err
    shas = [line.split("#", 1)[0].split()[0] for line in lines if line.split("#", 1)[0].strip()]
    return commits_between(shas, good, bad, where=str(path))


def commits_between(shas: Sequence[str], good: str, bad: str, *, where: str) -> list[str]:
    start, end = _find(shas, good, "--good", where), _find(shas, bad, "--bad", where)
    _distinct(shas[start], shas[end])
    if start > end:
        raise ConfigError(f"--good {good} comes after --bad {bad} in {where}", where="--good",
                          cause="the list is oldest first, so good must come before bad",
                          fix="swap --good and --bad, or reverse the list")
    return list(shas[start:end + 1])


def _find(shas: Sequence[str], prefix: str, option: str, where: str) -> int:
    hits = [i for i, sha in enumerate(shas) if sha.startswith(prefix)] if prefix else []
    if len(hits) != 1:
        what = "unknown commit" if not hits else f"ambiguous prefix ({len(hits)} commits start with it)"
        span = f" (they run {shas[0][:12]} .. {shas[-1][:12]})" if shas else ""
        raise ConfigError(f"{what} {prefix!r}", where=f"{option} in {where}",
                          fix=f"pass a SHA (or a longer prefix) of the commits listed there{span}")
    return hits[0]


def _distinct(good: str, bad: str) -> None:
    if good == bad:
        raise ConfigError("--good and --bad are the same commit: the range to search is empty",
                          where="--good/--bad", fix="pass the last commit known to pass as --good")


def worktree(repo: Path, sha: str, root: Path) -> Path:
    """A detached checkout of `sha` under `root` (made once; later calls reuse it)."""
    path = (root / sha[:12]).resolve()  # cells run with their own directory as cwd
    if (path / ".git").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    done = _git(repo, "worktree", "add", "--detach", "--force", str(path), sha)
    if done.returncode != 0:
        raise InfrastructureError(f"cannot check out {sha[:12]}: {done.stderr.strip()}", where=str(repo))
    return path


def remove_worktrees(repo: Path, paths: Sequence[Path]) -> None:
    for path in paths:
        _git(repo, "worktree", "remove", "--force", str(path.resolve()))
    _git(repo, "worktree", "prune")


def with_checkout(cell: Cell, checkout: Path) -> Cell:
    """The cell with `{checkout}` in its model and draft paths replaced by this commit's checkout."""
    model = cell.model.replace(CHECKOUT_PLACEHOLDER, str(checkout))
    draft = cell.draft_model.replace(CHECKOUT_PLACEHOLDER, str(checkout)) if cell.draft_model else None
    return cell.model_copy(update={"model": model, "draft_model": draft})


def with_image(cell: Cell, template: str, sha: str) -> Cell:
    """The cell with its hardware image set from `template` (e.g. ghcr.io/fleet-ci/fleet-cuda:{sha})."""
    if SHA_PLACEHOLDER not in template:
        raise ConfigError(f"image template {template!r} has no {SHA_PLACEHOLDER} placeholder",
                          where="--image-template", fix=f"write e.g. {COMMIT_IMAGE_TEMPLATE}")
    hardware = cell.hardware.model_copy(update={"image": template.format(sha=sha)})
    return cell.model_copy(update={"hardware": hardware})
